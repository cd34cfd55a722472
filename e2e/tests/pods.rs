//! The node agent runs what the real scheduler and controllers decide: GPU placement, Job retries,
//! restarts with exit codes, probes, env from Secrets/ConfigMaps/fieldRefs, graceful deletion.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anshin_e2e::fixture::{TestNamespace, eventually, shared};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Event, Pod, Secret};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("test fixture JSON matches the type")
}

async fn create_pod(ns: &TestNamespace, pod: serde_json::Value) -> Api<Pod> {
    let pods: Api<Pod> = ns.api();
    pods.create(&PostParams::default(), &from_json(pod))
        .await
        .expect("pod created");
    pods
}

async fn container_status(pods: &Api<Pod>, name: &str) -> Option<ContainerStatus> {
    let pod = pods.get_opt(name).await.ok()??;
    pod.status?.container_statuses?.into_iter().next()
}

fn gpu_pod(name: &str) -> serde_json::Value {
    json!({ "metadata": { "name": name }, "spec": {
        "terminationGracePeriodSeconds": 1,
        "nodeSelector": { "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3" },
        "tolerations": [{ "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" }],
        "containers": [{ "name": "train", "image": "anshin/testpod", "resources": { "limits": { "nvidia.com/gpu": 8 } } }] } })
}

#[tokio::test]
async fn gpu_pod_runs_on_the_h100_node_and_waits_while_its_gpus_are_taken() {
    let ns = shared().namespace("gpu").await;
    let pods = create_pod(&ns, gpu_pod("first")).await;
    eventually("the first GPU pod to run on gpu-0", WAIT, || async {
        let pod = pods.get("first").await.ok()?;
        let on_gpu = pod.spec?.node_name.as_deref() == Some("gpu-0");
        (on_gpu && pod.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;

    create_pod(&ns, gpu_pod("second")).await;
    let message = eventually("the second GPU pod to be unschedulable", WAIT, || async {
        let pod = pods.get("second").await.ok()?;
        let cond = pod
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
        Some(cond.message.unwrap_or_default())
    })
    .await;
    assert!(message.contains("Insufficient nvidia.com/gpu"), "{message}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = pods.get("second").await.expect("second pod");
    assert_eq!(
        second.spec.and_then(|s| s.node_name),
        None,
        "no node has 8 free GPUs"
    );

    pods.delete("first", &DeleteParams::default())
        .await
        .expect("first deleted");
    eventually(
        "the second GPU pod to take gpu-0 once it is free",
        WAIT,
        || async {
            let node = pods.get("second").await.ok()?.spec?.node_name?;
            assert_eq!(node, "gpu-0");
            Some(())
        },
    )
    .await;
}

#[tokio::test]
async fn job_whose_process_exits_1_is_retried_to_its_backoff_limit_and_fails() {
    let ns = shared().namespace("job-fails").await;
    let jobs: Api<Job> = ns.api();
    let job = json!({ "metadata": { "name": "fail" }, "spec": { "backoffLimit": 1, "template": { "spec": {
        "restartPolicy": "Never",
        "containers": [{ "name": "main", "image": "anshin/testpod", "args": ["--exit-code", "1"] }] } } } });
    jobs.create(&PostParams::default(), &from_json(job))
        .await
        .expect("job created");
    let reason = eventually("the Job to fail", Duration::from_secs(90), || async {
        let status = jobs.get("fail").await.ok()?.status?;
        let failed = status
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Failed" && c.status == "True")?;
        Some((
            failed.reason.unwrap_or_default(),
            status.failed.unwrap_or(0),
        ))
    })
    .await;
    assert_eq!(reason, ("BackoffLimitExceeded".to_string(), 2));
    let pods: Api<Pod> = ns.api();
    let list = pods
        .list(&ListParams::default().labels("job-name=fail"))
        .await
        .expect("job pods")
        .items;
    assert_eq!(list.len(), 2, "one try plus one retry");
    for pod in list {
        let status = pod.status.expect("status");
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let state = status.container_statuses.expect("container statuses")[0]
            .state
            .clone()
            .expect("state");
        let terminated = state.terminated.expect("terminated");
        assert_eq!(
            (terminated.exit_code, terminated.reason.as_deref()),
            (1, Some("Error"))
        );
    }
}

#[tokio::test]
async fn crashing_container_is_restarted_with_its_exit_code_reported() {
    let ns = shared().namespace("crashloop").await;
    let pods = create_pod(&ns, json!({ "metadata": { "name": "crash" }, "spec": { "containers": [{
        "name": "main", "image": "anshin/testpod", "args": ["--exit-code", "3", "--exit-after-ms", "100"] }] } }))
    .await;
    let status = eventually("two restarts", WAIT, || async {
        container_status(&pods, "crash")
            .await
            .filter(|s| s.restart_count >= 2)
    })
    .await;
    let last = status
        .last_state
        .and_then(|s| s.terminated)
        .expect("last state terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
    let events: Api<Event> = ns.api();
    eventually("Scheduled, Started and BackOff events", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        let reasons: Vec<String> = list.into_iter().filter_map(|e| e.reason).collect();
        let all = ["Scheduled", "Started", "BackOff"]
            .iter()
            .all(|r| reasons.iter().any(|x| x == r));
        all.then_some(())
    })
    .await;
}

#[tokio::test]
async fn failing_liveness_probe_restarts_and_readiness_follows_its_probe() {
    let ns = shared().namespace("probes").await;
    let pods = create_pod(&ns, json!({ "metadata": { "name": "probed" }, "spec": { "containers": [{
        "name": "main", "image": "anshin/testpod", "args": ["--port", "8080"],
        "env": [{ "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } }],
        "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 },
        "livenessProbe": { "httpGet": { "path": "/", "port": 9 }, "initialDelaySeconds": 3, "periodSeconds": 1, "failureThreshold": 2 } }] } }))
    .await;
    eventually(
        "the container to be ready (TCP readiness probe)",
        WAIT,
        || async { container_status(&pods, "probed").await.filter(|s| s.ready) },
    )
    .await;
    eventually("a restart after the liveness probe fails", WAIT, || async {
        container_status(&pods, "probed")
            .await
            .filter(|s| s.restart_count >= 1)
    })
    .await;
    // The agent records Events asynchronously: the restart can be visible before its Unhealthy event.
    let events: Api<Event> = ns.api();
    let message = eventually("an Unhealthy event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        let unhealthy = list
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Unhealthy"))?;
        Some(unhealthy.message.unwrap_or_default())
    })
    .await;
    assert!(message.starts_with("Liveness probe failed"), "{message}");
}

#[tokio::test]
async fn env_comes_from_configmaps_secrets_and_the_downward_api() {
    let ns = shared().namespace("env").await;
    let cm: ConfigMap =
        from_json(json!({ "metadata": { "name": "greeting" }, "data": { "text": "konnichiwa" } }));
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    let secret: Secret =
        from_json(json!({ "metadata": { "name": "token" }, "stringData": { "value": "s3cret" } }));
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let pods = create_pod(&ns, json!({ "metadata": { "name": "env" }, "spec": { "containers": [{
        "name": "main", "image": "anshin/testpod", "args": ["--port", "8080", "--message", "$(GREETING)-$(TOKEN)"],
        "env": [
            { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
            { "name": "GREETING", "valueFrom": { "configMapKeyRef": { "name": "greeting", "key": "text" } } },
            { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "token", "key": "value" } } } ],
        "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 } }] } }))
    .await;
    let ip = eventually("the pod to be ready", WAIT, || async {
        let pod = pods.get("env").await.ok()?;
        let ready = pod
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .ready;
        ready.then(|| pod.status?.pod_ip).flatten()
    })
    .await;
    let addr: SocketAddr = format!("{ip}:8080").parse().expect("pod ip");
    let body = anshin_e2e::http::get(addr, "/", Duration::from_secs(5))
        .await
        .expect("pod answers")
        .body;
    assert_eq!(body, "konnichiwa-s3cret from env\n");
}

#[tokio::test]
async fn deletion_runs_prestop_then_sigterm_and_kills_after_the_grace_period() {
    let ns = shared().namespace("graceful").await;
    let dir = std::env::temp_dir().join(format!("anshin-e2e-graceful-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("host dir");
    let host = dir.to_string_lossy().into_owned();
    let pods = create_pod(&ns, json!({ "metadata": { "name": "polite" }, "spec": {
        "terminationGracePeriodSeconds": 10,
        "volumes": [{ "name": "shared", "hostPath": { "path": host } }],
        "containers": [{ "name": "main", "image": "anshin/testpod",
            "args": ["--sigterm-file", "/shared/order", "--term-delay-ms", "200"],
            "volumeMounts": [{ "name": "shared", "mountPath": "/shared" }],
            "lifecycle": { "preStop": { "exec": { "command": ["sh", "-c", "echo prestop >> /shared/order"] } } } }] } }))
    .await;
    create_pod(&ns, json!({ "metadata": { "name": "stubborn" }, "spec": {
        "terminationGracePeriodSeconds": 2,
        "containers": [{ "name": "main", "image": "anshin/testpod", "command": ["sh", "-c", "trap '' TERM; sleep 60"] }] } }))
    .await;
    for name in ["polite", "stubborn"] {
        eventually(&format!("{name} to run"), WAIT, || async {
            container_status(&pods, name)
                .await
                .filter(|s| s.state.as_ref().is_some_and(|st| st.running.is_some()))
        })
        .await;
    }
    let start = Instant::now();
    for name in ["polite", "stubborn"] {
        pods.delete(name, &DeleteParams::default())
            .await
            .expect("pod deleted");
    }
    eventually("polite to be gone", WAIT, || async {
        pods.get_opt("polite").await.ok()?.is_none().then_some(())
    })
    .await;
    let order = std::fs::read_to_string(dir.join("order")).expect("the pod wrote its order file");
    assert_eq!(order, "prestop\nsigterm\n");
    eventually("stubborn to be gone", WAIT, || async {
        pods.get_opt("stubborn").await.ok()?.is_none().then_some(())
    })
    .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "SIGKILL after the 2 s grace period, took {took:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

async fn exit_code(pods: &Api<Pod>, name: &str) -> i32 {
    eventually(&format!("{name} to terminate"), WAIT, || async {
        let state = container_status(pods, name).await?.state?;
        state.terminated.map(|t| t.exit_code)
    })
    .await
}

fn pod_listing_pods(name: &str) -> serde_json::Value {
    json!({ "metadata": { "name": name }, "spec": { "restartPolicy": "Never",
        "containers": [{ "name": "main", "image": "anshin/testpod", "args": ["--list-pods"] }] } })
}

#[tokio::test]
async fn pod_calls_the_api_as_its_service_account_under_rbac() {
    let ns = shared().namespace("rbac").await;
    let pods = create_pod(&ns, pod_listing_pods("denied")).await;
    assert_eq!(
        exit_code(&pods, "denied").await,
        3,
        "the default ServiceAccount may not list pods"
    );
    let binding: RoleBinding = from_json(json!({ "metadata": { "name": "default-view" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
        "subjects": [{ "kind": "ServiceAccount", "name": "default", "namespace": ns.name() }] }));
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("role binding");
    create_pod(&ns, pod_listing_pods("allowed")).await;
    assert_eq!(
        exit_code(&pods, "allowed").await,
        0,
        "with the view role it may"
    );
}

#[tokio::test]
async fn volumes_and_working_dir_map_to_local_directories() {
    let ns = shared().namespace("volumes").await;
    let cm: ConfigMap =
        from_json(json!({ "metadata": { "name": "cfg" }, "data": { "greeting": "ohayou" } }));
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    let dir = std::env::temp_dir().join(format!("anshin-e2e-volumes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("host dir");
    let pods = create_pod(&ns, json!({ "metadata": { "name": "copier" }, "spec": { "restartPolicy": "Never",
        "volumes": [ { "name": "out", "hostPath": { "path": dir.to_string_lossy() } },
                     { "name": "config", "configMap": { "name": "cfg" } } ],
        "containers": [{ "name": "main", "image": "anshin/testpod", "workingDir": "/out",
            "command": ["sh", "-c", "cp /config/greeting copied.txt"],
            "volumeMounts": [ { "name": "out", "mountPath": "/out" }, { "name": "config", "mountPath": "/config" } ] }] } }))
    .await;
    assert_eq!(exit_code(&pods, "copier").await, 0);
    let copied =
        std::fs::read_to_string(dir.join("copied.txt")).expect("file written in the working dir");
    assert_eq!(copied, "ohayou");
    let _ = std::fs::remove_dir_all(dir);
}

fn pod_with_init(name: &str, init_script: &str) -> serde_json::Value {
    let container = |name: &str, script: &str| {
        json!({ "name": name, "image": "anshin/testpod",
        "command": ["sh", "-c", script], "volumeMounts": [{ "name": "work", "mountPath": "/work" }] })
    };
    json!({ "metadata": { "name": name }, "spec": { "restartPolicy": "Never",
        "volumes": [{ "name": "work", "emptyDir": {} }],
        "initContainers": [container("init", init_script)],
        "containers": [container("main", "test -f /work/marker")] } })
}

async fn phase(pods: &Api<Pod>, name: &str) -> String {
    eventually(&format!("{name} to finish"), WAIT, || async {
        let phase = pods.get(name).await.ok()?.status?.phase?;
        (phase == "Succeeded" || phase == "Failed").then_some(phase)
    })
    .await
}

#[tokio::test]
async fn init_containers_run_first_and_a_failed_one_fails_the_pod() {
    let ns = shared().namespace("init").await;
    let pods = create_pod(&ns, pod_with_init("ok", "echo done > /work/marker")).await;
    create_pod(&ns, pod_with_init("broken", "exit 5")).await;
    assert_eq!(
        phase(&pods, "ok").await,
        "Succeeded",
        "main saw the init container's file"
    );
    assert_eq!(phase(&pods, "broken").await, "Failed");
    let status = pods
        .get("broken")
        .await
        .expect("pod")
        .status
        .expect("status");
    let init = status.init_container_statuses.expect("init statuses")[0].clone();
    assert_eq!(
        init.state.and_then(|s| s.terminated).map(|t| t.exit_code),
        Some(5)
    );
    let main = status.container_statuses.expect("statuses")[0].clone();
    let never_started = main.state.and_then(|s| s.waiting).is_some();
    assert!(
        never_started,
        "the app container must not start after a failed init container"
    );
    assert_eq!(main.restart_count, 0);
}
