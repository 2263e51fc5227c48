//! Machine-readable output: `deploy --events ndjson` (one JSON object per engine event, one per
//! line) and `plan --json`. Both carry `"v"`, the schema version, bumped only when a field
//! changes meaning or goes away (new fields and new `type`s do not bump it).
//!
//! Every event line has `v`, `type` and `at` (RFC 3339 UTC with milliseconds); a line about one
//! VM also has `vm` (its index in the plan, 0-based) and `name`. By `type`:
//! - `planned`: `rollout`, `cluster`, `vms: [{index, name, vmid, node}]`, once, first;
//! - `state`: `state` (`queued`, `cloning`, `configuring`, `booting`, `awaiting-agent`,
//!   `IP-found`, `verifying`, `provisioning`, `verified`, `hook-failed`, `paused`, `failed`,
//!   `skipped`), `phase` (the phase it
//!   is in or stopped in), `reason` (when failed); `at` is when it changed;
//! - `log`: `level` (`INFO`, `SUCCESS`, `WARNING`, `ERROR`), `text`; `vm`/`name` when about one VM;
//! - `ip`: `ip`, `candidates` (best first);
//! - `guest`: `uname`, `os`;
//! - `check`: one guest check's result (`name`, `passed`, `exit_code`, `runs`, `error`,
//!   `stdout_tail`, `stderr_tail`, as in `summary.json`);
//! - `hook`: the VM's `on_verified` hook (`state`, `exit_code`, `result`, `tail`);
//! - `task-log`: `lines` (recent Proxmox task log lines, newest last);
//! - `progress`: `total`, `queued`, `in_flight`, `verified`, `failed`, `skipped`, `paused`,
//!   `requests`;
//! - `attempt`: `attempt` (a retry began);
//! - `exported`: `paths` (summary files written);
//! - `finished`: `exit_code` and `summary` (exactly what `summary.json` holds), once, last.

use std::time::SystemTime;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::engine::event::{Event, PlannedVm, VmState};
use crate::engine::journal::Step;
use crate::engine::plan::Plan;
use crate::report::ms;

/// The version of both the event stream and the plan document.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// Turns events into JSON objects; remembers the plan so each VM line carries the VM's name.
#[derive(Debug, Default)]
pub struct EventEncoder {
    vms: Vec<PlannedVm>,
}

fn timestamp(at: SystemTime) -> String {
    Timestamp::try_from(at).map_or_else(|_| String::new(), |t| ms::format(&t))
}

impl EventEncoder {
    /// One event as a JSON object, stamped `now`.
    pub fn encode(&mut self, event: &Event, now: SystemTime) -> Value {
        let (kind, vm, mut fields) = match event {
            Event::Planned {
                rollout,
                cluster,
                vms,
            } => {
                self.vms = vms.clone();
                let list: Vec<Value> = vms
                    .iter()
                    .map(|v| json!({"index": v.index, "name": v.name, "vmid": v.vmid, "node": v.node}))
                    .collect();
                (
                    "planned",
                    None,
                    json!({"rollout": rollout, "cluster": cluster, "vms": list}),
                )
            }
            Event::VmState { vm, state, at } => {
                let mut fields = json!({"state": state.label(), "phase": state.phase().as_str(), "at": timestamp(*at)});
                if let VmState::Failed { reason, .. } = state {
                    fields["reason"] = json!(reason);
                }
                ("state", Some(*vm), fields)
            }
            Event::Log { vm, level, text } => {
                ("log", *vm, json!({"level": level.as_str(), "text": text}))
            }
            Event::VmIp { vm, ip, candidates } => {
                ("ip", Some(*vm), json!({"ip": ip, "candidates": candidates}))
            }
            Event::VmGuest { vm, uname, os } => {
                ("guest", Some(*vm), json!({"uname": uname, "os": os}))
            }
            Event::Check { vm, check } => ("check", Some(*vm), json!(check)),
            Event::Hook { vm, hook } => ("hook", Some(*vm), json!(hook)),
            Event::TaskLog { vm, lines } => ("task-log", Some(*vm), json!({"lines": lines})),
            Event::CopyProgress { vm, percent, eta_s } => (
                "copy-progress",
                Some(*vm),
                json!({"percent": percent, "eta_s": eta_s}),
            ),
            Event::VmNics { vm, nics } => ("nics", Some(*vm), json!({"nics": nics})),
            Event::VmReported { vm, addresses } => {
                ("agent-reports", Some(*vm), json!({"addresses": addresses}))
            }
            Event::Progress(p) => ("progress", None, json!(p)),
            Event::Attempt { vm, attempt } => ("attempt", Some(*vm), json!({"attempt": attempt})),
            Event::Exported { paths } => (
                "exported",
                None,
                json!({"paths": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()}),
            ),
            Event::Finished { summary } => (
                "finished",
                None,
                json!({"exit_code": super::exit_code(summary), "summary": summary}),
            ),
        };
        let mut line = Map::new();
        line.insert("v".into(), json!(JSON_SCHEMA_VERSION));
        line.insert("type".into(), json!(kind));
        if fields.get("at").is_none() {
            line.insert("at".into(), json!(timestamp(now)));
        }
        if let Some(index) = vm {
            line.insert("vm".into(), json!(index));
            if let Some(planned) = self.vms.get(index) {
                line.insert("name".into(), json!(planned.name));
            }
        }
        if let Some(object) = fields.as_object_mut() {
            line.append(object);
        }
        Value::Object(line)
    }

    /// [`encode`](Self::encode) as one line of text, newline included.
    pub fn line(&mut self, event: &Event, now: SystemTime) -> String {
        let mut text = self.encode(event, now).to_string();
        text.push('\n');
        text
    }
}

/// `plan --json`: the plan as one JSON document.
pub fn plan_json(plan: &Plan) -> Value {
    let vms: Vec<Value> = plan
        .vms
        .iter()
        .map(|vm| {
            let action = match (&vm.adopted, vm.journaled) {
                (Some(_), Some(Step::Verified)) => "verified-before",
                (Some(_), _) => "adopt",
                (None, _) => "clone",
            };
            json!({
                "index": vm.index,
                "name": vm.name,
                "vmid": vm.vmid,
                "node": vm.node,
                "action": action,
                "status": vm.adopted.as_ref().map(|a| a.status.clone()),
                "cores": vm.spec.cores,
                "sockets": vm.spec.sockets,
                "memory_mib": vm.spec.memory,
                "disk": vm.spec.disk,
                "disk_size_bytes": vm.spec.disk_size,
                "storage": vm.spec.storage,
                "format": vm.spec.format,
                "bridge": vm.spec.primary().bridge,
                "nics": vm.spec.networks.iter().enumerate().map(|(i, nic)| json!({
                    "name": format!("net{i}"),
                    "bridge": nic.bridge,
                    "vlan": nic.vlan,
                    "address": nic.address.to_string(),
                    "address6": nic.ip6.map(|ip6| ip6.to_string()),
                })).collect::<Vec<_>>(),
                "secure_boot": vm.spec.secure_boot,
                "source": {
                    "node": vm.source.node,
                    "vmid": vm.source.vmid,
                    "target": vm.source.target,
                    "migrate": vm.source.migrate,
                },
                "disks": vm.spec.disks.iter().map(|d| json!({
                    "slot": d.slot,
                    "size_bytes": d.size,
                    "storage": d.storage,
                    "format": d.format,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "v": JSON_SCHEMA_VERSION,
        "rollout": plan.rollout_id,
        "cluster": plan.cluster,
        "template": plan.template_name,
        "vms": vms,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::engine::event::{Level, Phase};

    #[test]
    fn vm_lines_carry_the_version_type_index_and_name() {
        let mut encoder = EventEncoder::default();
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let planned = encoder.encode(
            &Event::Planned {
                rollout: "r".into(),
                cluster: "c".into(),
                vms: vec![PlannedVm {
                    index: 0,
                    name: "web-1".into(),
                    vmid: 100,
                    node: "pve1".into(),
                    ..Default::default()
                }],
            },
            now,
        );
        assert_eq!(planned["v"], 1);
        assert_eq!(planned["type"], "planned");
        assert_eq!(planned["vms"][0]["vmid"], 100);
        let failed = encoder.encode(
            &Event::VmState {
                vm: 0,
                state: VmState::Failed {
                    phase: Phase::Booting,
                    reason: "no".into(),
                },
                at: now,
            },
            now,
        );
        assert_eq!(
            failed,
            json!({"v": 1, "type": "state", "vm": 0, "name": "web-1", "state": "failed",
                   "phase": "booting", "reason": "no", "at": "2023-11-14T22:13:20.123Z"})
        );
        let log = encoder.line(
            &Event::Log {
                vm: None,
                level: Level::Warning,
                text: "a \"quoted\"\nline".into(),
            },
            now,
        );
        assert!(
            log.ends_with('\n') && log.matches('\n').count() == 1,
            "{log}"
        );
        let back: Value = serde_json::from_str(&log).expect("one JSON object");
        assert_eq!(back["text"], "a \"quoted\"\nline");
        assert!(back.get("vm").is_none());
        let nics = encoder.encode(
            &Event::VmNics {
                vm: 0,
                nics: vec![crate::report::NicSummary {
                    name: "net1".into(),
                    bridge: "vmbr2".into(),
                    vlan: Some(20),
                    reported: vec!["10.0.20.20".into()],
                    ..Default::default()
                }],
            },
            now,
        );
        assert_eq!(
            (&nics["type"], &nics["name"]),
            (&json!("nics"), &json!("web-1"))
        );
        assert_eq!(nics["nics"][0]["vlan"], 20);
        assert_eq!(nics["nics"][0]["reported"][0], "10.0.20.20");
    }
}
