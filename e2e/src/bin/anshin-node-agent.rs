//! `anshin-node-agent`: see [`anshin_e2e::agent_cli`].
use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = anshin_e2e::agent_cli::run(anshin_e2e::agent_cli::AgentArgs::parse()).await {
        eprintln!("anshin-node-agent: {e}");
        std::process::exit(1);
    }
}
