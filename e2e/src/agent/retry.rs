//! How the agent's API requests are bounded and retried: a timeout per request (a paused API server
//! would hold a request until it resumes) and exponential back-off after failures, capped so that a
//! recovered API server is used again within one regular period.

use std::time::Duration;

/// Upper bound of one heartbeat or status request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The first retry after a failure comes this soon; each further failure doubles it.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);

/// The pause before the next try after `failures` consecutive failures (0: the regular `period`):
/// 250 ms, 500 ms, 1 s … capped at `period` (pure).
pub fn retry_delay(failures: u32, period: Duration) -> Duration {
    if failures == 0 {
        return period;
    }
    FIRST_RETRY
        .saturating_mul(1 << (failures - 1).min(16))
        .min(period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_fast_and_double_up_to_the_period() {
        let every = Duration::from_secs(3);
        let delays: Vec<u128> = (0..7).map(|f| retry_delay(f, every).as_millis()).collect();
        assert_eq!(delays, [3000, 250, 500, 1000, 2000, 3000, 3000]);
        assert_eq!(retry_delay(u32::MAX, every), every, "no overflow");
    }
}
