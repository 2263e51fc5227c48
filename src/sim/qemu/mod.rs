//! `/nodes/{node}/qemu…`: the VM list, the VM and status indexes and `status/current`, with
//! the helpers the endpoint families below share. Config, power, resize and destroy live in
//! their own files.

mod config;
mod destroy;
mod migrate;
mod power;
mod resize;

pub use config::{config_get, config_update, pending};
pub use destroy::destroy;
pub use migrate::migrate;
pub use power::power;
pub use resize::resize;

use serde_json::{Value, json};

use super::Shared;
use super::auth::Identity;
use super::cluster::{Power, Vm};
use super::envelope::{ApiError, ApiOk};
use super::params::{self, Kind, NODE, Params, VMID, opt, vmid_of};
use super::vmconfig;

pub(super) fn vm_path(vmid: u32) -> String {
    format!("/vms/{vmid}")
}

pub(super) fn root_only(who: &Identity, p: &Params, keys: &[&str]) -> Result<(), ApiError> {
    for k in keys {
        if p.has(k) && !who.is_root() {
            return Err(ApiError::param(k, "Only root may use this option."));
        }
    }
    Ok(())
}

pub fn list(shared: &Shared, who: &Identity, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE, opt("full", Kind::Bool)])?;
    let now = shared.clock.now();
    let st = shared.state();
    let list: Vec<Value> = st
        .vms
        .values()
        .filter(|vm| vm.node == node && who.has_on(&vm_path(vm.vmid), "VM.Audit"))
        .map(|vm| {
            let mut v = vm_stat(vm, now);
            if let Some(l) = vm.lock() {
                v["lock"] = json!(l);
            }
            if let Some(t) = vm.conf.get("tags") {
                v["tags"] = json!(t);
            }
            if vm.conf.contains_key("serial0") {
                v["serial"] = json!(1);
            }
            v
        })
        .collect();
    Ok(ApiOk::data(Value::Array(list)))
}

/// `vmstatus` fields shared by the list and status/current.
fn vm_stat(vm: &Vm, now: f64) -> Value {
    let running = vm.power != Power::Stopped;
    let maxmem = vm.memory_bytes();
    let mut v = json!({
        "vmid": vm.vmid, "name": vm.name(), "status": if running { "running" } else { "stopped" },
        "cpus": vm.cpus(), "maxmem": maxmem, "maxdisk": vm.boot_disk_bytes(), "disk": 0,
        "cpu": 0, "mem": 0, "memhost": 0, "netin": 0, "netout": 0, "uptime": 0,
    });
    if let (true, Some(g)) = (running, &vm.guest) {
        v["pid"] = json!(g.pid);
        v["uptime"] = json!((now - g.started_at).max(0.0) as u64);
        v["cpu"] = json!(0.0131);
        v["mem"] = json!(maxmem / 3);
        v["memhost"] = json!(maxmem / 3 + (64 << 20));
        v["netin"] = json!(123_456);
        v["netout"] = json!(65_432);
    }
    if vm.is_template() {
        v["template"] = json!(1);
    }
    v
}

pub fn index(shared: &Shared, who: &Identity, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE, VMID])?;
    who.require(&vm_path(vmid_of(p)), &["VM.Audit"])?;
    shared.state().vm_on(node, vmid_of(p))?;
    let subdirs = ["config", "pending", "status", "agent", "clone", "resize"];
    Ok(ApiOk::data(Value::Array(
        subdirs.iter().map(|s| json!({"subdir": s})).collect(),
    )))
}

pub fn status_index(shared: &Shared, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE, VMID])?;
    shared.state().vm_on(node, vmid_of(p))?;
    let subdirs = [
        "current", "start", "stop", "reset", "shutdown", "suspend", "reboot", "resume",
    ];
    Ok(ApiOk::data(Value::Array(
        subdirs.iter().map(|s| json!({"subdir": s})).collect(),
    )))
}

pub fn status_current(
    shared: &Shared,
    who: &Identity,
    node: &str,
    p: &Params,
) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE, VMID])?;
    let vmid = vmid_of(p);
    who.require(&vm_path(vmid), &["VM.Audit"])?;
    let now = shared.clock.now();
    let st = shared.state();
    let vm = st.vm_on(node, vmid)?;
    let mut v = vm_stat(vm, now);
    v["ha"] = if vm.ha {
        let state = if vm.power == Power::Stopped {
            "stopped"
        } else {
            "started"
        };
        json!({"managed": 1, "state": state})
    } else {
        json!({"managed": 0})
    };
    v["qmpstatus"] = json!(match vm.power {
        Power::Stopped => "stopped",
        Power::Running => "running",
        Power::Paused => "paused",
    });
    if vm.power != Power::Stopped {
        let maxmem = vm.memory_bytes();
        v["freemem"] = json!(maxmem / 2);
        v["balloon"] = json!(maxmem);
        v["ballooninfo"] = json!({"actual": maxmem, "max_mem": maxmem, "total_mem": maxmem - (64 << 20), "free_mem": maxmem / 2});
        v["diskread"] = json!(2_345_678);
        v["diskwrite"] = json!(3_456_789);
        v["nics"] = json!({format!("tap{vmid}i0"): {"netin": 123_456, "netout": 65_432}});
        v["blockstat"] = json!({"scsi0": {"rd_bytes": 2_345_678, "wr_bytes": 3_456_789}});
        v["running-machine"] = json!("pc-q35-9.2+pve1");
        v["running-qemu"] = json!("9.2.0");
        v["proxmox-support"] = json!({"pbs-library-version": "1.5.1", "pbs-dirty-bitmap": true});
    }
    if vmconfig::agent_enabled(vm.conf.get("agent")) {
        v["agent"] = json!(1);
    }
    if let Some(l) = vm.lock() {
        v["lock"] = json!(l);
    }
    if let Some(t) = vm.conf.get("tags") {
        v["tags"] = json!(t);
    }
    Ok(ApiOk::data(v))
}
