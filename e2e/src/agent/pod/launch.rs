//! Starting a pod's container process (env, command, mounts, log) and restoring an adopted one's env.

use super::PodWorker;
use crate::agent::env::{self, EnvContext};
use crate::agent::incluster;
use crate::agent::status;
use crate::agent::volumes::{self, VolumeDirs};
use crate::images::ImageError;

impl PodWorker {
    /// An adopted container's environment, resolved again as at its start (exec probes and hooks use it).
    pub(super) async fn restore_env(&mut self, i: usize) {
        let spec = &self.containers[i].spec;
        let ctx = EnvContext {
            pod_ip: self.ip.to_string(),
            apiserver_port: self.ctx.apiserver_port,
        };
        match env::resolve(&self.ctx.client, &self.pod, spec, &ctx).await {
            Ok(mut env) => {
                let mounts =
                    volumes::mounts(spec, self.volumes.as_ref().unwrap_or(&VolumeDirs::new()));
                let ns = self.pod.metadata.namespace.as_deref().unwrap_or("default");
                incluster::finish_env(&mut env, &mounts, &self.dir, self.ctx.apiserver_port, ns);
                self.containers[i].env = env;
            }
            Err(e) => {
                tracing::warn!(pod = %status::pod_key(&self.pod), container = %spec.name, error = %e,
                    "environment of an adopted container not resolved; exec probes run without it")
            }
        }
    }

    pub(super) async fn start_container(&mut self, i: usize) {
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
}
