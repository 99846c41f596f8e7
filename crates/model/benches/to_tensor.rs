//! P2 of the performance work: an uncompressed full-size film, from its
//! bytes in memory to the reference model's input tensor, on one core —
//! parse, stored values, modality and VOI LUT, letterbox area resampling
//! to 256 × 256 and normalisation (`read_bytes` + `write_input`), which is
//! what the service and `score` do per image before inference.
//!
//! The film is made by `cxr-synth` (2560 × 2440, 16 bits allocated, 12
//! stored, Explicit VR Little Endian: 12.5 MB), once, outside the timing.
//! Run with `cargo bench -p cxr-model --bench to_tensor`; criterion runs
//! it on the calling thread (one core).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use cxr_ingest::{read_bytes, IngestLimits};
use cxr_model::preprocess::write_input;
use cxr_model::Manifest;
use cxr_synth::{dicom_bytes, generate_case, CaseSpec, OutputSyntax};

fn to_tensor(c: &mut Criterion) {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let manifest = Manifest::load(&root.join("models/cxr-reference-v1.toml")).unwrap();
    let spec = manifest.input_spec();
    let case = generate_case(
        &CaseSpec {
            size: Some((2560, 2440)),
            bits: Some(12),
            ..CaseSpec::small()
        },
        1,
        0,
    )
    .unwrap();
    let bytes = dicom_bytes(&case, OutputSyntax::ExplicitLe).unwrap();
    let limits = IngestLimits::default();
    let mut input = vec![0.0f32; spec.image_len()];

    let mut group = c.benchmark_group("to_tensor");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("explicit_le_2560x2440_16bit_12.5MB", |b| {
        b.iter(|| {
            let film = read_bytes(&bytes, &limits).unwrap();
            write_input(&spec, &film.image, &mut input)
        })
    });
    group.finish();
}

criterion_group!(benches, to_tensor);
criterion_main!(benches);
