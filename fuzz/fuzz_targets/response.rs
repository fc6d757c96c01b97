#![no_main]
//! Upstream response bytes through Portico's HTTP/1.1 client parsers: the head
//! (`parse_head`), then the body as the head frames it (`decode`: Content-Length, chunked
//! with extensions and trailers, until close), fed in the pieces the first byte chooses.
//! Never a panic; a body read to its end holds no more than the wire did, and trailers only
//! come from a chunked body and never carry framing fields.

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portico::proxy::upstream::h1::{Framing, Step, decode, parse_head};

fuzz_target!(|data: &[u8]| {
    let Some((&split, wire)) = data.split_first() else {
        return;
    };
    let head_only = split & 1 == 1;
    let piece = usize::from(split >> 1).max(1);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let head = loop {
        match parse_head(&mut buf, head_only) {
            Err(_) => return,
            Ok(Some(head)) => break head,
            Ok(None) if fed >= wire.len() => return,
            Ok(None) => {
                let end = (fed + piece).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
        }
    };
    assert!(!head.headers.contains_key("transfer-encoding"));
    let chunked = matches!(head.framing, Framing::Chunked(_));
    let mut framing = head.framing;
    let mut data_len = 0usize;
    loop {
        match decode(&mut framing, &mut buf) {
            Err(_) => return,
            Ok(Step::End) => break,
            Ok(Step::Frame(f)) => match f.into_data() {
                Ok(d) => data_len += d.len(),
                Err(f) => {
                    let trailers = f.into_trailers().expect("a frame is data or trailers");
                    assert!(chunked, "trailers outside a chunked body");
                    for name in ["content-length", "transfer-encoding", "host", "set-cookie"] {
                        assert!(!trailers.contains_key(name), "{name} in trailers");
                    }
                }
            },
            Ok(Step::More) if fed >= wire.len() => break,
            Ok(Step::More) => {
                let end = (fed + piece).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
        }
    }
    assert!(data_len <= wire.len(), "more body than bytes on the wire");
});
