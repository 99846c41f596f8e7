//! Decode + VOI per transfer syntax on the RG1 chest CR (1841 x 1955).
//!
//! Each benchmark times `read_bytes` on a file already in memory: parse,
//! frame-1 decode, modality LUT, VOI and MONOCHROME1 inversion. Fixtures come
//! from `make fixtures`; missing ones are skipped with a note.

use criterion::{criterion_group, criterion_main, Criterion};
use cxr_ingest::{read_bytes, IngestLimits};

/// The files benchmarked, one per transfer syntax (and bit depth for DCT JPEG).
pub const FILES: [&str; 13] = [
    "RG1_UNCR.dcm",
    "RG1_IMPLICIT.dcm",
    "RG1_BE.dcm",
    "RG1_DEFL.dcm",
    "RG1_RLE.dcm",
    "RG1_JPLL_SV1.dcm",
    "RG1_JLSL.dcm",
    "RG1_JLSN.dcm",
    "RG1_J2KR.dcm",
    "RG1_J2KI.dcm",
    "RG1_HTJ2KL.dcm",
    "RG1_12BIT_JPEXT.dcm",
    "RG1_8BIT_JPBASE.dcm",
];

fn decode(c: &mut Criterion) {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("test-images/generated");
    let limits = IngestLimits::default();
    let mut group = c.benchmark_group("decode_voi");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(3));
    for name in FILES {
        let Ok(bytes) = std::fs::read(dir.join(name)) else {
            eprintln!(
                "skipping {name}: not in {} (run `make fixtures`)",
                dir.display()
            );
            continue;
        };
        group.bench_function(name.trim_end_matches(".dcm"), |b| {
            b.iter(|| read_bytes(&bytes, &limits).expect("fixture decodes"))
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
