//! `cxr-triage health`: asks a running service's `grpc.health.v1` whether
//! it is SERVING (models warm) — the container image's HEALTHCHECK and a
//! probe for scripts. Plaintext: point it at `health_listen`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// Options of `cxr-triage health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The service's health endpoint (`health_listen`, or `listen` when it
    /// has no TLS).
    #[arg(
        long,
        env = "CXR_HEALTH_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout_s: u64,
}

/// Exit 0 when SERVING, 1 when the service answers anything else, 2 when
/// it cannot be reached.
pub fn run(args: &HealthArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let timeout = Duration::from_secs(args.timeout_s.max(1));
    let status = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(args.addr.clone())?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await?;
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let reply = client
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        anyhow::Ok(reply.into_inner().status)
    });
    match status {
        Ok(s) if s == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 => {
            println!("SERVING");
            Ok(ExitCode::SUCCESS)
        }
        Ok(s) => {
            let name = tonic_health::pb::health_check_response::ServingStatus::try_from(s)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_else(|_| s.to_string());
            println!("{name}");
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("health check of {} failed: {e}", args.addr);
            Ok(ExitCode::from(2))
        }
    }
}
