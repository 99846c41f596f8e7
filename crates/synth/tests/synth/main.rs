//! Integration tests of this crate, in one binary (one link instead of one
//! per file).

mod synth_cases;
mod synth_dicom;
