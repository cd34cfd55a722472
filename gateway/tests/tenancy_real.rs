//! Keys, tenants and limits in front of a real `anshin-inference serve` process: missing, wrong and
//! revoked keys (401, revocation by editing the routing file, no restart), another tenant's endpoint
//! (403), an unknown one (404), `/v1/models` filtered per tenant, and requests-per-minute (429 with
//! `Retry-After`).

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
    let m = get(gw.addr, "/metrics", None).await.expect("metrics").body;
    assert_eq!(
        metric_sum(
            &m,
            "anshin_gateway_rate_limited_total",
            &["tenant=\"hosp-a\"", "requests_per_minute"]
        ),
        1.0
    );
}
