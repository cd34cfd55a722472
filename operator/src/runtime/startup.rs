//! Start-up checks: wait until the CRDs are established, and find out which optional APIs the server
//! offers (newer Kubernetes versions, JobSet, Kueue, Prometheus Operator, external-dns).

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt};

/// Optional APIs detected at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Server version, e.g. `v1.20.2`.
    pub server_version: String,
    /// `discovery.k8s.io/v1` EndpointSlices (1.21+).
    pub endpoint_slice_v1: bool,
    /// JobSet CRD installed.
    pub jobset: bool,
    /// Kueue installed.
    pub kueue: bool,
    /// Prometheus Operator (ServiceMonitor) installed.
    pub service_monitor: bool,
    /// external-dns `DNSEndpoint` CRD installed.
    pub dns_endpoint: bool,
}

/// Waits until every Anshin CRD is established, logging every 10 s while waiting.
pub async fn wait_for_crds(client: &Client) -> Result<(), kube::Error> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let names = [
        anshin_crds::ModelVersion::crd_name(),
        anshin_crds::InferenceEndpoint::crd_name(),
        anshin_crds::Tenant::crd_name(),
        anshin_crds::TrainingJob::crd_name(),
        anshin_crds::GlobalEndpoint::crd_name(),
    ];
    for name in names {
        loop {
            let wait = await_condition(api.clone(), name, conditions::is_crd_established());
            match tokio::time::timeout(Duration::from_secs(10), wait).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => tracing::warn!(crd = name, error = %e, "cannot watch CRD; retrying"),
                Err(_) => tracing::info!(
                    crd = name,
                    "waiting for CRD to be established: apply crds/yaml/ (or install the chart)"
                ),
            }
        }
    }
    Ok(())
}

/// Installs (server-side applies) every Anshin CRD; for development clusters and tests — in production
/// the Helm chart installs them.
pub async fn install_crds(client: &Client) -> Result<(), kube::Error> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let params = kube::api::PatchParams::apply(crate::names::FIELD_MANAGER).force();
    let version = client.apiserver_version().await?;
    let cel = anshin_crds::server_runs_cel(&version.major, &version.minor);
    if !cel {
        tracing::info!(version = %version.git_version, "server predates CRD CEL rules: installing CRDs without them (the admission webhook enforces them)");
    }
    for (_, crd) in anshin_crds::all_crds() {
        let crd = if cel {
            crd
        } else {
            anshin_crds::without_cel_rules(&crd)
        };
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &kube::api::Patch::Apply(&crd))
            .await?;
    }
    Ok(())
}

/// Asks the server which optional APIs it serves.
pub async fn detect(client: &Client) -> Result<Capabilities, kube::Error> {
    let version = client.apiserver_version().await?;
    let groups = client.list_api_groups().await?;
    let has = |group: &str, version: &str| {
        groups
            .groups
            .iter()
            .any(|g| g.name == group && g.versions.iter().any(|v| v.version == version))
    };
    Ok(Capabilities {
        server_version: version.git_version,
        endpoint_slice_v1: has("discovery.k8s.io", "v1"),
        jobset: groups.groups.iter().any(|g| g.name == "jobset.x-k8s.io"),
        kueue: groups.groups.iter().any(|g| g.name == "kueue.x-k8s.io"),
        service_monitor: groups
            .groups
            .iter()
            .any(|g| g.name == "monitoring.coreos.com"),
        dns_endpoint: groups.groups.iter().any(|g| g.name == "externaldns.k8s.io"),
    })
}
