//! Keys, tenants and limits in front of a real `anshin-inference serve` process: missing, wrong and
//! revoked keys (401, revocation by editing the routing file, no restart), another tenant's endpoint
//! (403), an unknown one (404), `/v1/models` filtered per tenant, requests-per-minute (429 with
//! `Retry-After`), and cached prompt prefixes shared on the inference server only within a tenant.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const KEY: &str = "sk-hosp-a-0123456789";

fn tenancy_routing(inf: &str, keys_a: &[(&str, &str)]) -> String {
    let keys: Vec<String> = keys_a
        .iter()
        .map(|(n, k)| format!("{{name: {n}, sha256: '{}'}}", key_hash(k)))
        .collect();
    format!(
        "tenants:\n  - name: hosp-a\n    endpoints: [med]\n    limits: {{requests_per_minute: 3}}\n    keys: [{}]\n\
         \x20 - name: hosp-b\n    endpoints: [other]\n    keys: [{{name: main, sha256: '{}'}}]\n\
         endpoints:\n  - name: med\n    versions: [{{name: v1, weight: 1, backends: ['{inf}']}}]\n\
         \x20 - name: other\n    versions: [{{name: v1, weight: 1, backends: ['{inf}']}}]\n",
        keys.join(", "),
        key_hash("sk-hosp-b")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_tenants_and_limits_are_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = fixture_model(dir.path());
    let inf = start_inference(&model, "a").await;
    let routing_path = dir.path().join("routing.yaml");
    let both = [("main", KEY), ("old", "sk-old-key-1")];
    write_routing(
        &routing_path,
        &tenancy_routing(&inf.addr.to_string(), &both),
    );
    let gw = start_gateway(&routing_path, &dir.path().join("audit.jsonl")).await;
    let body = json!({"model": "med", "prompt": "熱", "max_tokens": 1});
    let status = |r: &Reply| {
        (
            r.status,
            r.json()["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };

    let r = post(gw.addr, "/v1/completions", None, &body).await;
    assert_eq!(status(&r), (401, "missing_api_key".into()));
    let r = post(gw.addr, "/v1/completions", Some("sk-wrong"), &body).await;
    assert_eq!(status(&r), (401, "invalid_api_key".into()));
    let r = post(gw.addr, "/v1/completions", Some("sk-hosp-b"), &body).await;
    assert_eq!(
        status(&r),
        (403, "model_not_permitted".into()),
        "another tenant's endpoint"
    );
    let r = post(
        gw.addr,
        "/v1/completions",
        Some("sk-hosp-b"),
        &json!({"model": "nope", "prompt": "x"}),
    )
    .await;
    assert_eq!(status(&r), (404, "model_not_found".into()));
    let models = get(gw.addr, "/v1/models", Some("sk-hosp-b"))
        .await
        .expect("models")
        .json();
    assert_eq!(models["data"].as_array().map(|d| d.len()), Some(1));
    assert_eq!(models["data"][0]["id"], "other");

    assert_eq!(
        post(gw.addr, "/v1/completions", Some("sk-old-key-1"), &body)
            .await
            .status,
        200
    );
    write_routing(
        &routing_path,
        &tenancy_routing(&inf.addr.to_string(), &[("main", KEY)]),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = post(gw.addr, "/v1/completions", Some("sk-old-key-1"), &body).await;
    assert_eq!(
        status(&r),
        (401, "invalid_api_key".into()),
        "revoked without restart"
    );

    // Limit: 3 requests per minute for hosp-a; one was used above (refused keys never count).
    for _ in 0..2 {
        assert_eq!(
            post(gw.addr, "/v1/completions", Some(KEY), &body)
                .await
                .status,
            200
        );
    }
    let r = post(gw.addr, "/v1/completions", Some(KEY), &body).await;
    assert_eq!(status(&r), (429, "rate_limit_exceeded".into()));
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        post(
            gw.addr,
            "/v1/completions",
            Some("sk-hosp-b"),
            &json!({"model": "other", "prompt": "x", "max_tokens": 1})
        )
        .await
        .status,
        200,
        "other tenants are not limited by hosp-a's use"
    );
    let m = metrics_text(&gw).await;
    assert_eq!(
        metric_sum(
            &m,
            "anshin_gateway_rate_limited_total",
            &["tenant=\"hosp-a\"", "requests_per_minute"]
        ),
        1.0
    );
}

/// The same clinical note from two hospitals through one gateway to one inference server that needs
/// the gateway's backend key: the second hospital's request computes the note again (no cache hit it
/// could time), the first hospital's next request copies it; a caller without the key — another pod
/// trying to bypass the gateway, or to set a hospital's cache scope itself — gets 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_prompt_prefixes_are_shared_only_within_a_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = fixture_model(dir.path());
    let key_file = dir.path().join("backend.key");
    std::fs::write(&key_file, "ansk-backend-0123456789\n").expect("key file");
    let inf = start_inference_with_key(&model, "a", &key_file).await;
    let routing_path = dir.path().join("routing.yaml");
    let backend = inf.addr.to_string();
    let key_path = key_file.display();
    write_routing(
        &routing_path,
        &format!(
            "tenants:\n  - name: hosp-a\n    endpoints: [med]\n    keys: [{{name: main, sha256: '{}'}}]\n\
             \x20 - name: hosp-b\n    endpoints: [med]\n    keys: [{{name: main, sha256: '{}'}}]\n\
             endpoints:\n  - name: med\n    backend_key_file: '{key_path}'\n\
             \x20   versions: [{{name: v1, weight: 1, backends: ['{backend}']}}]\n",
            key_hash(KEY),
            key_hash("sk-hosp-b")
        ),
    );
    let gw = start_gateway(&routing_path, &dir.path().join("audit.jsonl")).await;
    let bypass = json!({"model": "tiny", "prompt": "患者", "max_tokens": 2});
    let direct = send_with_headers(
        inf.addr,
        "POST",
        "/v1/completions",
        None,
        &[("x-anshin-cache-scope", "0123456789abcdef")],
        Some(bypass.to_string()),
    )
    .await
    .expect("direct call");
    assert_eq!(direct.status, 401, "a caller without the backend key");
    let wrong = post(inf.addr, "/v1/completions", Some("ansk-guess"), &bypass).await;
    assert_eq!(wrong.status, 401, "a caller with a wrong key");
    let note = "患者は65歳男性。3日前からの発熱と湿性咳嗽。高血圧と2型糖尿病でアムロジピンとメトホルミンを内服中。";
    let ask = |key: &'static str, question: &str| {
        let body = json!({"model": "med", "prompt": format!("{note}{question}"), "max_tokens": 2});
        let addr = gw.addr;
        async move {
            let r = post(addr, "/v1/completions", Some(key), &body).await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
    };
    let shared = || async {
        let m = get(inf.addr, "/metrics", Some("ansk-backend-0123456789"))
            .await
            .expect("metrics")
            .body;
        metric_sum(&m, "anshin_inference_prefix_shared_tokens_total", &[])
    };
    ask(KEY, "診断は?").await;
    ask("sk-hosp-b", "治療方針は?").await;
    assert_eq!(shared().await, 0.0, "hosp-b used hosp-a's cached note");
    ask(KEY, "注意点は?").await;
    assert!(
        shared().await >= 16.0,
        "hosp-a's next request copies its own note"
    );
}
