//! The source audit of the simulator against qemu-server/pve-manager, row by row
//! (`auditNN_...`), then the behaviours it found unmodelled. Wire level: real HTTPS, raw status
//! lines and bodies, waits bounded in simulated time.

#[path = "sim_common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use pve_rollout::sim::SimOptions;
use pve_rollout::sim::scenario::{PveVersion, TokenSpec, Window};
use serde_json::{Value, json};

const SCALE: f64 = 0.01;

fn lock_timeout(vmid: u32) -> String {
    format!("can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout")
}

async fn exit_of(c: &Client, sim: &pve_rollout::sim::Sim, upid: &Value, max_s: f64) -> String {
    let st = c.wait_task(sim, upid.as_str().expect("upid"), max_s).await;
    st["exitstatus"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn audit01_clone_holds_the_new_vm_lock() {
    let (sim, c) = start(slow_clone_opts(SCALE)).await;
    let upid = begin_clone(&c, &sim, 101, "").await;
    // PUT config waits the 10 s lock timeout (in the request), then fails with the lock text.
    let t = Instant::now();
    c.put("/nodes/pve1/qemu/101/config", "cores=2")
        .await
        .expect_err(500, &lock_timeout(101));
    assert!(elapsed_sim(t, &sim) >= 10.0);
    // Start, resize and delete take the lock in their task: the same text, after 10 s.
    for (path, form) in [
        ("/nodes/pve1/qemu/101/status/start", None),
        ("/nodes/pve1/qemu/101/resize", Some("disk=scsi0&size=%2B1G")),
    ] {
        let r = match form {
            Some(f) => c.put(path, f).await,
            None => c.post(path, "").await,
        };
        let log_upid = r.data();
        assert_eq!(exit_of(&c, &sim, &log_upid, 60.0).await, lock_timeout(101));
        let log = task_log(&c, log_upid.as_str().expect("upid")).await;
        assert_eq!(log[0], "trying to acquire lock...", "{log:?}");
    }
    let d = c.delete("/nodes/pve1/qemu/101").await.data();
    assert_eq!(exit_of(&c, &sim, &d, 60.0).await, lock_timeout(101));
    // The clone itself is unharmed and the lock goes with it.
    assert_eq!(
        exit_of(&c, &sim, &json!(upid), 600.0).await,
        "OK",
        "the clone finishes"
    );
    c.put("/nodes/pve1/qemu/101/config", "cores=2").await.data();
}

#[tokio::test]
async fn audit02_only_copy_failures_carry_the_clone_failed_prefix() {
    // A failure inside the copy: prefixed.
    let mut o = opts("fast", SCALE);
    o.scenario.faults.p_storage_lock_timeout = 1.0;
    let (sim, c) = start(o).await;
    let u = c
        .post("/nodes/pve1/qemu/9000/clone", "newid=101&full=1")
        .await
        .data();
    assert_eq!(
        exit_of(&c, &sim, &u, 120.0).await,
        "clone failed: can't lock file '/var/lock/pve-manager/pve-storage-ssd' - got timeout"
    );
    // A lock timeout before the copy: no prefix. A POST config holds the template's lock in its
    // task (the lock is taken in the request), so the clone's shared lock waits 1 s and fails.
    let mut o = opts("fast", SCALE);
    o.scenario.timing.task_s = pve_rollout::sim::scenario::Span::fixed(20.0);
    let (sim, c) = start(o).await;
    let cfg = c
        .post("/nodes/pve1/qemu/9000/config", "description=x")
        .await
        .data();
    let u = c
        .post("/nodes/pve1/qemu/9000/clone", "newid=102&full=1")
        .await
        .data();
    assert_eq!(exit_of(&c, &sim, &u, 60.0).await, lock_timeout(9000));
    let log = task_log(&c, u.as_str().expect("upid")).await;
    assert_eq!(
        log,
        [
            "trying to acquire lock...".to_string(),
            format!("TASK ERROR: {}", lock_timeout(9000))
        ]
    );
    assert_eq!(exit_of(&c, &sim, &cfg, 120.0).await, "OK");
}

#[tokio::test]
async fn audit03_clone_to_an_id_used_on_another_node_fails_in_the_task() {
    let (sim, c) = start(opts("cluster", SCALE)).await;
    let u = c
        .post(
            "/nodes/pve1/qemu/9000/clone",
            "newid=120&full=1&target=pve3&name=far",
        )
        .await
        .data();
    assert_eq!(exit_of(&c, &sim, &u, 120.0).await, "OK");
    // No synchronous "already exists on node": a UPID, then the task fails writing the config.
    let u = c
        .post("/nodes/pve1/qemu/9000/clone", "newid=120&full=1&name=near")
        .await
        .data();
    assert_eq!(
        exit_of(&c, &sim, &u, 120.0).await,
        "close (rename) atomic file '/etc/pve/nodes/pve1/qemu-server/120.conf' failed: File exists"
    );
    assert_eq!(
        c.get("/nodes/pve3/qemu/120/config").await.data()["name"],
        "far"
    );
}

#[tokio::test]
async fn audit04_the_new_vms_name_shows_while_its_boot_disk_copies() {
    let (sim, c) = start(slow_clone_opts(SCALE)).await;
    let upid = begin_clone(&c, &sim, 101, "&name=web-1&description=d").await;
    let conf = c
        .until(&sim, 60.0, "the config after efidisk0", || async {
            let d = c.get("/nodes/pve1/qemu/101/config").await.data();
            (d.get("name").is_some()).then_some(d)
        })
        .await;
    // efidisk0 (and the cloud-init drive) are done, scsi0 still copies: the config is whole
    // but for scsi0, and still locked.
    assert_eq!(conf["name"], "web-1");
    assert_eq!(conf["description"], "d");
    assert_eq!(conf["lock"], "clone");
    assert!(
        conf.get("efidisk0").is_some() && conf.get("net0").is_some(),
        "{conf}"
    );
    assert!(conf.get("scsi0").is_none(), "{conf}");
    assert_eq!(exit_of(&c, &sim, &json!(upid), 600.0).await, "OK");
    let done = c.get("/nodes/pve1/qemu/101/config").await.data();
    assert!(done.get("lock").is_none() && done.get("scsi0").is_some());
}

#[tokio::test]
async fn audit05_efidisk_copies_without_progress_lines() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    let st = clone_vm(&c, &sim, 101, "a").await;
    let log = task_log(&c, st["upid"].as_str().expect("upid")).await;
    let efi = log
        .iter()
        .position(|l| l.starts_with("create full clone of drive efidisk0"))
        .expect("efidisk0 line");
    let next = log
        .iter()
        .skip(efi + 1)
        .position(|l| l.starts_with("create full clone of drive"))
        .expect("next drive")
        + efi
        + 1;
    assert!(
        log[efi..next]
            .iter()
            .all(|l| !l.starts_with("transferred ")),
        "{log:#?}"
    );
    assert!(log[next..].iter().any(|l| l.starts_with("transferred ")));
}

#[tokio::test]
async fn audit06_pending_changes_are_a_plain_line_and_the_clone_ends_ok() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    clone_vm(&c, &sim, 101, "src").await;
    start_vm(&c, &sim, 101).await;
    // `cores` on a running VM is a pending change.
    c.put("/nodes/pve1/qemu/101/config", "cores=4").await.data();
    let u = c
        .post(
            "/nodes/pve1/qemu/101/clone",
            "newid=102&full=1&name=copy&storage=ssd",
        )
        .await
        .data();
    let st = c.wait_task(&sim, u.as_str().expect("upid"), 600.0).await;
    assert_eq!(st["exitstatus"], "OK", "log_warn is not used: no WARNINGS");
    let log = task_log(&c, u.as_str().expect("upid")).await;
    assert!(
        log.contains(&"found pending changes for 'cores', discarding for clone".to_string()),
        "{log:#?}"
    );
    assert!(log.iter().all(|l| !l.starts_with("WARN")), "{log:#?}");
}

#[tokio::test]
async fn audit07_clone_pool_is_403_only_for_a_missing_pool() {
    let mut o = opts("fast", SCALE);
    o.scenario.cluster.pools = vec!["ci".into()];
    let (sim, c) = start(o).await;
    c.post("/nodes/pve1/qemu/9000/clone", "newid=101&pool=nope")
        .await
        .expect_err(403, "Permission check failed (pool 'nope' does not exist)");
    let u = c
        .post("/nodes/pve1/qemu/9000/clone", "newid=101&pool=ci&full=1")
        .await
        .data();
    assert_eq!(exit_of(&c, &sim, &u, 120.0).await, "OK");
    let pools = c.get("/pools").await.data();
    assert_eq!(pools, json!([{"poolid": "ci"}]));
    let members = c.get("/pools?poolid=ci").await.data()[0]["members"].clone();
    assert_eq!(members[0]["vmid"], 101);
    assert_eq!(members[0]["id"], "qemu/101");
    let res = c.get("/cluster/resources?type=vm").await.data();
    let vm = res
        .as_array()
        .expect("list")
        .iter()
        .find(|v| v["vmid"] == 101)
        .expect("vm 101");
    assert_eq!(vm["pool"], "ci");
}

#[tokio::test]
async fn audit08_a_shared_lock_passes_a_queued_exclusive_waiter() {
    // Clone A holds the template's shared lock for its whole copy; a PUT on the template queues
    // for the exclusive lock (and times out); clone B still gets its shared lock at once.
    let (sim, c) = start(slow_clone_opts(SCALE)).await;
    let a = begin_clone(&c, &sim, 101, "").await;
    let put = {
        let c = c.clone();
        tokio::spawn(async move { c.put("/nodes/pve1/qemu/9000/config", "description=x").await })
    };
    let b = begin_clone(&c, &sim, 102, "").await;
    let put = put.await.expect("join");
    put.expect_err(500, &lock_timeout(9000));
    let log_b = task_log(&c, &b).await;
    assert!(
        !log_b.contains(&"trying to acquire lock...".to_string()),
        "{log_b:#?}"
    );
    for u in [a, b] {
        assert_eq!(exit_of(&c, &sim, &json!(u), 900.0).await, "OK");
    }
}

#[tokio::test]
async fn audit09_config_update_normalises_values_and_words_delete_errors_like_pve() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    clone_vm(&c, &sim, 101, "a").await;
    c.put(
        "/nodes/pve1/qemu/101/config",
        "tags=Web%3Bci%2Cweb&net1=virtio%2Cfirewall%3D1%2Cbridge%3Dvmbr0",
    )
    .await
    .data();
    let conf = c.get("/nodes/pve1/qemu/101/config").await.data();
    assert_eq!(conf["tags"], "ci;web");
    let net1 = conf["net1"].as_str().expect("net1");
    assert!(
        net1.starts_with("virtio=BC:24:11:") && net1.ends_with(",bridge=vmbr0,firewall=1"),
        "{net1}"
    );
    let e = c
        .put("/nodes/pve1/qemu/101/config", "cores=2&delete=cores")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["delete"],
        "you can't use '-cores' and -delete cores' at the same time"
    );
    let e = c
        .put("/nodes/pve1/qemu/101/config", "delete=nosuchkey")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(e["errors"]["delete"], "unknown option 'nosuchkey'");
    // The digest is checked under the lock, after it.
    c.put("/nodes/pve1/qemu/101/config", "cores=2&digest=0000")
        .await
        .expect_err(500, "checksum mismatch (file change by other user?)");
}

fn backup_window(o: &mut SimOptions) {
    o.scenario.faults.template_backup = vec![Window {
        at_s: 0.0,
        until_s: None,
    }];
}

#[tokio::test]
async fn audit10_stopping_a_stopped_vm_ignores_its_lock() {
    let mut o = opts("fast", SCALE);
    backup_window(&mut o);
    let (sim, c) = start(o).await;
    c.until(&sim, 10.0, "backup lock", || async {
        let d = c.get("/nodes/pve1/qemu/9000/config").await.data();
        (d["lock"] == "backup").then_some(())
    })
    .await;
    for op in ["stop", "shutdown"] {
        let u = c
            .post(&format!("/nodes/pve1/qemu/9000/status/{op}"), "")
            .await
            .data();
        assert_eq!(exit_of(&c, &sim, &u, 60.0).await, "OK", "{op}");
    }
}

#[tokio::test]
async fn audit11_shutdown_pings_the_agent_first() {
    let mut o = opts("fast", SCALE);
    o.scenario.timing.boot_s = pve_rollout::sim::scenario::Span::fixed(30.0);
    let (sim, c) = start(o).await;
    clone_vm(&c, &sim, 101, "a").await;
    start_vm(&c, &sim, 101).await;
    // The agent is not up yet: 3 s ping timeout, a log line, then ACPI.
    let u = c
        .post("/nodes/pve1/qemu/101/status/shutdown", "")
        .await
        .data();
    assert_eq!(exit_of(&c, &sim, &u, 120.0).await, "OK");
    let log = task_log(&c, u.as_str().expect("upid")).await;
    assert_eq!(
        log[0],
        "QEMU Guest Agent is not running - VM 101 qmp command 'guest-ping' failed - got timeout"
    );
    // Agent up: shut down through it, no such line.
    start_vm(&c, &sim, 101).await;
    wait_agent(&c, &sim, 101).await;
    let u = c
        .post("/nodes/pve1/qemu/101/status/shutdown", "")
        .await
        .data();
    assert_eq!(exit_of(&c, &sim, &u, 120.0).await, "OK");
    assert_eq!(task_log(&c, u.as_str().expect("upid")).await, ["TASK OK"]);
}

#[tokio::test]
async fn audit12_reset_suspend_reboot_of_a_stopped_vm_fail_at_once() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    clone_vm(&c, &sim, 101, "a").await;
    for op in ["reset", "suspend", "reboot"] {
        c.post(&format!("/nodes/pve1/qemu/101/status/{op}"), "")
            .await
            .expect_err(500, "VM 101 not running");
    }
    assert_eq!(
        c.get("/nodes/pve1/qemu/101/status/current").await.data()["status"],
        "stopped",
        "reboot never starts a stopped VM"
    );
}

fn with_token(o: &mut SimOptions, id: &str, privs: &[&str]) -> Cred {
    o.scenario.auth.tokens.push(TokenSpec {
        id: id.into(),
        secret: "s3cret".into(),
        privsep: true,
        privileges: privs.iter().map(|s| s.to_string()).collect(),
        acl: Vec::new(),
    });
    Cred::Token(format!("{id}=s3cret"))
}

#[tokio::test]
async fn audit13_agent_privileges_follow_the_version() {
    for (version, allowed, denied) in [
        (PveVersion::V8_4, "VM.Monitor", "VM.GuestAgent.Audit"),
        (PveVersion::V9_1, "VM.GuestAgent.Audit", "VM.Monitor"),
    ] {
        let mut o = opts("fast", SCALE);
        o.scenario.pve_version = version;
        let ok = with_token(&mut o, "ci@pve!ok", &[allowed]);
        let no = with_token(&mut o, "ci@pve!no", &[denied]);
        let (sim, c) = start(o).await;
        clone_vm(&c, &sim, 101, "a").await;
        c.with(ok)
            .post("/nodes/pve1/qemu/101/agent/ping", "")
            .await
            .expect_err(500, "VM 101 is not running");
        let r = c.with(no).post("/nodes/pve1/qemu/101/agent/ping", "").await;
        assert_eq!(r.status, 403, "{version:?}: {}", r.reason);
        assert!(r.reason.contains(allowed), "{version:?}: {}", r.reason);
    }
}

fn daemon_requests(sim: &pve_rollout::sim::Sim) -> u64 {
    sim.stats().nodes["pve1"].requests
}

#[tokio::test]
async fn audit14_node_storage_is_protected_and_filters_any_content() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    let before = daemon_requests(&sim);
    let list = c
        .get("/nodes/pve1/storage?content=images,backup")
        .await
        .data();
    assert!(
        daemon_requests(&sim) > before,
        "served by a pvedaemon worker"
    );
    let ids: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["storage"].as_str())
        .collect();
    assert_eq!(ids, ["ssd", "local", "shared"], "any listed type qualifies");
    let e = c
        .get("/nodes/pve1/storage?storage=nope")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(e["errors"]["storage"], "No such storage.");
}

#[tokio::test]
async fn audit15_task_list_is_served_by_pveproxy() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    clone_vm(&c, &sim, 101, "a").await;
    let before = daemon_requests(&sim);
    let list = c.get("/nodes/pve1/tasks").await.data();
    assert_eq!(daemon_requests(&sim), before, "no pvedaemon worker");
    assert_eq!(list[0]["type"], "qmclone");
}

#[tokio::test]
async fn audit16_596_does_not_mean_not_executed() {
    let mut o = opts("fast", SCALE);
    o.scenario.faults.p_596_executed = 1.0;
    let (sim, c) = start(o).await;
    // Reads are not protected and unaffected; the clone POST is answered 596 but runs.
    let t = Instant::now();
    c.post("/nodes/pve1/qemu/9000/clone", "newid=101&name=late")
        .await
        .expect_err(596, "Connection timed out");
    assert!(elapsed_sim(t, &sim) >= 30.0);
    c.until(&sim, 120.0, "the clone that was answered 596", || async {
        let r = c.get("/nodes/pve1/qemu/101/config").await;
        (r.status == 200 && r.data()["name"] == "late" && r.data().get("lock").is_none())
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn audit17_destroy_marks_the_config_and_logs_purge() {
    let mut o = opts("fast", SCALE);
    o.scenario.timing.task_s = pve_rollout::sim::scenario::Span::fixed(20.0);
    let (sim, c) = start(o).await;
    let u = c
        .post(
            "/nodes/pve1/qemu/9000/clone",
            "newid=101&full=1&storage=shared",
        )
        .await
        .data();
    assert_eq!(exit_of(&c, &sim, &u, 120.0).await, "OK");
    let d = c.delete("/nodes/pve1/qemu/101?purge=1").await.data();
    c.until(&sim, 15.0, "lock: destroyed", || async {
        let r = c.get("/nodes/pve1/qemu/101/config").await;
        (r.status == 200 && r.data()["lock"] == "destroyed").then_some(())
    })
    .await;
    assert_eq!(exit_of(&c, &sim, &d, 120.0).await, "OK");
    // Files on NFS go without a line; purge says so.
    assert_eq!(
        task_log(&c, d.as_str().expect("upid")).await,
        ["purging VM 101 from related configurations..", "TASK OK"]
    );
}

#[tokio::test]
async fn audit18_version_texts_and_an_unparsable_json_body() {
    for (version, first, v) in [
        (
            PveVersion::V8_4,
            "create full clone of drive efidisk0 (ssd:base-9000-disk-0)",
            "8.4.1",
        ),
        (
            PveVersion::V9_1,
            "creating a clone of VM 9000 with ID 101",
            "9.1.1",
        ),
    ] {
        let mut o = opts("fast", SCALE);
        o.scenario.pve_version = version;
        let (sim, c) = start(o).await;
        assert_eq!(c.get("/version").await.data()["version"], v);
        let st = clone_vm(&c, &sim, 101, "a").await;
        assert_eq!(
            task_log(&c, st["upid"].as_str().expect("upid")).await[0],
            first
        );
    }
    let (_sim, c) = start(opts("fast", SCALE)).await;
    let head = format!(
        "PUT /api2/json/nodes/pve1/qemu/9000/config HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 5\r\n{}\r\n",
        match &c.cred {
            Cred::Token(t) => format!("Authorization: PVEAPIToken={t}\r\n"),
            _ => String::new(),
        }
    );
    let r = c.raw(&head, b"{oops").await;
    assert_eq!(r.status, 500, "{} {}", r.status, r.reason);
}

#[tokio::test]
async fn audit19_full_clone_copies_allocated_data_only() {
    let mut sparse = opts("realistic", 0.002);
    sparse.seed = 3;
    let mut thick = opts("realistic-thick", 0.002);
    thick.seed = 3;
    let mut took = Vec::new();
    for o in [sparse, thick] {
        let (sim, c) = start(o).await;
        let u = c
            .post(
                "/nodes/pve1/qemu/9000/clone",
                "newid=101&name=a&full=1&storage=ssd",
            )
            .await
            .data();
        assert_eq!(exit_of(&c, &sim, &u, 3600.0).await, "OK");
        let log = task_log(&c, u.as_str().expect("upid")).await;
        assert!(
            log.contains(&"transferred 128.0 GiB of 128.0 GiB (100.00%)".to_string()),
            "progress runs over the virtual size: {log:#?}"
        );
        let vm = sim
            .stats()
            .vms
            .into_iter()
            .find(|v| v.vmid == 101)
            .expect("stats");
        took.push(vm.clone_finished_at.expect("end") - vm.clone_started_at.expect("start"));
    }
    // 3 GiB vs 128 GiB at 200 MB/s: ~16 s vs ~690 s of copying.
    assert!(took[0] < 40.0, "sparse clone took {} s", took[0]);
    assert!(took[1] > 600.0, "thick clone took {} s", took[1]);
}
