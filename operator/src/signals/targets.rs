//! Which metrics pages to sample (pure): the gateway pods the operator already knows by namespace and
//! labels (`--gateway-namespace`, `--gateway-pod-label`, the same ones its NetworkPolicies admit),
//! each at `http://<podIP>:<port>/metrics`. A pod counts while it runs, is not being deleted and has an
//! address; readiness does not matter (a gateway that is not ready still reports what it served).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;

/// The `/metrics` URLs of the pods among `pods` in `namespace` that carry every one of `labels`.
pub fn gateway_targets(
    pods: &[Pod],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u16,
) -> BTreeSet<String> {
    pods.iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let have = p.metadata.labels.as_ref();
            labels
                .iter()
                .all(|(k, v)| have.and_then(|l| l.get(k)) == Some(v))
        })
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            (status.phase.as_deref() == Some("Running")).then_some(())?;
            let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
            Some(format!("http://{ip}:{port}/metrics"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, app: &str, phase: &str, ip: Option<&str>, deleting: bool) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"name": "p", "namespace": ns, "labels": {"app.kubernetes.io/name": app}},
            "status": {"phase": phase, "podIP": ip}
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = "2026-12-08T00:00:00Z".into();
        }
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn running_gateway_pods_of_the_namespace_with_the_labels_are_sampled() {
        let labels = BTreeMap::from([(
            "app.kubernetes.io/name".to_owned(),
            "anshin-gateway".to_owned(),
        )]);
        let pods = [
            pod(
                "anshin",
                "anshin-gateway",
                "Running",
                Some("10.0.0.5"),
                false,
            ),
            pod(
                "anshin",
                "anshin-gateway",
                "Running",
                Some("10.0.0.6"),
                false,
            ),
            pod("anshin", "anshin-gateway", "Pending", None, false),
            pod(
                "anshin",
                "anshin-gateway",
                "Running",
                Some("10.0.0.7"),
                true,
            ),
            pod("anshin", "other", "Running", Some("10.0.0.8"), false),
            pod(
                "elsewhere",
                "anshin-gateway",
                "Running",
                Some("10.0.0.9"),
                false,
            ),
        ];
        let got = gateway_targets(&pods, "anshin", &labels, 9464);
        let want: BTreeSet<String> = [
            "http://10.0.0.5:9464/metrics",
            "http://10.0.0.6:9464/metrics",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(got, want);
    }
}
