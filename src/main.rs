//! The `cxr-triage` binary: a thin command-line front over the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Library errors (dicom-rs uses snafu) capture a backtrace when
    // RUST_BACKTRACE is set; a stream of bad files must not pay for that.
    // Panics still print theirs.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // Everything this process writes — the worklist and outbox databases,
    // spooled and outgoing DICOM, results files, reports — is patient data:
    // readable by the service's own user only (files 0600, folders 0700).
    cxr_triage::restrict_new_files();
    let cli = cxr_triage::cli::Cli::parse();
    // The service logs each request (no identifiers) at info (ONNX Runtime's
    // own chatter at warn); tools log warnings.
    let default =
        matches!(cli.command, cxr_triage::cli::Command::Serve(_)).then_some("info,ort=warn");
    cxr_triage::cli::init_logging(cli.log.as_deref().or(default));
    match cli.command.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
