//! Integration tests of this crate, in one binary (one link instead of one
//! per file).

mod analyze_cli;
mod attacks;
mod auth;
mod campaign;
mod findings_as_data;
mod hardening;
mod hl7;
mod pacs_grouping;
mod pacs_orthanc;
mod pacs_process;
mod pacs_results;
mod pacs_scp;
mod pacs_stow;
mod pacs_support;
mod reduced_decode;
mod rehearsal;
mod service_grpc;
mod service_process;
mod web;
