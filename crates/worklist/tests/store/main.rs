//! Integration tests of this crate, in one binary (one link instead of one
//! per file).

mod backends;
mod replicas;
mod tls;
mod worklist_store;
