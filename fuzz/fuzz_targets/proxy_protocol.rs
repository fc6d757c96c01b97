#![no_main]
//! Client bytes through the PROXY protocol parser (`proxy_protocol::parse`), fed in the
//! pieces the first byte chooses, as reads would deliver them. Never a panic; a header is
//! never longer than its version allows nor than the bytes given; once a prefix is refused
//! or complete, more bytes never change the answer; past the longest header it is decided.

mod pieces;

use libfuzzer_sys::fuzz_target;
use portico::proxy::proxy_protocol::{MAX_V1, MAX_V2_PAYLOAD, parse};

fuzz_target!(|data: &[u8]| {
    let decided = pieces::fed_in_pieces(data, parse, |seen, got| {
        if let Ok(Some((_, n))) = got {
            assert!(*n <= seen.len());
            assert!(*n <= 16 + MAX_V2_PAYLOAD);
            if seen.starts_with(b"PROXY ") {
                assert!(*n <= MAX_V1);
            }
        }
    });
    if data.len() > 1 + 16 + MAX_V2_PAYLOAD {
        assert!(decided.is_some());
    }
});
