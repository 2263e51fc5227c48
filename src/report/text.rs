//! The outputs as text: `summary.md`, the Ansible inventories and the original wait_for_vm.sh
//! flow's per-VM summary.

use std::fmt::Write as _;

use super::*;

fn or_dash(value: Option<&str>) -> &str {
    value.filter(|v| !v.is_empty()).unwrap_or("-")
}

/// One markdown table cell: no pipes or newlines can break the row.
pub(super) fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub(super) fn markdown(summary: &Summary) -> String {
    let r = &summary.rollout;
    let mut out = String::new();
    let _ = writeln!(out, "# Rollout {}\n", r.id);
    let _ = writeln!(out, "- Proxmox: {}", r.proxmox_url);
    let _ = writeln!(out, "- Template: {}", r.template);
    let _ = writeln!(
        out,
        "- Mode: {}, {} VMs, deployment delay {}, nodes: {}",
        r.mode,
        r.vm_count,
        r.deployment_delay,
        r.nodes.join(", ")
    );
    let _ = writeln!(out, "- Started: {}", ms::format(&r.started));
    match r.finished {
        Some(finished) => {
            let _ = writeln!(
                out,
                "- Finished: {} (after {})",
                ms::format(&finished),
                format_elapsed(between(r.started, finished))
            );
        }
        None => out.push_str("- Finished: not yet\n"),
    }
    if r.aborted {
        out.push_str("- **Aborted** by the operator before every VM settled\n");
    }
    let _ = writeln!(out, "- Result: {}", summary.tally());
    if let Some(hook) = &summary.on_finished {
        let _ = writeln!(out, "- on_finished hook: {}", hook_words(hook));
    }
    out.push('\n');

    out.push_str("| VM | VMID | Node | State | IP | Attempts | Time |\n");
    out.push_str("| --- | ---: | --- | --- | --- | ---: | ---: |\n");
    for vm in &summary.vms {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&vm.name),
            vm.vmid,
            cell(&vm.node),
            cell(&vm.state),
            cell(or_dash(vm.ip.as_deref())),
            vm.attempts,
            vm.elapsed().map_or("-".to_string(), format_elapsed)
        );
    }
    for vm in &summary.vms {
        let _ = writeln!(out, "\n## {} ({})\n", vm.name, vm.vmid);
        let _ = writeln!(out, "- Node: {}", vm.node);
        let _ = writeln!(out, "- State: {}", vm.state);
        let _ = writeln!(out, "- IP: {}", or_dash(vm.ip.as_deref()));
        if !vm.ip_candidates.is_empty() {
            let _ = writeln!(out, "- IP candidates: {}", vm.ip_candidates.join(", "));
        }
        if vm.nics.len() > 1 {
            for nic in &vm.nics {
                let _ = writeln!(out, "- NIC {}", nic.describe());
            }
        }
        let _ = writeln!(out, "- OS: {}", or_dash(vm.os.as_deref()));
        if let Some(uname) = &vm.uname {
            let _ = writeln!(out, "- uname: `{}`", uname.replace('`', "'").trim());
        }
        let _ = writeln!(out, "- Attempts: {}", vm.attempts);
        if let Some(error) = &vm.error {
            let _ = writeln!(out, "- Error: {}", error.replace('\n', " ").trim());
        }
        for check in &vm.checks {
            let _ = writeln!(
                out,
                "- Check \"{}\": {}",
                check.name.replace('`', "'"),
                check_words(check)
            );
        }
        if let Some(hook) = &vm.hook {
            let _ = writeln!(out, "- Hook: {}", hook_words(hook));
        }
        if !vm.phases.is_empty() {
            out.push_str("\n| Phase | Started | Finished | Duration |\n");
            out.push_str("| --- | --- | --- | ---: |\n");
            for (phase, times) in &vm.phases {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    cell(phase),
                    times.started.as_ref().map_or("-".to_string(), ms::format),
                    times.finished.as_ref().map_or("-".to_string(), ms::format),
                    times.duration().map_or("-".to_string(), format_elapsed)
                );
            }
        }
    }
    out.push_str(&gantt(summary));
    out
}

/// Text safe in a Mermaid gantt line (`:` ends a task name, `#` and `;` start comments or
/// statements).
fn mermaid_text(text: &str) -> String {
    text.replace([':', '#', ';', '\n', '\r'], " ")
}

/// A Mermaid `gantt` chart of every VM's phases (a section per VM), as GitHub, GitLab and most
/// wikis render it. Times are Unix milliseconds (`dateFormat x`). A phase still open ends at the
/// rollout's end (or its own start when the rollout has not ended) and is `active`, or `crit`
/// when the VM failed in it.
fn gantt(summary: &Summary) -> String {
    let r = &summary.rollout;
    let mut out = String::from("\n## Timeline\n\n```mermaid\ngantt\n");
    let _ = writeln!(out, "    title Rollout {}", mermaid_text(&r.id));
    out.push_str("    dateFormat x\n");
    let span = r
        .finished
        .map(|f| between(r.started, f))
        .unwrap_or_default();
    let axis = if span >= Duration::from_secs(6 * 3600) {
        "%d %H:%M"
    } else {
        "%H:%M:%S"
    };
    let _ = writeln!(out, "    axisFormat {axis}");
    out.push_str("    todayMarker off\n");
    for (v, vm) in summary.vms.iter().enumerate() {
        let _ = writeln!(out, "    section {} ({})", mermaid_text(&vm.name), vm.vmid);
        let last = vm.phases.len().saturating_sub(1);
        for (p, (phase, times)) in vm.phases.iter().enumerate() {
            let Some(started) = times.started else {
                continue;
            };
            let (finished, tag) = match times.finished {
                Some(finished) => (finished, "done"),
                None if vm.state == "failed" && p == last => {
                    (r.finished.unwrap_or(started).max(started), "crit")
                }
                None => (r.finished.unwrap_or(started).max(started), "active"),
            };
            let _ = writeln!(
                out,
                "    {} :{tag}, vm{v}p{p}, {}, {}",
                mermaid_text(phase),
                started.as_millisecond(),
                finished.as_millisecond()
            );
        }
    }
    out.push_str("```\n");
    out
}

/// `passed (exit 0, 2 runs)` or `failed: exit 1, expected 0 (1 run)`.
fn check_words(check: &CheckReport) -> String {
    let runs = match check.runs {
        1 => "1 run".to_string(),
        n => format!("{n} runs"),
    };
    let exit = check
        .exit_code
        .map_or("no exit code".to_string(), |c| format!("exit {c}"));
    match &check.error {
        None if check.passed => format!("passed ({exit}, {runs})"),
        None => format!("not finished ({runs})"),
        Some(error) => format!("failed: {} ({runs})", error.replace('\n', " ").trim()),
    }
}

/// `succeeded (exit 0)`, `failed (exit 3)`, `skipped`.
fn hook_words(hook: &HookReport) -> String {
    match &hook.result {
        Some(result) => format!("{} ({result})", hook.state),
        None => hook.state.clone(),
    }
}

/// An Ansible group name (letters, digits, underscores; not starting with a digit).
pub(super) fn group_name(node: &str) -> String {
    let mut name: String = node
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || matches!(
            name.as_str(),
            "verified" | "pve_rollout" | "all" | "ungrouped"
        )
    {
        name.insert_str(0, "node_");
    }
    name
}

/// Ansible INI: one group per node, `[verified]`, and `[pve_rollout:children]` over the node
/// groups. Only VMs with an IP are hosts.
pub(super) fn inventory(rollout_id: &str, vms: &[VmSummary]) -> String {
    let mut out = format!(
        "# Ansible inventory written by pve-rollout for rollout {rollout_id}\n# {}\n",
        tally(vms)
    );
    let host = |vm: &VmSummary| {
        vm.ip
            .as_ref()
            .map(|ip| format!("{} ansible_host={ip}\n", vm.name))
    };
    let mut groups: IndexMap<String, String> = IndexMap::new();
    for vm in vms {
        if let Some(line) = host(vm) {
            groups
                .entry(group_name(&vm.node))
                .or_default()
                .push_str(&line);
        }
    }
    for (group, hosts) in &groups {
        let _ = write!(out, "\n[{group}]\n{hosts}");
    }
    out.push_str("\n[verified]\n");
    for vm in vms.iter().filter(|vm| vm.state == "verified") {
        if let Some(line) = host(vm) {
            out.push_str(&line);
        }
    }
    out.push_str("\n[pve_rollout:children]\n");
    for group in groups.keys() {
        let _ = writeln!(out, "{group}");
    }
    out
}

/// The original wait_for_vm.sh flow's per-VM "deployment summary and debug info".
pub(super) fn vm_text(r: &RolloutInfo, vm: &VmSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Deployment summary for {} (VM {})", vm.name, vm.vmid);
    let _ = writeln!(out, "========================================");
    let rows: [(&str, String); 10] = [
        ("VM name", vm.name.clone()),
        ("VM id", vm.vmid.to_string()),
        ("Node", vm.node.clone()),
        ("State", vm.state.clone()),
        ("IP address", or_dash(vm.ip.as_deref()).to_string()),
        (
            "IP candidates",
            if vm.ip_candidates.is_empty() {
                "-".to_string()
            } else {
                vm.ip_candidates.join(", ")
            },
        ),
        ("OS", or_dash(vm.os.as_deref()).to_string()),
        (
            "uname -a",
            or_dash(vm.uname.as_deref().map(str::trim)).to_string(),
        ),
        ("Attempts", vm.attempts.to_string()),
        (
            "Total time",
            vm.elapsed().map_or("-".to_string(), format_elapsed),
        ),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "{:<15}{value}", format!("{label}:"));
    }
    if let Some(error) = &vm.error {
        let _ = writeln!(out, "{:<15}{}", "Error:", error.trim());
    }
    if vm.nics.len() > 1 {
        let _ = writeln!(out, "\nNICs:");
        for nic in &vm.nics {
            let _ = writeln!(out, "  {}", nic.describe());
        }
    }
    if !vm.checks.is_empty() {
        let _ = writeln!(out, "\nGuest checks:");
    }
    for check in &vm.checks {
        let _ = writeln!(out, "  {}: {}", check.name, check_words(check));
        for line in &check.stdout_tail {
            let _ = writeln!(out, "    stdout| {line}");
        }
        for line in &check.stderr_tail {
            let _ = writeln!(out, "    stderr| {line}");
        }
    }
    if let Some(hook) = &vm.hook {
        let _ = writeln!(out, "\non_verified hook: {}", hook_words(hook));
        for line in &hook.tail {
            let _ = writeln!(out, "    | {line}");
        }
    }
    let _ = writeln!(out, "\nPhases:");
    if vm.phases.is_empty() {
        let _ = writeln!(out, "  (none started)");
    }
    for (phase, times) in &vm.phases {
        let _ = writeln!(
            out,
            "  {:<16}{:<26}{:<26}{}",
            phase,
            times.started.as_ref().map_or("-".to_string(), ms::format),
            times.finished.as_ref().map_or("-".to_string(), ms::format),
            times.duration().map_or("-".to_string(), format_elapsed)
        );
    }
    // The rollout's end is in summary.md and summary.json: this file is written when its VM
    // settles, and stays as it is unless the VM changes.
    let _ = writeln!(out, "\nRollout:");
    let _ = writeln!(out, "  id             {}", r.id);
    let _ = writeln!(out, "  proxmox        {}", r.proxmox_url);
    let _ = writeln!(out, "  template       {}", r.template);
    let _ = writeln!(out, "  mode           {}", r.mode);
    let _ = writeln!(out, "  started        {}", ms::format(&r.started));
    out
}
