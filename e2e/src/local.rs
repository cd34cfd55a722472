//! `anshin-local`: start, stop and inspect a local cluster from the shell.
//!
//! `up` starts a supervisor (`anshin-local serve`) in the background, which runs the control plane
//! and the node agent as its children and records itself in `<dir>/supervisor.pid`; `up` returns once
//! the cluster is ready. `down` sends SIGTERM to that PID: the supervisor stops the pods, the agent
//! and the control plane, then exits. `serve` can also be run in the foreground (Ctrl-C stops it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::agent::NodeSpec;
use crate::cluster::{ClusterConfig, LocalCluster};

/// Command line of `anshin-local`.
#[derive(Debug, Parser)]
#[command(
    name = "anshin-local",
    about = "A local Kubernetes v1.20 cluster with a process-running node agent"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: LocalCommand,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start a cluster in the background and wait until it is ready.
    Up(UpArgs),
    /// Run the cluster in the foreground until SIGTERM or Ctrl-C.
    Serve(UpArgs),
    /// Stop the cluster started by `up`.
    Down(DirArg),
    /// Show whether the cluster runs, its components and their logs.
    Status(DirArg),
    /// Print the path of the cluster's kubeconfig.
    Kubeconfig(DirArg),
}

/// The state directory.
#[derive(Debug, Args)]
pub struct DirArg {
    /// State directory (default: $ANSHIN_CACHE/local, i.e. ~/.cache/anshin/local).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Options of `up` and `serve`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// State directory.
    #[command(flatten)]
    pub dir: DirArg,
    /// Number of CPU nodes (cpu-0, cpu-1, …).
    #[arg(long, default_value_t = 2)]
    pub cpu_nodes: usize,
    /// Number of 8×H100 GPU nodes (gpu-0, …).
    #[arg(long, default_value_t = 1)]
    pub gpu_nodes: usize,
    /// Extra image table entries, IMAGE=PROGRAM (repeatable).
    #[arg(long = "image", value_name = "IMAGE=PROGRAM")]
    pub images: Vec<String>,
}

/// Errors of the command line.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The cluster failed to start.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A file or process operation failed.
    #[error("{0}")]
    Other(String),
}

fn other(e: impl std::fmt::Display) -> LocalError {
    LocalError::Other(e.to_string())
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), LocalError> {
    match cli.command {
        LocalCommand::Up(args) => up(args).await,
        LocalCommand::Serve(args) => serve(args).await,
        LocalCommand::Down(d) => down(&state_dir(&d)?).await,
        LocalCommand::Status(d) => status(&state_dir(&d)?),
        LocalCommand::Kubeconfig(d) => {
            let dir = state_dir(&d)?;
            running_pid(&dir).ok_or_else(|| {
                other(format!(
                    "no cluster runs in {}: run `anshin-local up`",
                    dir.display()
                ))
            })?;
            println!("{}", kubeconfig_path(&dir).display());
            Ok(())
        }
    }
}

fn state_dir(d: &DirArg) -> Result<PathBuf, LocalError> {
    match &d.dir {
        Some(dir) => Ok(dir.clone()),
        None => Ok(crate::binaries::anshin_cache_dir()
            .map_err(other)?
            .join("local")),
    }
}

fn kubeconfig_path(dir: &Path) -> PathBuf {
    dir.join("control-plane").join("kubeconfig")
}

/// The supervisor's PID if it is alive (not a zombie).
fn running_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join("supervisor.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit(')').next()?.split_whitespace().next()?;
    (state != "Z" && state != "X").then_some(pid)
}

async fn up(args: UpArgs) -> Result<(), LocalError> {
    let dir = state_dir(&args.dir)?;
    if let Some(pid) = running_pid(&dir) {
        let msg = format!(
            "a cluster already runs in {} (supervisor pid {pid}); `anshin-local down` first",
            dir.display()
        );
        return Err(other(msg));
    }
    // A fresh cluster each time: etcd data and certificates of a stopped cluster are not reused. Only
    // what `serve` creates is removed, never the directory itself (it may be one the user named).
    for entry in ["control-plane", "agent"] {
        let _ = std::fs::remove_dir_all(dir.join(entry));
    }
    for entry in ["ready", "components", "supervisor.pid", "supervisor.log"] {
        let _ = std::fs::remove_file(dir.join(entry));
    }
    std::fs::create_dir_all(&dir).map_err(other)?;
    eprintln!(
        "anshin-local: starting cluster in {} (log: supervisor.log)…",
        dir.display()
    );
    let child = spawn_supervisor(&args, &dir)?;
    wait_ready(child, &dir).await?;
    println!(
        "cluster ready; kubeconfig: {}",
        kubeconfig_path(&dir).display()
    );
    println!("try: kubectl --kubeconfig $(anshin-local kubeconfig) get nodes");
    Ok(())
}

/// Starts `anshin-local serve` detached (own process group, output to `supervisor.log`).
fn spawn_supervisor(args: &UpArgs, dir: &Path) -> Result<std::process::Child, LocalError> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(dir.join("supervisor.log")).map_err(other)?;
    let err = log.try_clone().map_err(other)?;
    let mut cmd = Command::new(std::env::current_exe().map_err(other)?);
    cmd.arg("serve").arg("--dir").arg(dir);
    cmd.args([
        "--cpu-nodes",
        &args.cpu_nodes.to_string(),
        "--gpu-nodes",
        &args.gpu_nodes.to_string(),
    ]);
    for image in &args.images {
        cmd.args(["--image", image]);
    }
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(other)
}

/// Waits (up to 240 s) for the supervisor's `ready` file; fails with its log if it exits first.
async fn wait_ready(mut child: std::process::Child, dir: &Path) -> Result<(), LocalError> {
    let deadline = Instant::now() + Duration::from_secs(240);
    while !dir.join("ready").exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = crate::control_plane::tail(&dir.join("supervisor.log"), 40);
            return Err(other(format!(
                "the cluster supervisor exited ({status}):\n{tail}"
            )));
        }
        if Instant::now() >= deadline {
            let log = dir.join("supervisor.log");
            return Err(other(format!(
                "cluster not ready after 240 s; see {}",
                log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

fn nodes(args: &UpArgs) -> Vec<NodeSpec> {
    let cpu = (0..args.cpu_nodes).map(|i| NodeSpec::cpu(&format!("cpu-{i}")));
    cpu.chain((0..args.gpu_nodes).map(|i| NodeSpec::h100(&format!("gpu-{i}"))))
        .collect()
}

async fn serve(args: UpArgs) -> Result<(), LocalError> {
    let dir = state_dir(&args.dir)?;
    std::fs::create_dir_all(&dir).map_err(other)?;
    let mut config = ClusterConfig::new(&dir);
    config.nodes = nodes(&args);
    for entry in &args.images {
        let (image, program) = entry
            .split_once('=')
            .ok_or_else(|| other(format!("--image {entry:?}: expected IMAGE=PROGRAM")))?;
        config.images = config.images.with(image, program);
    }
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(other)?;
    let cluster = LocalCluster::start(config).await?;
    std::fs::write(dir.join("supervisor.pid"), std::process::id().to_string()).map_err(other)?;
    let components: Vec<String> = cluster
        .control_plane()
        .components()
        .iter()
        .map(|(n, p, l)| format!("{n} pid={p} log={}", l.display()))
        .collect();
    std::fs::write(dir.join("components"), components.join("\n") + "\n").map_err(other)?;
    std::fs::write(dir.join("ready"), "").map_err(other)?;
    eprintln!(
        "anshin-local: cluster ready; kubeconfig {}",
        cluster.kubeconfig().display()
    );
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("anshin-local: stopping");
    let _ = std::fs::remove_file(dir.join("ready"));
    cluster.stop().await;
    let _ = std::fs::remove_file(dir.join("supervisor.pid"));
    eprintln!("anshin-local: stopped");
    Ok(())
}

async fn down(dir: &Path) -> Result<(), LocalError> {
    let Some(pid) = running_pid(dir) else {
        println!("no cluster runs in {}", dir.display());
        return Ok(());
    };
    // SAFETY: kill(2) on the supervisor's PID, which we just checked is alive and ours (pid file).
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while running_pid(dir).is_some() && dir.join("supervisor.pid").exists() {
        if Instant::now() >= deadline {
            return Err(other(format!("supervisor {pid} did not stop within 60 s")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("cluster in {} stopped", dir.display());
    Ok(())
}

fn status(dir: &Path) -> Result<(), LocalError> {
    match running_pid(dir) {
        Some(pid) => {
            println!(
                "running (supervisor pid {pid}), kubeconfig {}",
                kubeconfig_path(dir).display()
            );
            print!(
                "{}",
                std::fs::read_to_string(dir.join("components")).unwrap_or_default()
            );
            Ok(())
        }
        None => Err(other(format!("no cluster runs in {}", dir.display()))),
    }
}
