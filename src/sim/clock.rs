//! Simulated time and seeded randomness: one clock for every delay in the simulator, and RNG
//! streams keyed by what they draw for (so a VM's draws do not depend on request order).

use std::future::Future;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// Simulated seconds since start = wall time since start / `scale`.
#[derive(Debug, Clone)]
pub struct Clock {
    start: tokio::time::Instant,
    scale: f64,
    /// Unix time at simulated second 0 (UPIDs, tickets and task start times are epoch based).
    epoch0: i64,
}

/// Sleeps shorter than this are not worth a timer tick: tokio rounds them up to 1 ms, which at a
/// small time scale would inflate simulated time by orders of magnitude.
const MIN_WALL_SLEEP: Duration = Duration::from_micros(500);

impl Clock {
    pub fn new(scale: f64) -> Clock {
        let epoch0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Clock {
            start: tokio::time::Instant::now(),
            scale,
            epoch0,
        }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Simulated seconds since the simulator started.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64() / self.scale
    }

    /// Unix seconds of "now" in simulated time.
    pub fn epoch(&self) -> i64 {
        self.epoch0 + self.now().floor() as i64
    }

    /// Wall-clock duration of `sim_s` simulated seconds.
    pub fn wall(&self, sim_s: f64) -> Duration {
        if !sim_s.is_finite() || sim_s <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(sim_s * self.scale)
    }

    pub async fn sleep(&self, sim_s: f64) {
        let wall = self.wall(sim_s);
        if wall < MIN_WALL_SLEEP {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(wall).await;
        }
    }

    /// Like `sleep`, but never returns early (a tiny sleep costs one timer tick instead).
    pub async fn sleep_full(&self, sim_s: f64) {
        let wall = self.wall(sim_s);
        if !wall.is_zero() {
            tokio::time::sleep(wall).await;
        }
    }

    pub async fn sleep_until(&self, sim_t: f64) {
        self.sleep(sim_t - self.now()).await;
    }

    /// Runs `fut` for at most `sim_s` simulated seconds.
    pub async fn timeout<F: Future>(&self, sim_s: f64, fut: F) -> Result<F::Output, TimedOut> {
        tokio::time::timeout(self.wall(sim_s), fut)
            .await
            .map_err(|_| TimedOut)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// A reproducible RNG for one purpose (`stream`) and one subject (`key`, e.g. a VM name).
pub fn rng_for(seed: u64, stream: &str, key: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(stream.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    ChaCha8Rng::from_seed(digest)
}

/// Uniform draw from `[lo, hi]` (a degenerate range returns `lo`).
pub fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_streams_are_reproducible_and_independent() {
        let a: u64 = rng_for(7, "boot", "vm-1").random();
        let b: u64 = rng_for(7, "boot", "vm-1").random();
        let c: u64 = rng_for(7, "boot", "vm-2").random();
        let d: u64 = rng_for(8, "boot", "vm-1").random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[tokio::test]
    async fn time_scale_speeds_up_simulated_time() {
        let clock = Clock::new(0.001);
        let wall = clock.wall(2.0);
        assert_eq!(wall, Duration::from_millis(2));
        clock.sleep(5.0).await;
        assert!(clock.now() >= 5.0, "now {}", clock.now());
    }
}
