//! Active health checks: every backend of the current routing table gets `GET /readyz` each interval;
//! a failing check takes it out of rotation until a check passes again. Passive checks (connection
//! failures, 5xx before the first byte) live in [`crate::proxy`].

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

use crate::server::Gateway;

/// Runs forever (the caller aborts it): checks every backend, then updates the healthy gauge.
pub async fn run(gw: Gateway) {
    let interval = gw.inner.options.health_interval;
    loop {
        check_all(&gw, interval.min(Duration::from_secs(2))).await;
        tokio::time::sleep(interval).await;
    }
}

async fn check_all(gw: &Gateway, timeout: Duration) {
    let snap = gw.inner.table.get();
    let addrs: BTreeSet<&String> = snap
        .endpoints
        .values()
        .flat_map(|e| e.versions.iter())
        .flat_map(|v| &v.backends)
        .collect();
    gw.inner.proxy.backends.retain(&addrs);
    let checks = addrs.into_iter().map(|addr| async move {
        let ok = probe(gw, addr, timeout).await;
        if !ok {
            gw.inner.metrics.health_check_failures.inc();
        }
        gw.inner.proxy.backends.set_active(addr, ok);
    });
    futures::future::join_all(checks).await;
    for ep in snap.endpoints.values() {
        for v in &ep.versions {
            let healthy = v
                .backends
                .iter()
                .filter(|b| gw.inner.proxy.backends.is_healthy(b))
                .count();
            gw.inner
                .metrics
                .backends_healthy
                .with_label_values(&[&ep.id, &v.name])
                .set(healthy as i64);
        }
    }
}

async fn probe(gw: &Gateway, addr: &str, timeout: Duration) -> bool {
    let Ok(req) = Request::get(format!("http://{addr}/readyz")).body(Full::new(Bytes::new()))
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, gw.inner.proxy.client.request(req)).await,
        Ok(Ok(r)) if r.status() == StatusCode::OK
    )
}
