//! Per-tenant limits: requests per minute and tokens per minute as token buckets refilled
//! continuously (a full minute's allowance at most), and concurrent requests as a counter released
//! by a guard. Tokens are charged as they are known — the prompt estimate on admission, the
//! completion one chunk at a time as it streams — so a bucket can go into debt; the next request
//! then waits until the debt is paid back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::ApiError;
use crate::table::Limits;

#[derive(Debug)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_minute: u64, now: Instant) -> Bucket {
        Bucket {
            level: per_minute as f64,
            at: now,
        }
    }

    fn refill(&mut self, per_minute: u64, now: Instant) {
        let rate = per_minute as f64 / 60.0;
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * rate).min(per_minute as f64);
        self.at = now;
    }

    /// Seconds until the level reaches `need`.
    fn wait_s(&self, per_minute: u64, need: f64) -> u64 {
        let rate = per_minute as f64 / 60.0;
        ((need - self.level) / rate).ceil().max(1.0) as u64
    }
}

#[derive(Debug)]
struct TenantState {
    requests: Bucket,
    tokens: Bucket,
    in_flight: u64,
}

/// Limit state of every tenant, kept across routing-table reloads.
#[derive(Debug, Clone, Default)]
pub struct Limiter {
    state: Arc<Mutex<HashMap<String, TenantState>>>,
}

/// Holds one concurrency slot of a tenant; releases it on drop.
#[derive(Debug)]
pub struct Permit {
    limiter: Limiter,
    tenant: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.with(&self.tenant, Limits::default(), |s| {
            s.in_flight = s.in_flight.saturating_sub(1)
        });
    }
}

impl Limiter {
    /// A limiter with no state.
    pub fn new() -> Limiter {
        Limiter::default()
    }

    fn with<R>(&self, tenant: &str, limits: Limits, f: impl FnOnce(&mut TenantState) -> R) -> R {
        let mut map = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let now = Instant::now();
        let st = map.entry(tenant.to_owned()).or_insert_with(|| TenantState {
            requests: Bucket::full(limits.requests_per_minute, now),
            tokens: Bucket::full(limits.tokens_per_minute, now),
            in_flight: 0,
        });
        f(st)
    }

    /// Admits one request estimated at `prompt_tokens`, or says which limit refuses it and for how
    /// long.
    pub fn admit(
        &self,
        tenant: &str,
        limits: Limits,
        prompt_tokens: u64,
    ) -> Result<Permit, ApiError> {
        let now = Instant::now();
        self.with(tenant, limits, |s| {
            if limits.max_concurrent > 0 && s.in_flight >= limits.max_concurrent {
                return Err(ApiError::RateLimited {
                    limit: "max_concurrent",
                    retry_after_s: 1,
                });
            }
            if limits.requests_per_minute > 0 {
                s.requests.refill(limits.requests_per_minute, now);
                if s.requests.level < 1.0 {
                    let wait = s.requests.wait_s(limits.requests_per_minute, 1.0);
                    return Err(ApiError::RateLimited {
                        limit: "requests_per_minute",
                        retry_after_s: wait,
                    });
                }
            }
            if limits.tokens_per_minute > 0 {
                s.tokens.refill(limits.tokens_per_minute, now);
                if s.tokens.level <= 0.0 {
                    let wait = s.tokens.wait_s(limits.tokens_per_minute, 1.0);
                    return Err(ApiError::RateLimited {
                        limit: "tokens_per_minute",
                        retry_after_s: wait,
                    });
                }
                s.tokens.level -= prompt_tokens as f64;
            }
            if limits.requests_per_minute > 0 {
                s.requests.level -= 1.0;
            }
            s.in_flight += 1;
            Ok(())
        })?;
        Ok(Permit {
            limiter: self.clone(),
            tenant: tenant.to_owned(),
        })
    }

    /// Charges `tokens` (completion tokens as they stream, or a correction) to the tenant.
    pub fn charge(&self, tenant: &str, limits: Limits, tokens: i64) {
        if limits.tokens_per_minute == 0 || tokens == 0 {
            return;
        }
        let now = Instant::now();
        self.with(tenant, limits, |s| {
            s.tokens.refill(limits.tokens_per_minute, now);
            s.tokens.level -= tokens as f64;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: u64, tpm: u64, conc: u64) -> Limits {
        Limits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            max_concurrent: conc,
        }
    }

    #[test]
    fn requests_per_minute_refuses_with_retry_after() {
        let l = Limiter::new();
        let lim = limits(2, 0, 0);
        let _a = l.admit("t", lim, 0).expect("first");
        let _b = l.admit("t", lim, 0).expect("second");
        match l.admit("t", lim, 0) {
            Err(ApiError::RateLimited {
                limit,
                retry_after_s,
            }) => {
                assert_eq!(limit, "requests_per_minute");
                assert!((1..=30).contains(&retry_after_s), "{retry_after_s}");
            }
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(l.admit("other", lim, 0).is_ok(), "tenants are independent");
    }

    #[test]
    fn concurrency_slot_is_released_on_drop() {
        let l = Limiter::new();
        let lim = limits(0, 0, 1);
        let p = l.admit("t", lim, 0).expect("first");
        assert!(l.admit("t", lim, 0).is_err());
        drop(p);
        assert!(l.admit("t", lim, 0).is_ok());
    }

    #[test]
    fn streamed_completion_tokens_exhaust_the_token_budget() {
        let l = Limiter::new();
        let lim = limits(0, 100, 0);
        drop(l.admit("t", lim, 10).expect("budget left"));
        for _ in 0..95 {
            l.charge("t", lim, 1);
        }
        match l.admit("t", lim, 1) {
            Err(ApiError::RateLimited { limit, .. }) => assert_eq!(limit, "tokens_per_minute"),
            other => panic!("expected 429, got {other:?}"),
        }
    }
}
