//! Real guest agents: one `qemu-ga -m unix-listen` process per running VM, started when the
//! VM's agent comes up and killed when it stops. As root with `ip netns`, each runs in its own
//! network namespace with one interface per NIC, each carrying that NIC's MAC and, after the
//! DHCP delay, its addresses (static or leased), so every VM reports its own interfaces. Commands go over the QGA JSON protocol
//! (resynchronised with `guest-sync-delimited` on every connection).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::{COMMAND_TIMEOUT_S, PING_TIMEOUT_S, Reply};
use crate::sim::cluster::Guest;
use crate::sim::params::Params;
use crate::sim::{Shared, SimError};

/// RPCs a simulated guest must never run on the real host.
const BLOCKED_RPCS: &str = "guest-shutdown,guest-suspend-disk,guest-suspend-ram,guest-suspend-hybrid,guest-fsfreeze-freeze,guest-fsfreeze-freeze-list,guest-set-time,guest-set-user-password,guest-set-vcpus,guest-set-memory-blocks,guest-file-open,guest-file-write,guest-ssh-add-authorized-keys,guest-ssh-remove-authorized-keys";

static INSTANCE: AtomicU64 = AtomicU64::new(0);

struct VmAgent {
    cancel: CancellationToken,
    socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
    /// One QGA conversation at a time per agent.
    io: Arc<tokio::sync::Mutex<()>>,
}

pub struct QgaHost {
    binary: PathBuf,
    base: PathBuf,
    netns: bool,
    prefix: String,
    vms: Arc<Mutex<HashMap<u32, VmAgent>>>,
}

/// `qemu-ga` from /usr/sbin or PATH.
pub fn find_qemu_ga() -> Option<PathBuf> {
    let fixed = Path::new("/usr/sbin/qemu-ga");
    if fixed.exists() {
        return Some(fixed.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("qemu-ga"))
            .find(|c| c.exists())
    })
}

async fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

async fn netns_usable(prefix: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    let probe = format!("{prefix}probe");
    let ok = ip(&["netns", "add", &probe]).await.is_ok();
    if ok {
        let _ = ip(&["netns", "del", &probe]).await;
    }
    ok
}

impl QgaHost {
    pub async fn new() -> Result<QgaHost, SimError> {
        let binary = find_qemu_ga().ok_or_else(|| {
            SimError::Agent("qemu-ga not found in /usr/sbin or PATH (install qemu-guest-agent, or use --agent simulated)".into())
        })?;
        let instance = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let base = std::env::temp_dir().join(format!("pve-rollout-sim-{pid}-{instance}"));
        std::fs::create_dir_all(&base)?;
        let prefix = format!("pvesim{pid}x{instance}v");
        let netns = netns_usable(&prefix).await;
        if netns {
            tracing::info!("qemu-ga backend: each VM's agent runs in its own network namespace");
        } else {
            tracing::warn!(
                "qemu-ga backend: network namespaces unavailable (need root and `ip netns`); every agent shares the host's network and reports the host's interfaces"
            );
        }
        tracing::warn!(
            "qemu-ga backend: guest-exec runs real commands on this machine as this user"
        );
        Ok(QgaHost {
            binary,
            base,
            netns,
            prefix,
            vms: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn vms(&self) -> std::sync::MutexGuard<'_, HashMap<u32, VmAgent>> {
        self.vms.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn on_start(&self, shared: &Arc<Shared>, vmid: u32, guest: &Guest) {
        self.on_stop(vmid);
        let dir = self.base.join(format!("vm-{vmid}"));
        let socket = dir.join("qga.sock");
        let cancel = shared.shutdown.child_token();
        let life = Lifecycle {
            shared: shared.clone(),
            binary: self.binary.clone(),
            dir,
            socket: socket.clone(),
            ns: self.netns.then(|| format!("{}{vmid}", self.prefix)),
            guest: guest.clone(),
            cancel: cancel.clone(),
        };
        let task = tokio::spawn(life.run());
        self.vms().insert(
            vmid,
            VmAgent {
                cancel,
                socket,
                task,
                io: Arc::new(tokio::sync::Mutex::new(())),
            },
        );
    }

    pub fn on_stop(&self, vmid: u32) {
        if let Some(a) = self.vms().remove(&vmid) {
            a.cancel.cancel();
            // The lifecycle task kills the process and removes the namespace.
            tokio::spawn(async move {
                let _ = a.task.await;
            });
        }
    }

    pub async fn shutdown_all(&self) {
        let agents: Vec<VmAgent> = self.vms().drain().map(|(_, a)| a).collect();
        for a in &agents {
            a.cancel.cancel();
        }
        for a in agents {
            let _ = a.task.await;
        }
        let _ = tokio::fs::remove_dir_all(&self.base).await;
    }

    fn agent(&self, vmid: u32) -> Option<(PathBuf, Arc<tokio::sync::Mutex<()>>)> {
        self.vms()
            .get(&vmid)
            .map(|a| (a.socket.clone(), a.io.clone()))
    }

    /// guest-ping within PVE's 3 s (at least 1.5 s of wall time for a real process to start).
    pub async fn ping(&self, shared: &Shared, vmid: u32) -> bool {
        let Some((socket, io)) = self.agent(vmid) else {
            return false;
        };
        let budget = shared
            .clock
            .wall(PING_TIMEOUT_S)
            .max(Duration::from_millis(1500));
        let _turn = io.lock().await;
        let attempt = async {
            loop {
                if let Ok(Ok(Value::Object(_))) = converse(&socket, "guest-ping", json!({}))
                    .await
                    .map(|r| match r {
                        QgaAnswer::Return(v) => Ok(v),
                        QgaAnswer::Error(e) => Err(e),
                    })
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(budget, attempt).await.unwrap_or(false)
    }

    pub async fn command(&self, shared: &Shared, vmid: u32, cmd: &str, p: &Params) -> Reply {
        if cmd == "shutdown" {
            // Never power off the real host: the model shuts the VM down instead.
            return Reply::Return(json!({}));
        }
        let Some((socket, io)) = self.agent(vmid) else {
            return Reply::Timeout;
        };
        let args = match cmd {
            "exec" => {
                let argv = p.values("command");
                let mut a = json!({"path": argv.first().cloned().unwrap_or_default(), "arg": argv.get(1..).unwrap_or(&[]), "capture-output": true});
                if let Some(input) = p.get("input-data") {
                    a["input-data"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(input.as_bytes()));
                }
                a
            }
            "exec-status" => json!({"pid": p.int("pid").unwrap_or(-1)}),
            _ => json!({}),
        };
        let budget = shared
            .clock
            .wall(COMMAND_TIMEOUT_S)
            .max(Duration::from_secs(5));
        let _turn = io.lock().await;
        match tokio::time::timeout(budget, converse(&socket, &format!("guest-{cmd}"), args)).await {
            Ok(Ok(QgaAnswer::Return(v))) => Reply::Return(v),
            Ok(Ok(QgaAnswer::Error(e))) => Reply::Error {
                class: e
                    .get("class")
                    .and_then(|c| c.as_str())
                    .unwrap_or("GenericError")
                    .to_string(),
                desc: e
                    .get("desc")
                    .and_then(|c| c.as_str())
                    .unwrap_or("")
                    .to_string(),
            },
            Ok(Err(_)) | Err(_) => Reply::Timeout,
        }
    }
}

enum QgaAnswer {
    Return(Value),
    Error(Value),
}

/// One QGA exchange on a fresh connection: resync, then the command.
async fn converse(socket: &Path, execute: &str, args: Value) -> std::io::Result<QgaAnswer> {
    let stream = UnixStream::connect(socket).await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let sync_id = (std::process::id() as u64) << 20 | INSTANCE.load(Ordering::Relaxed) << 8 | 0x5a;
    w.write_all(
        format!("{{\"execute\":\"guest-sync-delimited\",\"arguments\":{{\"id\":{sync_id}}}}}\n")
            .as_bytes(),
    )
    .await?;
    // Everything before the 0xFF sentinel is stale output from an earlier client.
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).await?;
        if b[0] == 0xFF {
            break;
        }
    }
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let v: Value = serde_json::from_str(line.trim()).unwrap_or(Value::Null);
        if v.get("return").and_then(|x| x.as_u64()) == Some(sync_id) {
            break;
        }
    }
    let mut msg = json!({"execute": execute});
    if args.as_object().is_some_and(|o| !o.is_empty()) {
        msg["arguments"] = args;
    }
    w.write_all(format!("{msg}\n").as_bytes()).await?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let v: Value = match serde_json::from_str(line.trim()) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if let Some(ret) = v.get("return") {
            return Ok(QgaAnswer::Return(ret.clone()));
        }
        if let Some(err) = v.get("error") {
            return Ok(QgaAnswer::Error(err.clone()));
        }
    }
}

/// One VM agent's life: wait for agent-up, start (in its namespace), add the lease, stop.
struct Lifecycle {
    shared: Arc<Shared>,
    binary: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    ns: Option<String>,
    guest: Guest,
    cancel: CancellationToken,
}

impl Lifecycle {
    async fn run(self) {
        let Some(up_at) = self.guest.agent_up_at else {
            self.cancel.cancelled().await;
            return;
        };
        if !self.guest.agent_configured {
            self.cancel.cancelled().await;
            return;
        }
        tokio::select! {
            _ = self.shared.clock.sleep_until(up_at) => {}
            _ = self.cancel.cancelled() => return,
        }
        let mut child = match self.spawn().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "qemu-ga backend: cannot start agent");
                self.cleanup().await;
                return;
            }
        };
        if let Some(ip_at) = self.guest.ip_at {
            tokio::select! {
                _ = self.shared.clock.sleep_until(ip_at) => self.add_lease().await,
                _ = self.cancel.cancelled() => {}
            }
        }
        self.cancel.cancelled().await;
        let _ = child.kill().await;
        self.cleanup().await;
    }

    async fn spawn(&self) -> Result<Child, String> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| e.to_string())?;
        let _ = tokio::fs::remove_file(&self.socket).await;
        if let Some(ns) = &self.ns {
            self.make_namespace(ns).await?;
        }
        let log = std::fs::File::create(self.dir.join("qemu-ga.log")).map_err(|e| e.to_string())?;
        let pidfile = self.dir.join("qemu-ga.pid");
        let qga_args: Vec<String> = vec![
            "-m".into(),
            "unix-listen".into(),
            "-p".into(),
            self.socket.display().to_string(),
            "-t".into(),
            self.dir.display().to_string(),
            "-f".into(),
            pidfile.display().to_string(),
            "-b".into(),
            BLOCKED_RPCS.into(),
        ];
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns])
                    .arg(&self.binary)
                    .args(&qga_args);
                c
            }
            None => {
                let mut c = Command::new(&self.binary);
                c.args(&qga_args);
                c
            }
        };
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(log))
            .kill_on_drop(true);
        cmd.spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))
    }

    /// One veth per NIC (`ens18` for net0, `ens19` for net1, ...; peers `veth0`, `veth1`, ...)
    /// carrying that NIC's MAC.
    async fn make_namespace(&self, ns: &str) -> Result<(), String> {
        let _ = ip(&["netns", "del", ns]).await;
        ip(&["netns", "add", ns]).await?;
        ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
        let base = self.shared.scenario.guest.nic_name.as_str();
        for nic in &self.guest.nics {
            let (name, peer) = (nic.name(base), format!("veth{}", nic.index));
            ip(&[
                "-n", ns, "link", "add", &name, "type", "veth", "peer", "name", &peer,
            ])
            .await?;
            let mac = nic.mac.to_lowercase();
            ip(&["-n", ns, "link", "set", &name, "address", &mac]).await?;
            ip(&["-n", ns, "link", "set", &name, "up"]).await?;
            ip(&["-n", ns, "link", "set", &peer, "up"]).await?;
        }
        Ok(())
    }

    /// Every NIC's addresses (its lease or static IPv4, and its IPv6 if any).
    async fn add_lease(&self) {
        let Some(ns) = &self.ns else { return };
        let base = self.shared.scenario.guest.nic_name.as_str();
        for nic in &self.guest.nics {
            let name = nic.name(base);
            let v4 = format!("{}/{}", nic.ipv4, nic.prefix);
            let v6 = nic.ipv6.map(|(ip6, prefix)| format!("{ip6}/{prefix}"));
            for addr in std::iter::once(v4).chain(v6) {
                // `nodad`: the address is usable at once, as the agent would report it.
                let mut args = vec!["-n", ns.as_str(), "addr", "add", &addr, "dev", &name];
                if addr.contains(':') {
                    args.push("nodad");
                }
                if let Err(e) = ip(&args).await {
                    tracing::warn!(error = %e, "qemu-ga backend: cannot add the guest's address");
                }
            }
        }
    }

    async fn cleanup(&self) {
        if let Some(ns) = &self.ns {
            let _ = ip(&["netns", "del", ns]).await;
        }
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }
}
