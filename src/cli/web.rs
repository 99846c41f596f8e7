//! `cxr-triage web hash-password`: the stored form of a local user's
//! password for `[[web.users]]` (read from standard input, so that it is
//! not left in the shell history or the process list).

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Options of `web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WebCommand,
}

/// `web` subcommands.
#[derive(Debug, Subcommand)]
pub enum WebCommand {
    /// Read a password from standard input (one line) and print its hash
    /// for `password = "..."` in `[[web.users]]`.
    HashPassword {
        /// PBKDF2 iterations (more is slower to sign in and to guess).
        #[arg(long, default_value_t = cxr_web::auth::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
}

/// Runs `web`.
pub fn run(args: &WebArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        WebCommand::HashPassword { iterations } => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = line.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!password.is_empty(), "no password on standard input");
            println!("{}", cxr_web::hash_password(password, *iterations));
            Ok(ExitCode::SUCCESS)
        }
    }
}
