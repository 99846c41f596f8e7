//! The `cxr-triage` binary: a thin command-line front over the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cxr_triage::cli::Cli::parse();
    cxr_triage::cli::init_logging(cli.log.as_deref());
    match cli.command.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
