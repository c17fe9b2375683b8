//! How many rounds of ownership queries the plays waiting on this origin may send per
//! second (`--owner-query-rate`). A round asks every coworker once, so the rate bounds
//! what each coworker answers for this origin's waiting plays, however many wait.
//!
//! A play's first question is never held back (a cold play must find its owner at once)
//! but it spends a token when one is there, so re-asks give way to new plays: each
//! coworker sees at most `max(rate, new plays per second)` rounds from this origin.
//! See docs/architecture.md, "Limits and hostile input".

use std::sync::Mutex;
use std::time::Instant;

/// A token bucket of query rounds; a burst of up to one second's worth.
pub struct QueryBudget {
    /// Rounds per second; 0 = no limit.
    rate: f64,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl QueryBudget {
    pub fn new(rate: f64) -> Self {
        Self {
            rate,
            state: Mutex::new(Bucket {
                tokens: rate,
                refilled: Instant::now(),
            }),
        }
    }

    fn bucket(&self, now: Instant) -> std::sync::MutexGuard<'_, Bucket> {
        let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.rate);
        b.refilled = now;
        b
    }

    /// A play's first round: always allowed; spends a token if there is one.
    pub fn first_round(&self) {
        self.first_round_at(Instant::now());
    }

    fn first_round_at(&self, now: Instant) {
        if self.rate > 0.0 {
            let mut b = self.bucket(now);
            b.tokens = (b.tokens - 1.0).max(0.0);
        }
    }

    /// A re-ask round: allowed only when a token is there.
    pub fn try_reask(&self) -> bool {
        self.try_reask_at(Instant::now())
    }

    fn try_reask_at(&self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let mut b = self.bucket(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn re_asks_are_held_to_the_rate_and_give_way_to_first_rounds() {
        let b = QueryBudget::new(10.0);
        let t0 = Instant::now();
        let granted = (0..100).filter(|_| b.try_reask_at(t0)).count();
        assert_eq!(granted, 10, "a burst of one second's worth");
        // Over the next 5 s, polled every 10 ms: 10 per second.
        let mut granted = 0;
        for i in 1..=500 {
            if b.try_reask_at(t0 + Duration::from_millis(10 * i)) {
                granted += 1;
            }
        }
        assert!((49..=51).contains(&granted), "{granted}");
        // First rounds always go, and use up what re-asks would have had.
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..20 {
            b.first_round_at(t1);
        }
        assert!(!b.try_reask_at(t1));
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let b = QueryBudget::new(0.0);
        let now = Instant::now();
        b.first_round_at(now);
        assert!((0..1000).all(|_| b.try_reask_at(now)));
    }
}
