//! The API's routing table: every endpoint the simulator implements, which of them pveproxy
//! hands to pvedaemon (protected), and the mapping of a method and path to one of them.

use axum::http::Method;

/// Every API endpoint the simulator implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ep {
    Version,
    TicketGet,
    TicketPost,
    Permissions,
    Nodes,
    NodeIndex,
    NodeStatus,
    NodeStorage,
    ClusterResources,
    ClusterNextid,
    QemuList,
    VmIndex,
    VmStatusIndex,
    VmStatusCurrent,
    VmConfigGet,
    VmConfigPost,
    VmConfigPut,
    VmPending,
    VmClone,
    VmMigrate,
    VmResize,
    VmPower(&'static str),
    VmDelete,
    AgentIndex,
    Agent(&'static str),
    TaskList,
    TaskIndex,
    TaskStatus,
    TaskLog,
    TaskStop,
    ClusterStatus,
    ClusterTasks,
    HaStatus,
    NotBackedUp,
    Qdevice,
    Pools,
    NodeLxc,
    NodeNetwork,
    NodeReplication,
    NodeSubscription,
    StorageContent,
}

impl Ep {
    /// Forwarded to pvedaemon (holds one of its 3 workers).
    pub fn protected(self) -> bool {
        !matches!(
            self,
            Ep::Version
                | Ep::TicketGet
                | Ep::Permissions
                | Ep::Nodes
                | Ep::NodeIndex
                | Ep::NodeStatus
                | Ep::TaskList
                | Ep::ClusterTasks
                | Ep::HaStatus
                | Ep::Qdevice
                | Ep::Pools
                | Ep::NodeLxc
                | Ep::NodeNetwork
                | Ep::NodeReplication
                | Ep::NodeSubscription
                | Ep::ClusterResources
                | Ep::ClusterNextid
                | Ep::VmIndex
                | Ep::VmStatusIndex
                | Ep::VmConfigGet
                | Ep::VmPending
                | Ep::AgentIndex
                | Ep::TaskIndex
        )
    }
}

pub const AGENT_GET: &[&str] = &[
    "network-get-interfaces",
    "get-osinfo",
    "get-host-name",
    "info",
    "get-time",
    "get-timezone",
    "get-fsinfo",
    "get-users",
    "get-vcpus",
    "get-memory-blocks",
    "get-memory-block-info",
    "exec-status",
];
pub const AGENT_POST: &[&str] = &["ping", "exec", "fsfreeze-status", "fstrim", "shutdown"];
const POWER_OPS: &[&str] = &[
    "start", "stop", "shutdown", "reboot", "reset", "suspend", "resume",
];

pub struct Routed {
    pub ep: Ep,
    pub template: &'static str,
    pub path_params: Vec<(&'static str, String)>,
}

pub fn route(method: &Method, segs: &[String]) -> Option<Routed> {
    let s: Vec<&str> = segs.iter().map(|s| s.as_str()).collect();
    let m = method.as_str();
    let mut pp: Vec<(&'static str, String)> = Vec::new();
    let (ep, template) = match (m, s.as_slice()) {
        ("GET", ["version"]) => (Ep::Version, "/version"),
        ("GET", ["access", "ticket"]) => (Ep::TicketGet, "/access/ticket"),
        ("POST", ["access", "ticket"]) => (Ep::TicketPost, "/access/ticket"),
        ("GET", ["access", "permissions"]) => (Ep::Permissions, "/access/permissions"),
        ("GET", ["nodes"]) => (Ep::Nodes, "/nodes"),
        ("GET", ["cluster", "resources"]) => (Ep::ClusterResources, "/cluster/resources"),
        ("GET", ["cluster", "nextid"]) => (Ep::ClusterNextid, "/cluster/nextid"),
        ("GET", ["cluster", "status"]) => (Ep::ClusterStatus, "/cluster/status"),
        ("GET", ["cluster", "tasks"]) => (Ep::ClusterTasks, "/cluster/tasks"),
        ("GET", ["cluster", "ha", "status", "current"]) => {
            (Ep::HaStatus, "/cluster/ha/status/current")
        }
        ("GET", ["cluster", "backup-info", "not-backed-up"]) => {
            (Ep::NotBackedUp, "/cluster/backup-info/not-backed-up")
        }
        ("GET", ["cluster", "config", "qdevice"]) => (Ep::Qdevice, "/cluster/config/qdevice"),
        ("GET", ["pools"]) => (Ep::Pools, "/pools"),
        (_, ["nodes", node, rest @ ..]) => {
            pp.push(("node", node.to_string()));
            match (m, rest) {
                ("GET", []) => (Ep::NodeIndex, "/nodes/{node}"),
                ("GET", ["status"]) => (Ep::NodeStatus, "/nodes/{node}/status"),
                ("GET", ["storage"]) => (Ep::NodeStorage, "/nodes/{node}/storage"),
                ("GET", ["qemu"]) => (Ep::QemuList, "/nodes/{node}/qemu"),
                ("GET", ["tasks"]) => (Ep::TaskList, "/nodes/{node}/tasks"),
                ("GET", ["lxc"]) => (Ep::NodeLxc, "/nodes/{node}/lxc"),
                ("GET", ["network"]) => (Ep::NodeNetwork, "/nodes/{node}/network"),
                ("GET", ["replication"]) => (Ep::NodeReplication, "/nodes/{node}/replication"),
                ("GET", ["subscription"]) => (Ep::NodeSubscription, "/nodes/{node}/subscription"),
                ("GET", ["storage", storage, "content"]) => {
                    pp.push(("storage", storage.to_string()));
                    (
                        Ep::StorageContent,
                        "/nodes/{node}/storage/{storage}/content",
                    )
                }
                (_, ["tasks", upid, trest @ ..]) => {
                    pp.push(("upid", upid.to_string()));
                    match (m, trest) {
                        ("GET", []) => (Ep::TaskIndex, "/nodes/{node}/tasks/{upid}"),
                        ("DELETE", []) => (Ep::TaskStop, "/nodes/{node}/tasks/{upid}"),
                        ("GET", ["status"]) => {
                            (Ep::TaskStatus, "/nodes/{node}/tasks/{upid}/status")
                        }
                        ("GET", ["log"]) => (Ep::TaskLog, "/nodes/{node}/tasks/{upid}/log"),
                        _ => return None,
                    }
                }
                (_, ["qemu", vmid, vrest @ ..]) => {
                    pp.push(("vmid", vmid.to_string()));
                    match (m, vrest) {
                        ("GET", []) => (Ep::VmIndex, "/nodes/{node}/qemu/{vmid}"),
                        ("DELETE", []) => (Ep::VmDelete, "/nodes/{node}/qemu/{vmid}"),
                        ("GET", ["status"]) => {
                            (Ep::VmStatusIndex, "/nodes/{node}/qemu/{vmid}/status")
                        }
                        ("GET", ["status", "current"]) => (
                            Ep::VmStatusCurrent,
                            "/nodes/{node}/qemu/{vmid}/status/current",
                        ),
                        ("POST", ["status", op]) => {
                            let op = POWER_OPS.iter().find(|o| *o == op)?;
                            let template = match *op {
                                "start" => "/nodes/{node}/qemu/{vmid}/status/start",
                                "stop" => "/nodes/{node}/qemu/{vmid}/status/stop",
                                "shutdown" => "/nodes/{node}/qemu/{vmid}/status/shutdown",
                                "reboot" => "/nodes/{node}/qemu/{vmid}/status/reboot",
                                "reset" => "/nodes/{node}/qemu/{vmid}/status/reset",
                                "suspend" => "/nodes/{node}/qemu/{vmid}/status/suspend",
                                _ => "/nodes/{node}/qemu/{vmid}/status/resume",
                            };
                            (Ep::VmPower(op), template)
                        }
                        ("GET", ["config"]) => {
                            (Ep::VmConfigGet, "/nodes/{node}/qemu/{vmid}/config")
                        }
                        ("POST", ["config"]) => {
                            (Ep::VmConfigPost, "/nodes/{node}/qemu/{vmid}/config")
                        }
                        ("PUT", ["config"]) => {
                            (Ep::VmConfigPut, "/nodes/{node}/qemu/{vmid}/config")
                        }
                        ("GET", ["pending"]) => {
                            (Ep::VmPending, "/nodes/{node}/qemu/{vmid}/pending")
                        }
                        ("POST", ["clone"]) => (Ep::VmClone, "/nodes/{node}/qemu/{vmid}/clone"),
                        ("POST", ["migrate"]) => {
                            (Ep::VmMigrate, "/nodes/{node}/qemu/{vmid}/migrate")
                        }
                        ("PUT", ["resize"]) => (Ep::VmResize, "/nodes/{node}/qemu/{vmid}/resize"),
                        ("GET", ["agent"]) => (Ep::AgentIndex, "/nodes/{node}/qemu/{vmid}/agent"),
                        (_, ["agent", cmd]) => {
                            let table = if m == "GET" {
                                AGENT_GET
                            } else if m == "POST" {
                                AGENT_POST
                            } else {
                                return None;
                            };
                            let cmd = table.iter().find(|c| *c == cmd)?;
                            (Ep::Agent(cmd), agent_template(cmd))
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(Routed {
        ep,
        template,
        path_params: pp,
    })
}

fn agent_template(cmd: &str) -> &'static str {
    match cmd {
        "ping" => "/nodes/{node}/qemu/{vmid}/agent/ping",
        "exec" => "/nodes/{node}/qemu/{vmid}/agent/exec",
        "exec-status" => "/nodes/{node}/qemu/{vmid}/agent/exec-status",
        "network-get-interfaces" => "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
        "get-osinfo" => "/nodes/{node}/qemu/{vmid}/agent/get-osinfo",
        "get-host-name" => "/nodes/{node}/qemu/{vmid}/agent/get-host-name",
        _ => "/nodes/{node}/qemu/{vmid}/agent/{command}",
    }
}
