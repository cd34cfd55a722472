//! The operator process: HTTP endpoints, start-up checks, leader election, then the controllers.

pub mod leader;
pub mod startup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::sync::watch;

use self::leader::LeaseConfig;
use crate::metrics::Metrics;
use crate::policy::{HostPathPolicy, check_pinned_image};
use crate::reconcile::Shutdown;
use crate::reconcile::context::{Context, Settings};

/// Settings of one operator process.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
    /// Image of the verification Jobs; refused at start unless pinned by a tag other than `latest`
    /// or a digest.
    pub verifier_image: String,
    /// Node directories `file://` artifacts may use (the webhook has its own copy in its settings).
    pub host_paths: HostPathPolicy,
    /// Who may call the model servers.
    pub network: crate::endpoint::backend_access::NetworkSettings,
    /// Namespace of the leader Lease.
    pub lease_namespace: String,
    /// Name of the leader Lease.
    pub lease_name: String,
    /// This replica's identity.
    pub identity: String,
    /// Lease validity without renewal.
    pub lease_duration: Duration,
    /// The validating webhook, when enabled.
    pub webhook: Option<crate::webhook::Settings>,
    /// Install (server-side apply) the CRDs at start-up: for development clusters; the chart does it
    /// in production.
    pub install_crds: bool,
}

#[derive(Default)]
struct Health {
    ready: AtomicBool,
}

/// Runs the operator until SIGTERM/SIGINT or until it loses leadership.
pub async fn run(config: Config) -> anyhow::Result<()> {
    check_pinned_image(&config.verifier_image)?;
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (kubeconfig or in-cluster)")?;
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(addr = %config.listen, "serving /healthz, /readyz, /metrics");
    tokio::spawn(serve_http(listener, health.clone(), metrics.clone()));

    if config.install_crds {
        startup::install_crds(&client)
            .await
            .context("installing the CRDs")?;
    }
    startup::wait_for_crds(&client)
        .await
        .context("waiting for CRDs")?;
    let caps = startup::detect(&client)
        .await
        .context("detecting server APIs")?;
    tracing::info!(?caps, "server capabilities");
    if let Some(webhook) = &config.webhook {
        crate::webhook::start(client.clone(), webhook)
            .await
            .context("starting the admission webhook")?;
    }
    health.ready.store(true, Ordering::SeqCst);

    let (tx, mut rx) = watch::channel(false);
    let lease = LeaseConfig {
        name: config.lease_name.clone(),
        identity: config.identity.clone(),
        duration: config.lease_duration,
        renew: config.lease_duration / 4,
    };
    tokio::spawn(leader::run(
        Api::<Lease>::namespaced(client.clone(), &config.lease_namespace),
        lease,
        tx,
    ));
    tokio::select! {
        _ = rx.wait_for(|leading| *leading) => {}
        _ = shutdown_signal() => return Ok(()),
    }
    metrics.leader.set(1);
    let settings = Settings {
        verifier_image: config.verifier_image.clone(),
        host_paths: config.host_paths.clone(),
        network: config.network.clone(),
    };
    let ctx = Context::new(
        client.clone(),
        metrics.clone(),
        settings,
        config.identity.clone(),
    );
    let stop = async move {
        tokio::select! {
            _ = shutdown_signal() => tracing::info!("shutting down"),
            _ = rx.wait_for(|leading| !*leading) => tracing::warn!("leadership lost; stopping the controllers"),
        }
    }
    .boxed()
    .shared();
    run_controllers(client, ctx, stop).await;
    metrics.leader.set(0);
    Ok(())
}

/// Runs every controller until `stop` resolves (the leader's work; tests call it directly).
pub async fn run_controllers(client: Client, ctx: Arc<Context>, stop: Shutdown) {
    tokio::join!(
        crate::model_version::run(client.clone(), ctx.clone(), stop.clone()),
        crate::endpoint::run(client.clone(), ctx.clone(), stop.clone()),
        crate::tenant::run(client.clone(), ctx.clone(), stop.clone()),
        crate::training_job::run(client.clone(), ctx.clone(), stop.clone()),
        crate::global_endpoint::run(client, ctx, stop),
    );
}

async fn serve_http(listener: tokio::net::TcpListener, health: Arc<Health>, metrics: Metrics) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State((h, _)): State<(Arc<Health>, Metrics)>| async move {
                if h.ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "waiting for CRDs")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State((_, m)): State<(Arc<Health>, Metrics)>| async move { m.render() }),
        )
        .with_state((health, metrics));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
