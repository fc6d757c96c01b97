#![no_main]
//! Arbitrary manifest text through the manifests parser and, when it parses, compile():
//! a file is objects or an error, and a compile never panics, whatever the objects say.

use libfuzzer_sys::fuzz_target;
use portico::source::files::parse_manifests;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = parse_manifests(text) else {
        return;
    };
    let mut snapshot = portico::Snapshot::default();
    objects.into_iter().for_each(|o| snapshot.insert(o));
    let opts = portico::Options {
        watch_without_class: true,
        ..Default::default()
    };
    let cfg = portico::compile(&snapshot, &opts);
    let _ = portico::compile::recompile_endpoints(&snapshot, &cfg, None);
});
