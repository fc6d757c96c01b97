//! Criterion bench for response compression: a 10 KiB text response read through the
//! compressing body (gzip level 1 and brotli level 4, ingress-nginx's defaults) beside the
//! same body read as it is, as the proxy passes it when compression is off.
//!
//! cargo bench --bench compress

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use portico::proxy::compress::{Coding, Encoder};
use portico::proxy::upstream::BoxError;

// Measured with the allocator the portico binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 10 KiB of text, compressible as a typical JSON or HTML answer is, not trivially.
fn text() -> Bytes {
    (0..)
        .flat_map(|i: u32| format!("line {i}: the quick brown fox {}\n", i * 7919 % 1000).into_bytes())
        .take(10 * 1024)
        .collect::<Vec<u8>>()
        .into()
}

fn body(data: &Bytes) -> impl hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin {
    Full::new(data.clone()).map_err(|e| -> BoxError { match e {} })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let data = text();
    let mut g = c.benchmark_group("10KiB response");
    g.bench_function("plain", |b| {
        b.iter(|| rt.block_on(async { black_box(body(&data).collect().await.unwrap().to_bytes()) }))
    });
    for (name, coding, level) in [("gzip level 1", Coding::Gzip, 1), ("brotli level 4", Coding::Brotli, 4)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let encoder = Encoder::new(body(&data), coding, level, Some(data.len() as u64));
                    black_box(encoder.collect().await.unwrap().to_bytes())
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
