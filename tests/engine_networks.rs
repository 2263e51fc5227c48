//! Networks, placement, clones and guest settings against the simulator: a pool's addresses
//! reach PVE as `ipconfig0` and the guest, each VM is verified on its own address, `spread`,
//! linked clones, `cicustom` snippets and the guest settings work end to end, and the plan
//! refuses bad setups before anything is created.

mod common;

use common::*;
use pve_rollout::config::{
    AddressPool, Addressing, CloneMode, GuestSettings, HostAddress, NicOverrides, Placement,
    VmOverrides,
};
use pve_rollout::pve::{CiCustom, Startup};
use pve_rollout::sim::Scenario;

const SCALE: f64 = 0.02;

fn host(text: &str) -> HostAddress {
    let (ip, prefix) = text.split_once('/').expect("a/p");
    HostAddress {
        ip: ip.parse().expect("ip"),
        prefix: prefix.parse().expect("prefix"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_addresses_reach_the_guest_and_are_verified() {
    let mut h = Harness::start("fast", 11, SCALE, quick(3)).await;
    h.config.defaults.networks[0].address = Addressing::Pool(AddressPool {
        first: [10, 0, 10, 20].into(),
        last: [10, 0, 10, 29].into(),
        prefix: 24,
    });
    h.config.defaults.networks[0].gateway = Some([10, 0, 10, 1].into());
    h.config.defaults.nameservers = vec!["10.0.10.2".parse().unwrap(), "1.1.1.1".parse().unwrap()];
    h.config.defaults.searchdomain = Some("lab.example".into());
    let plan = h.plan().await;
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 3], "{summary:#?}");
    let ips: Vec<Option<String>> = summary.vms.iter().map(|v| v.ip.clone()).collect();
    assert_eq!(
        ips,
        [
            Some("10.0.10.20".to_string()),
            Some("10.0.10.21".to_string()),
            Some("10.0.10.22".to_string())
        ]
    );
    for (vm, last) in plan.vms.iter().zip(20..) {
        let config = h.client.vm_config(&vm.node, vm.vmid).await.expect("config");
        assert_eq!(
            config.get("ipconfig0"),
            Some(format!("ip=10.0.10.{last}/24,gw=10.0.10.1").as_str())
        );
        assert_eq!(config.get("nameserver"), Some("10.0.10.2 1.1.1.1"));
        assert_eq!(config.get("searchdomain"), Some("lab.example"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_address_setups_are_refused_at_plan_all_at_once() {
    let mut h = Harness::start("fast", 12, SCALE, quick(1)).await;
    let vm = |ip: Option<&str>, gateway: Option<&str>| VmOverrides {
        nic0: NicOverrides {
            address: ip.map(|ip| Addressing::Static(host(ip))),
            gateway: gateway.map(|g| g.parse().expect("gw")),
            ..NicOverrides::default()
        },
        ..VmOverrides::default()
    };
    h.config.vm_configs.clear();
    h.config
        .vm_configs
        .insert("web-1".into(), vm(Some("10.0.10.21/24"), None));
    h.config
        .vm_configs
        .insert("web-2".into(), vm(Some("10.0.10.21/24"), None));
    h.config
        .vm_configs
        .insert("db-1".into(), vm(Some("10.0.10.30/24"), Some("10.0.11.1")));
    h.config.vm_configs.insert(
        "pool-1".into(),
        VmOverrides {
            nic0: NicOverrides {
                address: Some(Addressing::Pool(AddressPool {
                    first: [10, 0, 10, 21].into(),
                    last: [10, 0, 10, 22].into(),
                    prefix: 24,
                })),
                ..NicOverrides::default()
            },
            ..VmOverrides::default()
        },
    );
    h.config
        .vm_configs
        .insert("pool-2".into(), h.config.vm_configs["pool-1"].clone());
    h.config
        .vm_configs
        .insert("dhcp-1".into(), vm(None, Some("10.0.10.1")));

    let problems = h.refused_plan().await;
    let has = |words: &[&str]| problems.iter().any(|p| words.iter().all(|w| p.contains(w)));
    assert!(has(&["'web-2'", "'web-1'", "10.0.10.21"]), "{problems:#?}");
    assert!(
        has(&["10.0.11.1", "'db-1'", "outside its subnet"]),
        "{problems:#?}"
    );
    assert!(
        has(&["ip_pool 10.0.10.21-10.0.10.22/24", "'pool-2'"]),
        "{problems:#?}"
    );
    assert!(has(&["'dhcp-1'", "DHCP", "gateway"]), "{problems:#?}");
}

/// `placement = "spread"` over three of the cluster's nodes: round robin in `nodes` order,
/// cloned from the shared template with `target`, every VM verified on its node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spread_places_round_robin_over_three_nodes() {
    let mut h = Harness::start("cluster", 13, SCALE, quick(6)).await;
    h.config.rollout.nodes = vec!["pve1".into(), "pve2".into(), "pve3".into()];
    h.config.rollout.placement = Placement::Spread;
    h.config.defaults.storage = "shared".into();
    let plan = h.plan().await;
    let nodes: Vec<&str> = plan.vms.iter().map(|vm| vm.node.as_str()).collect();
    assert_eq!(nodes, ["pve1", "pve2", "pve3", "pve1", "pve2", "pve3"]);
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 6], "{summary:#?}");
    for vm in &plan.vms {
        let status = h.client.vm_status(&vm.node, vm.vmid).await.expect("status");
        assert!(status.is_running(), "{} on {}", vm.name, vm.node);
    }

    // The default packs by free memory instead: the same cluster puts the first VMs elsewhere.
    h.config.rollout.placement = Placement::MostFreeMemory;
    h.config.rollout.nodes = vec!["pve4".into(), "pve5".into(), "pve6".into()];
    let out = tempfile::tempdir().expect("temp dir");
    h.config.output.dir = out.path().to_path_buf();
    h.config.rollout.name = "packed".into();
    h.config.rollout.vm_name_prefix = "packed".into();
    h.config.defaults.memory = 600 * 1024;
    // Two 600 GiB VMs per 1 TiB node do not fit.
    let problems = h.refused_plan().await;
    assert!(
        problems.iter().all(|p| p.contains("memory_overcommit = 1")),
        "{problems:#?}"
    );
    h.config.rollout.memory_overcommit = 2.0;
    let plan = h.plan().await;
    assert_eq!(plan.vms.len(), 6);
}

/// `clone = "linked"`: PVE gets `full=0` without `storage`/`format` (it refuses them), each VM's
/// disk references the template's base volume, and every VM verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_clones_share_the_templates_base_volume() {
    let mut h = Harness::start("fast", 14, SCALE, quick(2)).await;
    h.config.defaults.clone = CloneMode::Linked;
    let plan = h.plan().await;
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 2], "{summary:#?}");
    for vm in &plan.vms {
        let config = h.client.vm_config(&vm.node, vm.vmid).await.expect("config");
        let scsi0 = config.get("scsi0").unwrap_or_default();
        assert!(
            scsi0.starts_with(&format!(
                "ssd:base-{}-disk-1/vm-{}-",
                vm.source.vmid, vm.vmid
            )),
            "{scsi0}"
        );
    }
}

/// `cicustom`: a snippet that is missing stops the plan (exit 3, nothing created) with the
/// files that are there; a present one reaches the VM's config and the rollout verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cicustom_snippets_are_checked_before_anything_is_created() {
    let mut h = Harness::start("fast", 15, SCALE, quick(2)).await;
    h.config.defaults.cicustom = Some(CiCustom {
        user: Some("local:snippets/base.yml".into()),
        vendor: Some("local:snippets/missing.yml".into()),
        ..CiCustom::default()
    });
    let problems = h.refused_plan().await;
    assert_eq!(problems.len(), 2, "one per VM: {problems:#?}");
    assert!(
        problems.iter().all(|p| p.contains("cicustom.vendor")
            && p.contains("local:snippets/missing.yml")
            && p.contains("local:snippets/base.yml")),
        "{problems:#?}"
    );
    // A storage that does not hold snippets is named too.
    h.config.defaults.cicustom = Some(CiCustom {
        user: Some("ssd:snippets/base.yml".into()),
        ..CiCustom::default()
    });
    let problems = h.refused_plan().await;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("does not hold snippets")),
        "{problems:#?}"
    );

    h.config.defaults.cicustom = Some(CiCustom {
        user: Some("local:snippets/base.yml".into()),
        ..CiCustom::default()
    });
    let plan = h.plan().await;
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 2], "{summary:#?}");
    for vm in &plan.vms {
        let config = h.client.vm_config(&vm.node, vm.vmid).await.expect("config");
        assert_eq!(config.get("cicustom"), Some("user=local:snippets/base.yml"));
    }
}

/// The guest settings reach PVE as it writes them: the clone joins the pool, the tags are merged
/// with the rollout's own, the description keeps the marker line; a missing pool is refused at
/// plan before anything is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_settings_reach_the_vm_and_a_missing_pool_is_refused() {
    let mut scenario = Scenario::builtin("fast").expect("fast");
    scenario.cluster.pools = vec!["web".into()];
    let mut h = Harness::start_with(scenario, 16, SCALE, quick(2)).await;
    h.config.defaults.guest = GuestSettings {
        ciupgrade: Some(false),
        pool: Some("nope".into()),
        tags: vec!["web".into(), "prod".into()],
        description: Some("web tier".into()),
        onboot: Some(true),
        startup: Startup::parse("order=2,up=30"),
        cpu: Some("host".into()),
        balloon: Some(2048),
    };
    let err = pve_rollout::engine::plan::build(&h.client, &h.config)
        .await
        .expect_err("a missing pool is refused");
    assert!(
        err.to_string()
            .contains("pool 'nope' does not exist (pools: web)"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 3);

    h.config.defaults.guest.pool = Some("web".into());
    let plan = h.plan().await;
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 2], "{summary:#?}");
    for vm in &plan.vms {
        let config = h.client.vm_config(&vm.node, vm.vmid).await.expect("config");
        let tags = config.tags();
        for tag in ["web", "prod", "pve-rollout"] {
            assert!(tags.contains(tag), "{tag} in {tags}");
        }
        assert_eq!(config.get("ciupgrade"), Some("0"));
        assert_eq!(config.get("onboot"), Some("1"));
        assert_eq!(config.get("startup"), Some("order=2,up=30"));
        assert_eq!(config.get("cpu"), Some("host"));
        assert_eq!(config.get("balloon"), Some("2048"));
        let description = config.description().unwrap_or_default();
        assert!(description.starts_with("web tier\n"), "{description}");
        assert!(description.ends_with("pve-rollout: demo"), "{description}");
    }
}
