//! The server's API key (`--api-key-file`), over the real HTTP server with a fake engine: the API and
//! `/metrics` answer 401 with an OpenAI error body unless the request presents the key, health and
//! readiness stay open, and the `x-anshin-cache-scope` header counts only from a caller that presented it.

mod common;

use anshin_inference::scheduler::FinishReason;
use common::fake_engine::{FakeServer, Script, done, start_fake};
use common::{Reply, bearer, http, http_with};
use serde_json::Value;

const KEY: &str = "sk-anshin-backend-3f9a1c7e5b2d4086";

fn json(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

fn answers(n: usize) -> Vec<Script> {
    (0..n)
        .map(|_| Ok(vec![done(3, 1, FinishReason::Stop)]))
        .collect()
}

const CHAT: &str = r#"{"messages":[{"role":"user","content":"頭痛"}]}"#;
const PROMPT: &str = r#"{"prompt":"頭痛"}"#;

/// Every guarded route, with its method and body.
fn guarded() -> [(&'static str, &'static str, Option<&'static str>); 4] {
    [
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", Some(CHAT)),
        ("POST", "/v1/completions", Some(PROMPT)),
        ("GET", "/metrics", None),
    ]
}

#[test]
fn the_api_and_metrics_need_the_key_and_health_does_not() {
    let s = start_fake(answers(2), Some(KEY));
    let wrong = [
        ("", "missing API key"),
        (
            "Authorization: Bearer sk-anshin-backend-3f9a1c7e5b2d408\r\n",
            "invalid API key",
        ),
        (
            "Authorization: Bearer sk-anshin-backend-3f9a1c7e5b2d40860\r\n",
            "invalid API key",
        ),
        (
            "Authorization: Basic c2stYW5zaGluOng=\r\n",
            "missing API key",
        ),
        (&format!("Authorization: {KEY}\r\n"), "missing API key"),
    ];
    for (method, path, body) in guarded() {
        for (header, says) in &wrong {
            let r = http_with(s.addr, method, path, body, header);
            assert_eq!(r.status, 401, "{method} {path} with {header:?}: {}", r.body);
            assert!(
                r.head
                    .to_ascii_lowercase()
                    .contains("www-authenticate: bearer"),
                "{}",
                r.head
            );
            let err = json(&r);
            assert_eq!(err["error"]["type"], "authentication_error", "{}", r.body);
            assert_eq!(err["error"]["code"], "invalid_api_key");
            let message = err["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{message}");
            assert!(!message.contains("sk-anshin"), "the key is never echoed");
        }
        let r = http_with(s.addr, method, path, body, &bearer(KEY));
        assert_eq!(r.status, 200, "{method} {path} with the key: {}", r.body);
    }
    let lower = http_with(
        s.addr,
        "GET",
        "/v1/models",
        None,
        &format!("authorization: bearer {KEY}\r\n"),
    );
    assert_eq!(lower.status, 200, "the scheme is case-insensitive");
    assert!(
        s.fake.seen().len() == 2,
        "refused requests never reach the engine"
    );
    for path in ["/healthz", "/readyz"] {
        assert_eq!(http(s.addr, "GET", path, None).status, 200, "{path}");
    }
    let metrics = http_with(s.addr, "GET", "/metrics", None, &bearer(KEY)).body;
    assert!(
        metrics.contains("anshin_inference_requests_total{status=\"unauthorized\"} 20"),
        "{metrics}"
    );
}

/// Without a key on the server nobody is authenticated, so the header is ignored (scope 0) and any pod
/// that reaches the server cannot pick a hospital's scope. With the key, the authenticated caller's
/// header selects the scope.
#[test]
fn the_cache_scope_header_counts_only_from_an_authenticated_caller() {
    let scope = |name: &str| format!("x-anshin-cache-scope: {name}\r\n");
    let open = start_fake(answers(1), None);
    let r = http_with(
        open.addr,
        "POST",
        "/v1/completions",
        Some(PROMPT),
        &scope("hospital-a"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        open.fake.seen()[0].cache_scope,
        0,
        "an anonymous caller chose a scope"
    );

    let keyed: FakeServer = start_fake(answers(3), Some(KEY));
    for (headers, _) in [
        (bearer(KEY) + &scope("hospital-a"), "a"),
        (bearer(KEY) + &scope("hospital-b"), "b"),
        (bearer(KEY), "none"),
    ] {
        let r = http_with(
            keyed.addr,
            "POST",
            "/v1/completions",
            Some(PROMPT),
            &headers,
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let scopes: Vec<u64> = keyed.fake.seen().iter().map(|r| r.cache_scope).collect();
    assert!(
        scopes[0] != 0 && scopes[1] != 0 && scopes[0] != scopes[1],
        "{scopes:?}"
    );
    assert_eq!(scopes[2], 0);
}
