//! The engine's clock. Every delay, timeout and poll interval the engine uses is a duration of
//! "rollout time" that this clock scales, so a rollout can run against a time-scaled simulator
//! (`--time-scale 0.01` = 100x faster) with the same logic and the same decisions.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    scale: f64,
    origin: Instant,
}

impl Clock {
    /// `scale` = wall seconds per rollout second (1.0 = real time). Non-positive or non-finite
    /// values are refused by the CLI; here they fall back to real time.
    pub fn new(scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        Clock {
            scale,
            origin: Instant::now(),
        }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Rollout time -> wall time.
    pub fn wall(&self, d: Duration) -> Duration {
        d.mul_f64(self.scale)
    }

    /// Rollout time elapsed since the clock was made.
    pub fn elapsed(&self) -> Duration {
        self.origin.elapsed().div_f64(self.scale)
    }

    /// Rollout-time seconds since the clock was made.
    pub fn now_s(&self) -> f64 {
        self.elapsed().as_secs_f64()
    }

    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(self.wall(d)).await;
    }

    /// The wall instant that is `d` of rollout time from now.
    pub fn deadline(&self, d: Duration) -> Instant {
        Instant::now() + self.wall(d)
    }

    /// The wall instant `d` of rollout time from now, or one no rollout reaches without `d`.
    pub fn deadline_within(&self, d: Option<Duration>) -> Instant {
        const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        self.deadline(d.unwrap_or(NEVER))
    }

    /// Rollout time left until `deadline` (zero when past).
    pub fn left(&self, deadline: Instant) -> Duration {
        deadline
            .saturating_duration_since(Instant::now())
            .div_f64(self.scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn scaled_sleep_takes_scaled_wall_time() {
        let clock = Clock::new(0.01);
        let start = Instant::now();
        clock.sleep(Duration::from_secs(30)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        assert!((clock.now_s() - 30.0).abs() < 1e-6);
    }

    #[test]
    fn bad_scale_means_real_time() {
        assert_eq!(Clock::new(0.0).scale(), 1.0);
        assert_eq!(Clock::new(f64::NAN).scale(), 1.0);
        assert_eq!(Clock::new(-2.0).scale(), 1.0);
    }
}
