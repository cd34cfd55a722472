//! `serve`: what the gateway starts, in order — guardrails dictionary, audit log, routing table
//! source, peer settings, the API and metrics listeners — and what it flushes on SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::args::ServeArgs;
use crate::audit::{AuditConfig, AuditLog, ChainKey, Sink};
use crate::listener::ConnLimits;
use crate::metrics::Metrics;
use crate::peer::Peering;
use crate::server::{Gateway, GatewayOptions};
use crate::table::SharedTable;

/// `serve`: load the guardrail dictionary, open the audit log, start the table source, serve.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let detector = tokio::task::spawn_blocking(anshin_guardrails::Detector::load_default)
        .await?
        .context("loading the guardrails dictionary (run scripts/setup.sh, or set ANSHIN_GUARDRAILS_DICT)")?;
    let metrics = Metrics::new();
    let audit = AuditLog::start(audit_config(&args)?, metrics.audit())?;
    let head_task = tokio::spawn(crate::audit::publish_head(
        audit.clone(),
        args.audit_head_interval,
    ));
    let table = SharedTable::new();
    let options = GatewayOptions {
        max_body_bytes: args.max_body_bytes,
        connect_timeout: args.connect_timeout,
        response_timeout: args.response_timeout,
        health_interval: args.health_interval,
        body_read_timeout: args.body_read_timeout,
        stream_idle_timeout: args.stream_idle_timeout,
        peering: peering(&args)?,
        ..GatewayOptions::default()
    };
    let gw = Gateway::new(
        table.clone(),
        Arc::new(detector),
        metrics.clone(),
        Some(audit.clone()),
        options,
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "binding the metrics listener {} (choose another with --metrics-listen)",
                args.metrics_listen
            )
        })?;
    let metrics_addr = metrics_listener.local_addr()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::peer::tls::server_config(cert, key)?),
        _ => None,
    };
    let source = start_source(&args, table, metrics, gw.backends().clone()).await?;
    tracing::info!(addr = %args.listen, metrics = %metrics_addr, tls = tls.is_some(), "gateway listening");
    let limits = ConnLimits {
        max_connections: args.max_connections,
        header_read_timeout: args.header_read_timeout,
    };
    let served = gw
        .serve(listener, metrics_listener, limits, tls, shutdown_signal())
        .await;
    source.abort();
    head_task.abort();
    // The writer batches records; write and sync what the last requests queued before exiting.
    if !tokio::task::block_in_place(|| audit.flush(Duration::from_secs(5))) {
        tracing::error!("audit records of the last requests may not have been written");
    }
    audit.log_head();
    served.context("serving HTTP")
}

/// Peer settings from the flags; an unreadable or malformed file stops start-up.
fn peering(args: &ServeArgs) -> anyhow::Result<Peering> {
    let tls = match &args.peer_ca_file {
        Some(p) => Some(Arc::new(crate::peer::tls::client_config(p)?)),
        None => None,
    };
    if tls.is_none() && args.peers.iter().any(|p| p.url.starts_with("https://")) {
        anyhow::bail!(
            "--peers lists https:// peers: give --peer-ca-file with the CA their certificates chain to"
        );
    }
    Ok(Peering {
        tls,
        token: args
            .peer_token_file
            .as_deref()
            .map(crate::peer::load_token)
            .transpose()?,
        accepted: match &args.accept_peer_token_file {
            Some(p) => crate::peer::load_accepted(p)?,
            None => Default::default(),
        },
    })
}

fn audit_config(args: &ServeArgs) -> anyhow::Result<AuditConfig> {
    let sink = if args.audit_log == "-" {
        Sink::Stdout
    } else {
        Sink::File(PathBuf::from(&args.audit_log))
    };
    let key = match &args.audit_hmac_key_file {
        Some(p) => ChainKey::load(p)?,
        None => ChainKey::none(),
    };
    Ok(AuditConfig {
        sink,
        fsync: args.audit_fsync,
        queue_capacity: args.audit_queue_capacity,
        on_failure: args.audit_on_failure,
        max_bytes: args.audit_max_bytes,
        keep: args.audit_keep,
        key,
        unauthenticated_interval: args.audit_unauthenticated_interval,
    })
}

async fn start_source(
    args: &ServeArgs,
    table: SharedTable,
    metrics: Metrics,
    backends: crate::routing::Backends,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if let Some(path) = args.routing_file.clone() {
        // Load once in the foreground so that a broken file stops start-up with a clear message.
        crate::file_source::load(&path)?;
        let interval = args.reload_interval;
        return Ok(tokio::spawn(async move {
            if let Err(e) = crate::file_source::run(path, table, metrics, interval).await {
                tracing::error!(error = %e, "routing file source stopped");
            }
        }));
    }
    crate::kube_source::start(
        args.kube_namespace.clone(),
        args.peers.clone(),
        table,
        metrics,
        backends,
    )
    .await
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
