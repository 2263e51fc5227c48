//! Following many tasks with one request: each node's task list (`GET /nodes/{node}/tasks`,
//! `source=all` since the oldest task followed there) answers for every task of this rollout on
//! that node: the running ones, and those that ended with their exit status.
//!
//! A VM that follows a task asks "is it still running, no later than in `due_in` seconds?"; one
//! loop per node fetches the node's list when the earliest such question is due and answers
//! every question due within a quarter of its own wait (so polls of many tasks merge into one
//! request), and at once every task the list shows ended, whatever its due time. The list is
//! served by pveproxy without a pvedaemon worker, and PVE never refuses it (without `Sys.Audit` a
//! token sees the tasks it started, which are the ones followed here). A task missing from a
//! list that was not cut off has ended without showing how (read its status); if the list fails,
//! or comes back cut off, the answer is `Unknown` and the caller asks the task itself, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::pve::{Client, TaskListQuery, TaskSource, TaskState, Upid};

use super::clock::Clock;

/// How long to use the per-task path on a node after its list failed (rollout seconds).
const LIST_FAILED_BACKOFF_S: f64 = 60.0;
/// An answer may come this share of a question's wait early.
const EARLY_SHARE: f64 = 0.25;
/// A node's list is asked again no sooner than this per question waiting on it (at most
/// `MAX_LIST_GAP_S`): with a few tasks each poll comes when due; with a hundred VMs on a node
/// one list answers many, for at most two seconds' delay in noticing an end.
const LIST_GAP_PER_QUESTION_S: f64 = 0.25;
const MAX_LIST_GAP_S: f64 = 2.0;

/// What the node's list said about a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Listed {
    Running,
    /// Ended: how, when the list said (else read the task's status), and how long it ran by
    /// PVE's own start and end times (whole seconds).
    Ended {
        state: Option<TaskState>,
        took_s: Option<f64>,
    },
    /// The list could not tell (failed, or cut off): ask the task itself.
    Unknown,
}

struct Question {
    /// Order of asking: a list fetched before a question was asked says nothing about it.
    seq: u64,
    upid: String,
    /// Epoch second the task started (from its UPID), for the list's `since`.
    starttime: i64,
    asked_at: f64,
    due: f64,
    answer: oneshot::Sender<Listed>,
}

#[derive(Default)]
struct Node {
    questions: Vec<Question>,
    asked: u64,
    polling: bool,
    /// Rollout second until which this node's list is not asked (it failed).
    list_failed_until: Option<f64>,
    /// Rollout second this node's list was last asked.
    listed_at: Option<f64>,
}

pub struct TaskWatch {
    client: Client,
    clock: Clock,
    nodes: Mutex<HashMap<String, Node>>,
    wake: Notify,
}

impl TaskWatch {
    pub fn new(client: Client, clock: Clock) -> Arc<TaskWatch> {
        Arc::new(TaskWatch {
            client,
            clock,
            nodes: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Node>> {
        // Plain bookkeeping; a panic elsewhere cannot leave it inconsistent.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `upid` still runs, told no later than `due_in` seconds from now (and sooner if
    /// it ends). Cancel-safe: a dropped question is forgotten.
    pub async fn check(self: &Arc<Self>, upid: &Upid, due_in: Duration) -> Listed {
        let Some(parts) = upid.parts() else {
            return Listed::Unknown;
        };
        let now = self.clock.now_s();
        let (tx, rx) = oneshot::channel();
        let start_loop = {
            let mut nodes = self.lock();
            let node = nodes.entry(parts.node.to_string()).or_default();
            if node.list_failed_until.is_some_and(|until| now < until) {
                return Listed::Unknown;
            }
            node.asked += 1;
            node.questions.push(Question {
                seq: node.asked,
                upid: upid.0.clone(),
                starttime: i64::try_from(parts.starttime).unwrap_or(i64::MAX),
                asked_at: now,
                due: now + due_in.as_secs_f64(),
                answer: tx,
            });
            !std::mem::replace(&mut node.polling, true)
        };
        if start_loop {
            let watch = self.clone();
            let node = parts.node.to_string();
            tokio::spawn(async move { watch.poll_node(node).await });
        } else {
            self.wake.notify_waiters();
        }
        // A closed channel means the loop is gone (the runtime is shutting down).
        rx.await.unwrap_or(Listed::Unknown)
    }

    /// Asks `node`'s list whenever its earliest question is due, until none is left.
    async fn poll_node(self: Arc<Self>, node: String) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let mut nodes = self.lock();
                let Some(n) = nodes.get_mut(&node) else {
                    return;
                };
                n.questions.retain(|q| !q.answer.is_closed());
                let gap = (LIST_GAP_PER_QUESTION_S * n.questions.len() as f64).min(MAX_LIST_GAP_S);
                match n.questions.iter().map(|q| q.due).reduce(f64::min) {
                    Some(due) => n.listed_at.map_or(due, |at| due.max(at + gap)),
                    None => {
                        n.polling = false;
                        return;
                    }
                }
            };
            let wait = (next - self.clock.now_s()).max(0.0);
            if wait > 0.0 {
                tokio::select! {
                    () = self.clock.sleep(Duration::from_secs_f64(wait)) => {}
                    // A new question may be due sooner.
                    () = &mut notified => continue,
                }
            }
            self.ask_list(&node).await;
        }
    }

    async fn ask_list(&self, node: &str) {
        let asked_at = self.clock.now_s();
        let (since, count, asked) = {
            let mut nodes = self.lock();
            let Some(n) = nodes.get_mut(node) else { return };
            n.listed_at = Some(asked_at);
            let since = n.questions.iter().map(|q| q.starttime).min();
            (since, n.questions.len(), n.asked)
        };
        let query = TaskListQuery {
            source: TaskSource::All,
            since,
            // Other tools' tasks are listed too: room for them, and `complete` tells if not.
            limit: (count as u64 + 50).max(100),
            ..TaskListQuery::default()
        };
        let listed = self.client.node_tasks(node, &query).await;
        let mut nodes = self.lock();
        let Some(n) = nodes.get_mut(node) else { return };
        let answers: Vec<(usize, Listed)> = match &listed {
            Ok(list) => n
                .questions
                .iter()
                .enumerate()
                .filter(|(_, q)| q.seq <= asked)
                .filter_map(|(i, q)| {
                    let entry = list.tasks.iter().find(|t| t.upid.0 == q.upid);
                    let due = q.due <= asked_at + EARLY_SHARE * (q.due - q.asked_at);
                    match entry {
                        Some(t) if !t.state.is_finished() => due.then_some((i, Listed::Running)),
                        Some(t) => Some((
                            i,
                            Listed::Ended {
                                state: Some(t.state.clone()),
                                took_s: t.starttime.zip(t.endtime).map(|(s, e)| (e - s) as f64),
                            },
                        )),
                        None if list.complete => Some((
                            i,
                            Listed::Ended {
                                state: None,
                                took_s: None,
                            },
                        )),
                        None => due.then_some((i, Listed::Unknown)),
                    }
                })
                .collect(),
            Err(e) => {
                tracing::debug!("task list of {node} failed ({e}); asking each task instead");
                n.list_failed_until = Some(asked_at + LIST_FAILED_BACKOFF_S);
                n.questions
                    .iter()
                    .enumerate()
                    .filter(|(_, q)| q.seq <= asked)
                    .map(|(i, _)| (i, Listed::Unknown))
                    .collect()
            }
        };
        // Highest index first, so the earlier indices stay valid while removing.
        for (i, answer) in answers.into_iter().rev() {
            let q = n.questions.swap_remove(i);
            let _ = q.answer.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::CloneRequest;
    use crate::sim::{self, Scenario, SimOptions};

    const SCALE: f64 = 0.01;

    /// Questions due every 0.1 s on four tasks: the node's list is asked at most once per
    /// 0.25 s per question waiting, not at every due time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_questions_on_a_node_space_its_lists() {
        let (sim, client, clock) = cluster().await;
        let watch = TaskWatch::new(client.clone(), clock);
        let upids = start_clones(&client, &[211, 212, 213, 214]).await;
        let before = list_requests(&sim);
        let t0 = clock.now_s();
        let follow = |upid: Upid| {
            let watch = watch.clone();
            async move {
                for _ in 0..10_000 {
                    if watch.check(&upid, Duration::from_millis(100)).await != Listed::Running {
                        return;
                    }
                }
                panic!("the clone never ended");
            }
        };
        futures_util::future::join_all(upids.into_iter().map(follow)).await;
        let elapsed = clock.now_s() - t0;
        let lists = list_requests(&sim) - before;
        // Without spacing about one list per 0.25 s (each takes its own time); with four
        // questions waiting, one per second, and no more often than one per 0.25 s once the
        // others ended.
        assert!(
            (lists as f64) <= elapsed / 0.5,
            "{lists} lists in {elapsed:.1} s"
        );
    }

    /// Full clones of the template on pve1, one per id: their tasks.
    async fn start_clones(client: &Client, vmids: &[u32]) -> Vec<Upid> {
        let mut upids = Vec::new();
        for &vmid in vmids {
            let request = CloneRequest {
                newid: vmid,
                name: format!("w-{vmid}"),
                full: true,
                storage: Some("ssd".into()),
                ..CloneRequest::default()
            };
            upids.push(
                client
                    .clone_vm("pve1", 9000, &request)
                    .await
                    .expect("clone"),
            );
        }
        upids
    }

    async fn cluster() -> (sim::Sim, Client, Clock) {
        let sim = sim::start(SimOptions {
            scenario: Scenario::builtin("fast").expect("scenario"),
            seed: 5,
            time_scale: SCALE,
            ..SimOptions::default()
        })
        .await
        .expect("simulator");
        let client = Client::new(crate::demo::client_config(&sim, 16, SCALE)).expect("client");
        (sim, client, Clock::new(SCALE))
    }

    fn list_requests(sim: &sim::Sim) -> u64 {
        sim.stats()
            .requests_by_endpoint
            .get("GET /nodes/{node}/tasks")
            .copied()
            .unwrap_or(0)
    }

    /// Three clones followed at once cost one list request per poll, and each is told when it
    /// ended, and how.
    #[tokio::test]
    async fn one_list_answers_every_task_of_a_node() {
        let (sim, client, clock) = cluster().await;
        let watch = TaskWatch::new(client.clone(), clock);
        let upids = start_clones(&client, &[201, 202, 203]).await;
        let before = list_requests(&sim);
        let first = futures_util::future::join_all(
            upids
                .iter()
                .map(|u| watch.check(u, Duration::from_millis(200))),
        )
        .await;
        assert_eq!(
            first,
            vec![Listed::Running; 3],
            "clones take longer than 0.2 s"
        );
        assert_eq!(list_requests(&sim) - before, 1, "one list for three tasks");
        for upid in &upids {
            let mut checks = 0;
            let ended = loop {
                match watch.check(upid, Duration::from_secs(2)).await {
                    Listed::Running => checks += 1,
                    other => break other,
                }
                assert!(checks < 500, "the clone never ended");
            };
            assert!(
                matches!(
                    ended,
                    Listed::Ended { state: Some(TaskState::Ok), took_s: Some(s) } if s >= 0.0
                ),
                "told how it ended, and how long it ran: {ended:?}"
            );
        }
        assert_eq!(
            sim.stats()
                .requests_by_endpoint
                .get("GET /nodes/{node}/tasks/{upid}/status"),
            None,
            "no task asked for its own status"
        );
    }

    /// A node whose list cannot be had: every question is answered `Unknown` (the caller asks
    /// the task itself) and the list is left alone for a while.
    #[tokio::test]
    async fn a_failing_list_sends_callers_to_the_task() {
        let (sim, client, clock) = cluster().await;
        let watch = TaskWatch::new(client, clock);
        let elsewhere =
            Upid("UPID:nowhere:00000001:00000002:66C8A0B4:qmclone:9000:root@pam:".into());
        assert_eq!(
            watch.check(&elsewhere, Duration::from_millis(100)).await,
            Listed::Unknown
        );
        let asked = list_requests(&sim);
        assert_eq!(
            watch.check(&elsewhere, Duration::from_millis(100)).await,
            Listed::Unknown
        );
        assert_eq!(list_requests(&sim), asked, "not asked again right away");
    }
}
