//! Static stability: the data path does not depend on the control plane being right *now*.
//!
//! When the Kubernetes view drops every backend of an endpoint at once, the usual cause is the
//! control plane itself (after an API-server or etcd outage the node controller marks every pod of a
//! node NotReady until the node agent reports again), not the model servers. Answering 503 to hospitals
//! then would turn a control-plane hiccup into an outage. So a rebuilt snapshot goes through
//! [`keep_last_good`] (pure): an endpoint left with no backend at all keeps the backends it had in the
//! previous snapshot, as long as each one's pod still exists and is not being deleted (a deletion is a
//! decision, not a hiccup) and it passes the gateway's own active checks. Such an endpoint is listed in
//! [`Snapshot::held`] and reported (metric, warning, `/readyz` detail). A backend the API never
//! reported Ready is never added: new backends still need the control plane's readiness.

use std::sync::Arc;

use crate::table::{Endpoint, Snapshot, Version};

/// What the decision needs to know about one backend address besides the snapshots.
pub trait BackendFacts {
    /// Its pod still exists in the API's last view and is not being deleted.
    fn present(&self, addr: &str) -> bool;
    /// It passed the gateway's latest active check and is not ejected by a passive one.
    fn passes_checks(&self, addr: &str) -> bool;
}

fn has_backends(ep: &Endpoint) -> bool {
    ep.versions.iter().any(|v| !v.backends.is_empty())
}

/// The previous versions of an endpoint, reduced to the backends that may still be served.
fn survivors(previous: &Endpoint, facts: &dyn BackendFacts) -> Vec<Version> {
    previous
        .versions
        .iter()
        .map(|v| Version {
            backends: v
                .backends
                .iter()
                .filter(|b| facts.present(b) && facts.passes_checks(b))
                .cloned()
                .collect(),
            ..v.clone()
        })
        .filter(|v| !v.backends.is_empty())
        .collect()
}

/// `next` with every endpoint that lost all its backends given back the previous snapshot's backends
/// that are present and pass the gateway's checks; those endpoints are listed in `held` (sorted).
/// Policy, backend key and everything else come from `next`: only the backends are remembered.
pub fn keep_last_good(
    previous: &Snapshot,
    mut next: Snapshot,
    facts: &dyn BackendFacts,
) -> Snapshot {
    let mut held = Vec::new();
    for (id, ep) in next.endpoints.iter_mut() {
        if has_backends(ep) {
            continue;
        }
        let Some(prev) = previous.endpoints.get(id) else {
            continue;
        };
        let versions = survivors(prev, facts);
        if versions.is_empty() {
            continue;
        }
        let mut kept = Endpoint::clone(ep);
        kept.versions = versions;
        *ep = Arc::new(kept);
        held.push(id.clone());
    }
    next.held = held;
    next
}

/// How many backends of `ep` are served on last known good in `snap` (0 unless it is held).
pub fn held_backends(snap: &Snapshot, id: &str) -> usize {
    if !snap.held.iter().any(|h| h == id) {
        return 0;
    }
    snap.endpoints
        .get(id)
        .map_or(0, |e| e.versions.iter().map(|v| v.backends.len()).sum())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::table::Policy;

    struct Facts {
        present: HashSet<&'static str>,
        passing: HashSet<&'static str>,
    }

    impl BackendFacts for Facts {
        fn present(&self, addr: &str) -> bool {
            self.present.contains(addr)
        }
        fn passes_checks(&self, addr: &str) -> bool {
            self.passing.contains(addr)
        }
    }

    fn facts(present: &[&'static str], passing: &[&'static str]) -> Facts {
        Facts {
            present: present.iter().copied().collect(),
            passing: passing.iter().copied().collect(),
        }
    }

    fn snap(backends: &[(&str, &[&str])]) -> Snapshot {
        let versions = backends
            .iter()
            .map(|(name, addrs)| Version {
                name: (*name).into(),
                digest: None,
                weight: 100,
                backends: addrs.iter().map(|a| (*a).to_string()).collect(),
            })
            .collect();
        let ep = Endpoint {
            id: "ns/chat".into(),
            namespace: Some("ns".into()),
            name: "chat".into(),
            policy: Policy::default(),
            versions,
            backend_auth: None,
        };
        let mut s = Snapshot::default();
        s.endpoints.insert(ep.id.clone(), Arc::new(ep));
        s
    }

    fn backends(s: &Snapshot) -> Vec<String> {
        s.endpoints["ns/chat"]
            .versions
            .iter()
            .flat_map(|v| v.backends.clone())
            .collect()
    }

    #[test]
    fn an_endpoint_the_control_plane_emptied_keeps_its_healthy_present_backends() {
        let prev = snap(&[("v1", &["a:1", "b:1"])]);
        let next = snap(&[("v1", &[])]);
        let out = keep_last_good(&prev, next, &facts(&["a:1", "b:1"], &["a:1", "b:1"]));
        assert_eq!(backends(&out), ["a:1", "b:1"]);
        assert_eq!(out.held, ["ns/chat"]);
        assert_eq!(held_backends(&out, "ns/chat"), 2);
    }

    #[test]
    fn a_backend_failing_the_gateways_checks_or_being_deleted_is_not_kept() {
        let prev = snap(&[("v1", &["a:1", "b:1", "c:1"])]);
        let next = snap(&[("v1", &[])]);
        // b fails its active check; c's pod is gone or terminating.
        let out = keep_last_good(&prev, next, &facts(&["a:1", "b:1"], &["a:1", "c:1"]));
        assert_eq!(backends(&out), ["a:1"]);
        let none = keep_last_good(&prev, snap(&[("v1", &[])]), &facts(&["b:1"], &["c:1"]));
        assert!(backends(&none).is_empty() && none.held.is_empty());
    }

    #[test]
    fn an_endpoint_with_any_ready_backend_follows_the_control_plane() {
        let prev = snap(&[("v1", &["a:1", "b:1"])]);
        let next = snap(&[("v1", &["b:1"])]);
        let out = keep_last_good(&prev, next, &facts(&["a:1", "b:1"], &["a:1", "b:1"]));
        assert_eq!(backends(&out), ["b:1"], "a partial drop is a real decision");
        assert!(out.held.is_empty());
    }

    #[test]
    fn a_deleted_endpoint_and_a_new_backend_are_never_invented() {
        let prev = snap(&[("v1", &["a:1"])]);
        let out = keep_last_good(&prev, Snapshot::default(), &facts(&["a:1"], &["a:1"]));
        assert!(out.endpoints.is_empty(), "a deleted endpoint stays deleted");
        let first = keep_last_good(
            &Snapshot::default(),
            snap(&[("v1", &[])]),
            &facts(&["a:1"], &["a:1"]),
        );
        assert!(
            backends(&first).is_empty(),
            "never Ready in the API: not served"
        );
    }

    #[test]
    fn holding_carries_over_rebuilds_until_the_api_reports_ready_again() {
        let f = facts(&["a:1"], &["a:1"]);
        let held = keep_last_good(&snap(&[("v1", &["a:1"])]), snap(&[("v1", &[])]), &f);
        let still = keep_last_good(&held, snap(&[("v1", &[])]), &f);
        assert_eq!(backends(&still), ["a:1"]);
        let back = keep_last_good(&still, snap(&[("v2", &["z:1"])]), &f);
        assert_eq!(backends(&back), ["z:1"]);
        assert!(back.held.is_empty());
    }
}
