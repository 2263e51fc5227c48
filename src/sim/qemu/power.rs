//! `POST …/status/{start,stop,shutdown,reboot,reset,suspend,resume}`: `qm<op>` tasks under the
//! config lock, the guest's timeline drawn at start, the shutdown timeout and `forceStop`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::json;

use super::{root_only, vm_path};
use crate::sim::agent::PING_TIMEOUT_S;
use crate::sim::auth::Identity;
use crate::sim::cluster::{Guest, GuestNic, Power, Vm, config_missing, no_config_for};
use crate::sim::envelope::{ApiError, ApiOk};
use crate::sim::locks::CONFIG_LOCK_TIMEOUT_S;
use crate::sim::params::{self, INT, Kind, NODE, P, Params, STR, VMID, opt, vmid_of};
use crate::sim::tasks::{self, TaskCtx, TaskError, TaskResult};
use crate::sim::vmconfig;
use crate::sim::{NO_QUORUM, Shared};

fn power_schema(op: &str) -> Vec<P> {
    let mut s = vec![NODE, VMID, opt("skiplock", Kind::Bool)];
    match op {
        "start" => s.extend([
            opt(
                "timeout",
                Kind::Int {
                    min: Some(0),
                    max: Some(86400),
                },
            ),
            opt("stateuri", STR),
            opt("migratedfrom", Kind::Node),
            opt("migration_type", Kind::Enum(&["secure", "insecure"])),
            opt("migration_network", STR),
            opt("machine", STR),
            opt("targetstorage", STR),
            opt("force-cpu", STR),
        ]),
        "stop" => s.extend([
            opt("timeout", INT),
            opt("keepActive", Kind::Bool),
            opt("migratedfrom", Kind::Node),
            opt("overrule-shutdown", Kind::Bool),
        ]),
        "shutdown" => s.extend([
            opt(
                "timeout",
                Kind::Int {
                    min: Some(0),
                    max: None,
                },
            ),
            opt("forceStop", Kind::Bool),
            opt("keepActive", Kind::Bool),
        ]),
        "reboot" => s.extend([opt("timeout", INT)]),
        "suspend" => s.extend([
            opt("todisk", Kind::Bool),
            opt("statestorage", Kind::StorageId),
        ]),
        "resume" => s.extend([opt("nocheck", Kind::Bool)]),
        _ => {}
    }
    s
}

pub fn power(
    shared: &Arc<Shared>,
    who: &Identity,
    node: &str,
    op: &'static str,
    p: &Params,
) -> Result<ApiOk, ApiError> {
    params::validate(p, &power_schema(op))?;
    root_only(
        who,
        p,
        &[
            "skiplock",
            "stateuri",
            "migratedfrom",
            "migration_type",
            "migration_network",
            "targetstorage",
            "keepActive",
        ],
    )?;
    let vmid = vmid_of(p);
    who.require(&vm_path(vmid), &["VM.PowerMgmt"])?;
    let force = p.flag("forceStop");
    let (stopped, ha) = {
        let st = shared.state();
        match st.vm_on(node, vmid) {
            Ok(vm) => {
                if op == "shutdown" && !force && vm.power == Power::Paused {
                    return Err(ApiError::die("VM is paused - cannot shutdown"));
                }
                (vm.power == Power::Stopped, vm.ha)
            }
            // `check_running` reads the config in the request for these.
            Err(e) if matches!(op, "reset" | "suspend" | "reboot") => return Err(e),
            // Start, stop and shutdown find out in their task.
            Err(_) => (false, false),
        }
    };
    if stopped && matches!(op, "reset" | "suspend" | "reboot") {
        return Err(ApiError::die(format!("VM {vmid} not running")));
    }
    if op == "start" && shared.quorum_lost(shared.clock.now()) {
        return Err(ApiError::die(NO_QUORUM));
    }
    if ha && matches!(op, "start" | "stop" | "shutdown") {
        return Ok(ApiOk::data(json!(ha_request(shared, who, node, vmid, op))));
    }
    let timeout = p.int("timeout");
    let skiplock = p.flag("skiplock");
    let node_s = node.to_string();
    let kind = format!("qm{op}");
    let upid = tasks::spawn(
        shared,
        node,
        &kind,
        &vmid.to_string(),
        who,
        move |ctx: TaskCtx| async move {
            let _guard = ctx.lock(vmid, false, CONFIG_LOCK_TIMEOUT_S).await?;
            match op {
                "start" => start_task(&ctx, &node_s, vmid, skiplock).await,
                "stop" => stop_task(&ctx, &node_s, vmid, skiplock).await,
                "shutdown" => {
                    shutdown_task(
                        &ctx,
                        &node_s,
                        vmid,
                        skiplock,
                        timeout.unwrap_or(60) as f64,
                        force,
                    )
                    .await
                }
                "reboot" => {
                    shutdown_task(
                        &ctx,
                        &node_s,
                        vmid,
                        skiplock,
                        timeout.unwrap_or(60) as f64,
                        false,
                    )
                    .await?;
                    start_task(&ctx, &node_s, vmid, skiplock).await
                }
                "reset" => {
                    running_or_fail(&ctx, &node_s, vmid)?;
                    stop_vm(&ctx.shared, &node_s, vmid);
                    start_task(&ctx, &node_s, vmid, true).await
                }
                "suspend" => {
                    running_or_fail(&ctx, &node_s, vmid)?;
                    set_power(&ctx.shared, &node_s, vmid, Power::Paused);
                    Ok(())
                }
                _ => {
                    set_power(&ctx.shared, &node_s, vmid, Power::Running);
                    Ok(())
                }
            }
        },
    );
    Ok(ApiOk::data(json!(upid)))
}

/// An HA resource: the API only asks the HA manager (`hastart`/`hastop`, OK at once); the
/// local resource manager acts `ha_delay_s` later with its own `qmstart`/`qmshutdown` task.
fn ha_request(shared: &Arc<Shared>, who: &Identity, node: &str, vmid: u32, op: &str) -> String {
    let (kind, verb, lrm_op) = if op == "start" {
        ("hastart", "start", "start")
    } else {
        ("hastop", "stop", "shutdown")
    };
    let node_s = node.to_string();
    let lrm = Identity::root();
    tasks::spawn(
        shared,
        node,
        kind,
        &vmid.to_string(),
        who,
        move |ctx: TaskCtx| async move {
            ctx.log(format!("Requesting HA {verb} for VM {vmid}"));
            let sh = ctx.shared.clone();
            tokio::spawn(async move {
                sh.clock.sleep(sh.scenario.cluster.ha_delay_s).await;
                let kind = format!("qm{lrm_op}");
                tasks::spawn(
                    &sh,
                    &node_s.clone(),
                    &kind,
                    &vmid.to_string(),
                    &lrm,
                    move |ctx| async move {
                        let _guard = ctx.lock(vmid, false, CONFIG_LOCK_TIMEOUT_S).await?;
                        if lrm_op == "start" {
                            start_task(&ctx, &node_s, vmid, false).await
                        } else {
                            shutdown_task(&ctx, &node_s, vmid, false, 60.0, true).await
                        }
                    },
                );
            });
            Ok(())
        },
    )
}

fn running_or_fail(ctx: &TaskCtx, node: &str, vmid: u32) -> TaskResult {
    let st = ctx.shared.state();
    let vm = st.vm_on(node, vmid).map_err(|e| e.message())?;
    if vm.power == Power::Stopped {
        return Err(format!("VM {vmid} not running").into());
    }
    Ok(())
}

fn set_power(shared: &Shared, node: &str, vmid: u32, p: Power) {
    let mut st = shared.state();
    if let Ok(vm) = st.vm_on_mut(node, vmid)
        && vm.power != Power::Stopped
    {
        vm.power = p;
    }
}

async fn start_task(ctx: &TaskCtx, node: &str, vmid: u32, skiplock: bool) -> TaskResult {
    let sh = &ctx.shared;
    let (work, cloudinit) = {
        let st = sh.state();
        let vm = st
            .vm_on(node, vmid)
            .map_err(|_| config_missing(node, vmid).message())?;
        if vm.is_template() {
            return Err("you can't start a vm if it's a template".into());
        }
        if let (Some(l), false) = (vm.lock(), skiplock) {
            return Err(TaskError::Failed(format!("VM is locked ({l})")));
        }
        if vm.power != Power::Stopped {
            return Err(TaskError::Failed(format!("VM {vmid} already running")));
        }
        let conf = vm.effective();
        for (k, v) in &conf {
            if let Some(br) = k
                .starts_with("net")
                .then(|| vmconfig::parse_net(v).ok())
                .flatten()
                .and_then(|n| n.bridge().map(str::to_string))
                && !sh.scenario.cluster.bridges.contains(&br)
            {
                return Err(TaskError::Failed(format!("bridge '{br}' does not exist")));
            }
        }
        let ci = conf
            .iter()
            .any(|(k, v)| vmconfig::is_disk_key(k) && v.contains("cloudinit"));
        (vm.draws.start_s, ci)
    };
    if cloudinit {
        ctx.log("generating cloud-init ISO");
    }
    ctx.sleep(work).await?;
    let started = {
        let mut st = sh.state();
        let now = sh.clock.now();
        let node_index = st.node_index(node);
        let pid_base = st.nodes.get(node_index).map(|n| n.next_pid).unwrap_or(1000);
        // cloud-init's per-instance modules (the package upgrade) run on the first boot only.
        let first_boot = st
            .vm_stats
            .get(&vmid)
            .is_none_or(|s| s.started_at.is_none());
        let vm = st.vm_on_mut(node, vmid).map_err(|e| e.message())?;
        vm.apply_pending();
        let upgrade_s = if first_boot && vmconfig::upgrades_on_first_boot(&vm.conf) {
            vm.draws.ciupgrade_s
        } else {
            0.0
        };
        let guest = new_guest(sh, vm, now, node_index, pid_base, upgrade_s);
        vm.power = Power::Running;
        vm.execs.clear();
        let rec = (guest.agent_up_at, guest.ip_at, guest.clone());
        vm.guest = Some(guest);
        let name = vm.name();
        let entry = st.vm_stats.entry(vmid).or_default();
        entry.vmid = vmid;
        entry.node = node.to_string();
        entry.name = name;
        entry.started_at = Some(now);
        entry.ciupgrade_s = if sh.scenario.guest.agent_preinstalled {
            0.0
        } else {
            upgrade_s
        };
        entry.agent_up_plan = rec.0;
        entry.ip_plan = rec.1;
        entry.first_agent_ok_at = None;
        rec.2
    };
    sh.agent.on_start(sh, vmid, &started);
    Ok(())
}

/// The guest's timeline from its draws and the scenario's faults.
/// `upgrade_s`: the first boot's package upgrade: cloud-init ends after it, and so does the
/// agent's start when cloud-init installs the agent (unless `guest.agent_preinstalled`).
fn new_guest(
    sh: &Shared,
    vm: &Vm,
    now: f64,
    node_index: usize,
    pid_base: u32,
    upgrade_s: f64,
) -> Guest {
    let f = &sh.scenario.faults;
    let never_agent = vm.ordinal.is_some_and(|o| f.agent_never_up.contains(&o));
    let never_ip = vm.ordinal.is_some_and(|o| f.ip_never.contains(&o));
    let booted_at = now + vm.draws.boot_s;
    let agent_wait = if sh.scenario.guest.agent_preinstalled {
        0.0
    } else {
        upgrade_s
    };
    let agent_up_at = (!never_agent).then_some(booted_at + vm.draws.agent_s + agent_wait);
    let nics = (0..=31)
        .filter_map(|index| {
            let net = vm.net(index)?;
            let mac = net.mac.clone()?;
            Some(guest_nic(sh, vm, node_index, index, &net, mac))
        })
        .collect();
    Guest {
        started_at: now,
        pid: pid_base.wrapping_add(vm.vmid * 7 % 9973),
        booted_at,
        agent_up_at,
        ip_at: if never_ip {
            None
        } else {
            agent_up_at.map(|a| a + vm.draws.dhcp_s)
        },
        cloud_init_at: agent_up_at.map(|a| a + vm.draws.cloud_init_s + upgrade_s - agent_wait),
        cloud_init_failed: vm.ordinal.is_some_and(|o| f.cloud_init_error.contains(&o)),
        nics,
        agent_configured: vmconfig::agent_enabled(vm.conf.get("agent")),
    }
}

/// NIC `index`'s addresses: cloud-init applies `ipconfigN`'s static ones (unless the scenario
/// has this NIC ignore them); otherwise DHCP leases one from its bridge's subnet,
/// `10.<20 + node + 40 x k>.x.y/16`, k counting the scenario's bridges from the template's
/// (0). `ip6=auto`/`dhcp` gets an address in the bridge's `fd00:<k>::/64`.
fn guest_nic(
    sh: &Shared,
    vm: &Vm,
    node_index: usize,
    index: usize,
    net: &vmconfig::Net,
    mac: String,
) -> GuestNic {
    let ignored = vm.ordinal.is_some_and(|o| {
        (sh.scenario.faults.static_ignored.iter()).any(|f| f.clone == o && f.nic == index)
    });
    let set = match ignored {
        true => vmconfig::StaticAddresses::default(),
        false => vmconfig::static_addresses(&vm.conf, index),
    };
    let bridges = &sh.scenario.cluster.bridges;
    let position = |name: &str| bridges.iter().position(|x| x == name);
    let first = position(&sh.scenario.template.bridge).unwrap_or(0);
    let bridge = net
        .bridge()
        .and_then(position)
        .map_or(0, |b| (b + bridges.len() - first) % bridges.len());
    let octet2 = (20 + node_index + 40 * bridge) as u8;
    let octet3 = ((vm.vmid / 250) % 256) as u8;
    let octet4 = (vm.vmid % 250 + 3) as u8;
    let (ipv4, prefix) = set
        .v4
        .unwrap_or((Ipv4Addr::new(10, octet2, octet3, octet4), 16));
    let ipv6 = set.v6.or_else(|| {
        set.v6_auto
            .then(|| (vmconfig::slaac([0xfd00, bridge as u16, 0, 0], &mac), 64))
    });
    GuestNic {
        index,
        mac,
        ipv4,
        prefix,
        ipv6,
    }
}

/// Powers a VM off now (no task): guest gone, agent process ended.
pub fn stop_vm(shared: &Shared, node: &str, vmid: u32) {
    let now = shared.clock.now();
    {
        let mut st = shared.state();
        let Ok(vm) = st.vm_on_mut(node, vmid) else {
            return;
        };
        vm.power = Power::Stopped;
        vm.guest = None;
        vm.execs.clear();
        if let Some(s) = st.vm_stats.get_mut(&vmid) {
            s.agent_up_plan = s.agent_up_plan.filter(|t| *t <= now);
            s.ip_plan = s.ip_plan.filter(|t| *t <= now);
        }
    }
    shared.agent.on_stop(vmid);
}

async fn stop_task(ctx: &TaskCtx, node: &str, vmid: u32, skiplock: bool) -> TaskResult {
    let work = {
        let st = ctx.shared.state();
        let vm = st.vm_on(node, vmid).map_err(|e| e.message())?;
        // A stopped VM is fine before its lock is looked at.
        if vm.power == Power::Stopped {
            return Ok(());
        }
        if let (Some(l), false) = (vm.lock(), skiplock) {
            return Err(TaskError::Failed(format!("VM is locked ({l})")));
        }
        vm.draws.start_s / 3.0
    };
    ctx.sleep(work).await?;
    stop_vm(&ctx.shared, node, vmid);
    Ok(())
}

async fn shutdown_task(
    ctx: &TaskCtx,
    node: &str,
    vmid: u32,
    skiplock: bool,
    timeout: f64,
    force: bool,
) -> TaskResult {
    let sh = &ctx.shared;
    let (down_at, agent_down) = {
        let st = sh.state();
        let vm = st
            .vm_on(node, vmid)
            .map_err(|_| no_config_for(node, vmid))?;
        if vm.power == Power::Stopped || vm.guest.is_none() {
            return Ok(());
        }
        if let (Some(l), false) = (vm.lock(), skiplock) {
            return Err(TaskError::Failed(format!("VM is locked ({l})")));
        }
        let now = sh.clock.now();
        // With the agent enabled, PVE pings it first and shuts down through it when it answers.
        let agent_down = vmconfig::agent_enabled(vm.conf.get("agent"))
            && !vm
                .guest
                .as_ref()
                .and_then(|g| g.agent_up_at)
                .is_some_and(|t| t <= now && vm.power == Power::Running);
        let down_at = match (&vm.power, &vm.guest) {
            (Power::Stopped, _) | (_, None) => return Ok(()),
            // A paused guest never reacts to ACPI.
            (Power::Paused, _) => f64::INFINITY,
            (Power::Running, Some(g)) => g.booted_at.max(now) + vm.draws.shutdown_s,
        };
        (down_at, agent_down)
    };
    if agent_down {
        ctx.sleep(PING_TIMEOUT_S).await?;
        ctx.log(format!(
            "QEMU Guest Agent is not running - {}",
            sh.scenario.pve_version.agent_timeout(vmid, "guest-ping")
        ));
    }
    let now = sh.clock.now();
    if down_at <= now + timeout {
        ctx.sleep(down_at - now).await?;
        stop_vm(sh, node, vmid);
        return Ok(());
    }
    ctx.sleep(timeout).await?;
    if force {
        ctx.log("VM still running - terminating now with SIGTERM");
        stop_vm(sh, node, vmid);
        Ok(())
    } else {
        Err("VM quit/powerdown failed - got timeout".into())
    }
}
