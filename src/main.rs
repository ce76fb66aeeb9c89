//! `buildstream`: every BuildStream role in one binary.
//!
//! `buildstream dev` runs the control plane, one edge and one origin in one
//! process with embedded defaults; `edge`, `origin`, `gateway` and
//! `control` (all services, or one) run one role each, for deployments of
//! several machines.

mod config;
mod roles;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio_util::sync::CancellationToken;

use crate::config::{Overrides, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "buildstream",
    version,
    about = "Live-streaming studio: edges, origins and control plane"
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "BUILDSTREAM_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Control plane, one edge and one origin in one process.
    Dev,
    /// The control plane: every service behind the gateway in one process,
    /// or one service alone (`control user`, `control studio`).
    Control {
        /// The one service to run; all of them, with the gateway, if unset.
        #[arg(value_enum)]
        service: Option<roles::control::Service>,
    },
    /// The gateway alone, in front of service instances found by DNS SRV
    /// or listed in the configuration.
    Gateway,
    /// An edge: RTMP ingest and the mesh endpoint sources are served from.
    Edge,
    /// An origin: composes studios' programs and restreams them.
    Origin,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One process-wide TLS provider; every config here is built from it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = init_tracing(cli.command.role())?;

    let settings = Settings::load(cli.config.as_deref(), &cli.overrides)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run(cli.command, settings));
    if let Some(exporter) = exporter {
        // Sends the spans still waiting.
        if let Err(err) = exporter.shutdown() {
            tracing::warn!(error = %err, "spans not exported at exit");
        }
    }
    result
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    let secrets = settings.secrets()?;
    // Installed before anything records a metric.
    buildstream_service::telemetry::metrics();
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    match command {
        Command::Control { service: None } => {
            roles::control::run_all(settings, secrets, cancel).await
        }
        Command::Control {
            service: Some(service),
        } => roles::control::run_service(service, settings, secrets, cancel).await,
        Command::Gateway => roles::control::run_gateway(settings, secrets, cancel).await,
        Command::Edge => roles::edge::run(settings, secrets, cancel).await,
        Command::Origin => roles::origin::run(settings, secrets, cancel).await,
        Command::Dev => roles::dev::run(settings, secrets, cancel).await,
    }
}

async fn shutdown_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(%err, "cannot watch SIGTERM; only Ctrl-C stops the process");
            let _ = ctrl_c.await;
            cancel.cancel();
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    cancel.cancel();
}

/// `info`, except for moq-transport, which logs at warning and error level
/// every error value it builds and every stream reset, including those of
/// ordinary events (a source not live yet, one leaving the stage, a stop);
/// the mesh code logs what matters of them itself.
const DEFAULT_LOG: &str = "info,moq_transport=error,moq_transport::serve::error=off";

impl Command {
    /// The role's name, for the traces it exports.
    fn role(&self) -> &'static str {
        match self {
            Command::Dev => "dev",
            Command::Control { service: None } => "control",
            Command::Control {
                service: Some(service),
            } => service.name(),
            Command::Gateway => "gateway",
            Command::Edge => "edge",
            Command::Origin => "origin",
        }
    }
}

/// Logs as text, or as one JSON object a line with
/// `BUILDSTREAM_LOG_FORMAT=json` (for log collectors: each line carries
/// its spans, so a request's lines carry its `request_id` and `trace_id`).
///
/// Spans are also exported over OTLP/HTTP (protobuf) when the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
/// is set, as service `buildstream-<role>`, in batches (the `OTEL_BSP_*`
/// variables tune them); the provider returned sends the last batch.
fn init_tracing(role: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_env("BUILDSTREAM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    let json = std::env::var("BUILDSTREAM_LOG_FORMAT").is_ok_and(|f| f == "json");
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed()
    } else {
        // Colours only for a person at a terminal, not in files and journals.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt::layer().with_ansi(ansi).boxed()
    };
    let exporter = otlp_exporter(role)?;
    let spans = exporter.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        buildstream_service::telemetry::exporting_spans();
        tracing_opentelemetry::layer().with_tracer(provider.tracer("buildstream"))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(spans)
        .init();
    Ok(exporter)
}

fn otlp_exporter(role: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if !configured {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("setting up the OTLP span exporter")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(format!("buildstream-{role}"))
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}
