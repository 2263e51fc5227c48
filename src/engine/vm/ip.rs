//! The IP phase: ask the agent for the guest's interfaces until the IP rules find a usable
//! address (DHCP takes a while after the agent is up).

use std::time::Duration;

use crate::config::format_duration;
use crate::pve::ErrorClass;

use super::super::ip::{StaticSeen, addresses_on, static_address_seen};

use super::super::event::{Event, Level, Phase};
use super::super::poll::{Attempt, Backoff, Wait};
use super::{Step, Stop, VmTask};

/// Asking for a lease: every second at first, slowly less often (leases come over seconds, and
/// the VM waits for the one it gets), every 5 s at most.
const LEASE_POLLS: Backoff = Backoff::growing(Duration::from_secs(1), 1.1, Duration::from_secs(5));

impl VmTask {
    /// `macs`: each NIC's MAC (net0 first). Every NIC with a static address must report it on
    /// the interface with its MAC; net0 must give the VM its IP (its static one, or one the IP
    /// rules pick); the other NICs' DHCP addresses are reported, not awaited.
    pub(super) async fn ip_phase(&mut self, macs: &[Option<String>], held: bool) -> Step {
        let mac = macs.first().cloned().flatten();
        let mac = mac.as_deref();
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let shared = self.shared.clone();
        let timeout = shared.checks.ip_timeout;
        // First ask a little before the median lease of the VMs before it (pipelined only: in
        // sequential mode the lane is held, and the original wait_for_vm.sh flow asked at
        // once). Leases spread over seconds: asking from the earliest one seen costs every
        // later VM two or three asks for a lease found at most a few seconds sooner.
        let first = match held {
            true => Duration::ZERO,
            false => shared
                .learned
                .first_wait(Wait::Ip, 0.5, 0.8)
                .unwrap_or_default(),
        };
        let mut poll = Self::poller(&shared, shared.clock.deadline(timeout), LEASE_POLLS)
            .first_wait(first)
            .learning(&shared.learned, Wait::Ip, None);
        self.enter(Phase::AwaitingIp);
        let mut reported = String::new();
        let (ip, candidates, interfaces) = loop {
            poll.due().await?;
            let n = node.clone();
            let attempt = match self
                .agent_call(held, |c| async move {
                    c.agent_network_interfaces(&n, vmid).await
                })
                .await?
            {
                Ok(interfaces) => {
                    let choice = shared.ip_rules.select(&interfaces, mac);
                    match (
                        self.statics_seen(&interfaces, macs)?,
                        self.vm.static_address(),
                        mac,
                    ) {
                        (false, _, _) => Attempt::Pending(String::new()),
                        (true, Some(host), Some(_)) => {
                            Attempt::Done((host.ip.into(), choice.candidates, interfaces))
                        }
                        (true, _, _) => match choice.ip {
                            Some(ip) => Attempt::Done((ip, choice.candidates, interfaces)),
                            None => {
                                let now = addresses_of(&interfaces);
                                if now != reported {
                                    self.send(Event::VmReported {
                                        vm: self.vm.index,
                                        addresses: now.clone(),
                                    });
                                    reported = now;
                                }
                                Attempt::Pending(String::new())
                            }
                        },
                    }
                }
                Err(e)
                    if matches!(
                        e.class,
                        ErrorClass::AgentNotReady | ErrorClass::NotRunning | ErrorClass::Transient
                    ) =>
                {
                    self.seen.pings = 0;
                    Attempt::Pending(String::new())
                }
                Err(e) => return Err(e.into()),
            };
            let timed_out = |_| {
                let seen = match reported.as_str() {
                    "" => "nothing".to_string(),
                    r => r.to_string(),
                };
                Err(Stop::Failed(format!(
                    "no usable IP address reported within {} (the agent reports: {seen})",
                    format_duration(timeout)
                )))
            };
            if let Some(found) = poll.answer(attempt, timed_out)? {
                break found;
            }
        };
        let candidates: Vec<String> = candidates.iter().map(|c| c.to_string()).collect();
        let others: Vec<&str> = candidates
            .iter()
            .map(String::as_str)
            .filter(|c| *c != ip.to_string())
            .collect();
        let text = if others.is_empty() {
            format!("IP {ip}")
        } else {
            format!("IP {ip} (other candidates: {})", others.join(", "))
        };
        self.send(Event::VmIp {
            vm: self.vm.index,
            ip: ip.to_string(),
            candidates,
        });
        let mut nics = self.vm.nic_summaries();
        for (nic, mac) in nics.iter_mut().zip(macs) {
            nic.mac = mac.clone();
            if let Some(mac) = mac {
                let seen = addresses_on(&interfaces, mac);
                nic.reported = seen.iter().map(|ip| ip.to_string()).collect();
            }
        }
        for nic in nics.iter().skip(1) {
            self.log(Level::Info, nic.describe());
        }
        self.send(Event::VmNics {
            vm: self.vm.index,
            nics,
        });
        self.enter(Phase::IpFound);
        self.log(Level::Info, text);
        self.ip = Some(ip.to_string());
        Ok(())
    }
}

impl VmTask {
    /// Whether every NIC with a static address (IPv4 or IPv6) reports it on the interface with
    /// its MAC; a NIC reporting another address of that family fails the VM, naming the NIC,
    /// both addresses and the MAC.
    fn statics_seen(
        &self,
        interfaces: &[crate::pve::AgentInterface],
        macs: &[Option<String>],
    ) -> Step<bool> {
        let mut all = true;
        for (i, (nic, mac)) in self.vm.spec.networks.iter().zip(macs).enumerate() {
            let Some(mac) = mac else { continue };
            let v4 = self.vm.nic_address(i).map(|h| (h.ip.into(), h.to_string()));
            let v6 = nic.static_ip6().map(|h| (h.ip.into(), h.to_string()));
            for (want, host) in v4.into_iter().chain(v6) {
                match static_address_seen(interfaces, mac, want) {
                    StaticSeen::Found => {}
                    StaticSeen::Nothing => all = false,
                    StaticSeen::Other(seen) => {
                        let seen: Vec<String> = seen.iter().map(|ip| ip.to_string()).collect();
                        return Err(Stop::Failed(format!(
                            "net{i} (MAC {mac}) reports {}, not its static address {host}; check the template's cloud-init network setup",
                            seen.join(", ")
                        )));
                    }
                }
            }
        }
        Ok(all)
    }
}

/// `lo 127.0.0.1 ::1; eth0 fe80::1` (interfaces without addresses: `eth0 -`).
fn addresses_of(interfaces: &[crate::pve::AgentInterface]) -> String {
    interfaces
        .iter()
        .map(|i| {
            let ips: Vec<&str> = i
                .ip_addresses
                .iter()
                .map(|a| a.ip_address.as_str())
                .collect();
            match ips.is_empty() {
                true => format!("{} -", i.name),
                false => format!("{} {}", i.name, ips.join(" ")),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
