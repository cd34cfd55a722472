//! The PromQL path of canary analysis against the real Prometheus (Debian package, installed by
//! scripts/setup.d/50-operator.sh): Prometheus scrapes a loopback page in the gateway's metric format
//! every second while the page's counters move, and the window built from its query answers
//! (`WindowQueries` + `Promql::scalar`) is judged the same as the window built from the two pages
//! themselves (`Deltas`): same error rate, same p95, counts within Prometheus' extrapolation.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anshin_e2e::fixture::eventually;
use anshin_e2e::process::ManagedProcess;
use anshin_operator::endpoint::canary::queries::{WindowQueries, window_from_values};
use anshin_operator::endpoint::canary::window::Deltas;
use anshin_operator::signals::prometheus::parse;
use anshin_operator::signals::promql::Promql;
use support::free_port;

/// A gateway's metrics page for endpoint `ns/chat`, version `v2`: `ok` and `failed` attempts, `fast`
/// answers under 100 ms and `slow` ones under 1 s.
fn page(ok: u64, failed: u64, fast: u64, slow: u64) -> String {
    let l = r#"endpoint="ns/chat",version="v2""#;
    format!(
        "# TYPE anshin_gateway_backend_attempts_total counter\n\
         anshin_gateway_backend_attempts_total{{{l},outcome=\"ok\"}} {ok}\n\
         anshin_gateway_backend_attempts_total{{{l},outcome=\"server_error\"}} {failed}\n\
         # TYPE anshin_gateway_requests_total counter\n\
         anshin_gateway_requests_total{{tenant=\"ns/t\",{l},status_class=\"2xx\"}} {ok}\n\
         # TYPE anshin_gateway_request_duration_seconds histogram\n\
         anshin_gateway_request_duration_seconds_bucket{{{l},le=\"0.1\"}} {fast}\n\
         anshin_gateway_request_duration_seconds_bucket{{{l},le=\"1\"}} {}\n\
         anshin_gateway_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}\n\
         anshin_gateway_request_duration_seconds_sum{{{l}}} 1\n\
         anshin_gateway_request_duration_seconds_count{{{l}}} {}\n",
        fast + slow,
        fast + slow,
        fast + slow
    )
}

async fn serve(body: Arc<Mutex<String>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = body.clone();
            async move { body.lock().expect("lock").clone() }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_from_prometheus_is_judged_like_one_from_the_scrapes() {
    let prometheus = which("prometheus").unwrap_or_else(|| {
        panic!("prometheus is not installed: run scripts/setup.sh (scripts/setup.d/50-operator.sh)")
    });
    let dir = tempfile::tempdir().expect("dir");
    let body = Arc::new(Mutex::new(page(100, 5, 100, 0)));
    let target = serve(body.clone()).await;
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: gateway\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
        ),
    )
    .expect("config");
    let web = free_port();
    let mut cmd = std::process::Command::new(prometheus);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"));
    let mut process =
        ManagedProcess::spawn("prometheus", &mut cmd, &dir.path().join("prometheus.log"))
            .expect("prometheus starts");
    let promql = Promql::new(&format!("http://127.0.0.1:{web}"), Duration::from_secs(2));
    eventually(
        "Prometheus to scrape the page",
        Duration::from_secs(60),
        || async {
            let up = promql.scalar("sum(up)").await.ok()??;
            let seen = promql
                .scalar("sum(anshin_gateway_backend_attempts_total)")
                .await
                .ok()??;
            (up == 1.0 && seen == 105.0).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The window: 100 attempts, 30 of them failed, 90 answers fast and 10 slow. Every counter starts
    // above zero, as a gateway's do after its first minutes: Prometheus' `increase` does not
    // extrapolate a series below zero, so one that starts at 0 would be scaled differently.
    let (before, after) = (page(100, 5, 100, 0), page(170, 35, 190, 10));
    *body.lock().expect("lock") = after.clone();
    let q = WindowQueries::new("ns/chat", "v2", 30);
    let value = |expr: String| {
        let promql = promql.clone();
        async move { promql.scalar(&expr).await.expect("query") }
    };
    let from_prometheus = eventually(
        "Prometheus to see the new page",
        Duration::from_secs(30),
        || async {
            let w = window_from_values(
                value(q.attempts.clone()).await,
                value(q.failed.clone()).await,
                value(q.answers.clone()).await,
                value(q.leak_answers.clone()).await,
                value(q.p95_latency.clone()).await,
                value(q.ttft_p95.clone()).await,
            );
            (w.failed >= 25 && w.attempts >= 80).then_some(w)
        },
    )
    .await;
    let mut deltas = Deltas::default();
    deltas.add(
        &parse(&before).expect("page"),
        &parse(&after).expect("page"),
        "ns/chat",
        "v2",
    );
    let from_scrapes = deltas.window();
    println!("from Prometheus: {from_prometheus:?}\nfrom the scrapes: {from_scrapes:?}");
    assert!(
        (from_prometheus.error_rate() - from_scrapes.error_rate()).abs() < 0.02,
        "error rate {} vs {}",
        from_prometheus.error_rate(),
        from_scrapes.error_rate()
    );
    let (p, s) = (
        from_prometheus.p95_latency_ms.expect("p95 from Prometheus"),
        from_scrapes.p95_latency_ms.expect("p95 from scrapes"),
    );
    assert!((p - s).abs() < 1.0, "p95 {p} ms vs {s} ms");
    let ratio = from_prometheus.attempts as f64 / from_scrapes.attempts as f64;
    assert!(
        (0.75..=1.5).contains(&ratio),
        "attempts {from_prometheus:?} vs {from_scrapes:?}"
    );
    assert_eq!(
        from_prometheus.ttft_p95_ms, None,
        "no streamed answers: no TTFT"
    );
    process.stop(Duration::from_secs(5)).await;
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| p.is_file())
}
