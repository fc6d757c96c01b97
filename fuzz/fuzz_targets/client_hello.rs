#![no_main]
//! Client bytes through the ClientHello SNI parser of SSL passthrough (`passthrough::sni`),
//! fed in the pieces the first byte chooses. Never a panic; once an answer is given, more
//! bytes never change it; a name found is a lower-case DNS name of at most 253 bytes; a hello
//! claiming more than the cap is never taken.

mod pieces;

use libfuzzer_sys::fuzz_target;
use portico::proxy::passthrough::{Error, MAX_HELLO, sni};

fuzz_target!(|data: &[u8]| {
    pieces::fed_in_pieces(data, sni, |seen, got| {
        // A first record that holds the handshake header: a claim past the cap is never
        // taken (refused once the record is complete).
        if seen.len() >= 9 && seen[0] == 22 && u16::from_be_bytes([seen[3], seen[4]]) >= 4 && seen[5] == 1 {
            let claimed = usize::from(seen[6]) << 16 | usize::from(seen[7]) << 8 | usize::from(seen[8]);
            if claimed > MAX_HELLO && !matches!(got, Ok(None)) {
                assert!(matches!(got, Err(Error::TooLong) | Err(Error::Malformed)), "{got:?}");
            }
        }
        if let Ok(Some(Some(name))) = got {
            assert!(!name.is_empty() && name.len() <= 253);
            assert!(name.bytes().all(|b| !b.is_ascii_uppercase()));
        }
    });
});
