//! `/nodes/{node}/qemu/{vmid}/agent/…`: PVE's checks in order (`No QEMU guest agent configured`,
//! `VM N is not running`, the 3 s ping → `QEMU guest agent is not running`, the 5 s command
//! timeout), its wrapping (`{"result":…}`, `{"pid":N}` for exec, a flat object for exec-status)
//! and `Agent error: …` texts. The answers come from a backend: the model, or real `qemu-ga`.

pub mod qemu_ga;
pub mod simulated;

use std::sync::Arc;

use serde_json::{Value, json};

use super::auth::Identity;
use super::cluster::{Guest, Power};
use super::envelope::{ApiError, ApiOk};
use super::params::{self, Kind, NODE, Params, VMID, opt, req, vmid_of};
use super::routes::{AGENT_GET, AGENT_POST};
use super::scenario::PveVersion;
use super::{AgentBackend, Shared, SimError};

/// Guest-agent ping timeout and default command timeout (simulated s).
pub const PING_TIMEOUT_S: f64 = 3.0;
pub const COMMAND_TIMEOUT_S: f64 = 5.0;

/// What a backend answers for one command.
pub enum Reply {
    /// QGA's `return` value.
    Return(Value),
    /// QGA's `error` object (`class`, `desc`).
    Error { class: String, desc: String },
    /// No answer in time.
    Timeout,
}

/// How long a client waits to connect to a busy agent socket (QMPClient's 1 s connect timeout,
/// retried every 100 ms).
pub const CONNECT_TIMEOUT_S: f64 = 1.0;

/// The agent backend shared by all VMs.
pub struct AgentHost {
    qga: Option<qemu_ga::QgaHost>,
    /// Each VM's agent socket serves one client at a time.
    sockets: std::sync::Mutex<std::collections::HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
}

impl AgentHost {
    pub async fn new(backend: AgentBackend) -> Result<AgentHost, SimError> {
        let qga = match backend {
            AgentBackend::Simulated => None,
            AgentBackend::QemuGa => Some(qemu_ga::QgaHost::new().await?),
        };
        Ok(AgentHost {
            qga,
            sockets: Default::default(),
        })
    }

    fn socket(&self, vmid: u32) -> Arc<tokio::sync::Mutex<()>> {
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(vmid)
            .or_default()
            .clone()
    }

    /// The VM started: a real agent comes up at the guest's `agent_up_at`.
    pub fn on_start(&self, shared: &Arc<Shared>, vmid: u32, guest: &Guest) {
        if let Some(q) = &self.qga {
            q.on_start(shared, vmid, guest);
        }
    }

    pub fn on_stop(&self, vmid: u32) {
        if let Some(q) = &self.qga {
            q.on_stop(vmid);
        }
    }

    pub async fn shutdown_all(&self) {
        if let Some(q) = &self.qga {
            q.shutdown_all().await;
        }
    }
}

pub fn index(p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE, VMID])?;
    let mut names: Vec<&str> = AGENT_GET.iter().chain(AGENT_POST).copied().collect();
    names.sort();
    Ok(ApiOk::data(Value::Array(
        names.into_iter().map(|n| json!({"name": n})).collect(),
    )))
}

fn qga_name(cmd: &str) -> String {
    format!("guest-{cmd}")
}

pub async fn command(
    shared: Arc<Shared>,
    who: &Identity,
    node: &str,
    cmd: &'static str,
    p: Params,
) -> Result<ApiOk, ApiError> {
    match cmd {
        "exec" => params::validate(
            &p,
            &[
                NODE,
                VMID,
                req("command", Kind::Array),
                opt(
                    "input-data",
                    Kind::Str {
                        max_len: Some(65536),
                    },
                ),
            ],
        )?,
        "exec-status" => params::validate(&p, &[NODE, VMID, req("pid", super::params::INT)])?,
        _ => params::validate(&p, &[NODE, VMID])?,
    }
    let vmid = vmid_of(&p);
    // PVE 8 checks VM.Monitor for every agent command; PVE 9 splits it into VM.GuestAgent.*.
    let privs: &[&str] = match (shared.scenario.pve_version, cmd) {
        (PveVersion::V8_4, _) => &["VM.Monitor"],
        (_, "exec" | "exec-status") => &["VM.GuestAgent.Unrestricted"],
        (_, "shutdown") => &["VM.PowerMgmt"],
        _ => &["VM.GuestAgent.Audit", "VM.GuestAgent.Unrestricted"],
    };
    who.require(&format!("/vms/{vmid}"), privs)?;

    // assert_agent_available, in PVE's order.
    let (up_at, configured) = {
        let st = shared.state();
        let vm = st.vm_on(node, vmid)?;
        if !vm.conf.contains_key("agent") {
            return Err(ApiError::die("No QEMU guest agent configured"));
        }
        let Some(g) = vm.guest.as_ref().filter(|_| vm.power != Power::Stopped) else {
            return Err(ApiError::die(format!("VM {vmid} is not running")));
        };
        let up = if vm.power == Power::Paused {
            None
        } else {
            g.agent_up_at
        };
        (up, g.agent_configured)
    };
    let clock = &shared.clock;
    let not_running = || ApiError::die("QEMU guest agent is not running");
    if !configured {
        return Err(not_running());
    }
    // One client at a time: a second call waits for the socket, briefly.
    let socket = shared.agent.socket(vmid);
    let _connected = match socket.clone().try_lock_owned() {
        Ok(g) => g,
        Err(_) => clock
            .timeout(CONNECT_TIMEOUT_S, socket.lock_owned())
            .await
            .map_err(|_| {
                ApiError::die(format!(
                    "unable to connect to VM {vmid} qga socket - timeout after 11 retries"
                ))
            })?,
    };
    let now = clock.now();
    match up_at {
        Some(t) if t <= now + PING_TIMEOUT_S => clock.sleep_until(t).await,
        _ => {
            clock.sleep(PING_TIMEOUT_S).await;
            return Err(not_running());
        }
    }
    // The guest may have been stopped meanwhile.
    if shared
        .state()
        .vm_on(node, vmid)
        .map(|v| v.power != Power::Running)
        .unwrap_or(true)
    {
        return Err(not_running());
    }
    let version = shared.scenario.pve_version;
    let timeout_err = || ApiError::die(version.agent_timeout(vmid, &qga_name(cmd)));
    if shared.chance(shared.scenario.faults.p_agent_timeout) {
        clock.sleep(COMMAND_TIMEOUT_S).await;
        return Err(timeout_err());
    }
    let reply = match &shared.agent.qga {
        Some(q) => {
            if !q.ping(&shared, vmid).await {
                return Err(not_running());
            }
            q.command(&shared, vmid, cmd, &p).await
        }
        None => simulated::command(&shared, node, vmid, cmd, &p),
    };
    let data = match (cmd, reply) {
        (_, Reply::Timeout) => return Err(timeout_err()),
        ("exec" | "exec-status", Reply::Error { desc, .. }) => {
            return Err(ApiError::die(format!("Agent error: {desc}")));
        }
        (_, Reply::Error { class, desc }) => {
            json!({"result": {"error": {"class": class, "desc": desc}}})
        }
        ("exec", Reply::Return(v)) => json!({"pid": v.get("pid").cloned().unwrap_or(Value::Null)}),
        ("exec-status", Reply::Return(v)) => exec_status_flat(&v),
        (_, Reply::Return(v)) => json!({"result": v}),
    };
    {
        let now = clock.now();
        let mut st = shared.state();
        if let Some(s) = st.vm_stats.get_mut(&vmid)
            && s.first_agent_ok_at.is_none()
        {
            s.first_agent_ok_at = Some(now);
        }
    }
    Ok(ApiOk::data(data))
}

/// PVE decodes QGA's base64 streams and turns booleans into 0/1; empty streams are omitted.
fn exec_status_flat(v: &Value) -> Value {
    use base64::Engine;
    let mut out = serde_json::Map::new();
    let b = |x: Option<&Value>| {
        x.and_then(|v| v.as_bool())
            .map(|b| json!(if b { 1 } else { 0 }))
    };
    if let Some(e) = b(v.get("exited")) {
        out.insert("exited".into(), e);
    }
    for k in ["exitcode", "signal"] {
        if let Some(x) = v.get(k) {
            out.insert(k.into(), x.clone());
        }
    }
    for (k, t) in [("out-data", "out-truncated"), ("err-data", "err-truncated")] {
        if let Some(s) = v.get(k).and_then(|s| s.as_str()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .unwrap_or_default();
            if !bytes.is_empty() {
                out.insert(k.into(), json!(String::from_utf8_lossy(&bytes)));
                if let Some(tr) = b(v.get(t)) {
                    out.insert(t.into(), tr);
                }
            }
        }
    }
    Value::Object(out)
}
