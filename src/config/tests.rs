use std::path::Path;

use super::parse::{
    CHECKS_KEYS, EXEC_CHECK_KEYS, HOOKS_KEYS, NIC_KEYS, OUTPUT_KEYS, PROXMOX_KEYS, ROLLOUT_KEYS,
    SPEC_KEYS, VM_ONLY_KEYS,
};
use super::*;
use crate::pve::{Auth, TlsTrust};

/// Lines 1-3.
const PROXMOX: &str =
    "[proxmox]\nurl = \"https://pve1.example.org:8006\"\ntoken_id = \"root@pam!rollout\"\n";
/// Lines 4-5 (after PROXMOX).
const ROLLOUT: &str = "[rollout]\nnodes = [\"pve1\"]\n";

fn minimal() -> String {
    format!("{PROXMOX}{ROLLOUT}")
}

/// `minimal()` with more lines from line 6 (still inside `[rollout]` until a new header).
fn with(extra: &str) -> String {
    format!("{PROXMOX}{ROLLOUT}{extra}\n")
}

const SKETCH: &str = r#"[proxmox]
url = "https://pve1.example.org:8006"
token_id = "root@pam!rollout"     # secret: env PVE_TOKEN_SECRET or token_secret_file, never inline in examples
# fingerprint = "AB:CD:..."       # or ca_cert = "pve-root-ca.pem"; insecure = true only on purpose

[rollout]
template = "ubuntu"               # name or vmid
vm_count = 2                      # validated range 1..=50 unless raised on purpose
vm_name_prefix = "ubuntu-opentofu"
deployment_delay = "30s"
nodes = ["pve1"]                  # several nodes: memory-aware placement

[defaults]
cores = 4
sockets = 2
memory = 32768                    # MiB
disk_size = "128G"
storage = "ssd"
format = "qcow2"
bridge = "vmbr1"
secure_boot = true

[vm_configs."web-server-1"]       # when present, these names are the VMs; keys override [defaults]
cores = 4
memory = 16384
disk_size = "128G"

[checks]
mode = "pipelined"                # or "sequential", the original wait_for_vm.sh flow's exact order
ip_timeout = "30m"
pings = 3
stabilization = "30s"
cloud_init = false

[output]
dir = "rollout-out"
"#;

const EXAMPLE: &str = include_str!("../../deploy.toml.example");

fn fp() -> String {
    "ab".repeat(32)
}

/// (what, config text, key the message must name, line it must point at)
fn bad_inputs() -> Vec<(&'static str, String, &'static str, Option<usize>)> {
    vec![
        (
            "vm_count above the default limit",
            with("vm_count = 51"),
            "rollout.vm_count",
            Some(6),
        ),
        (
            "vm_count zero",
            with("vm_count = 0"),
            "rollout.vm_count",
            Some(6),
        ),
        (
            "vm_count negative",
            with("vm_count = -3"),
            "rollout.vm_count",
            Some(6),
        ),
        (
            "vm_count above a raised limit",
            with("max_vms = 100\nvm_count = 101"),
            "rollout.vm_count",
            Some(7),
        ),
        (
            "vm_count as a string",
            with("vm_count = \"2\""),
            "rollout.vm_count",
            Some(6),
        ),
        (
            "vm_configs above the limit",
            with(&format!(
                "max_vms = 2\n{}",
                (1..=3)
                    .map(|i| format!("[vm_configs.vm-{i}]\n"))
                    .collect::<String>()
            )),
            "vm_configs",
            Some(7),
        ),
        (
            "delay without unit",
            with("deployment_delay = 30"),
            "rollout.deployment_delay",
            Some(6),
        ),
        (
            "delay with bad unit",
            with("deployment_delay = \"30 seconds\""),
            "rollout.deployment_delay",
            Some(6),
        ),
        (
            "clone limit as a word other than auto",
            with("max_clones_per_storage = \"fast\""),
            "rollout.max_clones_per_storage",
            Some(6),
        ),
        (
            "negative clone limit",
            with("max_clones_per_storage = -1"),
            "rollout.max_clones_per_storage",
            Some(6),
        ),
        (
            "zero timeout",
            with("[checks]\nip_timeout = \"0s\""),
            "checks.ip_timeout",
            Some(7),
        ),
        (
            "fractional duration",
            with("[checks]\nboot_timeout = \"1.5m\""),
            "checks.boot_timeout",
            Some(7),
        ),
        (
            "ip without prefix length",
            with("[defaults]\nip = \"10.0.10.21\""),
            "defaults.ip",
            Some(7),
        ),
        (
            "ip is a network address",
            with("[defaults]\nip = \"10.0.10.0/24\""),
            "defaults.ip",
            Some(7),
        ),
        (
            "ip prefix too long",
            with("[defaults]\nip = \"10.0.10.21/33\""),
            "defaults.ip",
            Some(7),
        ),
        (
            "ip as IPv6",
            with("[defaults]\nip = \"fd00::5/64\""),
            "defaults.ip",
            Some(7),
        ),
        (
            "ip_pool reversed",
            with("[defaults]\nip_pool = \"10.0.10.69-10.0.10.20/24\""),
            "defaults.ip_pool",
            Some(7),
        ),
        (
            "ip_pool across subnets",
            with("[defaults]\nip_pool = \"10.0.10.20-10.0.11.5/24\""),
            "defaults.ip_pool",
            Some(7),
        ),
        (
            "ip_pool without prefix",
            with("[defaults]\nip_pool = \"10.0.10.20-10.0.10.69\""),
            "defaults.ip_pool",
            Some(7),
        ),
        (
            "ip and ip_pool together",
            with("[defaults]\nip = \"10.0.10.5/24\"\nip_pool = \"10.0.10.20-10.0.10.69/24\""),
            "defaults.ip_pool",
            Some(8),
        ),
        (
            "gateway not an address",
            with("[defaults]\ngateway = \"router\""),
            "defaults.gateway",
            Some(7),
        ),
        (
            "vlan out of range",
            with("[defaults]\nvlan = 4095"),
            "defaults.vlan",
            Some(7),
        ),
        (
            "vlan as a string",
            with("[defaults]\nvlan = \"20\""),
            "defaults.vlan",
            Some(7),
        ),
        (
            "ip6 without a prefix",
            with("[defaults]\nip6 = \"fd00::5\""),
            "defaults.ip6",
            Some(7),
        ),
        (
            "ip6 as IPv4",
            with("[defaults]\nip6 = \"10.0.10.5/24\""),
            "defaults.ip6",
            Some(7),
        ),
        (
            "ip6 prefix too long",
            with("[defaults]\nip6 = \"fd00::5/129\""),
            "defaults.ip6",
            Some(7),
        ),
        (
            "gateway6 as IPv4",
            with("[defaults]\nip6 = \"fd00::5/64\"\ngateway6 = \"10.0.10.1\""),
            "defaults.gateway6",
            Some(8),
        ),
        (
            "gateway6 with ip6 auto",
            with("[defaults]\nip6 = \"auto\"\ngateway6 = \"fd00::1\""),
            "defaults.gateway6",
            Some(8),
        ),
        (
            "mtu outside networks",
            with("[defaults]\nmtu = 9000"),
            "defaults.mtu",
            Some(7),
        ),
        (
            "networks as a string",
            with("[defaults]\nnetworks = \"vmbr1\""),
            "defaults.networks",
            Some(7),
        ),
        (
            "networks empty",
            with("[defaults]\nnetworks = []"),
            "defaults.networks",
            Some(7),
        ),
        (
            "networks over PVE's 32 NICs",
            with(&format!(
                "[defaults]\nnetworks = [{}]",
                vec!["{ bridge = \"vmbr1\" }"; 33].join(", ")
            )),
            "defaults.networks",
            Some(7),
        ),
        (
            "networks entry not a table",
            with("[defaults]\nnetworks = [\"vmbr1\"]"),
            "defaults.networks[0]",
            Some(7),
        ),
        (
            "networks entry without bridge",
            with("[defaults]\nnetworks = [\n  { vlan = 20 },\n]"),
            "defaults.networks[0].bridge",
            Some(8),
        ),
        (
            "networks entry with an unknown key",
            with("[defaults]\nnetworks = [{ bridge = \"vmbr1\", vlna = 20 }]"),
            "defaults.networks[0].vlna",
            Some(7),
        ),
        (
            "networks entry bad bridge",
            with("[defaults]\nnetworks = [{ bridge = \"vmbr 1\" }]"),
            "defaults.networks[0].bridge",
            Some(7),
        ),
        (
            "networks vlan 0",
            with(
                "[defaults]\nnetworks = [\n  { bridge = \"vmbr1\" },\n  { bridge = \"vmbr2\", vlan = 0 },\n]",
            ),
            "defaults.networks[1].vlan",
            Some(9),
        ),
        (
            "networks mtu too large",
            with("[defaults]\nnetworks = [{ bridge = \"vmbr1\", mtu = 65521 }]"),
            "defaults.networks[0].mtu",
            Some(7),
        ),
        (
            "networks model unknown",
            with("[defaults]\nnetworks = [{ bridge = \"vmbr1\", model = \"virtio-net\" }]"),
            "defaults.networks[0].model",
            Some(7),
        ),
        (
            "networks firewall as a string",
            with("[defaults]\nnetworks = [{ bridge = \"vmbr1\", firewall = \"yes\" }]"),
            "defaults.networks[0].firewall",
            Some(7),
        ),
        (
            "networks ip not an address",
            with("[defaults]\nnetworks = [{ bridge = \"vmbr1\", ip = \"10.0.10.5\" }]"),
            "defaults.networks[0].ip",
            Some(7),
        ),
        (
            "networks ip and ip_pool together",
            with(
                "[defaults]\nnetworks = [{ bridge = \"vmbr1\", ip = \"10.0.10.5/24\", ip_pool = \"10.0.10.20-10.0.10.69/24\" }]",
            ),
            "defaults.networks[0].ip_pool",
            Some(7),
        ),
        (
            "networks gateway not an address",
            with("[defaults]\nnetworks = [{ bridge = \"vmbr1\", gateway = \"router\" }]"),
            "defaults.networks[0].gateway",
            Some(7),
        ),
        (
            "networks ip6 bad",
            with("[defaults]\nnetworks = [{ bridge = \"vmbr1\", ip6 = \"slaac\" }]"),
            "defaults.networks[0].ip6",
            Some(7),
        ),
        (
            "networks gateway6 bad",
            with(
                "[defaults]\nnetworks = [{ bridge = \"vmbr1\", ip6 = \"fd00::5/64\", gateway6 = \"fd00::zz\" }]",
            ),
            "defaults.networks[0].gateway6",
            Some(7),
        ),
        (
            "networks and bridge in one section",
            with("[defaults]\nbridge = \"vmbr1\"\nnetworks = [{ bridge = \"vmbr2\" }]"),
            "defaults.bridge",
            Some(7),
        ),
        (
            "networks and ip for one VM",
            with("[vm_configs.web-1]\nnetworks = [{ bridge = \"vmbr1\" }]\nip = \"10.0.10.5/24\""),
            "vm_configs.web-1.ip",
            Some(8),
        ),
        (
            "nameservers as a string",
            with("[defaults]\nnameservers = \"1.1.1.1\""),
            "defaults.nameservers",
            Some(7),
        ),
        (
            "nameservers with a name",
            with("[defaults]\nnameservers = [\"dns.example\"]"),
            "defaults.nameservers",
            Some(7),
        ),
        (
            "nameservers empty",
            with("[defaults]\nnameservers = []"),
            "defaults.nameservers",
            Some(7),
        ),
        (
            "searchdomain with underscore",
            with("[defaults]\nsearchdomain = \"lab_example\""),
            "defaults.searchdomain",
            Some(7),
        ),
        (
            "a VM's ip bad",
            with("[vm_configs.web]\nip = \"10.0.10.300/24\""),
            "vm_configs.web.ip",
            Some(7),
        ),
        (
            "placement unknown",
            with("placement = \"random\""),
            "rollout.placement",
            Some(6),
        ),
        (
            "memory_overcommit below 1",
            with("memory_overcommit = 0.5"),
            "rollout.memory_overcommit",
            Some(6),
        ),
        (
            "memory_overcommit as a string",
            with("memory_overcommit = \"1.5\""),
            "rollout.memory_overcommit",
            Some(6),
        ),
        (
            "clone mode unknown",
            with("[defaults]\nclone = \"thin\""),
            "defaults.clone",
            Some(7),
        ),
        (
            "linked clone with storage",
            with("[defaults]\nclone = \"linked\"\nstorage = \"ssd\""),
            "defaults.storage",
            Some(8),
        ),
        (
            "linked clone with format",
            with("[vm_configs.web]\nformat = \"raw\"\nclone = \"linked\""),
            "vm_configs.web.format",
            Some(7),
        ),
        (
            "cicustom as a string",
            with("[defaults]\ncicustom = \"user=local:snippets/a.yml\""),
            "defaults.cicustom",
            Some(7),
        ),
        (
            "cicustom unknown kind",
            with("[defaults]\ncicustom = { users = \"local:snippets/a.yml\" }"),
            "defaults.cicustom",
            Some(7),
        ),
        (
            "cicustom not a snippet",
            with("[defaults]\ncicustom = { user = \"local:iso/a.yml\" }"),
            "defaults.cicustom",
            Some(7),
        ),
        (
            "cicustom empty",
            with("[defaults]\ncicustom = {}"),
            "defaults.cicustom",
            Some(7),
        ),
        (
            "ciupgrade as a string",
            with("[defaults]\nciupgrade = \"no\""),
            "defaults.ciupgrade",
            Some(7),
        ),
        (
            "onboot as an integer",
            with("[defaults]\nonboot = 1"),
            "defaults.onboot",
            Some(7),
        ),
        (
            "pool with a space",
            with("[defaults]\npool = \"web tier\""),
            "defaults.pool",
            Some(7),
        ),
        (
            "tags as a string",
            with("[defaults]\ntags = \"web\""),
            "defaults.tags",
            Some(7),
        ),
        (
            "tag with a space",
            with("[defaults]\ntags = [\"web tier\"]"),
            "defaults.tags",
            Some(7),
        ),
        (
            "startup not an order",
            with("[defaults]\nstartup = \"first\""),
            "defaults.startup",
            Some(7),
        ),
        (
            "startup twice",
            with("[defaults]\nstartup = \"order=1,order=2\""),
            "defaults.startup",
            Some(7),
        ),
        (
            "cpu with a comma",
            with("[defaults]\ncpu = \"host,flags=+aes\""),
            "defaults.cpu",
            Some(7),
        ),
        (
            "disks not an array",
            with("[defaults]\ndisks = \"scsi1\""),
            "defaults.disks",
            Some(7),
        ),
        (
            "disks slot unknown to PVE",
            with("[defaults]\ndisks = [{ slot = \"scsi31\", size = \"10G\", storage = \"ssd\" }]"),
            "defaults.disks[0].slot",
            Some(7),
        ),
        (
            "disks slot twice",
            with(
                "[defaults]\ndisks = [\n  { slot = \"scsi1\", size = \"10G\", storage = \"ssd\" },\n  { slot = \"scsi1\", size = \"20G\", storage = \"ssd\" },\n]",
            ),
            "defaults.disks[1].slot",
            Some(9),
        ),
        (
            "disks in the boot disk's slot",
            with("[defaults]\ndisks = [{ slot = \"scsi0\", size = \"10G\", storage = \"ssd\" }]"),
            "defaults.disks[0].slot",
            Some(7),
        ),
        (
            "disks in a VM's own boot disk slot",
            with(
                "[defaults]\ndisks = [{ slot = \"virtio0\", size = \"10G\", storage = \"ssd\" }]\n[vm_configs.db]\ndisk = \"virtio0\"",
            ),
            "defaults.disks[0].slot",
            Some(7),
        ),
        (
            "disks size as an integer",
            with("[vm_configs.db]\ndisks = [{ slot = \"scsi1\", size = 200, storage = \"ssd\" }]"),
            "vm_configs.db.disks[0].size",
            Some(7),
        ),
        (
            "disks size not whole MiB",
            with("[defaults]\ndisks = [{ slot = \"scsi1\", size = \"100K\", storage = \"ssd\" }]"),
            "defaults.disks[0].size",
            Some(7),
        ),
        (
            "disks without storage",
            with("[defaults]\ndisks = [{ slot = \"scsi1\", size = \"10G\" }]"),
            "defaults.disks[0].storage",
            Some(7),
        ),
        (
            "disks bad format",
            with(
                "[defaults]\ndisks = [{ slot = \"scsi1\", size = \"10G\", storage = \"ssd\", format = \"vdi\" }]",
            ),
            "defaults.disks[0].format",
            Some(7),
        ),
        (
            "disks unknown key",
            with(
                "[defaults]\ndisks = [{ slot = \"scsi1\", size = \"10G\", storage = \"ssd\", ssd = true }]",
            ),
            "defaults.disks[0].ssd",
            Some(7),
        ),
        (
            "balloon negative",
            with("[defaults]\nballoon = -1"),
            "defaults.balloon",
            Some(7),
        ),
        (
            "description not text",
            with("[vm_configs.web]\ndescription = 3"),
            "vm_configs.web.description",
            Some(7),
        ),
        (
            "disk size without unit",
            with("[defaults]\ndisk_size = \"128\""),
            "defaults.disk_size",
            Some(7),
        ),
        (
            "disk size as integer",
            with("[defaults]\ndisk_size = 128"),
            "defaults.disk_size",
            Some(7),
        ),
        (
            "disk size in GB",
            with("[defaults]\ndisk_size = \"128GB\""),
            "defaults.disk_size",
            Some(7),
        ),
        (
            "memory too small",
            with("[defaults]\nmemory = 8"),
            "defaults.memory",
            Some(7),
        ),
        (
            "memory not whole MiB",
            with("[defaults]\nmemory = \"100K\""),
            "defaults.memory",
            Some(7),
        ),
        (
            "cores zero",
            with("[defaults]\ncores = 0"),
            "defaults.cores",
            Some(7),
        ),
        (
            "bad disk format",
            with("[defaults]\nformat = \"qcow3\""),
            "defaults.format",
            Some(7),
        ),
        (
            "bad storage id",
            with("[defaults]\nstorage = \"SSD Pool\""),
            "defaults.storage",
            Some(7),
        ),
        (
            "bad bridge",
            with("[defaults]\nbridge = \"vmbr 1\""),
            "defaults.bridge",
            Some(7),
        ),
        (
            "bad disk key",
            with("[defaults]\ndisk = \"efidisk0\""),
            "defaults.disk",
            Some(7),
        ),
        (
            "secure_boot quoted",
            with("[defaults]\nsecure_boot = \"true\""),
            "defaults.secure_boot",
            Some(7),
        ),
        (
            "not an ssh key",
            with("[defaults]\nsshkeys = \"hello world\""),
            "defaults.sshkeys",
            Some(7),
        ),
        (
            "sshkeys and sshkeys_file",
            with(
                "[defaults]\nsshkeys = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\"\nsshkeys_file = \"/nonexistent/keys.pub\"",
            ),
            "defaults.sshkeys_file",
            Some(8),
        ),
        (
            "missing sshkeys_file",
            with("[defaults]\nsshkeys_file = \"/nonexistent/keys.pub\""),
            "defaults.sshkeys_file",
            Some(7),
        ),
        (
            "underscore VM name",
            with("[vm_configs.my_vm]\ncores = 2"),
            "vm_configs.my_vm",
            Some(6),
        ),
        (
            "VM name with a space",
            with("[vm_configs.\"web 1\"]\ncores = 2"),
            "vm_configs.\"web 1\"",
            Some(6),
        ),
        (
            "VM names differing in case",
            with("[vm_configs.web-1]\n[vm_configs.WEB-1]"),
            "vm_configs.WEB-1",
            Some(7),
        ),
        (
            "duplicate vmid",
            with("[vm_configs.a1]\nvmid = 200\n[vm_configs.b1]\nvmid = 200"),
            "vm_configs.b1.vmid",
            Some(9),
        ),
        (
            "vmid below 100",
            with("[vm_configs.a1]\nvmid = 99"),
            "vm_configs.a1.vmid",
            Some(7),
        ),
        (
            "node not in rollout.nodes",
            with("[vm_configs.a1]\nnode = \"pve9\""),
            "vm_configs.a1.node",
            Some(7),
        ),
        (
            "unknown key in a VM",
            with("[vm_configs.a1]\ncpus = 2"),
            "vm_configs.a1.cpus",
            Some(7),
        ),
        (
            "vm_configs entry not a table",
            with("[vm_configs]\na1 = 3"),
            "vm_configs.a1",
            Some(7),
        ),
        (
            "VM setting directly under vm_configs",
            with("[vm_configs]\ncores = 3"),
            "vm_configs.cores",
            Some(7),
        ),
        (
            "bad prefix",
            with("vm_name_prefix = \"web_\""),
            "rollout.vm_name_prefix",
            Some(6),
        ),
        (
            "prefix too long for names",
            with(&format!(
                "name = \"r\"\nvm_name_prefix = \"{}\"",
                "a".repeat(62)
            )),
            "rollout.vm_name_prefix",
            Some(7),
        ),
        (
            "template vmid as string",
            with("template = \"9000\""),
            "rollout.template",
            Some(6),
        ),
        (
            "template vmid too small",
            with("template = 42"),
            "rollout.template",
            Some(6),
        ),
        (
            "template bad name",
            with("template = \"ubuntu 24.04\""),
            "rollout.template",
            Some(6),
        ),
        (
            "vmid range reversed",
            with("vmid_range = [300, 200]"),
            "rollout.vmid_range",
            Some(6),
        ),
        (
            "vmid range beyond PVE",
            with("vmid_range = [100, 1000000000]"),
            "rollout.vmid_range",
            Some(6),
        ),
        (
            "vmid range too small",
            with("vm_count = 5\nvmid_range = [200, 203]"),
            "rollout.vmid_range",
            Some(7),
        ),
        (
            "vmid_start and vmid_range",
            with("vmid_start = 200\nvmid_range = [200, 299]"),
            "rollout.vmid_range",
            Some(7),
        ),
        (
            "vmid_start too big",
            with("vmid_start = 1000000000"),
            "rollout.vmid_start",
            Some(6),
        ),
        (
            "nodes as a string",
            format!("{PROXMOX}[rollout]\nnodes = \"pve1\""),
            "rollout.nodes",
            Some(5),
        ),
        (
            "nodes empty",
            format!("{PROXMOX}[rollout]\nnodes = []"),
            "rollout.nodes",
            Some(5),
        ),
        (
            "nodes duplicate",
            format!("{PROXMOX}[rollout]\nnodes = [\"pve1\", \"PVE1\"]"),
            "rollout.nodes",
            Some(5),
        ),
        (
            "nodes bad name",
            format!("{PROXMOX}[rollout]\nnodes = [\"pve_1\"]"),
            "rollout.nodes",
            Some(5),
        ),
        (
            "nodes missing",
            format!("{PROXMOX}[rollout]\nvm_count = 2"),
            "rollout.nodes",
            Some(4),
        ),
        (
            "rollout name not a tag",
            with("name = \"my rollout\""),
            "rollout.name",
            Some(6),
        ),
        (
            "http url",
            format!(
                "[proxmox]\nurl = \"http://pve1:8006\"\ntoken_id = \"root@pam!rollout\"\n{ROLLOUT}"
            ),
            "proxmox.url",
            Some(2),
        ),
        (
            "url with a path",
            format!(
                "[proxmox]\nurl = \"https://pve1:8006/pve\"\ntoken_id = \"root@pam!rollout\"\n{ROLLOUT}"
            ),
            "proxmox.url",
            Some(2),
        ),
        (
            "url not a url",
            format!("[proxmox]\nurl = \"pve1\"\ntoken_id = \"root@pam!rollout\"\n{ROLLOUT}"),
            "proxmox.url",
            Some(2),
        ),
        (
            "url missing",
            format!("[proxmox]\ntoken_id = \"root@pam!rollout\"\n{ROLLOUT}"),
            "proxmox.url",
            Some(1),
        ),
        ("proxmox missing", ROLLOUT.to_string(), "proxmox", None),
        (
            "token id without name",
            format!("[proxmox]\nurl = \"https://pve1:8006\"\ntoken_id = \"root@pam\"\n{ROLLOUT}"),
            "proxmox.token_id",
            Some(3),
        ),
        (
            "token id without realm",
            format!("[proxmox]\nurl = \"https://pve1:8006\"\ntoken_id = \"root!ci\"\n{ROLLOUT}"),
            "proxmox.token_id",
            Some(3),
        ),
        (
            "token and user",
            format!("{PROXMOX}user = \"root@pam\"\n{ROLLOUT}"),
            "proxmox.user",
            Some(4),
        ),
        (
            "no login at all",
            format!("[proxmox]\nurl = \"https://pve1:8006\"\n{ROLLOUT}"),
            "proxmox.token_id",
            Some(1),
        ),
        (
            "secret file without token",
            format!(
                "[proxmox]\nurl = \"https://pve1:8006\"\nuser = \"root@pam\"\ntoken_secret_file = \"x\"\n{ROLLOUT}"
            ),
            "proxmox.token_secret_file",
            Some(4),
        ),
        (
            "bad user id",
            format!("[proxmox]\nurl = \"https://pve1:8006\"\nuser = \"root\"\n{ROLLOUT}"),
            "proxmox.user",
            Some(3),
        ),
        (
            "short fingerprint",
            format!("{PROXMOX}fingerprint = \"AB:CD:EF\"\n{ROLLOUT}"),
            "proxmox.fingerprint",
            Some(4),
        ),
        (
            "non-hex fingerprint",
            format!("{PROXMOX}fingerprint = \"{}\"\n{ROLLOUT}", "zz".repeat(32)),
            "proxmox.fingerprint",
            Some(4),
        ),
        (
            "max_in_flight zero",
            format!("{PROXMOX}max_in_flight = 0\n{ROLLOUT}"),
            "proxmox.max_in_flight",
            Some(4),
        ),
        (
            "max_in_flight_per_node above the workers a node can give",
            format!("{PROXMOX}max_in_flight_per_node = 17\n{ROLLOUT}"),
            "proxmox.max_in_flight_per_node",
            Some(4),
        ),
        (
            "insecure as string",
            format!("{PROXMOX}insecure = \"yes\"\n{ROLLOUT}"),
            "proxmox.insecure",
            Some(4),
        ),
        (
            "unknown proxmox key",
            format!("{PROXMOX}verify_ssl = false\n{ROLLOUT}"),
            "proxmox.verify_ssl",
            Some(4),
        ),
        (
            "unknown rollout key (typo)",
            with("vm_cout = 2"),
            "rollout.vm_cout",
            Some(6),
        ),
        (
            "unknown section",
            with("[network]\nbridge = \"vmbr0\""),
            "network",
            Some(6),
        ),
        (
            "key in the wrong section",
            with("[checks]\nvm_count = 3"),
            "checks.vm_count",
            Some(7),
        ),
        (
            "check mode unknown",
            with("[checks]\nmode = \"parallel\""),
            "checks.mode",
            Some(7),
        ),
        (
            "pings zero",
            with("[checks]\npings = 0"),
            "checks.pings",
            Some(7),
        ),
        (
            "bad CIDR",
            with("[checks]\nip_prefer = [\"10.0.0.0/33\"]"),
            "checks.ip_prefer",
            Some(7),
        ),
        (
            "CIDR with host bits",
            with("[checks]\nip_prefer = [\"10.1.2.3/8\"]"),
            "checks.ip_prefer",
            Some(7),
        ),
        (
            "ip_prefer not a list",
            with("[checks]\nip_prefer = \"10.0.0.0/8\""),
            "checks.ip_prefer",
            Some(7),
        ),
        (
            "output dir empty",
            with("[output]\ndir = \"\""),
            "output.dir",
            Some(7),
        ),
        (
            "section not a table",
            format!("checks = 3\n{PROXMOX}{ROLLOUT}"),
            "checks",
            Some(1),
        ),
        (
            "array of tables",
            format!("{PROXMOX}{ROLLOUT}[[checks]]\nmode = \"sequential\"\n"),
            "checks",
            Some(6),
        ),
        ("syntax error", with("[checks\nmode = 1"), "", Some(6)),
        (
            "duplicate key",
            with("vm_count = 1\nvm_count = 2"),
            "",
            Some(7),
        ),
        (
            "top-level key",
            format!("vm_count = 2\n{PROXMOX}{ROLLOUT}"),
            "vm_count",
            Some(1),
        ),
        (
            "hook command empty",
            with("[hooks]\non_verified = []"),
            "hooks.on_verified",
            Some(7),
        ),
        (
            "hook program empty",
            with("[hooks]\non_verified = [\"\", \"x\"]"),
            "hooks.on_verified",
            Some(7),
        ),
        (
            "hook command a string",
            with("[hooks]\non_verified = \"ansible-playbook site.yml\""),
            "hooks.on_verified",
            Some(7),
        ),
        (
            "hook argument not a string",
            with("[hooks]\non_verified = [\"echo\", 3]"),
            "hooks.on_verified",
            Some(7),
        ),
        (
            "hook unknown placeholder",
            with("[hooks]\non_verified = [\"echo\", \"{hostname}\"]"),
            "hooks.on_verified",
            Some(7),
        ),
        (
            "on_finished per-VM placeholder",
            with("[hooks]\non_finished = [\"echo\", \"{name}\"]"),
            "hooks.on_finished",
            Some(7),
        ),
        (
            "hook placeholder as the program",
            with("[hooks]\non_verified = [\"{output_dir}/x.sh\"]"),
            "hooks.on_verified",
            Some(7),
        ),
        (
            "hook path does not exist",
            with("[hooks]\non_finished = [\"./no-such-hook.sh\", \"{summary}\"]"),
            "hooks.on_finished",
            Some(7),
        ),
        (
            "hook program not in PATH",
            with("[hooks]\non_verified = [\"no-such-program-pve-rollout\"]"),
            "hooks.on_verified",
            Some(7),
        ),
        (
            "hooks max_parallel zero",
            with("[hooks]\nmax_parallel = 0"),
            "hooks.max_parallel",
            Some(7),
        ),
        (
            "hooks timeout zero",
            with("[hooks]\ntimeout = \"0s\""),
            "hooks.timeout",
            Some(7),
        ),
        (
            "hooks unknown key",
            with("[hooks]\non_verify = [\"true\"]"),
            "hooks.on_verify",
            Some(7),
        ),
        (
            "check command a string",
            with("[[checks.exec]]\nname = \"ssh\"\ncommand = \"ss -ltn\""),
            "checks.exec[0].command",
            Some(8),
        ),
        (
            "check command empty",
            with("[[checks.exec]]\nname = \"ssh\"\ncommand = []"),
            "checks.exec[0].command",
            Some(8),
        ),
        (
            "check without a name",
            with("[[checks.exec]]\ncommand = [\"true\"]"),
            "checks.exec[0].name",
            Some(6),
        ),
        (
            "check with a placeholder",
            with("[[checks.exec]]\nname = \"ping\"\ncommand = [\"ping\", \"{ip}\"]"),
            "checks.exec[0].command",
            Some(8),
        ),
        (
            "check regex invalid",
            with("[[checks.exec]]\nname = \"x\"\ncommand = [\"true\"]\nexpect_output = \"(\""),
            "checks.exec[0].expect_output",
            Some(9),
        ),
        (
            "check expect_exit out of range",
            with("[[checks.exec]]\nname = \"x\"\ncommand = [\"true\"]\nexpect_exit = 256"),
            "checks.exec[0].expect_exit",
            Some(9),
        ),
        (
            "check names twice",
            with(
                "[[checks.exec]]\nname = \"x\"\ncommand = [\"true\"]\n[[checks.exec]]\nname = \"x\"\ncommand = [\"true\"]",
            ),
            "checks.exec[1].name",
            Some(10),
        ),
        (
            "checks.exec not tables",
            with("[checks]\nexec = [\"true\"]"),
            "checks.exec[0]",
            Some(7),
        ),
        (
            "check added twice by name",
            with(
                "[[checks.exec]]\nname = \"x\"\ncommand = [\"true\"]\n[vm_configs.web-1]\n[[vm_configs.web-1.checks_exec_add]]\nname = \"x\"\ncommand = [\"true\"]",
            ),
            "vm_configs.web-1.checks_exec_add[0].name",
            Some(11),
        ),
        (
            "check add and replace together",
            with("[vm_configs.web-1]\nchecks_exec_add = []\nchecks_exec_replace = []"),
            "vm_configs.web-1.checks_exec_replace",
            Some(8),
        ),
    ]
}

#[test]
fn every_bad_input_is_refused_with_exit_2_naming_key_and_line() {
    let cases = bad_inputs();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    for (what, text, key, line) in cases {
        let err = match Config::parse(&text, "deploy.toml") {
            Ok(config) => panic!("{what}: accepted\n{text}\n{config:?}"),
            Err(e) => e,
        };
        assert_eq!(err.exit_code(), 2, "{what}");
        let message = err.to_string();
        if !key.is_empty() {
            assert!(
                err.mentions(key),
                "{what}: no problem names `{key}`: {message}"
            );
            assert!(message.contains(key), "{what}: `{key}` not in: {message}");
        }
        let problem = if key.is_empty() {
            &err.problems[0]
        } else {
            err.problems
                .iter()
                .find(|p| p.key.as_deref() == Some(key))
                .unwrap()
        };
        assert_eq!(problem.line, line, "{what}: {message}");
        if let Some(line) = line {
            assert!(
                message.contains(&format!("deploy.toml:{line}: ")),
                "{what}: {message}"
            );
        }
        assert!(!problem.message.is_empty(), "{what}");
    }
}

#[test]
fn networks_become_the_nics_and_the_single_nic_keys_change_net0() {
    let text = with(
        "[defaults]\nnetworks = [\n  { bridge = \"vmbr1\", ip_pool = \"10.0.10.20-10.0.10.69/24\", gateway = \"10.0.10.1\" },\n  \
         { bridge = \"vmbr2\", vlan = 20, model = \"e1000\", mtu = 9000, firewall = true, ip6 = \"auto\" },\n]\n\
         [vm_configs.db]\nip = \"10.0.10.5/24\"\nip6 = \"fd00:10::5/64\"\ngateway6 = \"fd00:10::1\"\n\
         [vm_configs.edge]\nnetworks = [{ bridge = \"vmbr9\" }]\n[vm_configs.web]\n",
    );
    let config = Config::parse(&text, "deploy.toml").unwrap();
    let vms = config.vms();
    let (db, edge, web) = (&vms[0].spec, &vms[1].spec, &vms[2].spec);
    // db: the defaults' two NICs, net0 with its own addresses.
    assert_eq!(db.networks.len(), 2);
    assert_eq!(db.networks[0].bridge, "vmbr1");
    assert_eq!(
        db.networks[0].address,
        Addressing::Static(HostAddress {
            ip: [10, 0, 10, 5].into(),
            prefix: 24
        })
    );
    assert_eq!(db.networks[0].gateway, Some([10, 0, 10, 1].into()));
    assert_eq!(
        db.networks[0].ip6,
        Some(Ip6Addressing::Static(Ip6Host {
            ip: "fd00:10::5".parse().unwrap(),
            prefix: 64
        }))
    );
    assert_eq!(db.networks[0].gateway6, Some("fd00:10::1".parse().unwrap()));
    let net1 = &db.networks[1];
    assert_eq!(
        (net1.bridge.as_str(), net1.vlan, net1.model.as_deref()),
        ("vmbr2", Some(20), Some("e1000"))
    );
    assert_eq!((net1.mtu, net1.firewall), (Some(9000), Some(true)));
    assert_eq!(
        (net1.address, net1.ip6),
        (Addressing::Dhcp, Some(Ip6Addressing::Auto))
    );
    // edge: its own list replaces the inherited NICs.
    assert_eq!(edge.networks, vec![Nic::on("vmbr9")]);
    // web: the defaults as they are.
    assert_eq!(web.networks, config.defaults.networks);
    assert!(matches!(web.networks[0].address, Addressing::Pool(_)));
}

#[test]
fn network_keys_are_read_and_merged() {
    let text = with(
        "[defaults]\nip_pool = \"10.0.10.20-10.0.10.69/24\"\ngateway = \"10.0.10.1\"\n\
         nameservers = [\"10.0.10.2\", \"fd00::2\"]\nsearchdomain = \"lab.example\"\n\
         [vm_configs.db]\nip = \"10.0.10.5/24\"\n[vm_configs.web]\n[vm_configs.dhcp]\nip = \"dhcp\"\n",
    );
    let config = Config::parse(&text, "deploy.toml").unwrap();
    let vms = config.vms();
    let db = &vms[0].spec;
    assert_eq!(
        db.primary().address,
        Addressing::Static(HostAddress {
            ip: [10, 0, 10, 5].into(),
            prefix: 24
        })
    );
    assert_eq!(
        vms[1].spec.primary().address,
        Addressing::Pool(AddressPool {
            first: [10, 0, 10, 20].into(),
            last: [10, 0, 10, 69].into(),
            prefix: 24
        })
    );
    assert_eq!(vms[2].spec.primary().address, Addressing::Dhcp);
    assert_eq!(db.primary().gateway, Some("10.0.10.1".parse().unwrap()));
    assert_eq!(db.nameservers.len(), 2);
    assert_eq!(db.searchdomain.as_deref(), Some("lab.example"));
    let err = Config::parse(
        &with("[defaults]\nip_pool = \"10.0.10.69-10.0.10.20/24\""),
        "deploy.toml",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("10.0.10.69 comes after 10.0.10.20"),
        "{err}"
    );
}

#[test]
fn messages_say_what_is_allowed_and_what_to_do() {
    let err = Config::parse(&with("vm_count = 80"), "deploy.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "deploy.toml:6: rollout.vm_count = 80: too many; allowed: 1 to 50. To deploy more \
         than 50 VMs, raise rollout.max_vms on purpose"
    );
    let err = Config::parse(&with("deployment_delay = 30"), "d.toml").unwrap_err();
    assert!(err.to_string().contains("Write \"30s\""), "{err}");
    let err = Config::parse(&with("vm_cout = 3"), "d.toml").unwrap_err();
    assert!(
        err.to_string().contains("Did you mean `vm_count`?"),
        "{err}"
    );
    let err = Config::parse(&with("[checks]\nvm_count = 3"), "d.toml").unwrap_err();
    assert!(err.to_string().contains("belongs in [rollout]"), "{err}");
    let err = Config::parse(&with("[vm_configs]\ncores = 3"), "d.toml").unwrap_err();
    assert!(err.to_string().contains("put it under [defaults]"), "{err}");
    let err = Config::parse(&with("[defaults]\nnode = \"pve1\""), "d.toml").unwrap_err();
    assert!(err.to_string().contains("[vm_configs.\"<name>\"]"), "{err}");
    let err = Config::parse(&with("[checks]\nip_prefer = [\"10.1.2.3/8\"]"), "d.toml").unwrap_err();
    assert!(
        err.to_string().contains("did you mean \"10.0.0.0/8\""),
        "{err}"
    );
    let err = Config::parse(&with("[defaults]\ndisk_size = \"128GB\""), "d.toml").unwrap_err();
    assert!(err.to_string().contains("powers of 1024"), "{err}");
}

#[test]
fn all_problems_are_reported_at_once_in_line_order() {
    let text = with("[defaults]\ncores = 0\nformat = \"qcow3\"\n[checks]\npings = 0");
    let err = Config::parse(&text, "deploy.toml").unwrap_err();
    let keys: Vec<_> = err
        .problems
        .iter()
        .map(|p| p.key.clone().unwrap())
        .collect();
    assert_eq!(keys, ["defaults.cores", "defaults.format", "checks.pings"]);
    let lines: Vec<_> = err.problems.iter().map(|p| p.line.unwrap()).collect();
    assert_eq!(lines, [7, 8, 10]);
    assert!(
        err.to_string().starts_with("deploy.toml: 3 problems"),
        "{err}"
    );
}

#[test]
fn the_design_sketch_parses_verbatim() {
    let config = Config::parse(SKETCH, "sketch.toml").unwrap();
    assert_eq!(config.proxmox.url, "https://pve1.example.org:8006");
    assert_eq!(config.proxmox.token_id.as_deref(), Some("root@pam!rollout"));
    assert_eq!(config.rollout.template, TemplateRef::Name("ubuntu".into()));
    assert_eq!(config.rollout.nodes, ["pve1"]);
    assert_eq!(config.rollout.deployment_delay, Duration::from_secs(30));
    // vm_configs names the VMs, so the sketch has one VM and says vm_count is ignored.
    let vms = config.vms();
    assert_eq!(vms.len(), 1);
    assert_eq!(config.rollout.vm_count, 1);
    assert_eq!(vms[0].name, "web-server-1");
    assert_eq!(vms[0].spec.memory, 16384);
    assert_eq!(vms[0].spec.cores, 4);
    assert_eq!(vms[0].spec.sockets, 2);
    assert_eq!(vms[0].spec.disk_size, 128 << 30);
    assert!(
        config
            .source
            .warnings
            .iter()
            .any(|w| w.contains("vm_count = 2 is ignored")),
        "{:?}",
        config.source.warnings
    );
    assert_eq!(config.checks.mode, CheckMode::Pipelined);
    assert_eq!(config.checks.ip_timeout, Duration::from_secs(1800));
    assert_eq!(config.output.dir, Path::new("rollout-out"));
}

#[test]
fn the_example_parses_and_documents_every_key() {
    let config = Config::parse(EXAMPLE, "deploy.toml.example").unwrap();
    assert_eq!(config.vms().len(), 2);
    assert_eq!(
        config.proxmox.token_secret_file.as_deref(),
        Some(Path::new("pve-token.secret"))
    );
    // Its values are the defaults: the same as a minimal config, bar the secret file and name.
    let minimal = Config::parse(&minimal(), "m.toml").unwrap();
    assert_eq!(config.defaults, minimal.defaults);
    assert_eq!(config.checks, minimal.checks);
    assert_eq!(config.rollout, minimal.rollout);
    assert_eq!(config.output, minimal.output);
    assert_eq!(config.hooks, minimal.hooks);
    let sections: [(&str, &[&str]); 8] = [
        ("proxmox", PROXMOX_KEYS),
        ("rollout", ROLLOUT_KEYS),
        ("defaults", SPEC_KEYS),
        ("vm_configs", VM_ONLY_KEYS),
        ("checks", CHECKS_KEYS),
        ("checks.exec", EXEC_CHECK_KEYS),
        ("hooks", HOOKS_KEYS),
        ("output", OUTPUT_KEYS),
    ];
    for (section, keys) in sections {
        assert!(
            EXAMPLE.contains(&format!("[{section}")),
            "[{section}] undocumented"
        );
        for key in keys {
            let documented = EXAMPLE.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                // An array of tables is documented by its header.
                l.starts_with(&format!("{key} =")) || l.starts_with(&format!("[[{section}.{key}]]"))
            });
            assert!(documented, "{section}.{key} is not in deploy.toml.example");
        }
    }
    // Every key of a `networks` entry, in the worked example of the list.
    let list = EXAMPLE
        .split_once("# networks = [")
        .map(|(_, rest)| rest.split_once("# ]").map_or(rest, |(list, _)| list))
        .expect("a networks example");
    for key in NIC_KEYS {
        assert!(
            list.contains(&format!("{key} =")),
            "networks' {key} is not in deploy.toml.example's networks example"
        );
    }
    // Uncommented, the example is a valid [defaults] (and the fixed-address entry too).
    let uncomment = |text: &str| -> String {
        text.lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            // The commented-out alternative entry, but not the comment above it.
            .map(|l| match l.trim_start().strip_prefix("# {") {
                Some(entry) => format!("{{{entry}"),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let text = with(&format!("[defaults]\nnetworks = [{}]", uncomment(list)));
    let config =
        Config::parse(&text, "deploy.toml.example").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.defaults.networks.len(), 3);
    assert_eq!(config.defaults.networks[1].vlan, Some(20));
}

#[test]
fn defaults_are_the_seeds() {
    let config = Config::parse(&minimal(), "m.toml").unwrap();
    let d = &config.defaults;
    assert_eq!((d.cores, d.sockets, d.memory), (4, 2, 32768));
    assert_eq!(d.disk_size, 128 << 30);
    assert_eq!(
        (
            d.storage.as_str(),
            d.format.as_str(),
            d.primary().bridge.as_str()
        ),
        ("ssd", "qcow2", "vmbr1")
    );
    assert_eq!(d.disk, "scsi0");
    assert!(d.secure_boot);
    let r = &config.rollout;
    assert_eq!(r.template, TemplateRef::Name("ubuntu".into()));
    assert_eq!(r.vm_count, 2);
    assert_eq!(r.vm_name_prefix, "ubuntu-opentofu");
    assert_eq!(r.name, "ubuntu-opentofu");
    assert_eq!(r.deployment_delay, Duration::from_secs(30));
    assert_eq!(r.vmid_range, None);
    let c = &config.checks;
    assert_eq!(c.mode, CheckMode::Pipelined);
    assert_eq!(c.ip_timeout, Duration::from_secs(30 * 60));
    assert_eq!(c.pings, 3);
    assert_eq!(c.stabilization, Duration::from_secs(30));
    assert!(!c.cloud_init && !c.ipv6);
    assert_eq!(c.ip_prefer, Cidr::rfc1918());
    assert_eq!(config.proxmox.max_in_flight, 16);
    assert_eq!(
        config.rollout.max_clones_per_storage,
        crate::config::ClonesPerStorage::Auto
    );
    assert_eq!(config.proxmox.max_in_flight_per_node, 2);
    assert!(!config.proxmox.insecure);
    assert_eq!(config.output.dir, Path::new("rollout-out"));
    let names: Vec<_> = config.vms().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["ubuntu-opentofu-1", "ubuntu-opentofu-2"]);
}

#[test]
fn overrides_merge_over_defaults_in_file_order() {
    let text = with(
        "[defaults]\ncores = 2\nmemory = \"8G\"\nciuser = \"ops\"\n\
         [vm_configs.\"db-1\"]\nmemory = 65536\nnode = \"pve1\"\nvmid = 301\nsecure_boot = false\n\
         [vm_configs.web-1]\ndisk_size = \"64G\"\nstorage = \"local-lvm\"\ndisk = \"virtio0\"\n",
    );
    let config = Config::parse(&text, "d.toml").unwrap();
    let vms = config.vms();
    let names: Vec<_> = vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["db-1", "web-1"]);
    assert_eq!(vms[0].spec.memory, 65536);
    assert_eq!(vms[0].spec.cores, 2);
    assert!(!vms[0].spec.secure_boot);
    assert_eq!(vms[0].node.as_deref(), Some("pve1"));
    assert_eq!(vms[0].vmid, Some(301));
    assert_eq!(vms[1].spec.memory, 8192);
    assert_eq!(vms[1].spec.disk_size, 64 << 30);
    assert_eq!(vms[1].spec.storage, "local-lvm");
    assert_eq!(vms[1].spec.disk, "virtio0");
    assert_eq!(vms[1].spec.ciuser.as_deref(), Some("ops"));
    assert!(vms[1].spec.secure_boot);
    assert_eq!(vms[1].node, None);
    assert_eq!(config.rollout.vm_count, 2);
}

#[test]
fn values_in_other_spellings() {
    let text = with(
        "template = 9000\nvmid_start = 200\nmax_vms = 120\nvm_count = 120\ndeployment_delay = \"1m30s\"",
    );
    let config = Config::parse(&text, "d.toml").unwrap();
    assert_eq!(config.rollout.template, TemplateRef::Id(9000));
    assert_eq!(config.rollout.vmid_range, Some((200, 999_999_999)));
    assert_eq!(config.vms().len(), 120);
    assert_eq!(config.rollout.deployment_delay, Duration::from_secs(90));
    let text = format!(
        "[proxmox]\nurl = \"https://10.0.0.5:8006/api2/json/\"\nuser = \"deploy@pve\"\nfingerprint = \"{}\"\n{ROLLOUT}vmid_range = [200, 201]\n[defaults]\nsshkeys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample a@b\", \"# comment\", \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB c@d\"]\n[checks]\nip_prefer = []\nipv6 = true\nmode = \"sequential\"\n",
        fp()
    );
    let config = Config::parse(&text, "d.toml").unwrap();
    assert_eq!(config.proxmox.url, "https://10.0.0.5:8006");
    assert_eq!(config.proxmox.user.as_deref(), Some("deploy@pve"));
    assert_eq!(
        config.proxmox.fingerprint.as_deref(),
        Some(vec!["AB"; 32].join(":").as_str())
    );
    assert_eq!(config.rollout.vmid_range, Some((200, 201)));
    assert_eq!(
        config.defaults.sshkeys.as_deref(),
        Some(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample a@b\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB c@d"
        )
    );
    assert!(config.checks.ip_prefer.is_empty());
    assert!(config.checks.ipv6);
    assert_eq!(config.checks.mode, CheckMode::Sequential);
}

#[test]
fn pinned_vmids_leave_room_in_the_range() {
    // Two VMs, one pinned inside the range: the other needs one more id, and [200, 201] has it.
    let text = with("vmid_range = [200, 201]\n[vm_configs.a1]\nvmid = 200\n[vm_configs.b1]");
    assert!(Config::parse(&text, "d.toml").is_ok());
    let text = with("vmid_range = [200, 200]\n[vm_configs.a1]\nvmid = 200\n[vm_configs.b1]");
    let err = Config::parse(&text, "d.toml").unwrap_err();
    assert!(err.mentions("rollout.vmid_range"), "{err}");
}

#[test]
fn load_reads_files_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keys.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample me@here\n",
    )
    .unwrap();
    let text = with("[defaults]\nsshkeys_file = \"keys.pub\"\n[proxmox.ignored]\n")
        .replace("[proxmox.ignored]\n", "");
    let text = text.replacen(
        "token_id = \"root@pam!rollout\"\n",
        "token_id = \"root@pam!rollout\"\ntoken_secret_file = \"tok.secret\"\n",
        1,
    );
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(
        config.defaults.sshkeys.as_deref(),
        Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample me@here")
    );
    assert_eq!(
        config.proxmox.token_secret_file,
        Some(dir.path().join("tok.secret"))
    );
    assert_eq!(config.source.origin, path.display().to_string());
    assert_eq!(config.line_of("proxmox.token_secret_file"), Some(4));

    let err = Config::load(&dir.path().join("missing.toml")).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains("cannot read the config file"),
        "{err}"
    );
}

#[test]
fn private_keys_are_refused_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUSECRET\n-----END OPENSSH PRIVATE KEY-----\n").unwrap();
    let text = with(&format!(
        "[defaults]\nsshkeys_file = {:?}",
        key.display().to_string()
    ));
    let err = Config::parse(&text, "d.toml").unwrap_err();
    assert!(err.to_string().contains("PRIVATE key"), "{err}");
    assert!(!err.to_string().contains("SECRET"), "{err}");
}

// ---- secrets -------------------------------------------------------------------------------

const SECRET: &str = "5f2c0a9e-very-secret-4b7d";

fn no_env(_: &str) -> Option<String> {
    None
}

#[cfg(unix)]
fn secret_file(dir: &Path, name: &str, content: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn token_config(secret_file: Option<&Path>, extra: &str) -> Config {
    let file = secret_file
        .map(|p| format!("token_secret_file = {:?}\n", p.display().to_string()))
        .unwrap_or_default();
    Config::parse(&format!("{PROXMOX}{file}{extra}{ROLLOUT}"), "deploy.toml").unwrap()
}

#[cfg(unix)]
#[test]
fn token_secret_from_a_private_file_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = secret_file(dir.path(), "tok", &format!("{SECRET}\n"), 0o600);
    let config = token_config(Some(&path), "");
    let client = config.client_config_with_env(1.0, &no_env).unwrap();
    match &client.auth {
        Auth::Token { token_id, secret } => {
            assert_eq!(token_id, "root@pam!rollout");
            assert_eq!(secret.expose(), SECRET);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.tls, TlsTrust::System);
    assert_eq!(
        (client.max_in_flight, client.max_in_flight_per_node),
        (16, 2)
    );
    assert_eq!(client.url, "https://pve1.example.org:8006");
    let debug = format!("{client:?} {config:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("<redacted>"));
}

#[test]
fn env_secret_wins_and_empty_env_falls_back() {
    let config = token_config(None, "");
    let env = |name: &str| (name == TOKEN_SECRET_ENV).then(|| format!("{SECRET}\n"));
    let client = config.client_config_with_env(0.01, &env).unwrap();
    let Auth::Token { secret, .. } = &client.auth else {
        panic!()
    };
    assert_eq!(secret.expose(), SECRET);
    assert_eq!(client.time_scale, 0.01);

    // A token with no secret source at all: named key, what to do.
    let empty = |_: &str| Some(String::new());
    let err = config.client_config_with_env(1.0, &empty).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.mentions("proxmox.token_secret_file"), "{err}");
    assert!(err.to_string().contains("PVE_TOKEN_SECRET"), "{err}");
    assert!(
        err.to_string().starts_with("deploy.toml:3: "),
        "points at token_id: {err}"
    );
}

#[cfg(unix)]
#[test]
fn password_login_reads_its_own_env_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = secret_file(dir.path(), "pw", SECRET, 0o400);
    let text = format!(
        "[proxmox]\nurl = \"https://pve1:8006\"\nuser = \"deploy@pve\"\npassword_file = {:?}\n{ROLLOUT}",
        path.display().to_string()
    );
    let config = Config::parse(&text, "d.toml").unwrap();
    let client = config.client_config_with_env(1.0, &no_env).unwrap();
    let Auth::Password { user, password } = &client.auth else {
        panic!()
    };
    assert_eq!(user, "deploy@pve");
    assert_eq!(password.expose(), SECRET);
    let env = |name: &str| (name == PASSWORD_ENV).then(|| "from-env".to_string());
    let client = config.client_config_with_env(1.0, &env).unwrap();
    let Auth::Password { password, .. } = &client.auth else {
        panic!()
    };
    assert_eq!(password.expose(), "from-env");
}

#[cfg(unix)]
#[test]
fn secret_files_others_can_read_are_refused_like_ssh() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660] {
        let path = secret_file(dir.path(), &format!("tok{mode:o}"), SECRET, mode);
        let config = token_config(Some(&path), "");
        let err = config.client_config_with_env(1.0, &no_env).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.exit_code(), 2);
        assert!(
            text.contains(&format!(
                "permissions {mode:04o} for '{}' are too open",
                path.display()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("Run chmod 600 {}", path.display())),
            "{text}"
        );
        assert!(text.contains("proxmox.token_secret_file"), "{text}");
        assert!(text.contains("deploy.toml:4:"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }
}

#[cfg(unix)]
#[test]
fn secret_file_problems_never_show_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [
        ("two-lines", format!("{SECRET}\nsecond {SECRET}\n")),
        ("empty", "\n".to_string()),
    ] {
        let path = secret_file(dir.path(), name, &content, 0o600);
        let err = token_config(Some(&path), "")
            .client_config_with_env(1.0, &no_env)
            .unwrap_err();
        assert!(!err.to_string().contains(SECRET), "{err}");
        assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
    }
    let missing = dir.path().join("nope");
    let err = token_config(Some(&missing), "")
        .client_config_with_env(1.0, &no_env)
        .unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn secrets_in_the_config_text_are_never_echoed() {
    let cases = [
        format!("{PROXMOX}token_secret = \"{SECRET}\"\n{ROLLOUT}"),
        format!("{PROXMOX}password = \"{SECRET}\"\n{ROLLOUT}"),
        format!(
            "[proxmox]\nurl = \"https://root:{SECRET}@pve1:8006\"\ntoken_id = \"root@pam!x1\"\n{ROLLOUT}"
        ),
        // A syntax error on the secret's line: toml's own message would quote the line.
        format!("{PROXMOX}token_secret = \"{SECRET}\n{ROLLOUT}"),
        format!("{PROXMOX}{SECRET}\n{ROLLOUT}"),
    ];
    for text in &cases {
        let err = Config::parse(text, "deploy.toml").unwrap_err();
        assert!(!err.to_string().contains(SECRET), "{err}");
        assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
    }
    let err = Config::parse(&cases[0], "deploy.toml").unwrap_err();
    assert!(
        err.to_string().contains("never read from deploy.toml"),
        "{err}"
    );
}

#[test]
fn tls_trust_by_preference() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let env = |_: &str| Some("s".to_string());
    let ca_line = format!("ca_cert = {:?}\n", ca.display().to_string());
    let fp_line = format!("fingerprint = \"{}\"\n", fp());
    let cases = [
        (
            format!("{fp_line}{ca_line}insecure = true\n"),
            TlsTrust::Fingerprint(vec!["AB"; 32].join(":")),
        ),
        (
            format!("{ca_line}insecure = true\n"),
            TlsTrust::CaFile(ca.clone()),
        ),
        ("insecure = true\n".to_string(), TlsTrust::Insecure),
        ("insecure = false\n".to_string(), TlsTrust::System),
    ];
    for (extra, trust) in cases {
        let config = token_config(None, &extra);
        assert_eq!(
            config.client_config_with_env(1.0, &env).unwrap().tls,
            trust,
            "{extra}"
        );
    }
    let config = token_config(None, &format!("{fp_line}{ca_line}"));
    assert!(
        config
            .source
            .warnings
            .iter()
            .any(|w| w.contains("fingerprint wins")),
        "{:?}",
        config.source.warnings
    );
    let config = token_config(None, "insecure = true\n");
    assert!(
        config
            .source
            .warnings
            .iter()
            .any(|w| w.contains("not checked"))
    );
    let no_port = Config::parse(&minimal().replace(":8006", ""), "d.toml").unwrap();
    assert!(
        no_port
            .source
            .warnings
            .iter()
            .any(|w| w.contains("443 is used")),
        "{:?}",
        no_port.source.warnings
    );
    assert!(token_config(None, "").source.warnings.is_empty());

    let config = token_config(None, "ca_cert = \"/nonexistent/ca.pem\"\n");
    let err = config.client_config_with_env(1.0, &env).unwrap_err();
    assert!(err.mentions("proxmox.ca_cert"), "{err}");
    assert!(err.to_string().contains("deploy.toml:4:"), "{err}");
}

#[test]
fn time_scale_must_be_positive() {
    let config = token_config(None, "");
    let env = |_: &str| Some("s".to_string());
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = config.client_config_with_env(bad, &env).unwrap_err();
        assert!(err.mentions("--time-scale"), "{err}");
    }
}

#[test]
fn cidr_contains() {
    let rfc = Cidr::rfc1918();
    let inside = |ip: &str| rfc.iter().any(|c| c.contains(ip.parse().unwrap()));
    assert!(inside("10.1.2.3"));
    assert!(inside("172.31.255.255"));
    assert!(!inside("172.32.0.1"));
    assert!(inside("192.168.1.1"));
    assert!(!inside("8.8.8.8"));
    assert!(!inside("fd00::1"));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("1.2.3.4".parse().unwrap()));
    let v6: Cidr = "fd00::/8".parse().unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
    assert_eq!(v6.to_string(), "fd00::/8");
}

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn on_arbitrary_text(text in "\\PC{0,400}") {
            let _ = Config::parse(&text, "fuzz.toml");
        }

        // `\PC` leaves out control characters; TOML must refuse those cleanly too.
        #[test]
        fn on_text_with_control_characters(text in "(?s).{0,200}") {
            if let Err(e) = Config::parse(&text, "fuzz.toml") {
                prop_assert!(!e.problems.is_empty());
            }
        }

        #[test]
        fn on_toml_shaped_text(text in "(\\[[a-z_.\"-]{1,12}\\]\n|[a-z_]{1,14} = (\"[ -~]{0,20}\"|-?[0-9]{1,12}|true|\\[[0-9, \"a-z]{0,20}\\])\n){0,20}") {
            let _ = Config::parse(&text, "fuzz.toml");
        }

        #[test]
        fn on_mutated_valid_configs(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..8),
            base in prop::sample::select(vec![EXAMPLE, SKETCH]),
        ) {
            let mut chars: Vec<char> = base.chars().collect();
            for (at, kind, c) in edits {
                let i = at.index(chars.len().max(1)).min(chars.len());
                match kind {
                    0 => chars.insert(i, c),
                    1 if i < chars.len() => { chars.remove(i); }
                    _ if i < chars.len() => chars[i] = c,
                    _ => {}
                }
            }
            let text: String = chars.into_iter().collect();
            if let Err(e) = Config::parse(&text, "fuzz.toml") {
                prop_assert_eq!(e.exit_code(), 2);
                prop_assert!(!e.problems.is_empty());
            }
        }
    }
}

/// A file that is not UTF-8 (a binary, a UTF-16 export) is refused with one clear message.
#[test]
fn a_config_file_that_is_not_utf8_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, b"\xff\xfe[\x00p\x00r\x00o\x00x\x00").unwrap();
    let e = Config::load(&path).expect_err("not UTF-8");
    let text = e.to_string();
    assert_eq!(e.exit_code(), 2);
    assert!(text.contains("cannot read the config file"), "{text}");
    assert!(text.contains("UTF-8"), "{text}");
    assert!(
        !text.contains("  "),
        "no runs of spaces in the hint: {text}"
    );
}

#[test]
fn the_clone_limit_is_auto_or_a_number() {
    use crate::config::ClonesPerStorage;
    let parse = |extra: &str| {
        Config::parse(&with(extra), "d.toml")
            .expect("valid")
            .rollout
            .max_clones_per_storage
    };
    assert_eq!(
        parse("max_clones_per_storage = \"auto\""),
        ClonesPerStorage::Auto
    );
    assert_eq!(
        parse("max_clones_per_storage = 2"),
        ClonesPerStorage::Limit(2)
    );
    assert_eq!(
        parse("max_clones_per_storage = 0"),
        ClonesPerStorage::Limit(0)
    );
    let err = Config::parse(&with("max_clones_per_storage = \"fast\""), "d.toml").unwrap_err();
    assert!(err.to_string().contains("\"auto\""), "{err}");
}

#[test]
fn hooks_and_guest_checks_parse_with_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("notify.sh");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let text = format!(
        "{PROXMOX}{ROLLOUT}[hooks]\n\
         on_verified = [\"sh\", \"-c\", \"echo $1 ${{HOME}}\", \"-\", \"--limit={{name}}\"]\n\
         on_finished = [\"./notify.sh\", \"{{summary}}\"]\n\
         [[checks.exec]]\nname = \"ssh listens\"\ncommand = [\"sh\", \"-c\", \"ss -ltn\"]\n\
         expect_output = \"(?m)^LISTEN\"\nretries = 2\n\
         [vm_configs.web-1]\n[[vm_configs.web-1.checks_exec_add]]\nname = \"nginx\"\n\
         command = [\"systemctl\", \"is-active\", \"nginx\"]\nexpect_exit = 0\n\
         [vm_configs.web-2]\nchecks_exec_replace = []\n[vm_configs.web-3]\n"
    );
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let hooks = &config.hooks;
    assert_eq!(hooks.on_verified.as_ref().unwrap()[0], "sh");
    assert_eq!(hooks.on_verified.as_ref().unwrap()[4], "--limit={name}");
    // A path with a slash is the config file's neighbour, whatever the working directory.
    assert_eq!(
        hooks.on_finished.as_ref().unwrap()[0],
        dir.path().join("./notify.sh").display().to_string()
    );
    assert_eq!(
        (hooks.max_parallel, hooks.timeout),
        (2, Duration::from_secs(1800))
    );
    let ssh = &config.checks.exec[0];
    assert_eq!(ssh.name, "ssh listens");
    assert_eq!((ssh.expect_exit, ssh.retries), (0, 2));
    assert_eq!(ssh.timeout, Duration::from_secs(60));
    assert!(
        ssh.expect_output
            .as_ref()
            .unwrap()
            .is_match("x\nLISTEN 0 4096")
    );
    let names = |vm: &str| -> Vec<String> {
        config
            .exec_checks_for(vm)
            .into_iter()
            .map(|c| c.name)
            .collect()
    };
    assert_eq!(names("web-1"), ["ssh listens", "nginx"]);
    assert!(names("web-2").is_empty());
    assert_eq!(names("web-3"), ["ssh listens"]);
}

#[test]
fn hook_and_check_messages_say_what_to_do() {
    let err = Config::parse(
        &with("[hooks]\non_verified = \"ansible-playbook site.yml\""),
        "d.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("[\"sh\", \"-c\", \"...\"]"), "{err}");
    let err = Config::parse(
        &with("[hooks]\non_verified = [\"echo\", \"{hostname}\"]"),
        "d.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown placeholder {hostname}; allowed: {name} {vmid}"),
        "{err}"
    );
    let err = Config::parse(&with("[hooks]\non_finished = [\"./gone.sh\"]"), "d.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("gone.sh does not exist"), "{err}");
    assert!(err.contains("relative to the working directory"), "{err}");
    let err = Config::parse(
        &with("[hooks]\non_finished = [\"echo\", \"{ip}\"]"),
        "d.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("{ip} is not known here; allowed: {inventory} {summary} {output_dir}"),
        "{err}"
    );
}

#[test]
fn nic_problems_say_what_to_do() {
    let problem = |text: &str, key: &str| {
        let err = Config::parse(&with(text), "deploy.toml").expect_err("refused");
        let p = (err.problems.iter())
            .find(|p| p.key.as_deref() == Some(key))
            .unwrap_or_else(|| panic!("no {key}: {err}"))
            .clone();
        format!("{} / {}", p.message, p.hint.unwrap_or_default())
    };
    let both = problem(
        "[defaults]\nip = \"10.0.10.5/24\"\nnetworks = [{ bridge = \"vmbr2\" }]",
        "defaults.ip",
    );
    assert!(
        both.contains("networks") && both.contains("first entry"),
        "{both}"
    );
    let mtu = problem("[defaults]\nmtu = 9000", "defaults.mtu");
    assert!(mtu.contains("networks = [{"), "{mtu}");
    let vlan = problem("[defaults]\nvlan = 5000", "defaults.vlan");
    assert!(vlan.contains("1 to 4094"), "{vlan}");
    let ip6 = problem("[defaults]\nip6 = \"fd00::5\"", "defaults.ip6");
    assert!(
        ip6.contains("does not look like a valid address") && ip6.contains("auto"),
        "{ip6}"
    );
    let bridge = problem(
        "[defaults]\nnetworks = [{ vlan = 20 }]",
        "defaults.networks[0].bridge",
    );
    assert!(bridge.contains("net0"), "{bridge}");
}

#[test]
fn the_readmes_network_examples_parse() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split_once("### Networks\n")
        // Up to the next heading.
        .and_then(|(_, rest)| rest.split("\n## ").next())
        .and_then(|rest| rest.split("\n### ").next())
        .expect("a Networks section");
    let blocks: Vec<&str> = section
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(toml, _)| toml))
        .collect();
    assert_eq!(blocks.len(), 4, "DHCP, a static list, a pool, two NICs");
    for block in blocks {
        let config =
            Config::parse(&with(block), "README.md").unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert!(!config.defaults.networks.is_empty());
    }
}

#[test]
fn extra_disks_are_read_and_a_vms_list_replaces_the_defaults() {
    let text = with(
        "[defaults]\ndisks = [{ slot = \"scsi1\", size = \"200G\", storage = \"ssd\" }]\n\
         [vm_configs.db]\ndisks = [{ slot = \"virtio1\", size = \"512M\", storage = \"fast\", format = \"raw\" }]\n\
         [vm_configs.web]\n",
    );
    let config = Config::parse(&text, "deploy.toml").unwrap();
    let vms = config.vms();
    assert_eq!(
        vms[0].spec.disks,
        vec![ExtraDisk {
            slot: "virtio1".into(),
            size: 512 << 20,
            storage: "fast".into(),
            format: Some("raw".into()),
        }]
    );
    assert_eq!(
        vms[1].spec.disks,
        vec![ExtraDisk {
            slot: "scsi1".into(),
            size: 200 << 30,
            storage: "ssd".into(),
            format: None,
        }]
    );
}
