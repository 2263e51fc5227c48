//! Proxmox VE API client: reqwest + rustls, auth, TLS trust, typed calls, classified errors,
//! retries and in-flight caps (per serving node and overall). Knows nothing of the engine.
//!
//! CONTRACT (the engine codes against these signatures; keep them, add freely).
//!
//! Layout: this file holds the public types; `transport` sends one request (auth, in-flight caps,
//! stats, error classification), `caps` the in-flight caps, `calls` holds the typed calls and
//! `task_list` the node task list; `tls`, `auth`, `retry`, `encode`, `decode`, `wire` and `error`
//! one idea each.
//!
//! Caller rules the types cannot express:
//! - Create one `Client` per process and clone it: clones share the in-flight caps and the stats.
//! - `clone_vm` never creates a second VM for one request: on any error, retry with the SAME
//!   `newid`. `ErrorClass::AlreadyExists` means a VM with that id is there (typically our own clone
//!   whose answer was lost): look at it (`vm_config`: name, `lock: clone`) and adopt it rather
//!   than cloning again.
//! - `start` of a running VM returns a UPID whose task fails with `VM N already running`;
//!   `TaskState::is_success_for_start` treats that as success.
//! - Transient errors are retried inside the client for idempotent calls (reads, PUT config,
//!   absolute resize, agent ping, task stop); other calls are repeated only when the request
//!   certainly never reached PVE (see `calls.rs`). A transient error that comes back means the
//!   policy gave up, or the outcome of a non-idempotent call is unknown: check before repeating.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod auth;
#[cfg(test)]
mod bad_input_tests;
mod calls;
mod caps;
mod decode;
pub mod discovery;
mod encode;
mod error;
mod migrate;
mod props;
mod retry;
mod task_list;
#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;
mod tls;
mod transport;
mod upid;
mod wire;

pub use calls::CheckReport;
pub use caps::ENTRY_NODE;
pub use encode::encode_sshkeys;
pub use error::{classify_message, classify_response};
pub use props::{
    CiCustom, DiskSize, Ip6Config, IpConfig, NetDevice, NewDisk, NewEfiDisk, Startup, Tags,
};
pub use task_list::{NodeTask, NodeTasks, TaskListQuery, TaskSource};
pub use tls::{fingerprint_of_der, normalize_fingerprint};
pub use upid::{Upid, UpidParts};

/// Default per-request timeout. A request can wait up to 30 s in pvedaemon's queue before
/// pveproxy answers `596 Connection timed out` (so a stuck daemon shows up as PVE's own error, not
/// a client-side timeout), and agent calls take a few seconds more on top.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default cap on requests in flight served by one node (its pvedaemon has 3 workers: 2 leaves
/// one for the GUI and other tools).
pub const DEFAULT_MAX_IN_FLIGHT_PER_NODE: usize = 2;
/// Default ceiling on requests in flight over all nodes (every call passes through the entry
/// node's pveproxy): 8 nodes at their cap.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// A secret (token secret, password, ticket). Never printed: Debug and Display say `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The only way to read it; call sites are few and reviewed.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to trust the server's certificate, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// SHA-256 of the leaf certificate (any case, with or without colons). Hostname not checked.
    Fingerprint(String),
    /// A PEM CA file.
    CaFile(PathBuf),
    /// The system roots (default).
    System,
    /// Accept anything (explicit; warned about at start).
    Insecure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `user@realm!tokenid` and its secret.
    Token { token_id: String, secret: Secret },
    /// `user@realm` and a password; a ticket is fetched, renewed and sent with CSRF on writes.
    Password { user: String, password: Secret },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// `https://host:8006` (with or without a trailing `/api2/json`).
    pub url: String,
    pub auth: Auth,
    pub tls: TlsTrust,
    /// Requests in flight at once over all nodes, for the whole process (default 16).
    pub max_in_flight: usize,
    /// Requests in flight at once served by one node: `/nodes/{node}/...` counts against that
    /// node, cluster-wide calls against the entry node (default 2).
    pub max_in_flight_per_node: usize,
    /// Per-request timeout (long enough for agent calls: 3 s ping + 5 s command server-side).
    /// Not multiplied by `time_scale`.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Multiplies every client-side wait (back-off, ticket renewal age) so tests can run against
    /// a time-scaled simulator. 1.0 = real time.
    pub time_scale: f64,
}

impl ClientConfig {
    /// The settings every client starts from, real runs and the simulator alike: system roots,
    /// 2 in flight per node and 16 overall, 60 s timeout, the default retries, real time. The
    /// `with_` methods change only what a deployment decides (trust, in-flight caps, a
    /// time-scaled simulator).
    pub fn new(url: impl Into<String>, auth: Auth) -> Self {
        ClientConfig {
            url: url.into(),
            auth,
            tls: TlsTrust::System,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_per_node: DEFAULT_MAX_IN_FLIGHT_PER_NODE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            time_scale: 1.0,
        }
    }

    pub fn with_tls(self, tls: TlsTrust) -> Self {
        ClientConfig { tls, ..self }
    }

    pub fn with_max_in_flight(self, max_in_flight: usize) -> Self {
        ClientConfig {
            max_in_flight,
            ..self
        }
    }

    pub fn with_max_in_flight_per_node(self, max_in_flight_per_node: usize) -> Self {
        ClientConfig {
            max_in_flight_per_node,
            ..self
        }
    }

    /// Against a time-scaled simulator: every client-side wait is multiplied by `time_scale`.
    pub fn with_time_scale(self, time_scale: f64) -> Self {
        ClientConfig { time_scale, ..self }
    }
}

/// Exponential back-off with jitter for transient errors, bounded by attempts and time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max_delay: Duration,
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts, 0.5 s doubling to a 10 s cap, 120 s in total (all times scaled by
    /// `ClientConfig::time_scale`): two 596s in a row (30 s each) still fit. Waits are drawn
    /// from [d/2, d] (equal jitter).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

/// What kind of failure, so the engine never has to parse text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// Connection failures, timeouts, 595/596/597, `got timeout`, `can't lock file`,
    /// `cfs-lock ... got lock request timeout`, `got no worker upid`.
    Transient,
    /// `QEMU guest agent is not running`, `No QEMU guest agent configured`.
    AgentNotReady,
    /// `VM N is not running`.
    NotRunning,
    /// `VM is locked (...)`.
    Locked,
    /// `Configuration file ... does not exist`, `unable to find configuration file`.
    NotFound,
    /// 401.
    Auth,
    /// 403.
    Permission,
    /// 400 with the per-key map.
    InvalidParameter,
    /// Certificate not trusted / fingerprint mismatch.
    Tls,
    /// Response that could not be decoded.
    Decode,
    /// The VM id is taken: `unable to create VM N: config file already exists`, or `clone_vm` found
    /// `newid` present after losing the answer to its POST. Never clone again with another id:
    /// inspect the VM and adopt it if it is ours.
    AlreadyExists,
    /// `checksum mismatch (file change by other user?)`: the config changed since the digest
    /// sent with the update was read.
    DigestMismatch,
    /// `Agent error: Invalid parameter 'pid'`: the agent no longer knows an exec's pid (it forgets
    /// it once it reported `exited`, and on a restart). Running the command again is the remedy.
    ExecPidUnknown,
    Other,
}

impl ErrorClass {
    /// Worth trying again later (after a back-off) without changing anything.
    pub fn is_transient(self) -> bool {
        self == ErrorClass::Transient
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Transient => "transient",
            ErrorClass::AgentNotReady => "agent-not-ready",
            ErrorClass::NotRunning => "not-running",
            ErrorClass::Locked => "locked",
            ErrorClass::NotFound => "not-found",
            ErrorClass::Auth => "auth",
            ErrorClass::Permission => "permission",
            ErrorClass::InvalidParameter => "invalid-parameter",
            ErrorClass::Tls => "tls",
            ErrorClass::Decode => "decode",
            ErrorClass::AlreadyExists => "already-exists",
            ErrorClass::DigestMismatch => "digest-mismatch",
            ErrorClass::ExecPidUnknown => "exec-pid-unknown",
            ErrorClass::Other => "other",
        })
    }
}

/// A failed API call. Carries no secret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.render())]
pub struct PveError {
    pub class: ErrorClass,
    /// `METHOD /path` of the call (no query string).
    pub call: String,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The reason phrase (Proxmox puts the error's first line there).
    pub reason: String,
    /// The body's `message`, trimmed, when present.
    pub message: Option<String>,
    /// The body's `errors` (parameter -> message) for 400s.
    pub errors: BTreeMap<String, String>,
    /// The call may have done its work although it failed (its answer was lost: 596, a
    /// timeout): check before repeating a non-idempotent call. Lock timeouts are not such.
    pub outcome_unknown: bool,
}

impl PveError {
    /// The VM whose config lock was not had in time (`can't lock file '/var/lock/qemu-server/
    /// lock-N.conf' - got timeout`): a clone of that VM holds it for as long as it copies.
    pub fn config_lock_timeout(&self) -> Option<u32> {
        error::config_lock_timeout(self.message.as_deref().unwrap_or(&self.reason))
    }

    /// `POST /nodes/pve1/qemu/9000/clone: 500 VM is locked (clone)`, then ` - key: message; ...`
    /// for the per-parameter errors of a 400.
    fn render(&self) -> String {
        error::render(self)
    }
}

pub type Result<T, E = PveError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: String,
    pub release: String,
    pub repoid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: String,
    /// `online`, `offline`, `unknown`.
    pub status: String,
    pub maxmem: Option<u64>,
    pub mem: Option<u64>,
    pub maxcpu: Option<u32>,
    pub ssl_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub memory_total: u64,
    pub memory_used: u64,
    pub memory_free: u64,
    pub pveversion: Option<String>,
}

/// `type` filter for `/cluster/resources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    Vm,
    Storage,
    Node,
}

/// One `/cluster/resources` entry (VM, storage or node; absent fields are `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub id: String,
    /// `qemu`, `lxc`, `storage`, `node`, ...
    pub kind: String,
    pub node: Option<String>,
    pub vmid: Option<u32>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub template: bool,
    pub lock: Option<String>,
    pub tags: Option<String>,
    pub maxmem: Option<u64>,
    pub mem: Option<u64>,
    pub maxdisk: Option<u64>,
    pub disk: Option<u64>,
    /// Storage id for storage entries.
    pub storage: Option<String>,
    pub shared: bool,
    /// Storage content types (`images,rootdir,...`).
    pub content: Option<String>,
    /// Storage type (`lvmthin`, `dir`, `nfs`, ...).
    pub plugintype: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmListEntry {
    pub vmid: u32,
    pub name: Option<String>,
    pub status: String,
    pub template: bool,
    pub lock: Option<String>,
    pub tags: Option<String>,
    pub maxmem: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmStatus {
    pub vmid: u32,
    pub name: Option<String>,
    /// `running` or `stopped`.
    pub status: String,
    pub qmpstatus: Option<String>,
    pub lock: Option<String>,
    pub agent: bool,
    pub template: bool,
    pub uptime: Option<u64>,
}

/// A VM config as key -> value text (numbers and 0/1 rendered as text), with typed accessors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmConfig {
    pub values: BTreeMap<String, String>,
}

impl VmConfig {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
    pub fn lock(&self) -> Option<&str> {
        self.get("lock")
    }
    pub fn is_template(&self) -> bool {
        self.get("template") == Some("1")
    }
}

/// Parameters of `POST .../clone`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloneRequest {
    pub newid: u32,
    pub name: String,
    pub description: Option<String>,
    pub full: bool,
    pub target: Option<String>,
    pub storage: Option<String>,
    pub format: Option<String>,
    pub pool: Option<String>,
}

/// Config keys to set (PUT/POST config). Values are plain text; the client encodes `sshkeys`
/// twice as PVE demands and sends booleans as 0/1.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigUpdate {
    pub set: Vec<(String, String)>,
    pub delete: Vec<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    Running,
    /// Stopped with `OK`.
    Ok,
    /// Stopped with `WARNINGS: n` (success).
    Warnings(u32),
    /// Stopped with an error text.
    Failed(String),
}

impl TaskState {
    /// `OK` from Proxmox's exit status text (`running` is decided by the caller).
    pub fn from_exit_status(exitstatus: &str) -> TaskState {
        let text = exitstatus.trim();
        if text == "OK" {
            return TaskState::Ok;
        }
        if let Some(Ok(n)) = text
            .strip_prefix("WARNINGS:")
            .map(|count| count.trim().parse())
        {
            return TaskState::Warnings(n);
        }
        TaskState::Failed(text.to_string())
    }
    pub fn is_finished(&self) -> bool {
        !matches!(self, TaskState::Running)
    }
    /// `OK` or `WARNINGS: n`.
    pub fn is_success(&self) -> bool {
        matches!(self, TaskState::Ok | TaskState::Warnings(_))
    }
    /// For a `qmstart` task: success, or failed only because the VM was `already running`.
    pub fn is_success_for_start(&self) -> bool {
        match self {
            TaskState::Failed(text) => text.contains("already running"),
            other => other.is_success(),
        }
    }
    /// See [`PveError::config_lock_timeout`].
    pub fn config_lock_timeout(&self) -> Option<u32> {
        match self {
            TaskState::Failed(text) => error::config_lock_timeout(text),
            _ => None,
        }
    }
    /// The class of a failed task's text (lock timeouts are transient, `VM is locked` is locked).
    pub fn failure_class(&self) -> Option<ErrorClass> {
        match self {
            TaskState::Failed(text) => Some(classify_message(text).unwrap_or(ErrorClass::Other)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub upid: Upid,
    pub node: String,
    pub task_type: String,
    pub id: String,
    pub user: String,
    pub state: TaskState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLogLine {
    pub n: u64,
    pub t: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentIpAddress {
    /// `ipv4` or `ipv6`.
    pub ip_address_type: String,
    pub ip_address: String,
    pub prefix: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInterface {
    pub name: String,
    /// Lowercase as QGA sends it; may be absent.
    pub hardware_address: Option<String>,
    pub ip_addresses: Vec<AgentIpAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OsInfo {
    pub id: Option<String>,
    pub name: Option<String>,
    pub pretty_name: Option<String>,
    pub version: Option<String>,
    pub kernel_release: Option<String>,
    pub machine: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStatus {
    pub exited: bool,
    pub exitcode: Option<i64>,
    pub signal: Option<i64>,
    pub out_data: Option<String>,
    pub err_data: Option<String>,
}

/// Counters the engine and the benchmarks read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientStats {
    pub requests_total: u64,
    pub retries_total: u64,
    pub peak_in_flight: usize,
    /// Most requests in flight at once per serving node ([`ENTRY_NODE`] for cluster-wide calls).
    pub peak_in_flight_by_node: BTreeMap<String, usize>,
    /// `"GET /nodes/{node}/qemu/{vmid}/status/current"` -> (count, total latency).
    pub by_endpoint: BTreeMap<String, EndpointStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    pub count: u64,
    pub errors: u64,
    pub total_latency: Duration,
}

/// The API client. Cheap to clone (shares the connection pool, the in-flight caps and the stats).
#[derive(Clone)]
pub struct Client {
    inner: Arc<transport::Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.base_url())
            .finish_non_exhaustive()
    }
}
