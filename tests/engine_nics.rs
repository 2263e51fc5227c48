//! Several NICs against the simulator: a second NIC on a VLAN takes its address from a pool,
//! reaches PVE as net1/ipconfig1 and the guest as a second interface, is verified on the NIC with
//! its MAC and lands in summary.json with the first; a resumed plan keeps every NIC's address; a
//! wrong address on the second NIC fails the VM naming it; the plan refuses bad NICs at once.

mod common;

use common::*;
use pve_rollout::config::{
    AddressPool, Addressing, HostAddress, Ip6Addressing, Ip6Host, Nic, NicOverrides, VmOverrides,
};
use pve_rollout::engine::journal::{History, path_in};
use pve_rollout::sim::Scenario;
use pve_rollout::sim::scenario::NicFault;

const SCALE: f64 = 0.02;

/// The fast scenario with a third bridge, `vmbr2`, for the second NIC.
fn three_bridges() -> Scenario {
    let mut scenario = Scenario::builtin("fast").expect("fast");
    scenario.cluster.bridges.push("vmbr2".into());
    scenario
}

fn vlan_pool_nic(first: u8, last: u8) -> Nic {
    Nic {
        vlan: Some(20),
        firewall: Some(true),
        address: Addressing::Pool(AddressPool {
            first: [10, 0, 20, first].into(),
            last: [10, 0, 20, last].into(),
            prefix: 24,
        }),
        ..Nic::on("vmbr2")
    }
}

fn ip6(text: &str) -> Ip6Addressing {
    let (ip, prefix) = text.split_once('/').expect("cidr");
    Ip6Addressing::Static(Ip6Host {
        ip: ip.parse().expect("ipv6"),
        prefix: prefix.parse().expect("prefix"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nics_with_a_vlan_verify_and_the_summary_carries_both() {
    let mut h = Harness::start_with(three_bridges(), 21, SCALE, quick(2)).await;
    h.config.defaults.networks = vec![Nic::on("vmbr1"), vlan_pool_nic(20, 29)];
    // net0 keeps DHCP for IPv4 and gets a static IPv6 address per VM, verified like a static v4.
    for (name, v6) in [("demo-1", "fd00:10::a1/64"), ("demo-2", "fd00:10::a2/64")] {
        h.config.vm_configs.insert(
            name.into(),
            VmOverrides {
                nic0: NicOverrides {
                    ip6: Some(ip6(v6)),
                    gateway6: Some("fd00:10::1".parse().expect("gw6")),
                    ..NicOverrides::default()
                },
                ..VmOverrides::default()
            },
        );
    }
    let plan = h.plan().await;
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 2], "{summary:#?}");

    for (i, (vm, planned)) in summary.vms.iter().zip(&plan.vms).enumerate() {
        let second = format!("10.0.20.{}", 20 + i);
        let config = h
            .client
            .vm_config(&planned.node, planned.vmid)
            .await
            .expect("config");
        let net1 = config.net(1).expect("net1");
        assert_eq!(net1.bridge.as_deref(), Some("vmbr2"));
        assert!(
            net1.options.contains(&"tag=20".to_string())
                && net1.options.contains(&"firewall=1".to_string()),
            "{net1:?}"
        );
        assert_eq!(
            config.get("ipconfig1"),
            Some(format!("ip={second}/24").as_str())
        );
        assert_eq!(
            config.get("ipconfig0"),
            Some(format!("ip=dhcp,ip6=fd00:10::a{}/64,gw6=fd00:10::1", i + 1).as_str())
        );

        // summary.json: both NICs, each with its MAC, bridge, VLAN and addresses.
        assert_eq!(vm.nics.len(), 2, "{vm:#?}");
        let (n0, n1) = (&vm.nics[0], &vm.nics[1]);
        assert_eq!((n0.name.as_str(), n1.name.as_str()), ("net0", "net1"));
        assert_eq!(n0.mac, config.net0_mac());
        assert_eq!(n1.mac, net1.mac_address());
        assert_ne!(n0.mac, n1.mac);
        assert_eq!((n0.vlan, n1.vlan), (None, Some(20)));
        assert_eq!(n1.bridge, "vmbr2");
        assert_eq!(n1.expected, [format!("{second}/24")]);
        assert!(n1.reported.contains(&second), "{n1:?}");
        let v6 = format!("fd00:10::a{}", i + 1);
        assert_eq!(n0.expected, [format!("{v6}/64")]);
        assert!(n0.reported.contains(&v6), "{n0:?}");
        // The VM's IP (inventory.ini's) stays net0's DHCP address.
        let ip = vm.ip.clone().expect("ip");
        assert!(
            n0.reported.contains(&ip) && ip.starts_with("10.20."),
            "{vm:#?}"
        );
        assert!(vm.tags.iter().any(|t| t == "pve-rollout"), "{vm:#?}");
    }
    let written = std::fs::read_to_string(h.out.path().join("summary.json")).expect("summary");
    assert!(written.contains("\"schema_version\": 2"), "{written}");
    assert!(written.contains("\"vlan\": 20"), "{written}");
    let inventory = std::fs::read_to_string(h.out.path().join("inventory.ini")).expect("ini");
    assert!(!inventory.contains("10.0.20."), "{inventory}");

    // The journal holds net1's pool addresses: a later plan keeps them even though the pool now
    // starts lower (without the journal the VMs would take 10.0.20.10 and .11).
    let history = History::read(&path_in(&h.config.output.dir)).expect("journal");
    assert_eq!(
        history.vms["demo-2"].addresses.get(&1).map(String::as_str),
        Some("10.0.20.21/24")
    );
    h.config.defaults.networks[1] = vlan_pool_nic(10, 29);
    let again = h.plan().await;
    let kept: Vec<Option<HostAddress>> = again.vms.iter().map(|vm| vm.nic_address(1)).collect();
    assert_eq!(
        kept,
        [20, 21].map(|last| Some(HostAddress {
            ip: [10, 0, 20, last].into(),
            prefix: 24
        }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_address_on_the_second_nic_fails_the_vm_naming_it() {
    let mut scenario = three_bridges();
    // The second clone's net1 ignores its ipconfig1 and leases by DHCP.
    scenario.faults.static_ignored = vec![NicFault { clone: 2, nic: 1 }];
    let mut h = Harness::start_with(scenario, 22, SCALE, quick(2)).await;
    h.config.defaults.networks = vec![Nic::on("vmbr1"), vlan_pool_nic(20, 29)];
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified", "failed"], "{summary:#?}");
    let error = summary.vms[1].error.clone().expect("error");
    // Names the NIC, the address it reports (a lease from vmbr2's subnet) and the expected one.
    assert!(
        error.contains("net1 (MAC BC:24:11:")
            && error.contains("10.0.20.21/24")
            && error.contains("reports 10.60."),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_nics_are_refused_at_plan_all_at_once() {
    let mut h = Harness::start_with(three_bridges(), 23, SCALE, quick(2)).await;
    let fixed = |last: u8| {
        Addressing::Static(HostAddress {
            ip: [10, 0, 20, last].into(),
            prefix: 24,
        })
    };
    h.config.defaults.networks = vec![
        Nic::on("vmbr1"),
        Nic {
            vlan: Some(0),
            mtu: Some(0),
            ..Nic::on("vmbr9")
        },
    ];
    let nics = |net1: Nic| VmOverrides {
        networks: Some(vec![Nic::on("vmbr1"), net1]),
        ..VmOverrides::default()
    };
    h.config.vm_configs.insert(
        "demo-1".into(),
        nics(Nic {
            vlan: Some(4095),
            address: fixed(5),
            ..Nic::on("vmbr9")
        }),
    );
    // demo-2's net1 repeats demo-1's net1 address, and its IPv6 gateway lies outside its subnet.
    h.config.vm_configs.insert(
        "demo-2".into(),
        nics(Nic {
            address: fixed(5),
            ip6: Some(ip6("fd00:20::5/64")),
            gateway6: Some("fd00:99::1".parse().expect("gw6")),
            mtu: Some(0),
            ..Nic::on("vmbr2")
        }),
    );
    // A config built in code can leave a VM without any NIC.
    h.config.vm_configs.insert(
        "demo-3".into(),
        VmOverrides {
            networks: Some(Vec::new()),
            ..VmOverrides::default()
        },
    );
    let problems = h.refused_plan().await;
    let has = |words: &[&str]| problems.iter().any(|p| words.iter().all(|w| p.contains(w)));
    assert!(
        has(&[
            "bridge 'vmbr9'",
            "net1 of 'demo-1'",
            "does not exist on node pve1",
            "vmbr2"
        ]),
        "{problems:#?}"
    );
    assert!(has(&["VLAN tag 4095", "net1 of 'demo-1'"]), "{problems:#?}");
    assert!(has(&["mtu 0", "net1 of 'demo-2'"]), "{problems:#?}");
    assert!(
        has(&["'demo-2' net1", "'demo-1' net1", "10.0.20.5"]),
        "{problems:#?}"
    );
    assert!(
        has(&["gateway6 fd00:99::1", "'demo-2' net1", "outside its subnet"]),
        "{problems:#?}"
    );
    assert!(has(&["'demo-3' has no NIC"]), "{problems:#?}");
}
