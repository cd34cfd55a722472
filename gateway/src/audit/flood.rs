//! Requests that never authenticated (401, and any refusal before a key was accepted) are not
//! written one record each — an anonymous flood would fill the disk and push real records out — but
//! counted per source and status, and written as one `unauthenticated` record per source and status
//! per interval.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use super::record::Unauthenticated;

/// The most sources counted one by one per interval; the rest are counted as `other`, so that a
/// flood from many addresses cannot grow the table without bound.
pub const MAX_SOURCES: usize = 10_000;

/// Counts for the current interval.
pub(super) struct Flood {
    interval: Duration,
    window: Mutex<Window>,
}

struct Window {
    started: jiff::Timestamp,
    counts: HashMap<(String, u16), Tally>,
}

#[derive(Default)]
struct Tally {
    count: u64,
    outcomes: BTreeMap<String, u64>,
}

/// The source an unauthenticated request is counted under: the IPv4 address, or the IPv6 `/64`
/// (one host usually holds a whole `/64`); `unknown` when the peer address is not known.
pub fn source_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
        None => "unknown".into(),
    }
}

impl Flood {
    /// Counts over intervals of `interval`.
    pub(super) fn new(interval: Duration) -> Flood {
        Flood {
            interval,
            window: Mutex::new(Window {
                started: jiff::Timestamp::now(),
                counts: HashMap::new(),
            }),
        }
    }

    /// Counts one unauthenticated request.
    pub(super) fn count(&self, source: Option<IpAddr>, status: u16, outcome: &str) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = (source_key(source), status);
        if !w.counts.contains_key(&key) && w.counts.len() >= MAX_SOURCES {
            key.0 = "other".into();
        }
        let t = w.counts.entry(key).or_default();
        t.count += 1;
        *t.outcomes.entry(outcome.to_owned()).or_default() += 1;
    }

    /// The records of the interval so far (sorted by source and status); starts a new interval.
    pub(super) fn take(&self) -> Vec<Unauthenticated> {
        let (started, counts) = {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let started = std::mem::replace(&mut w.started, jiff::Timestamp::now());
            (started, std::mem::take(&mut w.counts))
        };
        let mut records: Vec<Unauthenticated> = counts
            .into_iter()
            .map(|((source, status), t)| Unauthenticated {
                time: started.to_string(),
                interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
                source,
                status,
                count: t.count,
                outcomes: t.outcomes,
            })
            .collect();
        records.sort_by(|a, b| (&a.source, a.status).cmp(&(&b.source, b.status)));
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_counts_per_address_and_ipv6_per_64() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        assert_eq!(source_key(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(
            source_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(source_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(source_key(None), "unknown");
    }

    #[test]
    fn one_record_per_source_and_status_with_counts_by_outcome() {
        let f = Flood::new(Duration::from_secs(10));
        let a = "2001:db8::1".parse().ok();
        let b = "2001:db8::2".parse().ok();
        for _ in 0..3 {
            f.count(a, 401, "invalid_api_key");
        }
        f.count(b, 401, "missing_api_key");
        f.count(a, 400, "invalid_request");
        let r = f.take();
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!((r[0].status, r[0].count), (400, 1));
        assert_eq!((r[1].status, r[1].count), (401, 4));
        assert_eq!(r[1].source, "2001:db8::/64");
        assert_eq!(r[1].outcomes["invalid_api_key"], 3);
        assert_eq!(r[1].outcomes["missing_api_key"], 1);
        assert_eq!(r[1].interval_ms, 10_000);
        assert!(f.take().is_empty(), "a new interval starts empty");
    }

    #[test]
    fn sources_beyond_the_cap_are_counted_as_other() {
        let f = Flood::new(Duration::from_secs(1));
        for i in 0..(MAX_SOURCES as u32 + 5) {
            f.count(Some(IpAddr::from(i.to_be_bytes())), 401, "invalid_api_key");
        }
        let r = f.take();
        assert_eq!(r.len(), MAX_SOURCES + 1);
        let other = r.iter().find(|x| x.source == "other").expect("other");
        assert_eq!(other.count, 5);
    }
}
