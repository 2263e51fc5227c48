//! Exponential back-off with jitter for transient errors, bounded by attempts and elapsed time.
//!
//! Waits double from `initial` up to `max_delay`, each drawn from [d/2, d] ("equal jitter", so
//! callers never hammer in lockstep yet always pause), everything multiplied by the time scale. A
//! retry is skipped when it would start after `max_elapsed`.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::{PveError, RetryPolicy};

/// Shared source of jitter (not security relevant: only spreads retries apart).
pub(crate) struct Jitter(Mutex<StdRng>);

impl Jitter {
    pub(crate) fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Jitter::seeded(nanos as u64 ^ u64::from(std::process::id()).rotate_left(32))
    }
    pub(crate) fn seeded(seed: u64) -> Self {
        Jitter(Mutex::new(StdRng::seed_from_u64(seed)))
    }
    /// A fraction in [0, 1).
    fn fraction(&self) -> f64 {
        match self.0.lock() {
            Ok(mut rng) => rng.random::<f64>(),
            Err(poisoned) => poisoned.into_inner().random::<f64>(),
        }
    }
}

fn scaled(duration: Duration, time_scale: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * time_scale.max(0.0))
        .unwrap_or(Duration::MAX)
}

impl RetryPolicy {
    /// The un-jittered wait before attempt `next` (2 = the first retry), unscaled.
    pub fn base_delay(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(30);
        self.initial
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }

    /// The wait before attempt `next`, or `None` when the policy says stop: out of attempts, or
    /// the retry would start after `max_elapsed`. `fraction` in [0, 1) picks the jitter.
    pub(crate) fn delay_before(
        &self,
        next: u32,
        elapsed: Duration,
        fraction: f64,
        time_scale: f64,
    ) -> Option<Duration> {
        if next > self.max_attempts {
            return None;
        }
        let base = scaled(self.base_delay(next), time_scale);
        let delay = base.mul_f64(0.5 + 0.5 * fraction.clamp(0.0, 1.0));
        (elapsed + delay <= scaled(self.max_elapsed, time_scale)).then_some(delay)
    }
}

/// What an attempt's failure allows.
pub(crate) enum Verdict {
    /// Transient, and safe to repeat.
    Retry(PveError),
    /// Give up with this error.
    Fail(PveError),
}

/// Runs `attempt(n)` (n from 1) until it succeeds, fails for good, or the policy is exhausted.
/// `on_retry(next, delay, error)` is told before each wait.
pub(crate) async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    time_scale: f64,
    jitter: &Jitter,
    mut attempt: F,
    mut on_retry: impl FnMut(u32, Duration, &PveError),
) -> Result<T, PveError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Verdict>>,
{
    let started = Instant::now();
    let mut n = 1;
    loop {
        match attempt(n).await {
            Ok(value) => return Ok(value),
            Err(Verdict::Fail(error)) => return Err(error),
            Err(Verdict::Retry(error)) => {
                let next = n + 1;
                match policy.delay_before(next, started.elapsed(), jitter.fraction(), time_scale) {
                    None => return Err(error),
                    Some(delay) => {
                        on_retry(next, delay, &error);
                        tokio::time::sleep(delay).await;
                        n = next;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::ErrorClass;
    use crate::pve::error::local;
    use std::cell::Cell;

    fn transient() -> PveError {
        local(
            ErrorClass::Transient,
            "GET /version",
            "596 Connection timed out",
        )
    }

    #[test]
    fn schedule_doubles_to_the_cap() {
        let policy = RetryPolicy::default();
        let bases: Vec<Duration> = (2..=7).map(|n| policy.base_delay(n)).collect();
        assert_eq!(
            bases,
            [500, 1000, 2000, 4000, 8000, 10000]
                .map(Duration::from_millis)
                .to_vec(),
            "0.5 s doubling, capped at 10 s"
        );
        // Jitter keeps each wait within [d/2, d]; the time scale multiplies everything.
        assert_eq!(
            policy.delay_before(2, Duration::ZERO, 0.0, 1.0),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            policy
                .delay_before(3, Duration::ZERO, 0.999_999, 1.0)
                .map(|d| d.as_millis()),
            Some(999)
        );
        assert_eq!(
            policy.delay_before(4, Duration::ZERO, 0.0, 0.01),
            Some(Duration::from_millis(10))
        );
        // Out of attempts; out of time.
        assert_eq!(policy.delay_before(7, Duration::ZERO, 0.0, 1.0), None);
        assert_eq!(
            policy.delay_before(3, Duration::from_millis(119_500), 1.0, 1.0),
            None
        );
        assert_eq!(
            policy.delay_before(3, Duration::from_millis(1_195), 1.0, 0.01),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_growing_waits() {
        let policy = RetryPolicy::default();
        let calls = Cell::new(0u32);
        let mut waits = Vec::new();
        let started = Instant::now();
        let result = run(
            &policy,
            1.0,
            &Jitter::seeded(7),
            |n| {
                calls.set(n);
                async move {
                    if n < 4 {
                        Err(Verdict::Retry(transient()))
                    } else {
                        Ok(n)
                    }
                }
            },
            |next, delay, _| waits.push((next, delay)),
        )
        .await;
        assert_eq!(result, Ok(4));
        assert_eq!(calls.get(), 4);
        assert_eq!(waits.iter().map(|w| w.0).collect::<Vec<_>>(), [2, 3, 4]);
        for (next, delay) in &waits {
            let base = policy.base_delay(*next);
            assert!(*delay >= base / 2 && *delay <= base, "{next}: {delay:?}");
        }
        // Virtual time advanced by the waits (tokio's timer rounds each up to the millisecond).
        let waited: Duration = waits.iter().map(|w| w.1).sum();
        let elapsed = started.elapsed();
        assert!(
            elapsed >= waited && elapsed <= waited + Duration::from_millis(3),
            "{elapsed:?} vs {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let policy = RetryPolicy::default();
        let calls = Cell::new(0u32);
        let started = Instant::now();
        let result: Result<(), _> = run(
            &policy,
            1.0,
            &Jitter::seeded(1),
            |n| {
                calls.set(n);
                async { Err(Verdict::Retry(transient())) }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(result.map_err(|e| e.class), Err(ErrorClass::Transient));
        assert_eq!(calls.get(), 6, "6 attempts in all");
        // 5 waits of at most 0.5+1+2+4+8 s and at least half that.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(7750) && elapsed <= Duration::from_millis(15_500),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn elapsed_time_is_bounded_even_with_slow_attempts() {
        let policy = RetryPolicy {
            max_attempts: 100,
            ..RetryPolicy::default()
        };
        let calls = Cell::new(0u32);
        let started = Instant::now();
        let _: Result<(), _> = run(
            &policy,
            1.0,
            &Jitter::seeded(3),
            |n| {
                calls.set(n);
                async {
                    // Each attempt hangs for a 40 s client-side timeout.
                    tokio::time::sleep(Duration::from_secs(40)).await;
                    Err(Verdict::Retry(transient()))
                }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(
            calls.get(),
            3,
            "40 s + wait + 40 s + wait + 40 s crosses 120 s"
        );
        assert!(started.elapsed() < Duration::from_secs(160));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let calls = Cell::new(0u32);
        let result: Result<(), _> = run(
            &RetryPolicy::default(),
            1.0,
            &Jitter::seeded(1),
            |n| {
                calls.set(n);
                async {
                    Err(Verdict::Fail(local(
                        ErrorClass::Locked,
                        "PUT /x",
                        "VM is locked (clone)",
                    )))
                }
            },
            |_, _, _| panic!("no retry"),
        )
        .await;
        assert_eq!(result.map_err(|e| e.class), Err(ErrorClass::Locked));
        assert_eq!(calls.get(), 1);
    }
}
