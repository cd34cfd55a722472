//! The Node objects a node agent plays: registration, heartbeats (status + Lease), Ready/NotReady, deletion.
//!
//! A node is registered like a kubelet does it: the Node object with labels and the declared taints,
//! then its status (capacity, allocatable, conditions, addresses) through the `status` subresource,
//! then a Lease in `kube-node-lease` renewed on every heartbeat. When a node reports Ready the agent
//! also removes the `node.kubernetes.io/not-ready` / `unreachable` taints that the API server and the
//! node-lifecycle controller put on nodes that are not (yet) ready.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Field manager of everything the agent writes.
pub const FIELD_MANAGER: &str = "anshin-node-agent";
/// Product label value of the GPU nodes [`NodeSpec::h100`] declares.
pub const H100_PRODUCT: &str = "NVIDIA-H100-80GB-HBM3";
/// Extended resource name of NVIDIA GPUs.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// A Node the agent registers and plays.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// Extra labels (hostname, os and arch labels are always set).
    pub labels: BTreeMap<String, String>,
    /// Taints set at registration.
    pub taints: Vec<Taint>,
    /// CPU capacity (a quantity, e.g. "8").
    pub cpu: String,
    /// Memory capacity (a quantity, e.g. "32Gi").
    pub memory: String,
    /// Maximum pods.
    pub pods: u32,
    /// `nvidia.com/gpu` capacity (0: not a GPU node).
    pub gpus: u32,
}

impl NodeSpec {
    /// A CPU node with 8 cores, 32 GiB and room for 110 pods.
    pub fn cpu(name: &str) -> Self {
        Self {
            name: name.to_string(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            cpu: "8".into(),
            memory: "32Gi".into(),
            pods: 110,
            gpus: 0,
        }
    }

    /// An 8×H100 node: `nvidia.com/gpu: 8`, labels `nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3`,
    /// `nvidia.com/gpu.count=8`, and the taint `nvidia.com/gpu=present:NoSchedule` that GPU node pools carry.
    pub fn h100(name: &str) -> Self {
        let mut spec = Self::cpu(name);
        spec.cpu = "96".into();
        spec.memory = "1024Gi".into();
        spec.gpus = 8;
        spec.labels
            .insert("nvidia.com/gpu.product".into(), H100_PRODUCT.into());
        spec.labels
            .insert("nvidia.com/gpu.count".into(), "8".into());
        spec.labels.insert(
            "node.kubernetes.io/instance-type".into(),
            "anshin-local-8xh100".into(),
        );
        spec.taints.push(Taint {
            key: GPU_RESOURCE.into(),
            value: Some("present".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        });
        spec
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    fn all_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), self.name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert(
            "kubernetes.io/arch".into(),
            std::env::consts::ARCH.replace("x86_64", "amd64"),
        );
        labels.insert("anshin.dev/local-node".into(), "true".into());
        labels
    }

    fn resources(&self) -> serde_json::Value {
        let mut r = json!({ "cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string(),
                            "ephemeral-storage": "100Gi" });
        if self.gpus > 0 {
            r[GPU_RESOURCE] = json!(self.gpus.to_string());
        }
        r
    }
}

/// Creates the Node, or updates labels and declared taints of an existing one (agent restart).
pub async fn register(nodes: &Api<Node>, spec: &NodeSpec) -> kube::Result<()> {
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": spec.name, "labels": spec.all_labels() },
        "spec": { "taints": spec.taints },
    }))
    .map_err(kube::Error::SerdeError)?;
    match nodes
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &node,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({ "metadata": { "labels": spec.all_labels() } });
            nodes
                .patch(&spec.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// Reports the node's status (Ready or NotReady) with a fresh heartbeat time.
pub async fn report_status(nodes: &Api<Node>, spec: &NodeSpec, ready: bool) -> kube::Result<()> {
    let mut conditions = conditions(ready, &jiff::Timestamp::now().to_string());
    // Keep lastTransitionTime of conditions that did not change.
    if let Ok(current) = nodes.get_status(&spec.name).await {
        keep_transition_times(&mut conditions, &current);
    }
    let status = json!({ "status": {
        "capacity": spec.resources(), "allocatable": spec.resources(), "conditions": conditions,
        "addresses": [ { "type": "InternalIP", "address": "127.0.0.1" }, { "type": "Hostname", "address": spec.name } ],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": 0 } },
        "nodeInfo": { "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "anshin-local",
                      "containerRuntimeVersion": "anshin-process://0.1", "kubeletVersion": "v1.20.2-anshin-agent",
                      "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH },
    }});
    nodes
        .patch_status(&spec.name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    if ready {
        clear_not_ready_taints(nodes, spec).await?;
    }
    Ok(())
}

/// The node conditions a healthy kubelet reports, with Ready as given.
fn conditions(ready: bool, now: &str) -> Vec<serde_json::Value> {
    let (status, reason, message) = if ready {
        (
            "True",
            "KubeletReady",
            "anshin node agent is posting ready status",
        )
    } else {
        (
            "False",
            "KubeletNotReady",
            "marked NotReady by the anshin node agent",
        )
    };
    let fine = [
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ];
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({ "type": type_, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now })
    };
    let mut out: Vec<_> = fine
        .iter()
        .map(|(t, r)| cond(t, "False", r, "anshin node agent"))
        .collect();
    out.push(cond("Ready", status, reason, message));
    out
}

fn keep_transition_times(conditions: &mut [serde_json::Value], current: &Node) {
    let old = current.status.as_ref().and_then(|s| s.conditions.as_ref());
    for c in conditions.iter_mut() {
        let same = old.and_then(|o| {
            o.iter()
                .find(|o| c["type"] == o.type_.as_str() && c["status"] == o.status.as_str())
        });
        if let Some(t) = same.and_then(|o| o.last_transition_time.as_ref()) {
            c["lastTransitionTime"] = json!(t.0.to_string());
        }
    }
}

async fn clear_not_ready_taints(nodes: &Api<Node>, spec: &NodeSpec) -> kube::Result<()> {
    let node = nodes.get(&spec.name).await?;
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    let kept: Vec<&Taint> = taints
        .iter()
        .filter(|t| {
            t.key != "node.kubernetes.io/not-ready" && t.key != "node.kubernetes.io/unreachable"
        })
        .collect();
    if kept.len() == taints.len() {
        return Ok(());
    }
    let patch = json!({ "spec": { "taints": kept } });
    nodes
        .patch(&spec.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Creates or renews the node's Lease in `kube-node-lease`.
pub async fn renew_lease(leases: &Api<Lease>, node: &str) -> kube::Result<()> {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": node, "namespace": "kube-node-lease" },
        "spec": { "holderIdentity": node, "leaseDurationSeconds": 40,
                  "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string() },
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    leases
        .patch(node, &pp, &Patch::Apply(&lease))
        .await
        .map(|_| ())
}

/// Deletes the Node object (its pods are then garbage-collected by the control plane).
pub async fn delete(nodes: &Api<Node>, node: &str) -> kube::Result<()> {
    match nodes.delete(node, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h100_node_declares_eight_gpus_label_and_taint() {
        let spec = NodeSpec::h100("gpu-0");
        assert_eq!(spec.resources()[GPU_RESOURCE], "8");
        assert_eq!(spec.all_labels()["nvidia.com/gpu.product"], H100_PRODUCT);
        assert_eq!(spec.taints[0].key, GPU_RESOURCE);
        assert!(
            NodeSpec::cpu("cpu-0")
                .resources()
                .get(GPU_RESOURCE)
                .is_none()
        );
    }
}
