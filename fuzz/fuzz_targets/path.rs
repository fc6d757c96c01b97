#![no_main]
//! Request and Ingress paths through `portico::path::normalize`: never a panic, and what it
//! returns is absolute and already normal (normalizing it again changes nothing), since
//! compile and the data plane compare the two sides in that form.

use libfuzzer_sys::fuzz_target;
use portico::path::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(once) = normalize(raw) {
        assert!(once.starts_with('/'), "{raw:?} → {once:?}");
        let twice = normalize(&once);
        assert_eq!(twice.as_deref(), Ok(&*once), "{raw:?} → {once:?}");
    }
});
