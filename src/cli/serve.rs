//! `cxr-triage serve`: the gRPC triage service.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::ServiceConfig;
use cxr_model::ProviderChoice;

/// Options of `cxr-triage serve` (each overrides the configuration file).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see `--print-config` for every key).
    #[arg(long, short, env = "CXR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
    /// gRPC listen address (env CXR_LISTEN).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Data directory (env CXR_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Models directory (env CXR_MODELS_DIR).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Execution provider (env CXR_PROVIDER).
    #[arg(long)]
    pub provider: Option<ProviderChoice>,
}

/// Runs the service until Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = ServiceConfig::load(args.config.as_deref())?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(m) = &args.models {
        config.engine.models_dir = m.clone();
    }
    if let Some(p) = args.provider {
        config.engine.session.provider = p;
    }
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async move {
        if let Some(addr) = config.metrics_listen {
            crate::serve::install_metrics(addr)?;
            tokio::spawn(crate::serve::report_memory());
            eprintln!("metrics on http://{addr}/metrics");
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        eprintln!(
            "cxr-triage serving gRPC on {} (data {}, models {}); Ctrl-C to stop",
            listener.local_addr()?,
            config.data_dir.display(),
            config.engine.models_dir.display()
        );
        crate::serve::run(config, listener, shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
