//! Two local clusters side by side (the region-failover tests need two): each on its own ports, with its
//! own nodes and objects, and the second one stops without touching the first.

use std::time::Duration;

use anshin_e2e::cluster::{ClusterConfig, LocalCluster};
use anshin_e2e::fixture::{eventually, shared};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams, PostParams};

async fn ready_nodes(client: &kube::Client) -> usize {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    nodes
        .iter()
        .filter(|n| {
            let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
            conditions
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .count()
}

#[tokio::test]
async fn a_second_cluster_runs_beside_the_first_and_stops_alone() {
    let first = shared();
    let first_client = first.client().await;
    let dir = std::env::temp_dir().join(format!("anshin-second-cluster-{}", std::process::id()));
    let second = match LocalCluster::start(ClusterConfig::new(&dir)).await {
        Ok(c) => c,
        Err(e) => panic!("second cluster: {e}"),
    };
    let second_client = second.client();
    assert_ne!(
        first.kubeconfig(),
        second.kubeconfig(),
        "each cluster has its own kubeconfig"
    );
    eventually(
        "three ready nodes in the second cluster",
        Duration::from_secs(60),
        || async { (ready_nodes(&second_client).await == 3).then_some(()) },
    )
    .await;
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "only-in-the-second"}}))
            .expect("namespace");
    Api::<Namespace>::all(second_client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create");
    let in_first = Api::<Namespace>::all(first_client.clone())
        .get_opt("only-in-the-second")
        .await
        .expect("get");
    assert!(
        in_first.is_none(),
        "objects of one cluster are not visible in the other"
    );
    second.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        ready_nodes(&first_client).await,
        3,
        "the first cluster is untouched"
    );
}
