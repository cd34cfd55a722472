//! `anshin-node-agent`: the node agent as its own process, so a test can kill it (node loss: its pod
//! processes die with it) and start it again (it re-registers its nodes and re-runs their pods).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::Taint;

use crate::agent::{AgentConfig, AgentError, NodeAgent, NodeSpec};
use crate::images::ImageTable;
use crate::kubeconfig::KubeconfigError;

/// Command line of `anshin-node-agent`.
#[derive(Debug, Parser)]
#[command(
    name = "anshin-node-agent",
    about = "Plays the kubelet for local-cluster nodes (a process runner for tests)"
)]
pub struct AgentArgs {
    /// Kubeconfig of the cluster.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Directory for pod logs and volumes.
    #[arg(long)]
    pub dir: PathBuf,
    /// CPU nodes to play (repeatable).
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// 8×H100 GPU nodes to play (repeatable).
    #[arg(long = "gpu-node")]
    pub gpu_nodes: Vec<String>,
    /// Taint for every node, KEY=VALUE:EFFECT (repeatable), e.g. to keep other pods off them.
    #[arg(long = "taint", value_name = "KEY=VALUE:EFFECT")]
    pub taints: Vec<String>,
    /// Image table entries IMAGE=PROGRAM (repeatable); `anshin/*` next to this binary are added.
    #[arg(long = "image", value_name = "IMAGE=PROGRAM")]
    pub images: Vec<String>,
}

/// Errors of the agent program.
#[derive(Debug, thiserror::Error)]
pub enum AgentCliError {
    /// Bad kubeconfig.
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    /// The agent failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Bad arguments or signal setup.
    #[error("{0}")]
    Usage(String),
}

/// Runs the agent until SIGTERM or SIGINT, then kills its pods (node loss) and exits.
pub async fn run(args: AgentArgs) -> Result<(), AgentCliError> {
    let client = crate::kubeconfig::client(&args.kubeconfig).await?;
    let port = client_port(&args.kubeconfig)?;
    let mut images = crate::cluster::project_bin_dir()
        .map(|d| ImageTable::new().with_project_binaries(&d))
        .unwrap_or_default();
    for entry in &args.images {
        let (image, program) = entry.split_once('=').ok_or_else(|| {
            AgentCliError::Usage(format!("--image {entry:?}: expected IMAGE=PROGRAM"))
        })?;
        images = images.with(image, program);
    }
    let nodes: Vec<NodeSpec> = args
        .nodes
        .iter()
        .map(|n| NodeSpec::cpu(n))
        .chain(args.gpu_nodes.iter().map(|n| NodeSpec::h100(n)))
        .collect();
    if nodes.is_empty() {
        return Err(AgentCliError::Usage(
            "give at least one --node or --gpu-node".into(),
        ));
    }
    let config = AgentConfig {
        nodes,
        images,
        dir: args.dir,
        apiserver_port: port,
        heartbeat: Duration::from_secs(3),
    };
    let usage = |e: std::io::Error| AgentCliError::Usage(e.to_string());
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(usage)?;
    let agent = NodeAgent::start(client, config).await?;
    eprintln!("anshin-node-agent: running");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    agent.shutdown().await;
    Ok(())
}

/// Parses `KEY=VALUE:EFFECT` (or `KEY:EFFECT`).
pub fn parse_taint(text: &str) -> Result<Taint, AgentCliError> {
    let bad = || AgentCliError::Usage(format!("--taint {text:?}: expected KEY=VALUE:EFFECT"));
    let (kv, effect) = text.rsplit_once(':').ok_or_else(bad)?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(bad());
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    Ok(Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
        time_added: None,
    })
}

fn client_port(kubeconfig: &std::path::Path) -> Result<u16, AgentCliError> {
    let text =
        std::fs::read_to_string(kubeconfig).map_err(|e| AgentCliError::Usage(e.to_string()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: https://127.0.0.1:"))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| {
            AgentCliError::Usage(format!(
                "{}: no https://127.0.0.1:<port> server",
                kubeconfig.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_with_and_without_value() {
        let t = parse_taint("anshin.dev/test=edge:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("anshin.dev/test", Some("edge"), "NoSchedule")
        );
        assert_eq!(parse_taint("k:NoExecute").unwrap().value, None);
        assert!(parse_taint("k=v:Sometimes").is_err());
    }
}
