//! `anshin-testpod`: the small program test pods run (image `anshin/testpod`).
//!
//! It can serve HTTP on `$POD_IP` (answering `<message> from <pod name>` on every path), exit with a
//! given code after a delay, and on SIGTERM append `sigterm` to a file and exit after a delay — enough
//! to observe scheduling, readiness, rollouts, restarts, Job outcomes and graceful termination.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

/// Command-line flags of `anshin-testpod`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "anshin-testpod",
    about = "A small program for local-cluster test pods"
)]
pub struct TestPodArgs {
    /// Serve HTTP on this port, on $POD_IP (or 127.0.0.1 when unset).
    #[arg(long)]
    pub port: Option<u16>,
    /// Text at the start of every HTTP answer.
    #[arg(long, default_value = "hello")]
    pub message: String,
    /// Exit with this code (after --exit-after-ms).
    #[arg(long)]
    pub exit_code: Option<i32>,
    /// Delay before --exit-code takes effect.
    #[arg(long, default_value_t = 0)]
    pub exit_after_ms: u64,
    /// On SIGTERM, append a line `sigterm` to this file.
    #[arg(long)]
    pub sigterm_file: Option<PathBuf>,
    /// List pods in the client's default namespace with `kube::Client::try_default()` and exit: 0 when
    /// allowed, 3 when the API refuses (prints the error). Checks ServiceAccount RBAC from inside a pod.
    #[arg(long)]
    pub list_pods: bool,
    /// On SIGTERM, wait this long before exiting 0.
    #[arg(long, default_value_t = 0)]
    pub term_delay_ms: u64,
}

/// Errors of the test program.
#[derive(Debug, thiserror::Error)]
pub enum TestPodError {
    /// Binding, accepting or signal setup failed.
    #[error("anshin-testpod: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the program; returns the process exit code.
pub async fn run(args: TestPodArgs) -> Result<i32, TestPodError> {
    if args.list_pods {
        return Ok(list_pods().await);
    }
    let mut term = signal(SignalKind::terminate())?;
    if let Some(port) = args.port {
        let ip: IpAddr = std::env::var("POD_IP")
            .ok()
            .and_then(|ip| ip.parse().ok())
            .unwrap_or([127, 0, 0, 1].into());
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, port)).await?;
        let body = format!(
            "{} from {}\n",
            args.message,
            std::env::var("POD_NAME").unwrap_or_default()
        );
        tokio::spawn(serve(listener, body));
    }
    let exit = async {
        match args.exit_code {
            Some(code) => {
                tokio::time::sleep(Duration::from_millis(args.exit_after_ms)).await;
                code
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        code = exit => Ok(code),
        _ = term.recv() => {
            if let Some(file) = &args.sigterm_file {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file)?;
                writeln!(f, "sigterm")?;
            }
            tokio::time::sleep(Duration::from_millis(args.term_delay_ms)).await;
            Ok(0)
        }
    }
}

async fn list_pods() -> i32 {
    crate::kubeconfig::install_crypto_provider();
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("no client: {e}");
            return 4;
        }
    };
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::default_namespaced(client);
    match pods.list(&Default::default()).await {
        Ok(list) => {
            println!("listed {} pods", list.items.len());
            0
        }
        Err(e) => {
            eprintln!("list pods: {e}");
            3
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, body: String) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let body = body.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        });
    }
}
