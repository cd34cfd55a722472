//! `anshin-local up|down|status|kubeconfig`: see [`anshin_e2e::local`].
use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = anshin_e2e::local::run(anshin_e2e::local::Cli::parse()).await {
        eprintln!("anshin-local: {e}");
        std::process::exit(1);
    }
}
