//! The local cluster is a real Kubernetes control plane: CRDs, watches, server-side apply, Deployments
//! with rolling updates, Services' EndpointSlices and garbage collection all work through kube-rs.

use std::net::SocketAddr;
use std::time::Duration;

use anshin_e2e::fixture::{TestNamespace, eventually, shared};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::{WatchStreamExt, conditions, wait::await_condition, watcher};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("test fixture JSON matches the type")
}

#[tokio::test]
async fn crd_is_served_validated_and_its_objects_watched() {
    let ns = shared().namespace("crd-watch").await;
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client());
    let crd: CustomResourceDefinition = from_json(json!({
        "metadata": { "name": "widgets.e2e.anshin.dev" },
        "spec": { "group": "e2e.anshin.dev", "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
            "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                    "spec": { "type": "object", "required": ["size"], "properties": { "size": { "type": "integer" } } } } } } }] }
    }));
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD created");
    let established = await_condition(
        crds,
        "widgets.e2e.anshin.dev",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(WAIT, established)
        .await
        .expect("CRD established in time")
        .expect("watch ok");

    let ar = ApiResource {
        group: "e2e.anshin.dev".into(),
        version: "v1".into(),
        api_version: "e2e.anshin.dev/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &ar);
    let mut events = watcher(widgets.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let widget: DynamicObject = from_json(json!({
        "apiVersion": "e2e.anshin.dev/v1", "kind": "Widget", "metadata": { "name": "w1" }, "spec": { "size": 3 }
    }));
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect("custom object created");
    let seen = tokio::time::timeout(WAIT, async {
        while let Some(obj) = events.next().await {
            let obj = obj.expect("watch event");
            if obj.metadata.name.as_deref() == Some("w1") {
                return obj;
            }
        }
        panic!("watch ended");
    })
    .await
    .expect("watch event for w1 in time");
    assert_eq!(seen.data["spec"]["size"], 3);

    let invalid: DynamicObject = from_json(json!({
        "apiVersion": "e2e.anshin.dev/v1", "kind": "Widget", "metadata": { "name": "w2" }, "spec": { "size": "big" }
    }));
    match widgets.create(&PostParams::default(), &invalid).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e:?}"),
        other => panic!("schema violation must be rejected with 422, got {other:?}"),
    }
}

#[tokio::test]
async fn server_side_apply_tracks_managers_and_conflicts() {
    let ns = shared().namespace("ssa").await;
    let cms: Api<ConfigMap> = ns.api();
    let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "cfg" }, "data": { "mode": "a" } });
    cms.patch(
        "cfg",
        &PatchParams::apply("anshin-test"),
        &Patch::Apply(&cm),
    )
    .await
    .expect("first apply");
    let other = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "cfg" }, "data": { "mode": "b" } });
    match cms
        .patch(
            "cfg",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&other),
        )
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409, "{e:?}"),
        r => panic!("a conflicting apply by another manager must fail with 409, got {r:?}"),
    }
    let forced = cms
        .patch(
            "cfg",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&other),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.data.unwrap_or_default()["mode"], "b");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"someone-else".to_string()),
        "{managers:?}"
    );
}

fn web_deployment(message: &str) -> serde_json::Value {
    json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" },
        "spec": { "replicas": 2, "selector": { "matchLabels": { "app": "web" } },
            "strategy": { "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
            "template": { "metadata": { "labels": { "app": "web" } }, "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [{ "name": "web", "image": "anshin/testpod:v1",
                    "args": ["--port", "8080", "--message", message],
                    "ports": [{ "name": "http", "containerPort": 8080 }],
                    "env": [ { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                             { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } } ],
                    "readinessProbe": { "httpGet": { "path": "/", "port": "http" }, "periodSeconds": 1 } }] } } } })
}

/// Ready pods of the Deployment with the given message, once there are exactly two, as (name, ip).
async fn two_ready_pods(pods: &Api<Pod>, message: &str) -> Vec<(String, String)> {
    let ready = |p: &Pod| {
        let conds = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conds
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    };
    eventually(
        &format!("2 ready pods saying {message:?}"),
        WAIT,
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?
                .items;
            let live: Vec<&Pod> = list
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let args = |p: &Pod| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.containers[0].args.clone())
                    .unwrap_or_default()
            };
            let all_new = live.len() == 2
                && list.len() == 2
                && live
                    .iter()
                    .all(|p| ready(p) && args(p).contains(&message.to_string()));
            all_new.then(|| {
                live.iter()
                    .map(|p| {
                        (
                            p.metadata.name.clone().unwrap_or_default(),
                            p.status
                                .as_ref()
                                .and_then(|s| s.pod_ip.clone())
                                .unwrap_or_default(),
                        )
                    })
                    .collect()
            })
        },
    )
    .await
}

async fn get_http(ip: &str) -> String {
    let addr: SocketAddr = format!("{ip}:8080").parse().expect("pod IP is an IP");
    anshin_e2e::http::get(addr, "/", Duration::from_secs(5))
        .await
        .expect("pod answers HTTP")
        .body
}

/// Ready addresses in the Service's EndpointSlices (discovery.k8s.io/v1beta1 on 1.20), sorted.
async fn endpoint_slice_ips(ns: &TestNamespace, service: &str) -> Option<Vec<String>> {
    let ar = ApiResource {
        group: "discovery.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "discovery.k8s.io/v1beta1".into(),
        kind: "EndpointSlice".into(),
        plural: "endpointslices".into(),
    };
    let slices: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &ar);
    let selector = format!("kubernetes.io/service-name={service}");
    let list = slices
        .list(&ListParams::default().labels(&selector))
        .await
        .ok()?;
    let endpoints = list
        .items
        .into_iter()
        .flat_map(|s| s.data["endpoints"].as_array().cloned().unwrap_or_default());
    let ready = endpoints.filter(|e| e["conditions"]["ready"] == true);
    let addresses = ready.flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default());
    let mut ips: Vec<String> = addresses
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    ips.sort();
    Some(ips)
}

async fn apply_web(ns: &TestNamespace, message: &str) {
    let deployments: Api<Deployment> = ns.api();
    let pp = PatchParams::apply("anshin-test");
    deployments
        .patch("web", &pp, &Patch::Apply(&web_deployment(message)))
        .await
        .expect("deployment applied");
}

#[tokio::test]
async fn deployment_serves_on_loopback_pod_ips_rolls_out_and_is_garbage_collected() {
    let ns = shared().namespace("deployment").await;
    let pods: Api<Pod> = ns.api();
    apply_web(&ns, "v1").await;
    let svc: Service = from_json(json!({ "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80, "targetPort": 8080 }] } }));
    ns.api::<Service>()
        .create(&PostParams::default(), &svc)
        .await
        .expect("service created");

    let v1 = two_ready_pods(&pods, "v1").await;
    assert_ne!(v1[0].1, v1[1].1, "pods must have distinct IPs: {v1:?}");
    for (name, ip) in &v1 {
        assert!(
            ip.starts_with("127.") && ip != "127.0.0.1",
            "loopback pod IP expected, got {ip}"
        );
        assert_eq!(get_http(ip).await, format!("v1 from {name}\n"));
    }
    let mut want: Vec<String> = v1.iter().map(|(_, ip)| ip.clone()).collect();
    want.sort();
    eventually(
        "the Service's EndpointSlice to list both pod IPs",
        WAIT,
        || async {
            endpoint_slice_ips(&ns, "web")
                .await
                .filter(|ips| *ips == want)
        },
    )
    .await;

    apply_web(&ns, "v2").await;
    let v2 = two_ready_pods(&pods, "v2").await;
    for (name, ip) in &v2 {
        assert!(
            !v1.iter().any(|(old, _)| old == name),
            "pod {name} should have been replaced"
        );
        assert_eq!(get_http(ip).await, format!("v2 from {name}\n"));
    }

    ns.api::<Deployment>()
        .delete("web", &DeleteParams::foreground())
        .await
        .expect("deployment deleted");
    let rs: Api<ReplicaSet> = ns.api();
    eventually(
        "ReplicaSets and Pods to be garbage-collected",
        WAIT,
        || async {
            let n = rs.list(&ListParams::default()).await.ok()?.items.len()
                + pods.list(&ListParams::default()).await.ok()?.items.len();
            (n == 0).then_some(())
        },
    )
    .await;
    for (_, ip) in &v2 {
        let addr: SocketAddr = format!("{ip}:8080").parse().expect("ip");
        let answer = anshin_e2e::http::get(addr, "/", Duration::from_secs(2)).await;
        assert!(
            answer.is_err(),
            "process of deleted pod at {ip} still answers"
        );
    }
}
