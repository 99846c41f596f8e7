//! Compiles the gRPC contract in `proto/` with protox (pure Rust: no
//! `protoc` needed) and generates the tonic server and client.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The contract lives at the repository's top level (`proto/`), where
    // clients in other languages find it too.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto = root.join("cxr_triage/v1/triage.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&root])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("cxr_triage_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // A film arrives as one buffer the server keeps (no copy into a
        // Vec of its own) and a client can send without copying its own.
        .bytes(".cxr_triage.v1.AnalyzeRequest.dicom")
        .bytes(".cxr_triage.v1.AnalyzeChunk.data")
        .compile_fds(descriptors)?;
    Ok(())
}
