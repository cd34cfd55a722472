//! The first end-to-end slice under load: the operator and the gateway as real processes on the local
//! cluster, a tenant calling the guarded endpoint without pause while the endpoint switches model
//! versions — once with the operator SIGKILLed in the middle of the switch and restarted. Every request
//! must succeed.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anshin_crds::inference_endpoint::EndpointPhase;
use anshin_crds::model_version::ModelVersionPhase;
use anshin_crds::{InferenceEndpoint, ModelVersion};
use anshin_e2e::fixture::{eventually, shared};
use anshin_operator::names;
use anshin_operator::runtime::startup;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::stack::{
    Load, Pace, chat_endpoint_with_tenant, create, start_gateway, start_operator, worker,
};
use support::{files_of, free_port};

const MIN_REQUESTS: usize = 1000;
/// A bound on the load, far above what the switches take (the 300 s deadline bounds it too): reaching it
/// before the second switch would leave that switch without traffic, as 4 000 did once the servers got
/// faster.
const MAX_REQUESTS: usize = 50_000;

/// The official `openai` Python client (installed by scripts/setup.sh), pointed at the gateway with the
/// tenant's key, gets a plain and a streamed chat answer.
fn openai_client_gets_streamed_and_plain_answers(base_url: &str, key: &str) {
    let cache = std::env::var_os("ANSHIN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/anshin")
        });
    let python = cache.join("pyenv-inference/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh",
        python.display()
    );
    let script = r#"
import json, sys
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
r = c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "高血圧の患者への助言"}], max_tokens=8)
chunks = list(c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "頭痛"}], max_tokens=8, stream=True))
print(json.dumps({"chat": r.choices[0].message.content, "chunks": len(chunks),
  "stream": "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)}))
"#;
    let out = Command::new(python)
        .args(["-c", script, base_url, key])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("script prints JSON");
    assert!(
        v["chat"].as_str().is_some_and(|t| !t.is_empty()),
        "plain answer: {v}"
    );
    assert!(
        v["chunks"].as_u64().is_some_and(|n| n > 1)
            && v["stream"].as_str().is_some_and(|t| !t.is_empty()),
        "streamed answer: {v}"
    );
    println!("openai client through the gateway: {v}");
}

#[tokio::test]
async fn switching_versions_under_load_fails_no_request_even_when_the_operator_is_killed_midway() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = shared();
    let ns = cluster.namespace("rollout-under-load").await;
    let client = ns.client();
    startup::install_crds(&client).await.expect("CRDs");
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = cluster.kubeconfig().clone();
    let mut operator = start_operator(
        ns.name(),
        &kubeconfig,
        dir.path(),
        &dir.path().join("operator-1.log"),
        "operator-1",
        4,
        free_port(),
    );
    let port = free_port();
    let mut gateway = start_gateway(ns.name(), &kubeconfig, dir.path(), port, free_port());

    let model =
        anshin_inference::fixture::write_hf(&dir.path().join("model"), false).expect("tiny model");
    let files = files_of(&model);
    let mvs: Api<ModelVersion> = ns.api();
    for v in ["tiny-v1", "tiny-v2"] {
        create(&mvs, json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": v},
            "spec": {"model": "tiny", "version": v, "artifact": {"uri": format!("file://{}", model.display()), "files": files},
                     "lineage": {"method": "Scratch"}}})).await;
    }
    for v in ["tiny-v1", "tiny-v2"] {
        eventually(
            &format!("{v} verified"),
            Duration::from_secs(90),
            || async {
                (mvs.get(v).await.ok()?.status?.phase == ModelVersionPhase::Verified).then_some(())
            },
        )
        .await;
    }
    let key = chat_endpoint_with_tenant(&ns.client(), ns.name()).await;
    let ies: Api<InferenceEndpoint> = ns.api();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let http = reqwest::Client::new();
    let probe = json!({"model": "chat", "messages": [{"role": "user", "content": "こんにちは"}], "max_tokens": 2});
    eventually(
        "the gateway to serve the endpoint",
        Duration::from_secs(120),
        || async {
            let r = http
                .post(&url)
                .bearer_auth(&key)
                .json(&probe)
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;

    openai_client_gets_streamed_and_plain_answers(&format!("http://127.0.0.1:{port}/v1"), &key);

    let load = Arc::new(Load::default());
    let pace = Pace {
        url: url.clone(),
        key: key.clone(),
        max_requests: MAX_REQUESTS,
        deadline: Instant::now() + Duration::from_secs(300),
        pause: Duration::ZERO,
    };
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(worker(load.clone(), pace.clone())))
        .collect();
    // Waits for `n` more successful requests than had succeeded when it was called, so that each phase
    // (before the first switch, between the two, after the second) is served by traffic of its own
    // however fast the servers answer.
    let served = |n: usize| {
        let load = load.clone();
        async move {
            let target = load.ok.load(Ordering::SeqCst) + n;
            eventually(
                &format!("{n} more requests"),
                Duration::from_secs(120),
                || async { (load.ok.load(Ordering::SeqCst) >= target).then_some(()) },
            )
            .await
        }
    };
    let switched = |to: &'static str| {
        let (ies, deployments) = (ies.clone(), ns.api::<Deployment>());
        let from = if to == "tiny-v2" {
            "tiny-v1"
        } else {
            "tiny-v2"
        };
        async move {
            eventually(
                &format!("{to} stable and {from} removed"),
                Duration::from_secs(120),
                || async {
                    let s = ies.get("chat").await.ok()?.status?;
                    let gone = deployments
                        .get_opt(&names::version_workload("chat", from))
                        .await
                        .ok()?
                        .is_none();
                    (s.stable_version.as_deref() == Some(to)
                        && gone
                        && s.phase == EndpointPhase::Ready)
                        .then_some(())
                },
            )
            .await
        }
    };
    served(200).await;
    // Switch 1: the operator is SIGKILLed while the new version is coming up, and a new one takes over.
    ies.patch(
        "chat",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"modelVersion": "tiny-v2"}})),
    )
    .await
    .expect("switch");
    eventually("the rollout to start", Duration::from_secs(30), || async {
        ies.get("chat")
            .await
            .ok()?
            .status?
            .canary_version
            .filter(|c| c == "tiny-v2")
    })
    .await;
    operator.kill_now();
    let mut operator = start_operator(
        ns.name(),
        &kubeconfig,
        dir.path(),
        &dir.path().join("operator-2.log"),
        "operator-2",
        4,
        free_port(),
    );
    switched("tiny-v2").await;
    served(400).await;
    // Switch 2: back to v1 with the operator running throughout.
    ies.patch(
        "chat",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"modelVersion": "tiny-v1"}})),
    )
    .await
    .expect("switch back");
    switched("tiny-v1").await;
    served(400).await;
    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.await;
    }
    let (ok, failed) = (
        load.ok.load(Ordering::SeqCst),
        load.failed.load(Ordering::SeqCst),
    );
    let versions = load.versions.lock().expect("lock").clone();
    println!(
        "requests: {} ok, {failed} failed; versions in order served: {versions:?}",
        ok
    );
    assert_eq!(failed, 0, "no request may fail during the switches");
    assert!(ok >= MIN_REQUESTS);
    assert!(
        versions
            .windows(3)
            .any(|w| w == ["tiny-v1", "tiny-v2", "tiny-v1"]),
        "both switches were seen: {versions:?}"
    );
    operator.stop(Duration::from_secs(5)).await;
    gateway.stop(Duration::from_secs(5)).await;
}
