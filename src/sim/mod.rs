//! A faithful Proxmox VE 8.3–9.1 simulator: HTTPS, the API's envelope, reason phrases and
//! failure texts to the letter, and a time model (pvedaemon workers, storage throughput, locks,
//! boot/agent/DHCP delays) driven by a seeded RNG and a time scale so runs repeat.
//!
//! It is a black box that only speaks HTTP: it imports nothing from the rest of the crate.
//! In-process use: [`start`] with [`SimOptions`], then talk to [`Sim::url`].

mod agent;
mod auth;
mod cert;
mod cli;
pub mod clock;
mod clone;
mod cluster;
mod daemon;
mod endpoints;
mod envelope;
mod locks;
pub(crate) mod params;
mod qemu;
mod reads;
mod routes;
pub mod scenario;
mod server;
mod stats;
mod storage;
mod tasks;
pub(crate) mod vmconfig;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio_util::sync::CancellationToken;

pub use cli::{SimArgs, run_cli};
pub use scenario::Scenario;
pub use stats::{NodeLoad, SimStats, VmStats};

/// Which guest agent answers the agent endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AgentBackend {
    /// Answers from the model (default).
    #[default]
    Simulated,
    /// A real `qemu-ga` process per running VM, over a unix socket (guest-exec runs for real).
    #[value(name = "qemu-ga")]
    QemuGa,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown scenario '{name}': use one of {known}, or the path of a scenario .toml file")]
    UnknownScenario { name: String, known: String },
    #[error("cannot read scenario file {}: {source}", path.display())]
    ScenarioRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scenario {origin}: {message}")]
    ScenarioInvalid { origin: String, message: String },
    #[error("cannot listen on {addr}: {source} (choose another --listen address or port)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("invalid option {key} = '{value}': {hint}")]
    Option {
        key: &'static str,
        value: String,
        hint: String,
    },
    #[error("qemu-ga agent backend: {0}")]
    Agent(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// How to start a simulator.
#[derive(Clone)]
pub struct SimOptions {
    /// Port 0 = an ephemeral port.
    pub listen: SocketAddr,
    pub scenario: Scenario,
    pub seed: u64,
    /// Wall seconds per simulated second (0.01 = 100x faster).
    pub time_scale: f64,
    /// API tokens `user@realm!id` → secret, with full privileges.
    pub tokens: Vec<(String, String)>,
    /// Users `user@realm` → password, for ticket login, with full privileges.
    pub users: Vec<(String, String)>,
    pub agent: AgentBackend,
}

impl std::fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOptions")
            .field("listen", &self.listen)
            .field("scenario", &self.scenario.name)
            .field("seed", &self.seed)
            .field("time_scale", &self.time_scale)
            .field(
                "tokens",
                &self
                    .tokens
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field(
                "users",
                &self
                    .users
                    .iter()
                    .map(|(u, _)| u.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("agent", &self.agent)
            .finish()
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            scenario: Scenario::builtin("fast")
                .unwrap_or_else(|e| panic!("built-in scenario: {e}")),
            seed: 1,
            time_scale: 1.0,
            tokens: vec![("root@pam!rollout".to_string(), auth::new_uuid())],
            users: Vec::new(),
            agent: AgentBackend::Simulated,
        }
    }
}

/// `check_cfs_quorum`'s text (clone and start without quorum).
pub(crate) const NO_QUORUM: &str = "cluster not ready - no quorum?";

/// State shared by the server, the tasks and the agent backends.
pub(crate) struct Shared {
    pub clock: clock::Clock,
    pub seed: u64,
    pub scenario: Scenario,
    pub state: Mutex<cluster::Cluster>,
    pub auth: auth::Auth,
    pub daemons: IndexMap<String, daemon::Daemon>,
    pub locks: locks::Locks,
    pub io: storage::IoRegistry,
    pub counters: stats::Counters,
    /// Per-request draws (service times, faults): reproducible for a given request order.
    pub rng: Mutex<ChaCha8Rng>,
    pub agent: agent::AgentHost,
    pub fingerprint: String,
    pub shutdown: CancellationToken,
}

impl Shared {
    /// The cluster state. A panic while holding the lock must not wedge the server.
    pub fn state(&self) -> MutexGuard<'_, cluster::Cluster> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn draw(&self, span: scenario::Span) -> f64 {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        span.draw(&mut *rng)
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        rand::Rng::random_bool(&mut *rng, p.min(1.0))
    }

    /// Whether `node` is reachable at simulated time `now`.
    pub fn node_online(&self, node: &str, now: f64) -> bool {
        !self
            .scenario
            .faults
            .node_offline
            .iter()
            .any(|o| o.node == node && now >= o.at_s && o.until_s.is_none_or(|u| now < u))
    }

    /// Whether the cluster has lost quorum at simulated time `now`.
    pub fn quorum_lost(&self, now: f64) -> bool {
        self.scenario
            .faults
            .quorum_lost
            .iter()
            .any(|w| w.contains(now))
    }

    /// The node the API is served from.
    pub fn local_node(&self) -> &str {
        &self.scenario.cluster.nodes[0]
    }
}

/// A running simulator.
pub struct Sim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: String,
    token: (String, String),
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Dropping a simulator stops it too (agent processes end with their tasks); `shutdown`
/// additionally waits for everything to be gone.
impl Drop for Sim {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("addr", &self.addr)
            .field("token_id", &self.token.0)
            .finish()
    }
}

/// Starts a simulator on `opts.listen` and returns once it accepts connections.
pub async fn start(opts: SimOptions) -> Result<Sim, SimError> {
    if !(opts.time_scale.is_finite() && opts.time_scale > 0.0) {
        return Err(SimError::Option {
            key: "time_scale",
            value: opts.time_scale.to_string(),
            hint: "use a positive number, e.g. 1 (real time) or 0.01 (100x faster)".into(),
        });
    }
    opts.scenario
        .validate()
        .map_err(|message| SimError::ScenarioInvalid {
            origin: format!("'{}'", opts.scenario.name),
            message,
        })?;
    let mut tokens = opts.tokens.clone();
    if tokens.is_empty() {
        tokens.push(("root@pam!rollout".to_string(), auth::new_uuid()));
    }
    for (id, _) in &tokens {
        auth::check_token_id(id).map_err(|hint| SimError::Option {
            key: "token",
            value: id.clone(),
            hint,
        })?;
    }
    let node = opts.scenario.cluster.nodes[0].clone();
    let cluster_uuid = auth::new_uuid();
    let cert = cert::generate(&node, "sim.local", &cluster_uuid)?;
    let clock = clock::Clock::new(opts.time_scale);
    let agent = agent::AgentHost::new(opts.agent).await?;
    let daemons = opts
        .scenario
        .cluster
        .nodes
        .iter()
        .map(|n| (n.clone(), daemon::Daemon::new()))
        .collect();
    let state = cluster::Cluster::new(&opts.scenario, opts.seed, &clock);
    let shared = Arc::new(Shared {
        auth: auth::Auth::new(&tokens, &opts.users, &opts.scenario.auth, opts.seed),
        clock,
        seed: opts.seed,
        scenario: opts.scenario.clone(),
        state: Mutex::new(state),
        daemons,
        locks: locks::Locks::default(),
        io: storage::IoRegistry::default(),
        counters: stats::Counters::default(),
        rng: Mutex::new(ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5eed_fa17)),
        agent,
        fingerprint: cert.fingerprint.clone(),
        shutdown: CancellationToken::new(),
    });
    schedule_template_backups(&shared);
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let tls = server::tls_config(&cert)?;
    let server = tokio::spawn(server::serve(listener, tls, shared.clone()));
    tracing::info!(%addr, scenario = %opts.scenario.name, seed = opts.seed, time_scale = opts.time_scale, "simulator listening");
    Ok(Sim {
        shared,
        addr,
        ca_pem: cert.ca_pem,
        token: tokens[0].clone(),
        server: Some(server),
    })
}

/// vzdump's `lock: backup` on the template during each `faults.template_backup` window.
fn schedule_template_backups(shared: &Arc<Shared>) {
    let vmid = shared.scenario.template.vmid;
    for w in shared.scenario.faults.template_backup.clone() {
        let sh = shared.clone();
        tokio::spawn(async move {
            let set_lock = |on: bool| {
                if let Some(vm) = sh.state().vms.get_mut(&vmid) {
                    match (on, vm.lock()) {
                        (true, None) => {
                            vm.conf.insert("lock".into(), "backup".into());
                        }
                        (false, Some("backup")) => {
                            vm.conf.shift_remove("lock");
                        }
                        _ => {}
                    }
                }
            };
            tokio::select! {
                _ = sh.shutdown.cancelled() => return,
                _ = sh.clock.sleep_until(w.at_s) => set_lock(true),
            }
            if let Some(until) = w.until_s {
                tokio::select! {
                    _ = sh.shutdown.cancelled() => {}
                    _ = sh.clock.sleep_until(until) => set_lock(false),
                }
            }
        });
    }
}

impl Sim {
    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// SHA-256 of the node certificate, `AA:BB:…` uppercase.
    pub fn fingerprint(&self) -> String {
        self.shared.fingerprint.clone()
    }

    /// The cluster CA's PEM (trust it as `ca_cert`; the node certificate names 127.0.0.1 and localhost).
    pub fn cert_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The first token, `user@realm!id`.
    pub fn token_id(&self) -> String {
        self.token.0.clone()
    }

    pub fn token_secret(&self) -> String {
        self.token.1.clone()
    }

    /// The same data as `GET /sim/stats`.
    pub fn stats(&self) -> SimStats {
        stats::snapshot(&self.shared)
    }

    /// Simulated seconds since start.
    pub fn now(&self) -> f64 {
        self.shared.clock.now()
    }

    pub fn time_scale(&self) -> f64 {
        self.shared.clock.scale()
    }

    /// Stops the server, every task and every agent process.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.shared.agent.shutdown_all().await;
    }
}
