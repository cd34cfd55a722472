//! One pod on the node agent: a task that owns the pod's containers, probes them, reports status, and
//! stops them gracefully when the pod is deleted (preStop hook, SIGTERM, grace period, SIGKILL, then the
//! final API delete the kubelet does).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use tokio::sync::mpsc::UnboundedReceiver;

use super::AgentCtx;
use super::container::{ContainerRun, RestartPolicy, State};
use super::env::{self, EnvContext};
use super::events;
use super::incluster;
use super::probe::Target;
use super::status::{self, InitOutcome, PodFacts};
use super::volumes::{self, VolumeDirs};
use crate::images::ImageError;

/// How often the worker looks at its processes and probes.
const TICK: Duration = Duration::from_millis(200);

/// Messages from the agent's pod watcher to a pod's worker.
#[derive(Debug)]
pub enum PodCommand {
    /// The pod changed in the API (maybe a deletion timestamp).
    Update(Box<Pod>),
    /// The pod is gone from the API: stop its containers gracefully, write nothing.
    Gone,
    /// The agent goes away (node loss): kill everything at once, write nothing.
    Kill,
}

/// The state of one pod on this node.
pub struct PodWorker {
    ctx: Arc<AgentCtx>,
    pod: Pod,
    ip: Ipv4Addr,
    dir: PathBuf,
    volumes: Option<VolumeDirs>,
    /// Init containers first (`init_count` of them), then the app containers.
    containers: Vec<ContainerRun>,
    init_count: usize,
    start_time: Timestamp,
    failure: Option<(String, String)>,
    reported: String,
    snapshots: Vec<events::Snapshot>,
}

impl PodWorker {
    /// Sets up the pod's directory and address, adopting state left by an earlier agent run.
    pub fn new(ctx: Arc<AgentCtx>, pod: Pod, ip: Ipv4Addr) -> Self {
        let m = &pod.metadata;
        let uid = m.uid.as_deref().unwrap_or("nouid");
        let dir_name = format!(
            "{}_{}_{}",
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
            &uid[..8.min(uid.len())]
        );
        let dir = ctx.dir.join("pods").join(dir_name);
        let spec = pod.spec.clone().unwrap_or_default();
        let init = spec.init_containers.unwrap_or_default();
        let init_count = init.len();
        let containers = init
            .into_iter()
            .chain(spec.containers)
            .map(ContainerRun::new)
            .collect();
        let mut worker = Self {
            ctx,
            pod,
            ip,
            dir,
            volumes: None,
            containers,
            init_count,
            start_time: Timestamp::now(),
            failure: None,
            reported: String::new(),
            snapshots: Vec::new(),
        };
        worker.adopt();
        worker
    }

    /// Processes that were running under a previous agent are lost: count them as killed (exit 137).
    fn adopt(&mut self) {
        let policy = status::restart_policy(&self.pod);
        let previous = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        if let Some(t) = self.pod.status.as_ref().and_then(|s| s.start_time.as_ref()) {
            self.start_time = t.0;
        }
        for c in &mut self.containers {
            let Some(prev) = previous.iter().find(|p| p.name == c.spec.name) else {
                continue;
            };
            c.restart_count = prev.restart_count;
            if let Some(running) = prev.state.as_ref().and_then(|s| s.running.as_ref()) {
                c.state = State::Running {
                    started: running
                        .started_at
                        .as_ref()
                        .map(|t| t.0)
                        .unwrap_or_else(Timestamp::now),
                };
                c.record_exit(137, policy);
            }
        }
    }

    /// Runs until the pod is deleted (or the agent kills it).
    pub async fn run(mut self, mut rx: UnboundedReceiver<PodCommand>) {
        let key = status::pod_key(&self.pod);
        tracing::info!(pod = %key, ip = %self.ip, "starting pod");
        loop {
            let cmd =
                tokio::select! { c = rx.recv() => Some(c), _ = tokio::time::sleep(TICK) => None };
            match cmd {
                Some(Some(PodCommand::Update(pod))) => self.pod = *pod,
                Some(Some(PodCommand::Gone)) => {
                    self.stop_all(self.grace()).await;
                    break;
                }
                Some(Some(PodCommand::Kill)) | Some(None) => {
                    self.containers
                        .iter_mut()
                        .filter_map(|c| c.process.as_mut())
                        .for_each(|p| {
                            p.kill_now();
                        });
                    break;
                }
                None => {}
            }
            if self.pod.metadata.deletion_timestamp.is_some() {
                self.stop_all(self.grace()).await;
                self.report().await;
                self.final_delete().await;
                break;
            }
            self.step().await;
            self.report().await;
        }
        tracing::info!(pod = %key, "pod stopped");
        self.cleanup();
    }

    fn grace(&self) -> Duration {
        let spec_grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds);
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(spec_grace)
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    async fn step(&mut self) {
        if self.failure.is_some() {
            return;
        }
        if self.volumes.is_none() {
            match volumes::prepare(&self.ctx.client, &self.pod, &self.dir, &self.ctx.dir).await {
                Ok(v) => self.volumes = Some(v),
                Err(e) => {
                    self.containers
                        .iter_mut()
                        .for_each(|c| c.fail_to_start("ContainerCreating", e.to_string()));
                    return;
                }
            }
        }
        let policy = status::restart_policy(&self.pod);
        // Init containers run one after another and are never restarted after success (Always acts as
        // OnFailure); app containers start once all init containers succeeded.
        let init_policy = if policy == RestartPolicy::Always {
            RestartPolicy::OnFailure
        } else {
            policy
        };
        for i in 0..self.containers.len() {
            let is_init = i < self.init_count;
            let ready_to_run = if is_init {
                self.containers[..i].iter().all(|c| c.done)
            } else {
                status::init_outcome(&self.containers[..self.init_count]) == InitOutcome::Done
            };
            if !ready_to_run {
                break;
            }
            let policy = if is_init { init_policy } else { policy };
            self.containers[i].reap(policy);
            if self.containers[i].due_to_start(Instant::now()) {
                self.start_container(i).await;
            }
            if !is_init && self.containers[i].process.is_some() && self.probe(i).await {
                let grace = self.grace();
                if let Some(p) = self.containers[i].process.as_mut() {
                    p.stop(grace).await;
                }
                self.containers[i].reap(policy);
            }
        }
    }

    async fn probe(&mut self, i: usize) -> bool {
        let (spec, env) = (
            self.containers[i].spec.clone(),
            self.containers[i].env.clone(),
        );
        let mounts = volumes::mounts(&spec, self.volumes.as_ref().unwrap_or(&VolumeDirs::new()));
        let work_dir = volumes::work_dir(&self.dir, &spec, &mounts);
        let target = Target {
            ip: IpAddr::V4(self.ip),
            container: &spec,
            env: &env,
            work_dir: &work_dir,
            mounts: &mounts,
        };
        self.containers[i].run_probes(&target).await
    }

    async fn start_container(&mut self, i: usize) {
        let spec = self.containers[i].spec.clone();
        let ctx = EnvContext {
            pod_ip: self.ip.to_string(),
            apiserver_port: self.ctx.apiserver_port,
        };
        let mut env = match env::resolve(&self.ctx.client, &self.pod, &spec, &ctx).await {
            Ok(env) => env,
            Err(e) => {
                return self.containers[i]
                    .fail_to_start("CreateContainerConfigError", e.to_string());
            }
        };
        let image = spec.image.as_deref().unwrap_or_default();
        let command = spec.command.clone().unwrap_or_default();
        let args = spec.args.clone().unwrap_or_default();
        // $(VAR) references in command and args expand from the container's env, as in the kubelet.
        let expand = |v: &Vec<String>| v.iter().map(|a| env::expand(a, &env)).collect::<Vec<_>>();
        let argv = match self
            .ctx
            .images
            .argv(image, &expand(&command), &expand(&args))
        {
            Ok(argv) => argv,
            Err(e @ ImageError::Unknown(_)) => {
                return self.containers[i].fail_to_start("ErrImagePull", e.to_string());
            }
            Err(e) => return self.containers[i].fail_to_start("RunContainerError", e.to_string()),
        };
        let mounts = volumes::mounts(&spec, self.volumes.as_ref().unwrap_or(&VolumeDirs::new()));
        let argv: Vec<String> = argv.iter().map(|a| volumes::rewrite(a, &mounts)).collect();
        let ns = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        incluster::finish_env(&mut env, &mounts, &self.dir, self.ctx.apiserver_port, ns);
        let work_dir = volumes::work_dir(&self.dir, &spec, &mounts);
        let log = self.dir.join("logs").join(format!("{}.log", spec.name));
        let prepared = [&work_dir, &self.dir.join("logs")]
            .iter()
            .try_for_each(std::fs::create_dir_all);
        let started = prepared
            .map_err(|e| e.to_string())
            .and_then(|_| self.containers[i].start(&argv, env, &work_dir, &log));
        if let Err(e) = started {
            self.containers[i].fail_to_start("RunContainerError", e);
        }
    }

    /// preStop, SIGTERM, wait up to `grace`, SIGKILL — for all containers at once.
    async fn stop_all(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let ip = IpAddr::V4(self.ip);
        let running = self.containers.iter().filter(|c| c.process.is_some());
        let killing = running.map(|c| {
            (
                EventType::Normal,
                "Killing".into(),
                format!("Stopping container {}", c.spec.name),
            )
        });
        events::publish(&self.ctx.recorder, &self.pod, killing.collect());
        let mounts_of = |c: &ContainerRun| {
            volumes::mounts(&c.spec, self.volumes.as_ref().unwrap_or(&VolumeDirs::new()))
        };
        let plans: Vec<_> = self
            .containers
            .iter()
            .map(|c| {
                (
                    mounts_of(c),
                    volumes::work_dir(&self.dir, &c.spec, &mounts_of(c)),
                )
            })
            .collect();
        let stops =
            self.containers
                .iter_mut()
                .zip(plans)
                .map(|(c, (mounts, work_dir))| async move {
                    c.terminate(ip, &work_dir, &mounts, deadline).await
                });
        futures::future::join_all(stops).await;
        for c in &mut self.containers {
            c.done = true;
        }
    }

    async fn report(&mut self) {
        let happened = events::transitions(&self.snapshots, &self.containers);
        events::publish(&self.ctx.recorder, &self.pod, happened);
        self.snapshots = events::snapshot(&self.containers);
        let failure = self.failure.as_ref().map(|(r, m)| (r.as_str(), m.as_str()));
        let ip = self.ip.to_string();
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: &ip,
            start_time: self.start_time,
            failure,
            init_count: self.init_count,
        };
        let status = status::pod_status(&facts, &self.containers);
        let fingerprint = status::fingerprint(&status);
        if fingerprint == self.reported {
            return;
        }
        let patch = serde_json::json!({ "status": status });
        match self
            .pods()
            .patch_status(self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(pod) => {
                self.reported = fingerprint;
                self.pod.status = pod.status;
            }
            Err(e) => {
                tracing::warn!(pod = %status::pod_key(&self.pod), error = %e, "status update failed; will retry")
            }
        }
    }

    async fn final_delete(&self) {
        let preconditions = Preconditions {
            uid: self.pod.metadata.uid.clone(),
            resource_version: None,
        };
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(preconditions),
            ..Default::default()
        };
        if let Err(e) = self.pods().delete(self.name(), &dp).await {
            tracing::debug!(pod = %status::pod_key(&self.pod), error = %e, "final delete");
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(
            self.ctx.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    fn cleanup(&mut self) {
        self.ctx.release_ip(self.ip);
        let _ = std::fs::remove_dir_all(self.dir.join("volumes"));
        let _ = std::fs::remove_dir_all(self.dir.join("rootfs"));
    }
}
