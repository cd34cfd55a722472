//! `anshin-operator`: parses flags and runs [`anshin_operator::runtime::run`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// Anshin's Kubernetes operator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "ANSHIN_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Image of the verification Jobs (`anshin-inference verify`): a release tag or a digest;
    /// `latest` and untagged images are refused.
    #[arg(
        long,
        alias = "inference-image",
        env = "ANSHIN_VERIFIER_IMAGE",
        default_value = anshin_operator::policy::DEFAULT_VERIFIER_IMAGE
    )]
    verifier_image: String,
    /// Node directory under which `file:///PATH` artifacts may be mounted (repeatable; none by
    /// default, so only pvc:// artifacts verify and serve).
    #[arg(long = "allow-host-path", value_name = "PREFIX")]
    allow_host_paths: Vec<String>,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "anshin-system")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "anshin-operator")]
    lease_name: String,
    /// This replica's identity (defaults to the pod name, else host name and PID).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a leader lease stays valid without renewal (a standby takes over after it).
    #[arg(long, default_value_t = 10)]
    lease_seconds: u64,
    /// Serve the validating admission webhook on this address (enforces the CRDs' rules on every
    /// Kubernetes version).
    #[arg(long)]
    webhook_listen: Option<SocketAddr>,
    /// URL the API server calls for the webhook (default: https://<webhook-listen>/validate).
    #[arg(long, requires = "webhook_listen")]
    webhook_url: Option<String>,
    /// Directory with the webhook's tls.crt, tls.key and ca.crt (default: a self-signed CA, one replica).
    #[arg(long, requires = "webhook_listen")]
    webhook_cert_dir: Option<std::path::PathBuf>,
    /// Namespace of the gateway pods, the only pods the model servers' NetworkPolicy admits (default:
    /// the operator's own namespace, where the chart installs the gateway).
    #[arg(long)]
    gateway_namespace: Option<String>,
    /// Label `KEY=VALUE` of the gateway pods (repeatable; all must match).
    #[arg(long = "gateway-pod-label", value_parser = parse_label, default_value = "app.kubernetes.io/name=anshin-gateway")]
    gateway_pod_labels: Vec<(String, String)>,
    /// Namespace allowed to reach the model servers for `/metrics` (e.g. `monitoring`; default none).
    #[arg(long)]
    monitoring_namespace: Option<String>,
    /// Install the CRDs at start-up (development clusters; the Helm chart installs them in production).
    #[arg(long)]
    install_crds: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let host_paths = anshin_operator::policy::HostPathPolicy::new(&args.allow_host_paths)?;
    anshin_operator::runtime::run(anshin_operator::runtime::Config {
        listen: args.listen,
        verifier_image: args.verifier_image,
        host_paths: host_paths.clone(),
        network: anshin_operator::endpoint::backend_access::NetworkSettings {
            gateway_namespace: args
                .gateway_namespace
                .unwrap_or_else(|| args.lease_namespace.clone()),
            gateway_labels: args.gateway_pod_labels.into_iter().collect(),
            monitoring_namespace: args.monitoring_namespace,
        },
        lease_namespace: args.lease_namespace,
        lease_name: args.lease_name,
        identity,
        lease_duration: Duration::from_secs(args.lease_seconds),
        webhook: args
            .webhook_listen
            .map(|listen| anshin_operator::webhook::Settings {
                listen,
                url: args
                    .webhook_url
                    .unwrap_or_else(|| format!("https://{listen}/validate")),
                cert_dir: args.webhook_cert_dir,
                host_paths: host_paths.clone(),
            }),
        install_crds: args.install_crds,
    })
    .await
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not a label: write KEY=VALUE")),
    }
}
