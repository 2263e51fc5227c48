//! Shared harness: a simulator in-process on an ephemeral port, and a rollout against it through
//! the real config parser and API client. Time comes from the simulator's scale, which the engine
//! uses too, so the same logic runs 50-100x faster than real time.
#![allow(dead_code)]

use std::future::Future;

use pve_rollout::config::Config;
use pve_rollout::demo::{self, DemoSettings};
use pve_rollout::engine::event::{Command, Event, Phase, VmState};
use pve_rollout::engine::{self, Clock, Rollout, journal, plan};
use pve_rollout::pve::Client;
use pve_rollout::report::Summary;
use pve_rollout::sim::{self, Scenario, Sim, SimOptions};
use tokio::sync::mpsc;

pub struct Harness {
    pub sim: Sim,
    pub client: Client,
    pub config: Config,
    pub scale: f64,
    pub out: tempfile::TempDir,
}

impl Harness {
    pub async fn start(scenario: &str, seed: u64, scale: f64, settings: DemoSettings) -> Harness {
        Self::start_with(
            Scenario::builtin(scenario).expect("scenario"),
            seed,
            scale,
            settings,
        )
        .await
    }

    pub async fn start_with(
        scenario: Scenario,
        seed: u64,
        scale: f64,
        settings: DemoSettings,
    ) -> Harness {
        Self::start_options(
            SimOptions {
                scenario,
                seed,
                time_scale: scale,
                ..SimOptions::default()
            },
            settings,
        )
        .await
    }

    /// A simulator started with `options` (its agent backend, say), the rollout at its scale.
    pub async fn start_options(options: SimOptions, mut settings: DemoSettings) -> Harness {
        let scale = options.time_scale;
        let sim = sim::start(options).await.expect("simulator starts");
        let out = tempfile::tempdir().expect("temp dir");
        settings.output = out.path().to_path_buf();
        let mut client_config = demo::client_config(&sim, settings.max_in_flight, scale);
        client_config.max_in_flight_per_node = settings.max_in_flight_per_node;
        let client = Client::new(client_config).expect("client");
        settings.nodes = demo::online_nodes(&client).await.expect("nodes");
        let config = demo::config(&sim, &settings).expect("demo config parses");
        Harness {
            sim,
            client,
            config,
            scale,
            out,
        }
    }

    pub async fn plan(&self) -> plan::Plan {
        plan::build(&self.client, &self.config)
            .await
            .expect("preflight passes")
    }

    /// The plan is refused before anything is created: preflight's problems (exit 3), with
    /// the cluster's resources the same after as before.
    pub async fn refused_plan(&self) -> Vec<String> {
        let resources = || async {
            let all = self.client.cluster_resources(None).await;
            all.expect("resources").len()
        };
        let before = resources().await;
        let err = plan::build(&self.client, &self.config)
            .await
            .expect_err("preflight refuses");
        assert_eq!(err.exit_code(), 3, "{err}");
        let engine::EngineError::Preflight(problems) = err else {
            panic!("not a preflight refusal: {err}")
        };
        assert_eq!(before, resources().await, "nothing was created");
        problems
    }

    /// Runs the whole rollout, letting `drive` watch the events and send commands.
    /// Returns the summary and every event in order.
    pub async fn run<F, Fut>(&self, linger: bool, drive: F) -> (Summary, Vec<Event>)
    where
        F: FnOnce(mpsc::UnboundedReceiver<Event>, mpsc::UnboundedSender<Command>) -> Fut,
        Fut: Future<Output = Vec<Event>>,
    {
        let plan = self.plan().await;
        let (etx, erx) = mpsc::unbounded_channel();
        let (ctx, crx) = mpsc::unbounded_channel();
        let rollout = Rollout {
            client: self.client.clone(),
            config: self.config.clone(),
            plan,
            clock: Clock::new(self.scale),
            linger,
        };
        let engine = tokio::spawn(engine::run(rollout, etx, crx));
        let events = drive(erx, ctx).await;
        let summary = engine.await.expect("engine task");
        (summary, events)
    }

    /// Runs to the end with no commands.
    pub async fn run_plain(&self) -> (Summary, Vec<Event>) {
        // Holding the command sender: a closed command channel means the watcher quit.
        self.run(false, |rx, tx| async move {
            let events = collect(rx).await;
            drop(tx);
            events
        })
        .await
    }
}

/// `vms` VMs with a short pace (1 s stagger, 2 s stabilisation) for tests about what a VM ends
/// up with rather than about timing.
pub fn quick(vms: usize) -> DemoSettings {
    DemoSettings {
        vms,
        deployment_delay: "1s".into(),
        stabilization: "2s".into(),
        ..DemoSettings::default()
    }
}

/// Every event until the channel closes.
pub async fn collect(mut rx: mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    let mut all = Vec::new();
    while let Some(e) = rx.recv().await {
        all.push(e);
    }
    all
}

/// Position of the first event that sets `vm` to `state`.
pub fn first_state(events: &[Event], vm: usize, pred: impl Fn(&VmState) -> bool) -> Option<usize> {
    events.iter().position(|e| match e {
        Event::VmState { vm: v, state, .. } => *v == vm && pred(state),
        _ => false,
    })
}

pub fn is_phase(phase: Phase) -> impl Fn(&VmState) -> bool {
    move |s| *s == VmState::Active { phase }
}

pub fn states(summary: &Summary) -> Vec<&str> {
    summary.vms.iter().map(|v| v.state.as_str()).collect()
}

/// Runs a rollout from a fresh plan and kills it when `kill_at` first holds for an event.
/// Returns whether it was killed (false: it ended first).
pub async fn run_and_kill(h: &Harness, kill_at: &(dyn Fn(&Event) -> bool + Sync)) -> bool {
    let plan = h.plan().await;
    let (etx, mut erx) = mpsc::unbounded_channel();
    let (ctx, crx) = mpsc::unbounded_channel();
    let engine = tokio::spawn(engine::run(
        Rollout {
            client: h.client.clone(),
            config: h.config.clone(),
            plan,
            clock: Clock::new(h.scale),
            linger: false,
        },
        etx,
        crx,
    ));
    let mut killed = false;
    while let Some(e) = erx.recv().await {
        if kill_at(&e) {
            engine.abort();
            killed = true;
            break;
        }
    }
    let joined = engine.await;
    assert_eq!(joined.is_err(), killed, "the engine ended as expected");
    drop(ctx);
    journal_released(h).await;
    killed
}

/// The killed engine's VM tasks are dropped on their own threads a moment after the abort; the
/// journal lock goes with the last of them (with SIGKILL, the kernel drops it at once).
pub async fn journal_released(h: &Harness) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match journal::Journal::open(h.out.path()) {
            Ok(_) => return,
            Err(journal::JournalError::Busy { .. }) if std::time::Instant::now() < deadline => {
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("journal not released: {e}"),
        }
    }
}
