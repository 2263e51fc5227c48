//! A node's pvedaemon: 3 workers. "Protected" requests hold a worker for their whole service time
//! (lock waits and agent timeouts included); the rest queue. pveproxy gives up after 30 s and
//! answers `596 Connection timed out`, while a request that already reached a worker still runs
//! to completion (its answer is lost, as on a real host).

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;

use tokio::sync::Semaphore;

use super::clock::Clock;
use super::envelope::ApiError;

pub const WORKERS: usize = 3;
/// pveproxy's proxy timeout (simulated seconds).
pub const PROXY_TIMEOUT_S: f64 = 30.0;

#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DaemonStats {
    /// Simulated seconds workers were busy.
    pub worker_seconds: f64,
    pub requests: u64,
    /// Requests that never got a worker within the proxy timeout.
    pub queue_timeouts: u64,
    /// Most requests waiting for a worker at once.
    pub peak_queued: u64,
}

#[derive(Default)]
struct Counters {
    stats: DaemonStats,
    queued: u64,
}

#[derive(Clone)]
pub struct Daemon {
    workers: Arc<Semaphore>,
    counters: Arc<Mutex<Counters>>,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon::new()
    }
}

impl Daemon {
    pub fn new() -> Daemon {
        Daemon {
            workers: Arc::new(Semaphore::new(WORKERS)),
            counters: Arc::new(Mutex::new(Counters::default())),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        f(&mut self.counters.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn stats(&self) -> DaemonStats {
        self.with(|c| c.stats)
    }

    /// Runs `work` on a worker; `arrival` is when pveproxy received the request (simulated s).
    pub async fn run<T, F>(&self, clock: &Clock, arrival: f64, work: F) -> Result<T, ApiError>
    where
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
        T: Send + 'static,
    {
        let deadline = arrival + PROXY_TIMEOUT_S;
        self.with(|c| {
            c.queued += 1;
            c.stats.peak_queued = c.stats.peak_queued.max(c.queued);
        });
        let permit = clock
            .timeout(deadline - clock.now(), self.workers.clone().acquire_owned())
            .await;
        self.with(|c| c.queued -= 1);
        let Ok(Ok(permit)) = permit else {
            self.with(|c| c.stats.queue_timeouts += 1);
            return Err(ApiError::timed_out());
        };
        let started = clock.now();
        let me = self.clone();
        let worker_clock = clock.clone();
        // The worker runs detached: if pveproxy gives up, the work still completes.
        let job = tokio::spawn(async move {
            let result = work.await;
            let held = worker_clock.now() - started;
            me.with(|c| {
                c.stats.worker_seconds += held;
                c.stats.requests += 1;
            });
            drop(permit);
            result
        });
        match clock.timeout(deadline - clock.now(), job).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(ApiError::die(format!("worker failed: {e}"))),
            Err(_) => Err(ApiError::timed_out()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fourth_request_waits_for_a_worker() {
        let clock = Clock::new(0.001);
        let d = Daemon::new();
        let mut jobs = Vec::new();
        for _ in 0..4 {
            let (d, c) = (d.clone(), clock.clone());
            jobs.push(tokio::spawn(async move {
                let arrival = c.now();
                let c2 = c.clone();
                d.run(&c, arrival, async move {
                    c2.sleep(3.0).await;
                    Ok(c2.now())
                })
                .await
            }));
        }
        let mut ends = Vec::new();
        for j in jobs {
            ends.push(j.await.expect("join").expect("ok"));
        }
        ends.sort_by(f64::total_cmp);
        assert!(
            ends[3] >= 6.0,
            "the 4th request queued behind 3 workers: {ends:?}"
        );
        assert!(d.stats().worker_seconds >= 12.0);
    }

    #[tokio::test]
    async fn queued_past_the_proxy_timeout_is_596() {
        let clock = Clock::new(0.0005);
        let d = Daemon::new();
        for _ in 0..3 {
            let (d, c) = (d.clone(), clock.clone());
            tokio::spawn(async move {
                let c2 = c.clone();
                let _ = d
                    .run(&c, c.now(), async move {
                        c2.sleep(100.0).await;
                        Ok(())
                    })
                    .await;
            });
        }
        tokio::task::yield_now().await;
        let c2 = clock.clone();
        let r = d
            .run(&clock, clock.now(), async move { Ok(c2.now()) })
            .await;
        assert_eq!(r.unwrap_err(), ApiError::timed_out());
        assert!(clock.now() >= PROXY_TIMEOUT_S);
    }
}
