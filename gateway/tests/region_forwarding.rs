//! Region forwarding between two real gateway processes on loopback, the peer served over TLS with a
//! certificate from a CA made here (rcgen): what reaches the peer region (placeholders, a peer token,
//! the tenant — never the caller's values or key), what the caller gets back (its own values,
//! restored by the local output guard), residency, and peers refusing requests without a valid token.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anshin_gateway::keys::{fingerprint, hash_key};
use bytes::Bytes;
use common::audit::{of_kind, wait_for_records};
use common::backend::{Mode, TestBackend};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

const KEY: &str = "sk-hospital-a-key";
const JP_KEY: &str = "sk-hospital-jp-key";
const PEER_TOKEN: &str = "peer-token-of-region-a-0123456789abcdef";
const PATIENT: &str = "患者の山田太郎さん（電話 090-1234-5678）の血圧について。";

/// CA, serving certificate for 127.0.0.1, and the peer-token files, written into `dir`.
struct Files {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    token: PathBuf,
    accept: PathBuf,
}

fn files(dir: &Path) -> Files {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("cert");
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    Files {
        ca: write("ca.pem", ca.pem()),
        cert: write("cert.pem", cert.pem()),
        key: write("key.pem", key.serialize_pem()),
        token: write("peer-token", format!("{PEER_TOKEN}\n")),
        accept: write(
            "accepted-peers",
            format!(
                "# region-a forwards here\n{} region-a\n",
                key_hash(PEER_TOKEN)
            ),
        ),
    }
}

/// Two tenants (one with residency `jp`), endpoint `med` on `backends`, and `peers` (YAML items).
fn routing(backends: &[String], peers: &[String]) -> String {
    let b: Vec<String> = backends.iter().map(|a| format!("'{a}'")).collect();
    format!(
        "tenants:\n  - {{name: hosp-a, endpoints: ['*'], keys: [{{name: main, sha256: '{}'}}]}}\n\
         \x20 - {{name: hosp-jp, residency: jp, endpoints: ['*'], keys: [{{name: main, sha256: '{}'}}]}}\n\
         endpoints:\n  - name: med\n    guardrails: {{input: Redact, output: Redact}}\n    versions: [{{name: v1, weight: 1, backends: [{}]}}]\n\
         peers: [{}]\n",
        key_hash(KEY),
        key_hash(JP_KEY),
        b.join(", "),
        peers.join(", ")
    )
}

fn tls_client(ca: &Path) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>> {
    let config = anshin_gateway::peer::tls::client_config(ca).expect("client config");
    let conn = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(conn)
}

/// One HTTPS request to the peer gateway; (status, body as JSON or Null).
async fn https(
    ca: &Path,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Result<(u16, Value), String> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("https://{addr}{path}"));
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let req = b
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(30), tls_client(ca).request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        serde_json::from_slice(&bytes.to_bytes()).unwrap_or(Value::Null),
    ))
}

/// The peer region: a gateway over TLS accepting region-a's token, in front of an echo backend.
async fn peer_region(dir: &Path, f: &Files, echo: &TestBackend) -> (Proc, PathBuf) {
    let routing_file = dir.join("peer-routing.yaml");
    write_routing(&routing_file, &routing(&[echo.addr.to_string()], &[]));
    let audit = dir.join("peer-audit.jsonl");
    let (tls_cert, tls_key, accept) = (
        f.cert.display().to_string(),
        f.key.display().to_string(),
        f.accept.display().to_string(),
    );
    let args = [
        "--tls-cert",
        &tls_cert,
        "--tls-key",
        &tls_key,
        "--accept-peer-token-file",
        &accept,
    ];
    let (mut cmd, addrs) = gateway_command(&routing_file, &audit, &args, &[]);
    let addr = addrs.api;
    let p = Proc {
        child: cmd.spawn().expect("spawn the peer gateway"),
        addr,
        metrics: addrs.metrics,
        name: "peer gateway".into(),
    };
    let start = Instant::now();
    while !matches!(
        https(&f.ca, addr, "GET", "/readyz", &[], String::new()).await,
        Ok((200, _))
    ) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "peer gateway not ready over TLS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (p, audit)
}

/// The local region: no live backend, forwarding to `peers` with region-a's token and the CA.
async fn local_region(dir: &Path, f: &Files, name: &str, peers: &[String]) -> Proc {
    let routing_file = dir.join(format!("{name}-routing.yaml"));
    write_routing(&routing_file, &routing(&[free_addr().to_string()], peers));
    let (ca, token) = (f.ca.display().to_string(), f.token.display().to_string());
    let args = ["--peer-ca-file", &ca, "--peer-token-file", &token];
    start_gateway_with(
        &routing_file,
        &dir.join(format!("{name}-audit.jsonl")),
        &args,
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peer_region_gets_placeholders_and_a_peer_token_and_the_caller_gets_its_own_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = files(dir.path());
    let echo = TestBackend::start(Mode::Echo).await;
    let (peer, peer_audit) = peer_region(dir.path(), &f, &echo).await;
    let local = local_region(
        dir.path(),
        &f,
        "local",
        &[format!("'https://{}'", peer.addr)],
    )
    .await;

    let whole = post(
        local.addr,
        "/v1/chat/completions",
        Some(KEY),
        &chat_body("med", PATIENT, false),
    )
    .await;
    assert_eq!(whole.status, 200, "{}", whole.body);
    assert_eq!(
        whole.json()["choices"][0]["message"]["content"],
        PATIENT,
        "restored by the local gateway"
    );
    let streamed = post(
        local.addr,
        "/v1/chat/completions",
        Some(KEY),
        &chat_body("med", PATIENT, true),
    )
    .await;
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    assert_eq!(
        streamed.streamed_text(),
        PATIENT,
        "restored while streaming"
    );

    let bodies = echo.bodies();
    assert_eq!(
        bodies.len(),
        2,
        "both requests reached the peer region's backend"
    );
    for b in &bodies {
        let text = b["messages"][0]["content"].as_str().unwrap_or_default();
        assert!(
            text.contains("〔氏名1〕") && text.contains("〔電話1〕"),
            "placeholders: {text}"
        );
        assert!(
            !text.contains("山田") && !text.contains("090-1234-5678"),
            "no raw PII: {text}"
        );
    }
    for h in echo.headers.lock().expect("lock").iter() {
        assert!(
            h.get("authorization").is_none(),
            "no key reached the peer's backend: {h:?}"
        );
    }
    let key_fp = fingerprint(&hash_key(KEY));
    let token_fp = fingerprint(&hash_key(PEER_TOKEN));
    let recs = wait_for_records(&peer_audit, Duration::from_secs(10), |r| {
        of_kind(r, "request").len() >= 2
    })
    .await;
    for r in of_kind(&recs, "request") {
        assert_eq!(r["tenant"], "hosp-a", "{r}");
        assert_eq!(r["origin"], "peer:region-a", "{r}");
        assert_eq!(
            r["key_fingerprint"],
            token_fp.as_str(),
            "the peer token, not the key: {r}"
        );
        assert_ne!(r["key_fingerprint"], key_fp.as_str());
        assert_eq!(r["status"], 200, "{r}");
    }
    let m = metrics_text(&local).await;
    assert_eq!(
        metric_sum(&m, "anshin_gateway_peer_forwards_total", &[]),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jp_tenant_is_never_forwarded_to_a_peer_of_another_residency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = files(dir.path());
    let echo = TestBackend::start(Mode::Echo).await;
    let (peer, _) = peer_region(dir.path(), &f, &echo).await;
    let url = format!("https://{}", peer.addr);
    let sg_only = local_region(
        dir.path(),
        &f,
        "sg",
        &[format!("{{url: '{url}', residency: sg}}")],
    )
    .await;

    let r = post(
        sg_only.addr,
        "/v1/chat/completions",
        Some(JP_KEY),
        &chat_body("med", PATIENT, false),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(msg, anshin_gateway::UNAVAILABLE_MESSAGE);
    assert!(
        echo.bodies().is_empty(),
        "nothing of a jp tenant left for the sg region"
    );
    let m = metrics_text(&sg_only).await;
    assert_eq!(
        metric_sum(
            &m,
            "anshin_gateway_peer_forward_refused_total",
            &["reason=\"residency\""]
        ),
        1.0
    );
    // A tenant without a residency may use the same peer.
    let r = post(
        sg_only.addr,
        "/v1/chat/completions",
        Some(KEY),
        &chat_body("med", "頭痛", false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // With a jp peer listed after the sg one, the jp tenant skips sg and is served by jp.
    let both = [
        format!("{{url: '{url}', residency: sg}}"),
        format!("{{url: '{url}', residency: jp}}"),
    ];
    let jp_too = local_region(dir.path(), &f, "jp", &both).await;
    let r = post(
        jp_too.addr,
        "/v1/chat/completions",
        Some(JP_KEY),
        &chat_body("med", "頭痛", false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = metrics_text(&jp_too).await;
    assert_eq!(
        metric_sum(&m, "anshin_gateway_peer_forwards_total", &[]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_request_without_a_valid_peer_token_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = files(dir.path());
    let echo = TestBackend::start(Mode::Echo).await;
    let (peer, _) = peer_region(dir.path(), &f, &echo).await;
    let body = chat_body("med", "頭痛", false).to_string();
    let chat = "/v1/chat/completions";
    // The tenant header alone is not honoured; a wrong token is refused; a right token for an
    // unknown tenant is refused too.
    for headers in [
        vec![("x-anshin-peer-tenant", "hosp-a")],
        vec![
            ("x-anshin-peer-token", "not-the-token"),
            ("x-anshin-peer-tenant", "hosp-a"),
        ],
        vec![
            ("x-anshin-peer-token", PEER_TOKEN),
            ("x-anshin-peer-tenant", "nobody"),
        ],
        vec![
            ("x-anshin-peer-token", "not-the-token"),
            ("authorization", "Bearer sk-hospital-a-key"),
        ],
    ] {
        let (status, v) = https(&f.ca, peer.addr, "POST", chat, &headers, body.clone())
            .await
            .expect("request");
        assert_eq!(status, 401, "{headers:?}: {v}");
    }
    assert!(
        echo.bodies().is_empty(),
        "nothing served without a valid peer token"
    );
    let ok = [
        ("x-anshin-peer-token", PEER_TOKEN),
        ("x-anshin-peer-tenant", "hosp-a"),
    ];
    let (status, v) = https(&f.ca, peer.addr, "POST", chat, &ok, body)
        .await
        .expect("request");
    assert_eq!(status, 200, "{v}");

    // A local gateway presenting a token the peer does not accept gets the safe 503 for its caller.
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "a-token-the-peer-region-does-not-accept-at-all").expect("write");
    let routing_file = dir.path().join("wrong-routing.yaml");
    write_routing(
        &routing_file,
        &routing(
            &[free_addr().to_string()],
            &[format!("'https://{}'", peer.addr)],
        ),
    );
    let (ca, token) = (f.ca.display().to_string(), wrong.display().to_string());
    let args = ["--peer-ca-file", &ca, "--peer-token-file", &token];
    let local = start_gateway_with(
        &routing_file,
        &dir.path().join("wrong-audit.jsonl"),
        &args,
        &[],
    )
    .await;
    let r = post(
        local.addr,
        chat,
        Some(KEY),
        &chat_body("med", "頭痛", false),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        echo.bodies().len(),
        1,
        "only the accepted request was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_https_peer_whose_certificate_does_not_chain_to_the_peer_ca_is_not_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = files(dir.path());
    let echo = TestBackend::start(Mode::Echo).await;
    let (peer, _) = peer_region(dir.path(), &f, &echo).await;
    // Another CA: the local gateway trusts it, not the one that signed the peer's certificate.
    let other = tempfile::tempdir().expect("tempdir");
    let g = files(other.path());
    let mixed = Files { ca: g.ca, ..f };
    let local = local_region(
        dir.path(),
        &mixed,
        "untrusted",
        &[format!("'https://{}'", peer.addr)],
    )
    .await;
    let r = post(
        local.addr,
        "/v1/chat/completions",
        Some(KEY),
        &chat_body("med", PATIENT, false),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        echo.bodies().is_empty(),
        "nothing sent over an unverified connection"
    );
}
