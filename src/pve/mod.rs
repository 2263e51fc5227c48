//! Proxmox VE API client: reqwest + rustls, auth, TLS trust, typed calls, classified errors,
//! retries and a process-wide in-flight cap. Knows nothing of the engine.
//!
//! CONTRACT (the engine codes against these signatures; keep them, add freely).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://host:8006` (with or without a trailing `/api2/json`).
    pub url: String,
    pub auth: Auth,
    pub tls: TlsTrust,
    /// Requests in flight at once, for the whole process (default 2).
    pub max_in_flight: usize,
    /// Per-request timeout (long enough for agent calls: 3 s ping + 5 s command server-side).
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Multiplies every client-side wait (back-off, ticket renewal age) so tests can run against
    /// a time-scaled simulator. 1.0 = real time.
    pub time_scale: f64,
}

/// Exponential back-off with jitter for transient errors, bounded by attempts and time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max_delay: Duration,
    pub max_elapsed: Duration,
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
    Other,
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
}

impl PveError {
    fn render(&self) -> String {
        todo!("contract: {} {:?}", self.call, self.class)
    }
}

pub type Result<T, E = PveError> = std::result::Result<T, E>;

/// `UPID:node:pid:pstart:starttime:type:id:user:`
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Upid(pub String);

impl Upid {
    /// The node the task runs on (task status must be asked there).
    pub fn node(&self) -> Option<&str> {
        todo!()
    }
    pub fn task_type(&self) -> Option<&str> {
        todo!()
    }
}

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
    /// The MAC of `net0` (as configured, uppercase), if any.
    pub fn net0_mac(&self) -> Option<String> {
        todo!()
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
    /// `"GET /nodes/{node}/qemu/{vmid}/status/current"` -> (count, total latency).
    pub by_endpoint: BTreeMap<String, EndpointStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    pub count: u64,
    pub errors: u64,
    pub total_latency: Duration,
}

/// The API client. Cheap to clone (shares the connection pool, the in-flight cap and the stats).
#[derive(Clone)]
pub struct Client {
    _private: (),
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Client")
    }
}

#[allow(unused_variables)]
impl Client {
    pub fn new(config: ClientConfig) -> Result<Client> {
        todo!()
    }
    /// The base URL (`https://host:8006`), without credentials.
    pub fn url(&self) -> &str {
        todo!()
    }
    pub fn stats(&self) -> ClientStats {
        todo!()
    }

    pub async fn version(&self) -> Result<Version> {
        todo!()
    }
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        todo!()
    }
    pub async fn node_status(&self, node: &str) -> Result<NodeStatus> {
        todo!()
    }
    pub async fn cluster_resources(&self, kind: Option<ResourceType>) -> Result<Vec<Resource>> {
        todo!()
    }
    /// `GET /cluster/nextid` (optionally asking whether `vmid` is free).
    pub async fn next_id(&self, vmid: Option<u32>) -> Result<u32> {
        todo!()
    }
    pub async fn vm_list(&self, node: &str) -> Result<Vec<VmListEntry>> {
        todo!()
    }
    pub async fn vm_status(&self, node: &str, vmid: u32) -> Result<VmStatus> {
        todo!()
    }
    pub async fn vm_config(&self, node: &str, vmid: u32) -> Result<VmConfig> {
        todo!()
    }
    /// `PUT config` (synchronous).
    pub async fn set_config(&self, node: &str, vmid: u32, update: &ConfigUpdate) -> Result<()> {
        todo!()
    }
    /// `POST config` (asynchronous: a UPID, or `None` when PVE answered null).
    pub async fn set_config_async(
        &self,
        node: &str,
        vmid: u32,
        update: &ConfigUpdate,
    ) -> Result<Option<Upid>> {
        todo!()
    }
    /// Not retried blindly: a timed-out POST is checked by looking for `newid` first.
    pub async fn clone_vm(&self, node: &str, vmid: u32, request: &CloneRequest) -> Result<Upid> {
        todo!()
    }
    /// `PUT resize`: a UPID (PVE >= 8) or `None` (PVE 7).
    pub async fn resize(
        &self,
        node: &str,
        vmid: u32,
        disk: &str,
        size: &str,
    ) -> Result<Option<Upid>> {
        todo!()
    }
    pub async fn start(&self, node: &str, vmid: u32) -> Result<Upid> {
        todo!()
    }
    pub async fn shutdown(
        &self,
        node: &str,
        vmid: u32,
        timeout: Option<u32>,
        force_stop: bool,
    ) -> Result<Upid> {
        todo!()
    }
    pub async fn stop(&self, node: &str, vmid: u32) -> Result<Upid> {
        todo!()
    }
    pub async fn delete_vm(&self, node: &str, vmid: u32, purge: bool) -> Result<Upid> {
        todo!()
    }
    /// Asked of the node named in the UPID.
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus> {
        todo!()
    }
    pub async fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> Result<Vec<TaskLogLine>> {
        todo!()
    }
    pub async fn stop_task(&self, upid: &Upid) -> Result<()> {
        todo!()
    }
    pub async fn agent_ping(&self, node: &str, vmid: u32) -> Result<()> {
        todo!()
    }
    pub async fn agent_network_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Vec<AgentInterface>> {
        todo!()
    }
    pub async fn agent_os_info(&self, node: &str, vmid: u32) -> Result<OsInfo> {
        todo!()
    }
    pub async fn agent_host_name(&self, node: &str, vmid: u32) -> Result<String> {
        todo!()
    }
    /// Starts `argv` in the guest; returns the pid for `agent_exec_status`.
    pub async fn agent_exec(
        &self,
        node: &str,
        vmid: u32,
        argv: &[&str],
        input: Option<&str>,
    ) -> Result<u64> {
        todo!()
    }
    pub async fn agent_exec_status(&self, node: &str, vmid: u32, pid: u64) -> Result<ExecStatus> {
        todo!()
    }
}
