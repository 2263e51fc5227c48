//! The rollout's record, folded from the engine's own events: what the summary files say is
//! exactly what the watchers were told.

use std::time::SystemTime;

use indexmap::IndexMap;
use jiff::Timestamp;

use crate::report::{
    CheckReport, HookReport, NicSummary, PhaseTimes, RolloutInfo, SCHEMA_VERSION, Summary,
    VmSummary,
};

use super::event::{Event, Phase, PlannedVm, Progress, VmState};

#[derive(Debug, Clone)]
struct VmRecord {
    planned: PlannedVm,
    state: VmState,
    ip: Option<String>,
    candidates: Vec<String>,
    uname: Option<String>,
    os: Option<String>,
    attempts: u32,
    phases: IndexMap<String, PhaseTimes>,
    /// The phase whose timing is open.
    open: Option<Phase>,
    /// While cloning: the copy's percentage and its predicted wall seconds to go.
    copy: Option<(f64, Option<f64>)>,
    checks: Vec<CheckReport>,
    hook: Option<HookReport>,
    nics: Vec<NicSummary>,
}

#[derive(Debug, Clone)]
pub struct Record {
    info: RolloutInfo,
    vms: Vec<VmRecord>,
}

fn stamp(at: SystemTime) -> Timestamp {
    Timestamp::try_from(at).unwrap_or_else(|_| Timestamp::now())
}

impl Record {
    pub fn new(info: RolloutInfo, planned: &[PlannedVm]) -> Record {
        Record {
            info,
            vms: planned
                .iter()
                .map(|p| VmRecord {
                    planned: p.clone(),
                    state: VmState::Active {
                        phase: Phase::Queued,
                    },
                    ip: None,
                    candidates: Vec::new(),
                    uname: None,
                    os: None,
                    attempts: 1,
                    phases: IndexMap::new(),
                    open: None,
                    copy: None,
                    checks: Vec::new(),
                    hook: None,
                    nics: p.nics.clone(),
                })
                .collect(),
        }
    }

    pub fn state(&self, vm: usize) -> Option<&VmState> {
        self.vms.get(vm).map(|r| &r.state)
    }

    pub fn len(&self) -> usize {
        self.vms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vms.is_empty()
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::VmState { vm, state, at } => {
                let Some(r) = self.vms.get_mut(*vm) else {
                    return;
                };
                let at = stamp(*at);
                let phase = state.phase();
                let ends = matches!(
                    state,
                    VmState::Failed { .. }
                        | VmState::Skipped { .. }
                        | VmState::Aborted { .. }
                        | VmState::HookFailed { .. }
                ) || phase == Phase::Verified;
                if r.open != Some(phase) || ends {
                    if let Some(t) = r
                        .open
                        .take()
                        .and_then(|open| r.phases.get_mut(open.summary_key()))
                    {
                        t.finished = Some(at);
                    }
                    if !ends && phase != Phase::Queued {
                        let t = r.phases.entry(phase.summary_key().to_string()).or_default();
                        if t.started.is_none() || t.finished.is_some() {
                            // A retried phase starts again.
                            *t = PhaseTimes {
                                started: Some(at),
                                finished: None,
                            };
                        }
                        r.open = Some(phase);
                    }
                }
                if phase != Phase::Cloning {
                    r.copy = None;
                }
                r.state = state.clone();
            }
            Event::CopyProgress { vm, percent, eta_s } => {
                if let Some(r) = self.vms.get_mut(*vm) {
                    r.copy = Some((*percent, *eta_s));
                }
            }
            Event::VmIp { vm, ip, candidates } => {
                if let Some(r) = self.vms.get_mut(*vm) {
                    r.ip = Some(ip.clone());
                    r.candidates = candidates.clone();
                }
            }
            Event::VmNics { vm, nics } => {
                if let Some(r) = self.vms.get_mut(*vm) {
                    r.nics = nics.clone();
                }
            }
            Event::VmGuest { vm, uname, os } => {
                if let Some(r) = self.vms.get_mut(*vm) {
                    r.uname = uname.clone();
                    r.os = os.clone();
                }
            }
            Event::Check { vm, check } => {
                if let Some(r) = self.vms.get_mut(*vm) {
                    match r.checks.iter_mut().find(|c| c.name == check.name) {
                        Some(known) => *known = check.clone(),
                        None => r.checks.push(check.clone()),
                    }
                }
            }
            Event::Hook { vm, hook } => {
                if let Some(r) = self.vms.get_mut(*vm) {
                    r.hook = Some(hook.clone());
                }
            }
            Event::Attempt { vm, attempt } => {
                if let Some(r) = self.vms.get_mut(*vm) {
                    r.attempts = *attempt;
                }
            }
            _ => {}
        }
    }

    /// The IP chosen for `vm`, once one was.
    pub fn ip(&self, vm: usize) -> Option<String> {
        self.vms.get(vm).and_then(|r| r.ip.clone())
    }

    pub fn attempts(&self, vm: usize) -> u32 {
        self.vms.get(vm).map(|r| r.attempts).unwrap_or(1)
    }

    pub fn progress(&self, requests: u64) -> Progress {
        let mut p = Progress {
            total: self.vms.len(),
            requests,
            eta_s: self.eta().map(|s| s.round() as u64),
            ..Progress::default()
        };
        for r in &self.vms {
            match &r.state {
                VmState::Active {
                    phase: Phase::Queued,
                } => p.queued += 1,
                VmState::Active {
                    phase: Phase::Verified,
                } => p.verified += 1,
                VmState::Active { .. } => p.in_flight += 1,
                VmState::Paused { .. } => p.paused += 1,
                VmState::Failed { .. } | VmState::HookFailed { .. } => p.failed += 1,
                VmState::Skipped { .. } => p.skipped += 1,
                VmState::Aborted { .. } => p.aborted += 1,
            }
        }
        p
    }

    /// Wall seconds until every VM still under way is verified, once the clones' throughput
    /// is known: the copying left (a whole clone for each VM not copying yet) at the rate the
    /// copies run at now, their rates summed (clones sharing a storage share its throughput,
    /// so the sum is what the storage delivers), plus the time from a clone's end to
    /// verified that the VMs verified so far took (the slowest of them).
    pub fn eta(&self) -> Option<f64> {
        let mut left = 0.0;
        let mut rate = 0.0;
        let mut after_clone: Option<f64> = None;
        for r in &self.vms {
            match (&r.state, r.copy) {
                (
                    VmState::Active {
                        phase: Phase::Queued,
                    },
                    _,
                ) => left += 100.0,
                (
                    VmState::Active {
                        phase: Phase::Cloning,
                    }
                    | VmState::Paused {
                        phase: Phase::Cloning,
                    },
                    copy,
                ) => {
                    let (percent, eta) = copy.unwrap_or((0.0, None));
                    left += 100.0 - percent;
                    if let Some(eta) = eta.filter(|e| *e > 0.0) {
                        rate += (100.0 - percent) / eta;
                    }
                }
                (
                    VmState::Active {
                        phase: Phase::Verified,
                    },
                    _,
                ) => {
                    let cloned = r
                        .phases
                        .get(Phase::Cloning.summary_key())
                        .and_then(|t| t.finished);
                    let verified = r
                        .phases
                        .get(Phase::Verifying.summary_key())
                        .and_then(|t| t.finished);
                    if let (Some(c), Some(v)) = (cloned, verified) {
                        let s = v.duration_since(c).as_secs_f64();
                        after_clone = Some(after_clone.map_or(s, |a| a.max(s)));
                    }
                }
                _ => {}
            }
        }
        (rate > 0.0).then(|| left / rate + after_clone.unwrap_or(0.0))
    }

    pub fn summary(&self, finished: Option<SystemTime>, aborted: bool) -> Summary {
        let mut info = self.info.clone();
        info.finished = finished.map(stamp);
        info.aborted = aborted;
        Summary {
            schema_version: SCHEMA_VERSION,
            rollout: info,
            vms: self.vms.iter().map(VmRecord::summary).collect(),
            on_finished: None,
        }
    }

    /// VM `vm`'s part of the summary.
    pub fn vm_summary(&self, vm: usize) -> Option<VmSummary> {
        self.vms.get(vm).map(VmRecord::summary)
    }

    /// The rollout's own facts (its end not yet known).
    pub fn info(&self) -> &RolloutInfo {
        &self.info
    }
}

impl VmRecord {
    fn summary(&self) -> VmSummary {
        let r = self;
        VmSummary {
            name: r.planned.name.clone(),
            vmid: r.planned.vmid,
            node: r.planned.node.clone(),
            state: r.state.label().to_string(),
            ip: r.ip.clone(),
            ip_candidates: r.candidates.clone(),
            uname: r.uname.clone(),
            os: r.os.clone(),
            attempts: r.attempts,
            error: match &r.state {
                VmState::Failed { reason, .. } | VmState::HookFailed { reason } => {
                    Some(reason.clone())
                }
                // Where it was cut off: the same `deploy` goes on from there.
                VmState::Aborted { phase } => Some(format!(
                    "aborted in {phase}: the rollout was stopped; run the same deploy to resume"
                )),
                _ => None,
            },
            phases: r.phases.clone(),
            checks: r.checks.clone(),
            hook: r.hook.clone(),
            nics: r.nics.clone(),
            pool: r.planned.pool.clone(),
            tags: r.planned.tags.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn info() -> RolloutInfo {
        RolloutInfo {
            id: "r".into(),
            proxmox_url: "https://pve:8006".into(),
            template: "ubuntu".into(),
            mode: "pipelined".into(),
            vm_count: 1,
            deployment_delay: "30s".into(),
            nodes: vec!["pve1".into()],
            started: Timestamp::UNIX_EPOCH,
            finished: None,
            aborted: false,
        }
    }

    fn planned() -> Vec<PlannedVm> {
        vec![PlannedVm {
            index: 0,
            name: "web-1".into(),
            vmid: 101,
            node: "pve1".into(),
            ..Default::default()
        }]
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn phases_get_start_and_finish_times_from_state_events() {
        let mut rec = Record::new(info(), &planned());
        for (s, phase) in [
            (0, Phase::Cloning),
            (10, Phase::Configuring),
            (12, Phase::Booting),
            (15, Phase::AwaitingAgent),
            (40, Phase::IpFound),
            (41, Phase::Verifying),
            (75, Phase::Verified),
        ] {
            rec.apply(&Event::VmState {
                vm: 0,
                state: VmState::Active { phase },
                at: at(s),
            });
        }
        let sum = rec.summary(Some(at(80)), false);
        let vm = &sum.vms[0];
        assert_eq!(vm.state, "verified");
        let keys: Vec<&str> = vm.phases.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "cloning",
                "configuring",
                "booting",
                "awaiting-agent",
                "ip-found",
                "verifying"
            ]
        );
        let cloning = vm.phases["cloning"];
        assert_eq!(cloning.started, Some(stamp(at(0))));
        assert_eq!(cloning.finished, Some(stamp(at(10))));
        assert_eq!(vm.phases["verifying"].finished, Some(stamp(at(75))));
        assert_eq!(rec.progress(7).verified, 1);
    }

    #[test]
    fn failure_closes_the_phase_and_keeps_the_reason() {
        let mut rec = Record::new(info(), &planned());
        rec.apply(&Event::VmState {
            vm: 0,
            state: VmState::Active {
                phase: Phase::AwaitingAgent,
            },
            at: at(1),
        });
        rec.apply(&Event::VmState {
            vm: 0,
            state: VmState::Failed {
                phase: Phase::AwaitingAgent,
                reason: "agent did not answer".into(),
            },
            at: at(9),
        });
        let sum = rec.summary(None, false);
        assert_eq!(sum.vms[0].state, "failed");
        assert_eq!(sum.vms[0].error.as_deref(), Some("agent did not answer"));
        assert_eq!(
            sum.vms[0].phases["awaiting-agent"].finished,
            Some(stamp(at(9)))
        );
        assert_eq!(rec.progress(0).failed, 1);
    }

    #[test]
    fn pause_does_not_split_the_phase() {
        let mut rec = Record::new(info(), &planned());
        for state in [
            VmState::Active {
                phase: Phase::Booting,
            },
            VmState::Paused {
                phase: Phase::Booting,
            },
            VmState::Active {
                phase: Phase::Booting,
            },
        ] {
            rec.apply(&Event::VmState {
                vm: 0,
                state,
                at: at(3),
            });
        }
        let sum = rec.summary(None, false);
        assert_eq!(sum.vms[0].phases.len(), 1);
        assert_eq!(sum.vms[0].phases["booting"].finished, None);
    }
}
