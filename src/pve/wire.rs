//! The shapes PVE sends (hyphenated keys, `type`, lenient scalars), decoded leniently and turned
//! into the public types. Unknown fields are ignored everywhere (serde's default).

use serde::Deserialize;
use serde_json::Value;

use super::decode::{
    bool_lenient, i64_opt, string_opt, string_or_empty, string_req, u8_opt, u32_opt, u32_req,
    u64_opt, u64_req, value_to_text,
};
use super::{
    AgentInterface, AgentIpAddress, ExecStatus, NodeInfo, NodeStatus, OsInfo, Resource,
    TaskLogLine, TaskState, TaskStatus, Upid, Version, VmConfig, VmListEntry, VmStatus,
};

#[derive(Deserialize)]
pub(crate) struct WireVersion {
    #[serde(default, deserialize_with = "string_or_empty")]
    version: String,
    #[serde(default, deserialize_with = "string_or_empty")]
    release: String,
    #[serde(default, deserialize_with = "string_or_empty")]
    repoid: String,
}

impl From<WireVersion> for Version {
    fn from(w: WireVersion) -> Self {
        Version {
            version: w.version,
            release: w.release,
            repoid: w.repoid,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WirePool {
    #[serde(deserialize_with = "string_req")]
    pub(crate) poolid: String,
}

#[derive(Deserialize)]
pub(crate) struct WireVolume {
    #[serde(deserialize_with = "string_req")]
    pub(crate) volid: String,
}

#[derive(Deserialize)]
pub(crate) struct WireNode {
    #[serde(deserialize_with = "string_req")]
    node: String,
    #[serde(default, deserialize_with = "string_opt")]
    status: Option<String>,
    #[serde(default, deserialize_with = "u64_opt")]
    maxmem: Option<u64>,
    #[serde(default, deserialize_with = "u64_opt")]
    mem: Option<u64>,
    #[serde(default, deserialize_with = "u32_opt")]
    maxcpu: Option<u32>,
    #[serde(default, deserialize_with = "string_opt")]
    ssl_fingerprint: Option<String>,
}

impl From<WireNode> for NodeInfo {
    fn from(w: WireNode) -> Self {
        NodeInfo {
            node: w.node,
            status: w.status.unwrap_or_else(|| "unknown".into()),
            maxmem: w.maxmem,
            mem: w.mem,
            maxcpu: w.maxcpu,
            ssl_fingerprint: w.ssl_fingerprint,
        }
    }
}

#[derive(Deserialize, Default)]
struct WireMemory {
    #[serde(default, deserialize_with = "u64_opt")]
    total: Option<u64>,
    #[serde(default, deserialize_with = "u64_opt")]
    used: Option<u64>,
    #[serde(default, deserialize_with = "u64_opt")]
    free: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct WireNodeStatus {
    #[serde(default)]
    memory: WireMemory,
    #[serde(default, deserialize_with = "string_opt")]
    pveversion: Option<String>,
}

impl From<WireNodeStatus> for NodeStatus {
    fn from(w: WireNodeStatus) -> Self {
        let total = w.memory.total.unwrap_or(0);
        let used = w.memory.used.unwrap_or(0);
        NodeStatus {
            memory_total: total,
            memory_used: used,
            memory_free: w.memory.free.unwrap_or_else(|| total.saturating_sub(used)),
            pveversion: w.pveversion,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WireResource {
    #[serde(default, deserialize_with = "string_or_empty")]
    id: String,
    #[serde(rename = "type", default, deserialize_with = "string_or_empty")]
    kind: String,
    #[serde(default, deserialize_with = "string_opt")]
    node: Option<String>,
    #[serde(default, deserialize_with = "u32_opt")]
    vmid: Option<u32>,
    #[serde(default, deserialize_with = "string_opt")]
    name: Option<String>,
    #[serde(default, deserialize_with = "string_opt")]
    status: Option<String>,
    #[serde(default, deserialize_with = "bool_lenient")]
    template: bool,
    #[serde(default, deserialize_with = "string_opt")]
    lock: Option<String>,
    #[serde(default, deserialize_with = "string_opt")]
    tags: Option<String>,
    #[serde(default, deserialize_with = "u64_opt")]
    maxmem: Option<u64>,
    #[serde(default, deserialize_with = "u64_opt")]
    mem: Option<u64>,
    #[serde(default, deserialize_with = "u64_opt")]
    maxdisk: Option<u64>,
    #[serde(default, deserialize_with = "u64_opt")]
    disk: Option<u64>,
    #[serde(default, deserialize_with = "string_opt")]
    storage: Option<String>,
    #[serde(default, deserialize_with = "bool_lenient")]
    shared: bool,
    #[serde(default, deserialize_with = "string_opt")]
    content: Option<String>,
    #[serde(default, deserialize_with = "string_opt")]
    plugintype: Option<String>,
}

impl From<WireResource> for Resource {
    fn from(w: WireResource) -> Self {
        Resource {
            id: w.id,
            kind: w.kind,
            node: w.node,
            vmid: w.vmid,
            name: w.name,
            status: w.status,
            template: w.template,
            lock: w.lock,
            tags: w.tags,
            maxmem: w.maxmem,
            mem: w.mem,
            maxdisk: w.maxdisk,
            disk: w.disk,
            storage: w.storage,
            shared: w.shared,
            content: w.content,
            plugintype: w.plugintype,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WireVmListEntry {
    #[serde(deserialize_with = "u32_req")]
    vmid: u32,
    #[serde(default, deserialize_with = "string_opt")]
    name: Option<String>,
    #[serde(default, deserialize_with = "string_or_empty")]
    status: String,
    #[serde(default, deserialize_with = "bool_lenient")]
    template: bool,
    #[serde(default, deserialize_with = "string_opt")]
    lock: Option<String>,
    #[serde(default, deserialize_with = "string_opt")]
    tags: Option<String>,
    #[serde(default, deserialize_with = "u64_opt")]
    maxmem: Option<u64>,
}

impl From<WireVmListEntry> for VmListEntry {
    fn from(w: WireVmListEntry) -> Self {
        VmListEntry {
            vmid: w.vmid,
            name: w.name,
            status: w.status,
            template: w.template,
            lock: w.lock,
            tags: w.tags,
            maxmem: w.maxmem,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WireVmStatus {
    #[serde(default, deserialize_with = "u32_opt")]
    vmid: Option<u32>,
    #[serde(default, deserialize_with = "string_opt")]
    name: Option<String>,
    #[serde(default, deserialize_with = "string_or_empty")]
    status: String,
    #[serde(default, deserialize_with = "string_opt")]
    qmpstatus: Option<String>,
    #[serde(default, deserialize_with = "string_opt")]
    lock: Option<String>,
    #[serde(default, deserialize_with = "bool_lenient")]
    agent: bool,
    #[serde(default, deserialize_with = "bool_lenient")]
    template: bool,
    #[serde(default, deserialize_with = "u64_opt")]
    uptime: Option<u64>,
}

impl WireVmStatus {
    /// `vmid` is the one asked for when the answer leaves it out.
    pub(crate) fn into_status(self, asked: u32) -> VmStatus {
        VmStatus {
            vmid: self.vmid.unwrap_or(asked),
            name: self.name,
            status: self.status,
            qmpstatus: self.qmpstatus,
            lock: self.lock,
            agent: self.agent,
            template: self.template,
            uptime: self.uptime,
        }
    }
}

/// Every key as text; `null` values are dropped.
pub(crate) fn vm_config(data: serde_json::Map<String, Value>) -> VmConfig {
    VmConfig {
        values: data
            .into_iter()
            .filter_map(|(key, value)| value_to_text(&value).map(|text| (key, text)))
            .collect(),
    }
}

#[derive(Deserialize)]
pub(crate) struct WireTaskStatus {
    #[serde(default, deserialize_with = "string_or_empty")]
    upid: String,
    #[serde(default, deserialize_with = "string_or_empty")]
    node: String,
    #[serde(rename = "type", default, deserialize_with = "string_or_empty")]
    task_type: String,
    #[serde(default, deserialize_with = "string_or_empty")]
    id: String,
    #[serde(default, deserialize_with = "string_or_empty")]
    user: String,
    #[serde(default, deserialize_with = "string_opt")]
    tokenid: Option<String>,
    #[serde(default, deserialize_with = "string_or_empty")]
    status: String,
    #[serde(default, deserialize_with = "string_opt")]
    exitstatus: Option<String>,
}

impl WireTaskStatus {
    /// Fields the answer leaves out are taken from the UPID that was asked about.
    pub(crate) fn into_status(self, asked: &Upid) -> TaskStatus {
        let parts = asked.parts();
        let state = if self.status == "running" {
            TaskState::Running
        } else {
            match self.exitstatus.as_deref() {
                Some(exit) => TaskState::from_exit_status(exit),
                // PVE always sets an exit status once stopped; say so plainly if it did not.
                None => TaskState::Failed(format!("task {} without exit status", self.status)),
            }
        };
        let user = match (self.user.is_empty(), self.tokenid) {
            (true, _) => parts.map(|p| p.user.to_string()).unwrap_or_default(),
            (false, Some(token)) if !self.user.contains('!') => format!("{}!{token}", self.user),
            (false, _) => self.user,
        };
        TaskStatus {
            upid: if self.upid.is_empty() {
                asked.clone()
            } else {
                Upid(self.upid)
            },
            node: if self.node.is_empty() {
                parts.map(|p| p.node.to_string()).unwrap_or_default()
            } else {
                self.node
            },
            task_type: if self.task_type.is_empty() {
                parts.map(|p| p.task_type.to_string()).unwrap_or_default()
            } else {
                self.task_type
            },
            id: if self.id.is_empty() {
                parts.map(|p| p.id.to_string()).unwrap_or_default()
            } else {
                self.id
            },
            user,
            state,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WireLogLine {
    #[serde(deserialize_with = "u64_req")]
    n: u64,
    #[serde(default, deserialize_with = "string_or_empty")]
    t: String,
}

impl From<WireLogLine> for TaskLogLine {
    fn from(w: WireLogLine) -> Self {
        TaskLogLine { n: w.n, t: w.t }
    }
}

#[derive(Deserialize)]
struct WireIpAddress {
    #[serde(
        rename = "ip-address-type",
        default,
        deserialize_with = "string_or_empty"
    )]
    ip_address_type: String,
    #[serde(rename = "ip-address", default, deserialize_with = "string_or_empty")]
    ip_address: String,
    #[serde(default, deserialize_with = "u8_opt")]
    prefix: Option<u8>,
}

#[derive(Deserialize)]
pub(crate) struct WireInterface {
    #[serde(default, deserialize_with = "string_or_empty")]
    name: String,
    #[serde(rename = "hardware-address", default, deserialize_with = "string_opt")]
    hardware_address: Option<String>,
    #[serde(rename = "ip-addresses", default)]
    ip_addresses: Option<Vec<WireIpAddress>>,
}

impl From<WireInterface> for AgentInterface {
    fn from(w: WireInterface) -> Self {
        AgentInterface {
            name: w.name,
            hardware_address: w.hardware_address,
            ip_addresses: w
                .ip_addresses
                .unwrap_or_default()
                .into_iter()
                .filter(|a| !a.ip_address.is_empty())
                .map(|a| AgentIpAddress {
                    ip_address_type: a.ip_address_type,
                    ip_address: a.ip_address,
                    prefix: a.prefix,
                })
                .collect(),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WireOsInfo {
    #[serde(default, deserialize_with = "string_opt")]
    id: Option<String>,
    #[serde(default, deserialize_with = "string_opt")]
    name: Option<String>,
    #[serde(rename = "pretty-name", default, deserialize_with = "string_opt")]
    pretty_name: Option<String>,
    #[serde(default, deserialize_with = "string_opt")]
    version: Option<String>,
    #[serde(rename = "kernel-release", default, deserialize_with = "string_opt")]
    kernel_release: Option<String>,
    #[serde(default, deserialize_with = "string_opt")]
    machine: Option<String>,
}

impl From<WireOsInfo> for OsInfo {
    fn from(w: WireOsInfo) -> Self {
        OsInfo {
            id: w.id,
            name: w.name,
            pretty_name: w.pretty_name,
            version: w.version,
            kernel_release: w.kernel_release,
            machine: w.machine,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WireHostName {
    #[serde(rename = "host-name", deserialize_with = "string_req")]
    pub(crate) host_name: String,
}

#[derive(Deserialize)]
pub(crate) struct WireExecPid {
    #[serde(deserialize_with = "u64_req")]
    pub(crate) pid: u64,
}

#[derive(Deserialize)]
pub(crate) struct WireExecStatus {
    #[serde(default, deserialize_with = "bool_lenient")]
    exited: bool,
    #[serde(default, deserialize_with = "i64_opt")]
    exitcode: Option<i64>,
    #[serde(default, deserialize_with = "i64_opt")]
    signal: Option<i64>,
    #[serde(rename = "out-data", default, deserialize_with = "string_opt")]
    out_data: Option<String>,
    #[serde(rename = "err-data", default, deserialize_with = "string_opt")]
    err_data: Option<String>,
}

impl From<WireExecStatus> for ExecStatus {
    fn from(w: WireExecStatus) -> Self {
        ExecStatus {
            exited: w.exited,
            exitcode: w.exitcode,
            signal: w.signal,
            out_data: w.out_data,
            err_data: w.err_data,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WireTicket {
    #[serde(deserialize_with = "string_req")]
    pub(crate) ticket: String,
    #[serde(rename = "CSRFPreventionToken", deserialize_with = "string_req")]
    pub(crate) csrf: String,
}

/// The QGA error object a generic agent command passes through with HTTP 200:
/// `{"result":{"error":{"class":"CommandNotFound","desc":"..."}}}`.
pub(crate) fn agent_error(result: &Value) -> Option<String> {
    let error = result.as_object()?.get("error")?;
    let class = error
        .get("class")
        .and_then(Value::as_str)
        .unwrap_or("GenericError");
    let desc = error
        .get("desc")
        .and_then(Value::as_str)
        .unwrap_or("(no description)");
    Some(format!("Agent error: {class}: {desc}"))
}

#[cfg(test)]
mod tests {
    //! PVE's documented example JSON, verbatim (strings for numbers, 0/1 booleans, extra fields).
    use super::*;
    use serde_json::json;

    fn data<T: serde::de::DeserializeOwned>(body: &str) -> T {
        let envelope: Value = serde_json::from_str(body).expect("example is JSON");
        serde_json::from_value(envelope["data"].clone()).expect("decodes")
    }

    #[test]
    fn version() {
        let v: Version = data::<WireVersion>(
            r#"{"data":{"version":"8.2.4","release":"8.2","repoid":"faa83925c9641325"}}"#,
        )
        .into();
        assert_eq!(v.version, "8.2.4");
        assert_eq!(v.release, "8.2");
    }

    #[test]
    fn nodes() {
        let nodes: Vec<WireNode> = data(
            r#"{"data":[{"node":"pve1","id":"node/pve1","type":"node","status":"online","level":"",
  "cpu":0.0213,"maxcpu":16,"mem":8123457536,"maxmem":67108864000,"disk":9814016000,
  "maxdisk":100861726720,"uptime":864021,
  "ssl_fingerprint":"5A:1B:9C"}]}"#,
        );
        let node: NodeInfo = nodes.into_iter().next().expect("one").into();
        assert_eq!(node.node, "pve1");
        assert_eq!(node.status, "online");
        assert_eq!(node.maxmem, Some(67_108_864_000));
        assert_eq!(node.maxcpu, Some(16));
        assert_eq!(node.ssl_fingerprint.as_deref(), Some("5A:1B:9C"));
        // Without Sys.Audit the stats are absent.
        let bare: NodeInfo =
            data::<Vec<WireNode>>(r#"{"data":[{"node":"pve2","status":"offline"}]}"#)
                .into_iter()
                .next()
                .expect("one")
                .into();
        assert_eq!(bare.maxmem, None);
    }

    #[test]
    fn node_status() {
        let s: NodeStatus = data::<WireNodeStatus>(
            r##"{"data":{"uptime":864021,"idle":0,"loadavg":["0.31","0.28","0.22"],
 "kversion":"Linux 6.8.12-1-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.12-1 (2024-08-05T16:17Z)",
 "current-kernel":{"sysname":"Linux","release":"6.8.12-1-pve","version":"#1 SMP PREEMPT_DYNAMIC …","machine":"x86_64"},
 "boot-info":{"mode":"efi","secureboot":0},
 "cpuinfo":{"model":"AMD EPYC 7302P 16-Core Processor","sockets":1,"cores":16,"cpus":32,"mhz":"3000.000","hvm":"1","flags":"fpu vme …","user_hz":100},
 "cpu":0.0213,"wait":0.0004,
 "memory":{"total":67108864000,"used":8123457536,"free":58985406464,"available":58100000000},
 "ksm":{"shared":0},"swap":{"total":8589930496,"used":0,"free":8589930496},
 "pveversion":"pve-manager/8.2.4/faa83925c9641325",
 "rootfs":{"total":100861726720,"used":9814016000,"avail":85858230272,"free":91047710720}}}"##,
        )
        .into();
        assert_eq!(s.memory_total, 67_108_864_000);
        assert_eq!(s.memory_used, 8_123_457_536);
        assert_eq!(s.memory_free, 58_985_406_464);
        assert_eq!(
            s.pveversion.as_deref(),
            Some("pve-manager/8.2.4/faa83925c9641325")
        );
    }

    #[test]
    fn cluster_resources() {
        let list: Vec<Resource> = data::<Vec<WireResource>>(
            r#"{"data":[
 {"id":"qemu/9000","vmid":9000,"type":"qemu","node":"pve1","name":"ubuntu-2404-tmpl","status":"stopped",
  "template":1,"uptime":0,"maxcpu":2,"cpu":0,"maxmem":2147483648,"mem":0,"maxdisk":34359738368,"disk":0,
  "netin":0,"netout":0,"diskread":0,"diskwrite":0,"tags":"tmpl"},
 {"id":"qemu/101","vmid":101,"type":"qemu","node":"pve1","name":"web-1","status":"running","template":0,
  "uptime":3512,"maxcpu":4,"cpu":0.0131,"maxmem":4294967296,"mem":1298456789,"memhost":1400000000,
  "maxdisk":34359738368,"disk":0,"netin":123456,"netout":654321,"diskread":2345678,"diskwrite":3456789,
  "pool":"ci","hastate":"started"},
 {"id":"qemu/102","vmid":102,"type":"qemu","node":"pve1","status":"unknown","lock":"clone"},
 {"id":"storage/pve1/ssd","type":"storage","node":"pve1","storage":"ssd","shared":0,"content":"images,rootdir","disk":"1000","maxdisk":"5000"}]}"#,
        )
        .into_iter()
        .map(Resource::from)
        .collect();
        assert_eq!(list.len(), 4);
        assert_eq!(list[0].kind, "qemu");
        assert_eq!(list[0].vmid, Some(9000));
        assert!(list[0].template);
        assert!(!list[1].template);
        assert_eq!(list[2].lock.as_deref(), Some("clone"));
        assert_eq!(list[2].name, None);
        assert_eq!(list[3].storage.as_deref(), Some("ssd"));
        assert_eq!(list[3].maxdisk, Some(5000));
        assert!(!list[3].shared);
    }

    #[test]
    fn nextid_is_a_string() {
        let id: Value = data(r#"{"data":"100"}"#);
        assert_eq!(crate::pve::decode::value_to_u64(&id), Some(100));
    }

    #[test]
    fn vm_list_and_status() {
        let list: Vec<VmListEntry> = data::<Vec<WireVmListEntry>>(
            r#"{"data":[{"vmid":101,"name":"web-1","status":"running","pid":4127,"uptime":3512,"cpus":4,"cpu":0.0131,
 "maxmem":4294967296,"mem":1298456789,"memhost":1400000000,"maxdisk":34359738368,"disk":0,
 "netin":123456,"netout":654321,"serial":1,"tags":"web",
 "pressurecpusome":0,"pressurecpufull":0,"pressureiosome":0,"pressureiofull":0,"pressurememorysome":0,"pressurememoryfull":0},
 {"vmid":9000,"name":"ubuntu-2404-tmpl","status":"stopped","uptime":0,"cpus":2,"cpu":0,"maxmem":2147483648,
  "mem":0,"memhost":0,"maxdisk":34359738368,"disk":0,"netin":0,"netout":0,"template":1}]}"#,
        )
        .into_iter()
        .map(VmListEntry::from)
        .collect();
        assert_eq!(list[0].vmid, 101);
        assert_eq!(list[0].tags.as_deref(), Some("web"));
        assert!(list[1].template);

        let running = data::<WireVmStatus>(
            r#"{"data":{"vmid":101,"name":"web-1","status":"running","qmpstatus":"running","pid":4127,"uptime":3512,
 "cpus":4,"cpu":0.0131,"maxmem":4294967296,"mem":1298456789,"freemem":2900000000,"memhost":1400000000,
 "balloon":4294967296,"ballooninfo":{"actual":4294967296,"max_mem":4294967296,"total_mem":4100000000,"free_mem":2900000000},
 "maxdisk":34359738368,"disk":0,"diskread":2345678,"diskwrite":3456789,"netin":123456,"netout":654321,
 "nics":{"tap101i0":{"netin":123456,"netout":654321}},"blockstat":{"scsi0":{"rd_bytes":2345678,"wr_bytes":3456789}},
 "running-machine":"pc-q35-9.0+pve0","running-qemu":"9.0.2","proxmox-support":{"pbs-library-version":"1.4.1"},
 "ha":{"managed":0},"agent":1}}"#,
        )
        .into_status(101);
        assert_eq!(running.status, "running");
        assert!(running.agent);
        assert_eq!(running.uptime, Some(3512));

        let stopped = data::<WireVmStatus>(
            r#"{"data":{"vmid":9000,"name":"t","status":"stopped","qmpstatus":"stopped","uptime":0,"cpu":0,"cpus":2,
  "mem":0,"memhost":0,"maxmem":1,"disk":0,"maxdisk":1,"netin":0,"netout":0,"ha":{"managed":0},"template":1}}"#,
        )
        .into_status(9000);
        assert!(!stopped.agent);
        assert!(stopped.template);
        assert_eq!(stopped.lock, None);
    }

    #[test]
    fn config_keeps_every_key_as_text() {
        let map: serde_json::Map<String, Value> = data(
            r#"{"data":{"digest":"5f1c2a1d5c8e6e7a0f1b0a9c3e3f4d2b1a0c9e8f","name":"web-1","ostype":"l26","machine":"q35",
 "bios":"ovmf","efidisk0":"local-lvm:vm-101-disk-1,efitype=4m,pre-enrolled-keys=1,size=4M",
 "cores":2,"sockets":1,"cpu":"x86-64-v2-AES","memory":"4096","numa":0,"agent":"1",
 "scsihw":"virtio-scsi-single","scsi0":"local-lvm:vm-101-disk-0,iothread=1,size=32G",
 "ide2":"local-lvm:vm-101-cloudinit,media=cdrom","boot":"order=scsi0;ide2;net0",
 "net0":"virtio=BC:24:11:4F:2A:9E,bridge=vmbr1","ipconfig0":"ip=dhcp","ciuser":"ubuntu",
 "sshkeys":"ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIOq%2Bx%2F9k%20deploy%40ci%0A",
 "cipassword":"**********","serial0":"socket","vga":"serial0","onboot":1,
 "smbios1":"uuid=7d0c1f1e-2c3b-4a5d-8e9f-0a1b2c3d4e5f","vmgenid":"1b3c5d7e-…",
 "meta":"creation-qemu=9.0.2,ctime=1724424369","tags":"web"}}"#,
        );
        let config = vm_config(map);
        assert_eq!(config.get("memory"), Some("4096"));
        assert_eq!(config.get("cores"), Some("2"));
        assert_eq!(config.get("onboot"), Some("1"));
        assert_eq!(config.net0_mac().as_deref(), Some("BC:24:11:4F:2A:9E"));
        assert!(!config.is_template());
        assert_eq!(config.lock(), None);
        let locked = vm_config(data(
            r#"{"data":{"lock":"clone","template":1,"memory":2048}}"#,
        ));
        assert_eq!(locked.lock(), Some("clone"));
        assert!(locked.is_template());
        assert_eq!(locked.get("memory"), Some("2048"));
    }

    #[test]
    fn net0_mac_in_every_spelling() {
        let with = |net0: &str| {
            VmConfig {
                values: [("net0".to_string(), net0.to_string())].into(),
            }
            .net0_mac()
        };
        assert_eq!(
            with("virtio=bc:24:11:4f:2a:9e,bridge=vmbr1").as_deref(),
            Some("BC:24:11:4F:2A:9E")
        );
        assert_eq!(
            with("model=e1000,macaddr=BC:24:11:00:00:01,bridge=vmbr0").as_deref(),
            Some("BC:24:11:00:00:01")
        );
        assert_eq!(with("virtio,bridge=vmbr1"), None);
        assert_eq!(VmConfig::default().net0_mac(), None);
    }

    #[test]
    fn task_status_running_ok_warnings_failed() {
        let upid = Upid("UPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam:".into());
        let running = data::<WireTaskStatus>(
            r#"{"data":{"upid":"UPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam:","node":"pve1","pid":238066,
 "pstart":28492756,"starttime":1724424369,"type":"qmclone","id":"9000","user":"root@pam","status":"running"}}"#,
        )
        .into_status(&upid);
        assert_eq!(running.state, TaskState::Running);
        assert_eq!(running.task_type, "qmclone");
        assert_eq!(running.id, "9000");
        assert_eq!(running.node, "pve1");

        let state = |exit: &str| {
            data::<WireTaskStatus>(
                &json!({"data": {"status": "stopped", "exitstatus": exit, "id": 9000}}).to_string(),
            )
            .into_status(&upid)
            .state
        };
        assert_eq!(state("OK"), TaskState::Ok);
        assert_eq!(state("WARNINGS: 2"), TaskState::Warnings(2));
        assert_eq!(
            state(
                "clone failed: can't lock file '/var/lock/qemu-server/lock-133.conf' - got timeout"
            ),
            TaskState::Failed(
                "clone failed: can't lock file '/var/lock/qemu-server/lock-133.conf' - got timeout"
                    .into()
            )
        );
        assert_eq!(
            state("unexpected status"),
            TaskState::Failed("unexpected status".into())
        );
        assert!(TaskState::Warnings(2).is_success());
        assert!(TaskState::Failed("VM 101 already running".into()).is_success_for_start());
        assert!(!TaskState::Failed("VM is locked (clone)".into()).is_success_for_start());
        assert_eq!(
            TaskState::Failed("clone failed: can't lock file 'x' - got timeout".into())
                .failure_class(),
            Some(crate::pve::ErrorClass::Transient)
        );

        // Numeric id, token user split in two: fields are filled from the UPID and re-joined.
        let token = data::<WireTaskStatus>(
            r#"{"data":{"status":"stopped","exitstatus":"OK","user":"root@pam","tokenid":"ci","id":9000}}"#,
        )
        .into_status(&upid);
        assert_eq!(token.user, "root@pam!ci");
        assert_eq!(token.id, "9000");
        assert_eq!(token.upid, upid);
        assert_eq!(token.task_type, "qmclone");
    }

    #[test]
    fn task_log() {
        let lines: Vec<TaskLogLine> = data::<Vec<WireLogLine>>(
            r#"{"data":[{"n":1,"t":"creating a clone of VM 9000 with ID 102"},
         {"n":2,"t":"create linked clone of drive scsi0 (local-lvm:base-9000-disk-0)"},
         {"n":3,"t":"  Logical volume \"vm-102-disk-0\" created."},
         {"n":4,"t":"TASK OK"}],
 "total":4}"#,
        )
        .into_iter()
        .map(TaskLogLine::from)
        .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[3],
            TaskLogLine {
                n: 4,
                t: "TASK OK".into()
            }
        );
    }

    #[test]
    fn agent_results() {
        let result: Value = data::<Value>(
            r#"{"data":{"result":[
  {"name":"lo","hardware-address":"00:00:00:00:00:00",
   "ip-addresses":[{"ip-address-type":"ipv4","ip-address":"127.0.0.1","prefix":8},
                   {"ip-address-type":"ipv6","ip-address":"::1","prefix":128}],
   "statistics":{"rx-bytes":1240,"rx-dropped":0,"rx-errs":0,"rx-packets":16,"tx-bytes":1240,"tx-dropped":0,"tx-errs":0,"tx-packets":16}},
  {"name":"eth0","hardware-address":"bc:24:11:4f:2a:9e",
   "ip-addresses":[{"ip-address-type":"ipv4","ip-address":"10.0.0.57","prefix":24},
                   {"ip-address-type":"ipv6","ip-address":"fe80::be24:11ff:fe4f:2a9e","prefix":64}]},
  {"name":"sit0"}]}}"#,
        )["result"]
            .clone();
        let interfaces: Vec<AgentInterface> = serde_json::from_value::<Vec<WireInterface>>(result)
            .expect("decodes")
            .into_iter()
            .map(Into::into)
            .collect();
        assert_eq!(interfaces.len(), 3);
        assert_eq!(
            interfaces[1].hardware_address.as_deref(),
            Some("bc:24:11:4f:2a:9e")
        );
        assert_eq!(interfaces[1].ip_addresses[0].ip_address, "10.0.0.57");
        assert_eq!(interfaces[1].ip_addresses[0].prefix, Some(24));
        assert_eq!(interfaces[2].hardware_address, None);
        assert!(interfaces[2].ip_addresses.is_empty());

        let os: OsInfo = serde_json::from_value::<WireOsInfo>(
            data::<Value>(
                r##"{"data":{"result":{"id":"ubuntu","name":"Ubuntu","pretty-name":"Ubuntu 24.04.1 LTS","version":"24.04.1 LTS (Noble Numbat)",
  "version-id":"24.04","kernel-release":"6.8.0-41-generic","kernel-version":"#41-Ubuntu SMP PREEMPT_DYNAMIC …","machine":"x86_64"}}}"##,
            )["result"]
                .clone(),
        )
        .expect("decodes")
        .into();
        assert_eq!(os.pretty_name.as_deref(), Some("Ubuntu 24.04.1 LTS"));
        assert_eq!(os.kernel_release.as_deref(), Some("6.8.0-41-generic"));

        let host: WireHostName = serde_json::from_value(
            data::<Value>(r#"{"data":{"result":{"host-name":"web-1"}}}"#)["result"].clone(),
        )
        .expect("decodes");
        assert_eq!(host.host_name, "web-1");

        let qga_error = data::<Value>(
            r#"{"data":{"result":{"error":{"class":"CommandNotFound","desc":"Command guest-get-osinfo has been disabled"}}}}"#,
        );
        assert_eq!(
            agent_error(&qga_error["result"]).as_deref(),
            Some("Agent error: CommandNotFound: Command guest-get-osinfo has been disabled")
        );
        assert_eq!(agent_error(&json!({})), None);
        assert_eq!(agent_error(&json!([])), None);
    }

    #[test]
    fn exec_and_exec_status() {
        let pid: WireExecPid = data(r#"{"data":{"pid":4711}}"#);
        assert_eq!(pid.pid, 4711);
        let cases = [
            (r#"{"data":{"exited":0}}"#, false, None, None, None, None),
            (
                r#"{"data":{"exited":1,"exitcode":0,"out-data":"hello\n"}}"#,
                true,
                Some(0),
                None,
                Some("hello\n"),
                None,
            ),
            (
                r#"{"data":{"exited":1,"exitcode":2,"err-data":"ls: cannot access '/nope': No such file or directory\n"}}"#,
                true,
                Some(2),
                None,
                None,
                Some("ls: cannot access '/nope': No such file or directory\n"),
            ),
            (
                r#"{"data":{"exited":1,"signal":9}}"#,
                true,
                None,
                Some(9),
                None,
                None,
            ),
            (
                r#"{"data":{"exited":true,"exitcode":"0","out-truncated":1,"out-data":"x"}}"#,
                true,
                Some(0),
                None,
                Some("x"),
                None,
            ),
        ];
        for (body, exited, exitcode, signal, out, err) in cases {
            let status: ExecStatus = data::<WireExecStatus>(body).into();
            assert_eq!(status.exited, exited, "{body}");
            assert_eq!(status.exitcode, exitcode, "{body}");
            assert_eq!(status.signal, signal, "{body}");
            assert_eq!(status.out_data.as_deref(), out, "{body}");
            assert_eq!(status.err_data.as_deref(), err, "{body}");
        }
    }

    #[test]
    fn ticket() {
        let t: WireTicket = data(
            r#"{"data":{
  "username":"root@pam",
  "ticket":"PVE:root@pam:66C8A0B1::K3Jv...base64-RSA-signature...==",
  "CSRFPreventionToken":"66C8A0B1:Yy2u9fK3...base64-hmac...",
  "cap":{"vms":{"VM.Audit":1,"VM.PowerMgmt":1},"storage":{},"access":{},"nodes":{},"dc":{},"sdn":{},"mapping":{}},
  "clustername":"cl1"}}"#,
        );
        assert!(t.ticket.starts_with("PVE:root@pam:"));
        assert_eq!(t.csrf, "66C8A0B1:Yy2u9fK3...base64-hmac...");
    }

    #[test]
    fn wrong_shapes_are_errors_not_zeroes() {
        assert!(serde_json::from_value::<WireVmListEntry>(json!({"vmid":"abc"})).is_err());
        assert!(
            serde_json::from_value::<WireVmStatus>(json!({"status":"running","agent":"perhaps"}))
                .is_err()
        );
        assert!(serde_json::from_value::<WireExecPid>(json!({})).is_err());
    }
}
