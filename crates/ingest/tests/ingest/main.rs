//! Integration tests of this crate, in one binary (one link instead of one
//! per file).

mod accelerated;
mod common;
mod ingest_bad_input;
mod ingest_fixtures;
mod ingest_pixel_semantics;
mod reduced;
mod synth_ingest;
