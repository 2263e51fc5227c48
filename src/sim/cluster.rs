//! The cluster's state: nodes, VMs (config, pending changes, power and guest timeline), volumes
//! on storages, tasks, and the per-VM records behind `/sim/stats`. Mutated under one mutex with
//! short critical sections; every wait happens outside it.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::auth::Identity;
use super::clock::{Clock, rng_for};
use super::envelope::ApiError;
use super::scenario::{Scenario, StorageKind, StorageSpec};
use super::stats::VmStats;
use super::tasks::{Task, encode_upid};
use super::vmconfig::{self, Config};

pub struct NodeState {
    pub name: String,
    pub index: usize,
    /// Uptime at simulated second 0.
    pub uptime0: u64,
    pub next_pid: u32,
    /// pvestatd's cycle offset on this node.
    pub statd_phase: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Stopped,
    Running,
    Paused,
}

/// A running guest's timeline (simulated seconds since start).
#[derive(Debug, Clone)]
pub struct Guest {
    pub started_at: f64,
    pub pid: u32,
    pub booted_at: f64,
    pub agent_up_at: Option<f64>,
    pub ip_at: Option<f64>,
    pub cloud_init_at: Option<f64>,
    /// cloud-init ends in error (`faults.cloud_init_error`).
    pub cloud_init_failed: bool,
    /// Its NICs as QEMU started them (net0 first; only those with a MAC).
    pub nics: Vec<GuestNic>,
    /// The agent socket exists only when `agent` was enabled at start.
    pub agent_configured: bool,
}

impl GuestNic {
    /// The guest's name for it: `base` (net0's, such as `ens18`) counted on by the NIC's
    /// index, as PCI slot order names them (`ens19` for net1).
    pub fn name(&self, base: &str) -> String {
        let digits = base.len() - base.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (stem, number) = base.split_at(base.len() - digits);
        match number.parse::<usize>() {
            Ok(n) => format!("{stem}{}", n + self.index),
            Err(_) => format!("{base}{}", self.index),
        }
    }
}

/// One NIC of a running guest and the addresses cloud-init (or DHCP, or SLAAC) gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestNic {
    /// `net0`, `net1`, ...: its index.
    pub index: usize,
    pub mac: String,
    pub ipv4: Ipv4Addr,
    /// `ipv4`'s prefix length: the lease's /16, or the static address's own.
    pub prefix: u8,
    /// A static or automatic IPv6 address with its prefix length.
    pub ipv6: Option<(std::net::Ipv6Addr, u8)>,
}

impl Guest {
    pub fn has_ip(&self, now: f64) -> bool {
        self.ip_at.is_some_and(|t| t <= now)
    }
}

/// A simulated guest-exec process.
#[derive(Debug, Clone)]
pub struct ExecJob {
    pub done_at: f64,
    pub exitcode: i64,
    pub out: String,
    pub err: String,
}

/// A VM's own random durations, drawn once from (seed, VM name) so they do not depend on timing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Draws {
    pub clone_overhead_s: f64,
    pub linked_clone_s: f64,
    pub start_s: f64,
    pub boot_s: f64,
    pub agent_s: f64,
    pub dhcp_s: f64,
    pub cloud_init_s: f64,
    pub shutdown_s: f64,
    pub alloc_s: f64,
    pub ciupgrade_s: f64,
}

impl Draws {
    pub fn for_key(seed: u64, sc: &Scenario, key: &str) -> Draws {
        let mut r = rng_for(seed, "vm-draws", key);
        let t = &sc.timing;
        Draws {
            clone_overhead_s: t.clone_overhead_s.draw(&mut r),
            linked_clone_s: t.linked_clone_s.draw(&mut r),
            start_s: t.start_s.draw(&mut r),
            boot_s: t.boot_s.draw(&mut r),
            agent_s: t.agent_s.draw(&mut r),
            dhcp_s: t.dhcp_s.draw(&mut r),
            cloud_init_s: t.cloud_init_s.draw(&mut r),
            shutdown_s: t.shutdown_s.draw(&mut r),
            alloc_s: r.random_range(0.0..=1.0),
            // Drawn last: the draws before it stay what they were for a seed.
            ciupgrade_s: t.ciupgrade_s.draw(&mut r),
        }
    }
}

pub struct Vm {
    pub vmid: u32,
    pub node: String,
    pub conf: Config,
    pub pending: Config,
    pub pending_delete: Vec<String>,
    pub created_at: f64,
    pub power: Power,
    pub guest: Option<Guest>,
    /// 1-based order of the clone that created it.
    pub ordinal: Option<usize>,
    pub draws: Draws,
    pub execs: HashMap<i64, ExecJob>,
    pub next_exec_pid: i64,
    /// An HA resource (`vm:<id>` in the HA manager's config).
    pub ha: bool,
}

impl Vm {
    pub fn is_template(&self) -> bool {
        self.conf.get("template").is_some_and(|v| v == "1")
    }
    pub fn lock(&self) -> Option<&str> {
        self.conf.get("lock").map(|s| s.as_str())
    }
    pub fn name(&self) -> String {
        self.conf
            .get("name")
            .cloned()
            .unwrap_or_else(|| format!("VM {}", self.vmid))
    }
    /// Config with pending changes applied (what `GET config` shows by default).
    pub fn effective(&self) -> Config {
        let mut c = self.conf.clone();
        for (k, v) in &self.pending {
            c.insert(k.clone(), v.clone());
        }
        for k in &self.pending_delete {
            c.shift_remove(k);
        }
        c
    }
    pub fn apply_pending(&mut self) {
        for (k, v) in std::mem::take(&mut self.pending) {
            self.conf.insert(k, v);
        }
        for k in std::mem::take(&mut self.pending_delete) {
            self.conf.shift_remove(&k);
        }
    }
    pub fn memory_bytes(&self) -> u64 {
        self.conf
            .get("memory")
            .and_then(|m| vmconfig::memory_mib(m))
            .unwrap_or(512)
            << 20
    }
    pub fn cpus(&self) -> u64 {
        let n = |k: &str| {
            self.conf
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
        };
        n("cores") * n("sockets")
    }
    /// Size of the boot disk (`maxdisk`).
    pub fn boot_disk_bytes(&self) -> u64 {
        let boot_key = self
            .conf
            .get("boot")
            .and_then(|b| b.strip_prefix("order="))
            .and_then(|o| {
                o.split(';')
                    .find(|k| self.conf.contains_key(*k))
                    .map(str::to_string)
            });
        let candidates = boot_key
            .into_iter()
            .chain(["scsi0", "virtio0", "sata0", "ide0"].map(String::from));
        for k in candidates {
            if let Some(d) = self
                .conf
                .get(&k)
                .and_then(|v| vmconfig::parse_drive(v).ok())
                && !d.is_cdrom()
            {
                return d.size().unwrap_or(0);
            }
        }
        0
    }
    pub fn drives(&self) -> Vec<(String, vmconfig::Drive)> {
        self.conf
            .iter()
            .filter(|(k, _)| vmconfig::is_disk_key(k))
            .filter_map(|(k, v)| vmconfig::parse_drive(v).ok().map(|d| (k.clone(), d)))
            .collect()
    }
    /// `netN`, parsed.
    pub fn net(&self, index: usize) -> Option<vmconfig::Net> {
        self.conf
            .get(&format!("net{index}"))
            .and_then(|n| vmconfig::parse_net(n).ok())
    }
}

pub struct Cluster {
    pub nodes: Vec<NodeState>,
    pub vms: BTreeMap<u32, Vm>,
    pub tasks: HashMap<String, Task>,
    /// storage key → volume name → allocated bytes.
    pub volumes: HashMap<String, BTreeMap<String, u64>>,
    pub clones_accepted: usize,
    pub vm_stats: BTreeMap<u32, VmStats>,
    pub clones_by_name: BTreeMap<String, u64>,
    pub storages: Vec<StorageSpec>,
    /// Resource pools and their member VMs.
    pub pools: BTreeMap<String, std::collections::BTreeSet<u32>>,
    seed: u64,
    mac_counter: u64,
}

pub fn config_missing(node: &str, vmid: u32) -> ApiError {
    ApiError::die(format!(
        "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
    ))
}

pub fn no_config_for(node: &str, vmid: u32) -> String {
    format!("unable to find configuration file for VM {vmid} on node '{node}'")
}

impl Cluster {
    pub fn new(sc: &Scenario, seed: u64, clock: &Clock) -> Cluster {
        let mut rng = rng_for(seed, "nodes", "");
        let nodes = sc
            .cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(index, name)| NodeState {
                name: name.clone(),
                index,
                uptime0: rng.random_range(86_400..2_000_000),
                next_pid: rng.random_range(100_000..900_000),
                statd_phase: rng.random_range(0.0..sc.timing.pvestatd_interval_s),
            })
            .collect();
        let mut c = Cluster {
            nodes,
            vms: BTreeMap::new(),
            tasks: HashMap::new(),
            volumes: HashMap::new(),
            clones_accepted: 0,
            vm_stats: BTreeMap::new(),
            clones_by_name: BTreeMap::new(),
            storages: sc.storages.clone(),
            pools: sc
                .cluster
                .pools
                .iter()
                .map(|p| (p.clone(), Default::default()))
                .collect(),
            seed,
            mac_counter: 0,
        };
        c.create_template(sc, clock);
        c
    }

    fn create_template(&mut self, sc: &Scenario, clock: &Clock) {
        let t = &sc.template;
        let node = sc.template_node().to_string();
        let Some(st) = self.storage(&t.storage).cloned() else {
            return;
        };
        let efi = self.alloc_volume(
            &st,
            &node,
            t.vmid,
            VolumeKind::Base,
            "raw",
            efi_size(&st, true),
        );
        let root = self.alloc_volume(
            &st,
            &node,
            t.vmid,
            VolumeKind::Base,
            "qcow2",
            sc.template_allocated(),
        );
        let ci = self.alloc_volume(&st, &node, t.vmid, VolumeKind::CloudInit, "qcow2", 4 << 20);
        let mac = self.gen_mac(t.vmid);
        let mut conf = Config::new();
        for (k, v) in [
            ("agent", "1".to_string()),
            ("bios", "ovmf".into()),
            ("boot", "order=scsi0;ide2;net0".into()),
            ("cores", t.cores.to_string()),
            ("cpu", "x86-64-v2-AES".into()),
            (
                "efidisk0",
                format!(
                    "{efi},efitype=4m,pre-enrolled-keys=1,size={}",
                    vmconfig::format_size(efi_size(&st, true))
                ),
            ),
            ("ide2", format!("{ci},media=cdrom")),
            ("ipconfig0", "ip=dhcp".into()),
            ("machine", "q35".into()),
            ("memory", t.memory_mib.to_string()),
            (
                "meta",
                format!("creation-qemu=9.0.2,ctime={}", clock.epoch() - 86_400 * 30),
            ),
            ("name", t.name.clone()),
            ("net0", format!("virtio={mac},bridge={}", t.bridge)),
            ("numa", "0".into()),
            ("ostype", "l26".into()),
            (
                "scsi0",
                format!("{root},discard=on,iothread=1,size={}", t.disk_size),
            ),
            ("scsihw", "virtio-scsi-single".into()),
            ("serial0", "socket".into()),
            (
                "smbios1",
                format!("uuid={}", self.gen_uuid(t.vmid, "smbios")),
            ),
            ("sockets", t.sockets.to_string()),
            ("template", "1".into()),
            ("vga", "serial0".into()),
            ("vmgenid", self.gen_uuid(t.vmid, "vmgenid")),
        ] {
            conf.insert(k.to_string(), v);
        }
        self.vms.insert(
            t.vmid,
            Vm {
                vmid: t.vmid,
                node,
                conf,
                pending: Config::new(),
                pending_delete: Vec::new(),
                created_at: -1e9,
                power: Power::Stopped,
                guest: None,
                ordinal: None,
                draws: Draws::default(),
                execs: HashMap::new(),
                next_exec_pid: 1000,
                ha: false,
            },
        );
    }

    pub fn storage(&self, sid: &str) -> Option<&StorageSpec> {
        self.storages.iter().find(|s| s.id == sid)
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn node_index(&self, name: &str) -> usize {
        self.node(name).map(|n| n.index).unwrap_or(0)
    }

    /// The VM's config on `node`, else PVE's "does not exist".
    pub fn vm_on(&self, node: &str, vmid: u32) -> Result<&Vm, ApiError> {
        self.vms
            .get(&vmid)
            .filter(|v| v.node == node)
            .ok_or_else(|| config_missing(node, vmid))
    }

    pub fn vm_on_mut(&mut self, node: &str, vmid: u32) -> Result<&mut Vm, ApiError> {
        self.vms
            .get_mut(&vmid)
            .filter(|v| v.node == node)
            .ok_or_else(|| config_missing(node, vmid))
    }

    pub fn new_task(
        &mut self,
        clock: &Clock,
        node: &str,
        kind: &str,
        id: &str,
        who: &Identity,
        cancel: CancellationToken,
    ) -> String {
        let now = clock.now();
        let starttime = clock.epoch();
        let (pid, pstart) = match self.nodes.iter_mut().find(|n| n.name == node) {
            Some(n) => {
                n.next_pid += 1 + (n.next_pid % 7);
                (n.next_pid, ((n.uptime0 as f64 + now) * 100.0) as u64)
            }
            None => (1, 1),
        };
        let upid = encode_upid(node, pid, pstart, starttime, kind, id, &who.full_id());
        self.tasks.insert(
            upid.clone(),
            Task {
                upid: upid.clone(),
                node: node.to_string(),
                pid,
                pstart,
                starttime,
                kind: kind.to_string(),
                id: id.to_string(),
                user: who.user.clone(),
                tokenid: who.token.clone(),
                log: Vec::new(),
                exit: None,
                warnings: 0,
                cancel,
                endtime: None,
            },
        );
        upid
    }

    /// `BC:24:11:xx:xx:xx`, reproducible per (seed, vmid, n-th MAC made).
    pub fn gen_mac(&mut self, vmid: u32) -> String {
        self.mac_counter += 1;
        let mut r = rng_for(self.seed, "mac", &format!("{vmid}/{}", self.mac_counter));
        let b: [u8; 3] = r.random();
        format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2])
    }

    pub fn gen_uuid(&mut self, vmid: u32, what: &str) -> String {
        self.mac_counter += 1;
        let mut r = rng_for(self.seed, what, &format!("{vmid}/{}", self.mac_counter));
        let mut b: [u8; 16] = r.random();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// Bytes allocated in a volume (what a full clone copies), if the simulator made it.
    pub fn volume_allocated(&self, volid: &str, node: &str) -> Option<u64> {
        let (sid, name) = volid.split_once(':')?;
        let st = self.storage(sid)?;
        let key = super::storage::storage_key(sid, node, st.shared());
        self.volumes.get(&key)?.get(name).copied()
    }

    /// Allocates a volume holding `allocated` bytes and returns its volid (`ssd:vm-102-disk-0`, `shared:102/vm-102-disk-0.qcow2`).
    pub fn alloc_volume(
        &mut self,
        st: &StorageSpec,
        node: &str,
        vmid: u32,
        kind: VolumeKind,
        fmt: &str,
        allocated: u64,
    ) -> String {
        let key = super::storage::storage_key(&st.id, node, st.shared());
        let vols = self.volumes.entry(key).or_default();
        let file = |base: String| match st.kind {
            StorageKind::Lvmthin => base,
            StorageKind::Dir | StorageKind::Nfs => format!("{vmid}/{base}.{fmt}"),
        };
        let name = match kind {
            VolumeKind::CloudInit => file(format!("vm-{vmid}-cloudinit")),
            VolumeKind::Disk | VolumeKind::Base => {
                let prefix = if kind == VolumeKind::Base {
                    "base"
                } else {
                    "vm"
                };
                let mut n = 0;
                loop {
                    let candidate = file(format!("{prefix}-{vmid}-disk-{n}"));
                    // Disk numbers are unique per VM across base and vm volumes.
                    let other = file(format!(
                        "{}-{vmid}-disk-{n}",
                        if prefix == "vm" { "base" } else { "vm" }
                    ));
                    if !vols.contains_key(&candidate) && !vols.contains_key(&other) {
                        break candidate;
                    }
                    n += 1;
                }
            }
        };
        vols.insert(name.clone(), allocated);
        format!("{}:{name}", st.id)
    }

    pub fn free_volume(&mut self, volid: &str, node: &str) -> bool {
        let Some((sid, name)) = volid.split_once(':') else {
            return false;
        };
        let Some(st) = self.storage(sid).cloned() else {
            return false;
        };
        let key = super::storage::storage_key(sid, node, st.shared());
        let Some(vols) = self.volumes.get_mut(&key) else {
            return false;
        };
        if vols.remove(name).is_some() {
            return true;
        }
        // A linked clone's volume is `<base>/<own>`: the own part is the last path component
        // on LVM, the last two (`<vmid>/<file>`) on directories.
        let parts: Vec<&str> = name.split('/').collect();
        let own = match st.kind {
            StorageKind::Lvmthin => parts.last().map(|s| s.to_string()),
            _ if parts.len() >= 2 => Some(parts[parts.len() - 2..].join("/")),
            _ => None,
        };
        own.is_some_and(|o| vols.remove(&o).is_some())
    }

    pub fn used_bytes(&self, key: &str) -> u64 {
        self.volumes.get(key).map(|v| v.values().sum()).unwrap_or(0)
    }

    /// First free vmid ≥ 100 (nothing is reserved).
    pub fn next_free_id(&self) -> Option<u32> {
        (100..1_000_000).find(|id| !self.vms.contains_key(id))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    Disk,
    Base,
    CloudInit,
}

/// OVMF vars volume size: rounded to 4 MiB extents on LVM, file size on directories.
pub fn efi_size(st: &StorageSpec, four_m: bool) -> u64 {
    match st.kind {
        StorageKind::Lvmthin => 4 << 20,
        _ if four_m => 528 << 10,
        _ => 128 << 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_nics_are_named_in_slot_order() {
        let nic = |index| GuestNic {
            index,
            mac: "BC:24:11:00:00:01".into(),
            ipv4: [10, 20, 0, 3].into(),
            prefix: 16,
            ipv6: None,
        };
        assert_eq!(nic(0).name("ens18"), "ens18");
        assert_eq!(nic(1).name("ens18"), "ens19");
        assert_eq!(nic(2).name("eth0"), "eth2");
        assert_eq!(nic(1).name("lan"), "lan1");
    }

    #[tokio::test]
    async fn template_matches_the_seed() {
        let sc = Scenario::builtin("fast").expect("fast");
        let clock = Clock::new(1.0);
        let c = Cluster::new(&sc, 1, &clock);
        let t = c.vm_on("pve1", 9000).expect("template");
        assert!(t.is_template());
        assert_eq!(
            t.conf["scsi0"],
            "ssd:base-9000-disk-1,discard=on,iothread=1,size=128G"
        );
        assert_eq!(
            t.conf["efidisk0"],
            "ssd:base-9000-disk-0,efitype=4m,pre-enrolled-keys=1,size=4M"
        );
        assert!(t.conf["net0"].starts_with("virtio=BC:24:11:"));
        assert_eq!(t.boot_disk_bytes(), 128 << 30);
        assert_eq!(c.next_free_id(), Some(100));
        assert!(matches!(
            c.vm_on("pve1", 1234),
            Err(ApiError::Handler { code: 500, .. })
        ));
    }
}
