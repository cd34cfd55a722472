//! One pod on the node agent: a task that owns the pod's containers, probes them, reports status (see
//! [`super::sync`] for when), and stops them gracefully when the pod is deleted (preStop hook, SIGTERM,
//! grace period, SIGKILL, then the final API delete the kubelet does). On an agent restart it hands its
//! running processes over ([`super::handover`]) instead of stopping them.

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
use super::container::{ContainerRun, RestartPolicy};
use super::events;
use super::handover;
use super::probe::Target;
use super::retry::REQUEST_TIMEOUT;
use super::status::{self, InitOutcome, PodFacts};
use super::sync::StatusSync;
use super::volumes::{self, VolumeDirs};

mod launch;

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
    /// The agent restarts: write the hand-over file and leave the processes running.
    Detach,
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
    sync: StatusSync,
    snapshots: Vec<events::Snapshot>,
    /// Adopted containers' environments are resolved again once volumes are ready (for exec probes).
    restore_env: bool,
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
            sync: StatusSync::new(Instant::now()),
            snapshots: Vec::new(),
            restore_env: false,
        };
        worker.adopt();
        worker
    }

    /// Takes the pod on from an earlier agent run: processes handed over and still running are adopted
    /// (no Started event again); those lost count as killed (exit 137) and restart per policy.
    fn adopt(&mut self) {
        if let Some(t) = self.pod.status.as_ref().and_then(|s| s.start_time.as_ref()) {
            self.start_time = t.0;
        }
        if handover::take_over(&self.pod, &self.dir, &mut self.containers, self.init_count) {
            self.snapshots = events::snapshot(&self.containers);
            self.restore_env = true;
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
                Some(Some(PodCommand::Detach)) => {
                    if let Err(e) = handover::hand_over(&self.dir, &mut self.containers) {
                        tracing::error!(pod = %key, error = %e, "cannot write the hand-over file; pod processes killed");
                    }
                    tracing::info!(pod = %key, "pod handed over to the next agent");
                    return;
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
        if std::mem::take(&mut self.restore_env) {
            for i in 0..self.containers.len() {
                if self.containers[i].process.is_some() {
                    self.restore_env(i).await;
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
        if !self
            .sync
            .due(&status, self.pod.status.as_ref(), Instant::now())
        {
            return;
        }
        let patch = serde_json::json!({ "status": status });
        let pods = self.pods();
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        let post = pods.patch_status(self.name(), &params, &patch);
        let error = match tokio::time::timeout(REQUEST_TIMEOUT, post).await {
            Ok(Ok(pod)) => {
                self.sync.posted(&status, Instant::now());
                self.pod.status = pod.status;
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {REQUEST_TIMEOUT:?}"),
        };
        let key = status::pod_key(&self.pod);
        // One warning per outage, not one per retry.
        match self.sync.failed(Instant::now()) {
            1 => tracing::warn!(pod = %key, error, "status update failed; retrying with back-off"),
            n => tracing::debug!(pod = %key, error, failures = n, "status update failed again"),
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
