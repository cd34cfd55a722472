//! `anshin-testpod`: see [`anshin_e2e::testpod`].
use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = anshin_e2e::testpod::TestPodArgs::parse();
    match anshin_e2e::testpod::run(args).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
