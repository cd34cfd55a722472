//! Choosing where a request goes: a version by weight, then that version's backend with the fewest
//! requests in flight among the healthy ones not yet tried. Backend state (in-flight count, passive
//! ejection, active check result) is keyed by address and survives routing-table reloads.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::table::{Endpoint, Version};

/// How long a backend is skipped after a connection failure or a 5xx before the first byte.
pub const EJECT_FOR: Duration = Duration::from_secs(5);

/// Live state of one backend address.
#[derive(Debug)]
pub struct BackendState {
    in_flight: AtomicUsize,
    ejected_until_ms: AtomicU64,
    active_ok: AtomicBool,
    checked: AtomicBool,
}

impl BackendState {
    /// Requests in flight to this backend.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Every backend's state, shared by the request path and the health checker.
#[derive(Debug, Clone)]
pub struct Backends {
    states: Arc<Mutex<HashMap<String, Arc<BackendState>>>>,
    epoch: Instant,
}

impl Default for Backends {
    fn default() -> Self {
        Backends {
            states: Arc::default(),
            epoch: Instant::now(),
        }
    }
}

/// A chosen backend; counts as in flight until dropped.
#[derive(Debug)]
pub struct Lease {
    /// The version it serves.
    pub version: Version,
    /// Its address.
    pub addr: String,
    state: Arc<BackendState>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Backends {
    /// An empty registry.
    pub fn new() -> Backends {
        Backends::default()
    }

    /// The state of `addr`, created healthy on first sight.
    pub fn state(&self, addr: &str) -> Arc<BackendState> {
        let mut map = match self.states.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.entry(addr.to_owned())
            .or_insert_with(|| {
                Arc::new(BackendState {
                    in_flight: AtomicUsize::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                    active_ok: AtomicBool::new(true),
                    checked: AtomicBool::new(false),
                })
            })
            .clone()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether `addr` is neither ejected nor failing its active check.
    pub fn is_healthy(&self, addr: &str) -> bool {
        let s = self.state(addr);
        s.active_ok.load(Ordering::Relaxed)
            && s.ejected_until_ms.load(Ordering::Relaxed) <= self.now_ms()
    }

    /// Whether `addr` has passed an active check, passed the latest one and is not ejected (an address
    /// never checked does not count: this is what keeps a backend the control plane dropped).
    pub fn passes_checks(&self, addr: &str) -> bool {
        let map = match self.states.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.get(addr).is_some_and(|s| {
            s.checked.load(Ordering::Relaxed)
                && s.active_ok.load(Ordering::Relaxed)
                && s.ejected_until_ms.load(Ordering::Relaxed) <= self.now_ms()
        })
    }

    /// Passive check: skip `addr` for [`EJECT_FOR`].
    pub fn eject(&self, addr: &str) {
        let until = self.now_ms() + EJECT_FOR.as_millis() as u64;
        self.state(addr)
            .ejected_until_ms
            .store(until, Ordering::Relaxed);
    }

    /// Active check result for `addr`; a passing check also lifts a passive ejection.
    pub fn set_active(&self, addr: &str, ok: bool) {
        let s = self.state(addr);
        s.active_ok.store(ok, Ordering::Relaxed);
        s.checked.store(true, Ordering::Relaxed);
        if ok {
            s.ejected_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Forgets backends that are no longer in the routing table and have nothing in flight, so the
    /// registry does not grow as pods come and go.
    pub fn retain(&self, current: &std::collections::BTreeSet<&String>) {
        let mut map = match self.states.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.retain(|addr, s| current.contains(addr) || s.in_flight() > 0);
    }

    /// Picks a backend for `ep` that is not in `tried`: a version by weight among those with a
    /// healthy untried backend, then its least-loaded healthy backend. Versions of weight 0 and
    /// unhealthy backends are used only when nothing else is left.
    pub fn pick(&self, ep: &Endpoint, tried: &HashSet<String>) -> Option<Lease> {
        let passes: [(bool, bool); 3] = [(true, true), (false, true), (false, false)];
        for (weighted, healthy) in passes {
            let cands: Vec<(&Version, Vec<&String>)> = ep
                .versions
                .iter()
                .filter(|v| !weighted || v.weight > 0)
                .map(|v| (v, self.usable(v, tried, healthy)))
                .filter(|(_, b)| !b.is_empty())
                .collect();
            if let Some((v, backends)) = choose_weighted(&cands) {
                let addr = self.least_loaded(backends);
                let state = self.state(addr);
                state.in_flight.fetch_add(1, Ordering::Relaxed);
                return Some(Lease {
                    version: (*v).clone(),
                    addr: addr.clone(),
                    state,
                });
            }
        }
        None
    }

    fn usable<'v>(
        &self,
        v: &'v Version,
        tried: &HashSet<String>,
        healthy: bool,
    ) -> Vec<&'v String> {
        v.backends
            .iter()
            .filter(|b| !tried.contains(*b) && (!healthy || self.is_healthy(b)))
            .collect()
    }

    fn least_loaded<'a>(&self, backends: &[&'a String]) -> &'a String {
        let loads: Vec<usize> = backends.iter().map(|b| self.state(b).in_flight()).collect();
        let min = loads.iter().copied().min().unwrap_or(0);
        let ties: Vec<&'a String> = backends
            .iter()
            .zip(&loads)
            .filter(|(_, l)| **l == min)
            .map(|(b, _)| *b)
            .collect();
        ties[rand::rng().random_range(0..ties.len())]
    }
}

/// Weighted random choice; when every weight is 0, a uniform choice.
fn choose_weighted<'a, 'v>(
    cands: &'a [(&'v Version, Vec<&'v String>)],
) -> Option<&'a (&'v Version, Vec<&'v String>)> {
    if cands.is_empty() {
        return None;
    }
    let total: u64 = cands.iter().map(|(v, _)| u64::from(v.weight)).sum();
    let mut rng = rand::rng();
    if total == 0 {
        return cands.get(rng.random_range(0..cands.len()));
    }
    let mut x = rng.random_range(0..total);
    for c in cands {
        let w = u64::from(c.0.weight);
        if x < w {
            return Some(c);
        }
        x -= w;
    }
    cands.last()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Policy;

    fn ep(versions: &[(&str, u32, &[&str])]) -> Endpoint {
        Endpoint {
            id: "m".into(),
            namespace: None,
            name: "m".into(),
            backend_auth: None,
            policy: Policy::default(),
            versions: versions
                .iter()
                .map(|(n, w, b)| Version {
                    name: (*n).into(),
                    digest: None,
                    weight: *w,
                    backends: b.iter().map(|s| (*s).to_string()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn weights_split_traffic_and_zero_weight_gets_none() {
        let b = Backends::new();
        let e = ep(&[("v1", 3, &["a"]), ("v2", 1, &["b"]), ("v3", 0, &["c"])]);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..4000 {
            let l = b.pick(&e, &HashSet::new()).expect("a backend");
            *counts.entry(l.version.name.clone()).or_default() += 1;
        }
        let v1 = counts.get("v1").copied().unwrap_or(0);
        assert!((2700..3300).contains(&v1), "{counts:?}");
        assert_eq!(counts.get("v3"), None);
    }

    #[test]
    fn prefers_least_loaded_and_skips_tried_and_ejected() {
        let b = Backends::new();
        let e = ep(&[("v1", 1, &["a", "b"])]);
        let held = b.pick(&e, &HashSet::new()).expect("first");
        let other = b.pick(&e, &HashSet::new()).expect("second");
        assert_ne!(
            held.addr, other.addr,
            "least loaded goes to the idle backend"
        );
        drop((held, other));
        b.eject("a");
        assert_eq!(
            b.pick(&e, &HashSet::new()).map(|l| l.addr.clone()),
            Some("b".into())
        );
        let tried: HashSet<String> = ["b".to_string()].into();
        assert_eq!(
            b.pick(&e, &tried).map(|l| l.addr.clone()),
            Some("a".into()),
            "ejected is the last resort"
        );
        let all: HashSet<String> = ["a".to_string(), "b".to_string()].into();
        assert!(b.pick(&e, &all).is_none());
    }

    #[test]
    fn falls_back_to_zero_weight_version_when_weighted_ones_are_exhausted() {
        let b = Backends::new();
        let e = ep(&[("v1", 1, &["a"]), ("v2", 0, &["b"])]);
        let tried: HashSet<String> = ["a".to_string()].into();
        assert_eq!(
            b.pick(&e, &tried).map(|l| l.version.name.clone()),
            Some("v2".into())
        );
    }
}
