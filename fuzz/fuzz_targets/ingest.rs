//! Fuzz target: parse + decode + VOI of arbitrary bytes. Any panic, abort,
//! timeout or out-of-memory is a bug: bad input must yield an `IngestError`.
#![no_main]

use cxr_ingest::{read_bytes, IngestLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits keep each execution fast; the logic under test is the same.
    let limits = IngestLimits {
        max_input_bytes: 1 << 20,
        max_side: 1024,
        max_pixels: 1 << 20,
        min_side: 16,
        ..IngestLimits::default()
    };
    let _ = read_bytes(data, &limits);
});
