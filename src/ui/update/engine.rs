//! Engine events into the model: the plan, states, logs, the copy's progress, counts and the
//! end.

use crate::engine::event::{Event, Level};
use crate::report::Summary;

use super::super::model::{Model, VmRow};
use super::super::state::StateKind;
use super::super::text;
use super::{MAX_NAME_WIDTH, MAX_NODE_WIDTH, Quit, UpdateResult, exported_note};

pub(super) fn on_engine(m: &mut Model, event: Event, r: &mut UpdateResult) {
    r.dirty = true;
    match event {
        Event::Planned {
            rollout,
            cluster,
            vms,
        } => {
            m.rollout = text::clean(&rollout);
            m.cluster = text::clean(&cluster);
            m.started.get_or_insert(m.now);
            m.vms = vms.iter().map(|vm| VmRow::new(vm, m.now)).collect();
            m.counts = Default::default();
            m.counts[StateKind::Queued.index()] = m.vms.len();
            m.name_width = m
                .vms
                .iter()
                .map(|v| v.name.chars().count())
                .max()
                .unwrap_or(0)
                .clamp(6, MAX_NAME_WIDTH);
            m.node_width = m
                .vms
                .iter()
                .map(|v| v.node.chars().count())
                .max()
                .unwrap_or(0)
                .clamp(4, MAX_NODE_WIDTH);
            m.selected = 0;
            m.offset = 0;
        }
        Event::VmState { vm, state, at } => m.set_vm_state(vm, state, at),
        Event::Log { vm, level, text } => push_log(m, vm, level, &text),
        Event::VmIp { vm, ip, candidates } => {
            if let Some(row) = m.vms.get_mut(vm) {
                row.ip = Some(text::clean(&ip));
                row.candidates = candidates.iter().map(|c| text::clean(c)).collect();
            }
        }
        Event::VmGuest { vm, uname, os } => {
            if let Some(row) = m.vms.get_mut(vm) {
                if let Some(uname) = uname {
                    row.uname = Some(text::clean(&uname));
                }
                if let Some(os) = os {
                    row.os = Some(text::clean(&os));
                }
            }
        }
        Event::TaskLog { vm, lines } => {
            if let Some(row) = m.vms.get_mut(vm) {
                let skip = lines
                    .len()
                    .saturating_sub(super::super::model::TASK_LOG_CAPACITY);
                row.task_log = lines[skip..].iter().map(|l| text::clean(l)).collect();
            }
        }
        // Each check's and hook's result and output come as the VM's log lines too.
        Event::Check { .. } | Event::Hook { .. } => {}
        Event::Progress(progress) => {
            r.dirty = m.requests != progress.requests || m.eta_s != progress.eta_s;
            m.requests = progress.requests;
            m.eta_s = progress.eta_s;
        }
        Event::VmNics { vm, nics } => {
            if let Some(row) = m.vms.get_mut(vm) {
                row.nics = (nics.iter().skip(1))
                    .map(|nic| {
                        let described = nic.describe();
                        let rest = described.strip_prefix(&nic.name).unwrap_or(&described);
                        (text::clean(&nic.name), text::clean(rest.trim_start()))
                    })
                    .collect();
            }
        }
        Event::VmReported { vm, addresses } => {
            if let Some(row) = m.vms.get_mut(vm) {
                row.reported = Some(text::clean(&addresses));
            }
        }
        Event::CopyProgress { vm, percent, eta_s } => {
            if let Some(row) = m.vms.get_mut(vm) {
                row.copy = Some(super::super::model::CopyShown {
                    percent,
                    eta_s,
                    at: m.now,
                });
            }
        }
        Event::Attempt { vm, attempt } => {
            if let Some(row) = m.vms.get_mut(vm) {
                row.set_attempts(attempt);
            }
        }
        Event::Exported { paths } => {
            m.exported = paths;
            m.flash = Some(exported_note(m));
        }
        Event::Finished { summary } => {
            m.finished = true;
            m.finished_at = Some(m.now);
            m.paused_all = false;
            m.outcome = Some(outcome(m, &summary));
            if m.aborting {
                r.quit = Some(Quit::Normal);
            }
        }
    }
}

fn push_log(m: &mut Model, vm: Option<usize>, level: Level, raw: &str) {
    let vm = vm.filter(|i| *i < m.vms.len());
    let text = text::clean(raw);
    if level == Level::Error
        && let Some(row) = vm.and_then(|i| m.vms.get_mut(i))
    {
        row.last_error = Some(text.clone());
    }
    let elapsed = m.elapsed();
    let (line, evicted) = m.logs.push(vm, level, elapsed, text);
    if let Some(row) = vm.and_then(|i| m.vms.get_mut(i)) {
        row.push_log(line.clone());
    }
    let search = &mut m.search;
    if let Some(gone) = evicted
        && search.matches.front() == Some(&gone)
    {
        search.matches.pop_front();
        search.current = search.current.saturating_sub(1);
    }
    if let Some(query) = &search.query
        && text::contains_ignore_case(&line.text, query)
    {
        search.matches.push_back(line.seq);
    }
}

/// "4 verified, 1 failed" from the final summary (or from what the grid shows, when the summary
/// lists no VMs).
fn outcome(m: &Model, summary: &Summary) -> String {
    let states: Vec<&str> = if summary.vms.is_empty() {
        m.vms.iter().map(|vm| vm.kind.label()).collect()
    } else {
        summary.vms.iter().map(|vm| vm.state.as_str()).collect()
    };
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for state in states {
        let word = match state {
            s @ ("verified" | "failed" | "skipped") => s,
            _ => "unfinished",
        };
        match counts.iter_mut().find(|(w, _)| *w == word) {
            Some((_, n)) => *n += 1,
            None => counts.push((word, 1)),
        }
    }
    counts.sort_by_key(|(w, _)| {
        ["verified", "failed", "skipped", "unfinished"]
            .iter()
            .position(|x| x == w)
    });
    let parts: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
    if parts.is_empty() {
        "no VMs".into()
    } else {
        parts.join(", ")
    }
}
