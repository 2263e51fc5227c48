//! The API client against the in-process simulator (ephemeral ports, scaled time): every call
//! round-trips, every error class comes from real simulator behaviour, TLS trust modes, ticket and
//! token auth, retries through the `flaky` scenario, lost clone answers, the in-flight cap, and
//! secrets absent from errors, Debug output and logs.

use std::time::Duration;

use pve_rollout::pve::{
    Auth, Client, ClientConfig, CloneRequest, ConfigUpdate, ErrorClass, PveError, RetryPolicy,
    Secret, TaskState, TaskStatus, TlsTrust, Upid, encode_sshkeys,
};
use pve_rollout::sim::scenario::TokenSpec;
use pve_rollout::sim::{self, Scenario, Sim, SimOptions};
use pve_rollout::testing::CapturedLog;

/// Wall seconds per simulated second: 100x faster.
const SCALE: f64 = 0.01;
const NODE: &str = "pve1";
const TEMPLATE: u32 = 9000;
/// Two well-formed keys (the simulator checks them as `ssh-keygen -l` would), with `+`, `/`, `@`.
const SSH_KEYS: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBJF/W+E35rXxbPQdqwOj1OnNWyIkT8g9vctsCLSTQqW deploy@ci\n\
                        ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPvvv/vvv/vvv/vvv/vvv/vvv/vvv/vvv/vvv/vvvz7/ ops@host\n";

async fn start_sim(scenario: Scenario, time_scale: f64, users: Vec<(String, String)>) -> Sim {
    sim::start(SimOptions {
        scenario,
        time_scale,
        seed: 7,
        users,
        ..SimOptions::default()
    })
    .await
    .expect("simulator")
}

fn scenario(name: &str) -> Scenario {
    Scenario::builtin(name).expect("built-in scenario")
}

fn token_auth(sim: &Sim) -> Auth {
    Auth::Token {
        token_id: sim.token_id(),
        secret: Secret::new(sim.token_secret()),
    }
}

fn client_config(sim: &Sim, auth: Auth, time_scale: f64) -> ClientConfig {
    ClientConfig {
        tls: TlsTrust::Fingerprint(sim.fingerprint()),
        time_scale,
        // Generous in simulated time: 30 s of 596 plus back-off fit several times.
        retry: RetryPolicy {
            max_elapsed: Duration::from_secs(600),
            ..RetryPolicy::default()
        },
        ..ClientConfig::new(sim.url(), auth)
    }
}

fn client(sim: &Sim) -> Client {
    Client::new(client_config(sim, token_auth(sim), SCALE)).expect("client")
}

/// Sleeps `sim_seconds` of simulated time between polls.
async fn pause(sim: &Sim, sim_seconds: f64) {
    tokio::time::sleep(Duration::from_secs_f64(sim_seconds * sim.time_scale())).await;
}

/// Polls a task until it stops; bounded in simulated time.
async fn wait_task(api: &Client, sim: &Sim, upid: &Upid) -> TaskStatus {
    let deadline = sim.now() + 900.0;
    loop {
        match api.task_status(upid).await {
            Ok(status) if status.state.is_finished() => return status,
            Ok(_) => {}
            Err(e) => assert!(e.class == ErrorClass::Transient, "task status: {e}"),
        }
        assert!(sim.now() < deadline, "task {upid} still running");
        pause(sim, 0.5).await;
    }
}

/// Clones `name` as `newid` the careful way: same newid on every try, adopt what exists.
/// Returns once the VM's config has no lock, with the number of clone tasks that failed on the
/// way (each needed a new POST).
async fn clone_carefully(api: &Client, sim: &Sim, newid: u32, name: &str, full: bool) -> u64 {
    let request = CloneRequest {
        newid,
        name: name.into(),
        full,
        ..Default::default()
    };
    let deadline = sim.now() + 1800.0;
    let mut failed = 0;
    loop {
        assert!(sim.now() < deadline, "clone of {name} never finished");
        match api.clone_vm(NODE, TEMPLATE, &request).await {
            Ok(upid) => match wait_task(api, sim, &upid).await.state {
                state if state.is_success() => {}
                state if state.failure_class() == Some(ErrorClass::Transient) => {
                    failed += 1;
                    continue;
                }
                state => panic!("clone of {name} failed: {state:?}"),
            },
            // Our own clone whose answer was lost: adopt it once its lock is gone.
            Err(e) if e.class == ErrorClass::AlreadyExists => {}
            Err(e) if e.class == ErrorClass::Transient => continue,
            Err(e) => panic!("clone of {name}: {e}"),
        }
        loop {
            match api.vm_config(NODE, newid).await {
                Ok(config) if config.lock().is_none() => {
                    assert_eq!(config.get("name"), Some(name), "adopted VM {newid} is ours");
                    return failed;
                }
                Ok(_) => pause(sim, 0.5).await,
                // The adopted clone failed after all and was cleaned up: clone again.
                Err(e) if e.class == ErrorClass::NotFound => {
                    failed += 1;
                    break;
                }
                Err(e) if matches!(e.class, ErrorClass::Transient | ErrorClass::Locked) => {
                    pause(sim, 0.5).await
                }
                Err(e) => panic!("config of {newid}: {e}"),
            }
        }
    }
}

/// Starts a VM; a lost answer is checked against the VM's status before trying again.
async fn start_carefully(api: &Client, sim: &Sim, vmid: u32) {
    let deadline = sim.now() + 600.0;
    loop {
        assert!(sim.now() < deadline, "VM {vmid} never started");
        match api.start(NODE, vmid).await {
            Ok(upid) => {
                let state = wait_task(api, sim, &upid).await.state;
                if state.is_success_for_start() {
                    return;
                }
                assert_eq!(
                    state.failure_class(),
                    Some(ErrorClass::Transient),
                    "start of {vmid}: {state:?}"
                );
            }
            Err(e) if e.class == ErrorClass::Transient => {
                if api
                    .vm_status(NODE, vmid)
                    .await
                    .is_ok_and(|s| s.status == "running")
                {
                    return;
                }
            }
            Err(e) => panic!("start of {vmid}: {e}"),
        }
    }
}

/// Waits for the agent and an IPv4 lease, then runs `uname -a` in the guest; returns its output.
async fn verify_guest(api: &Client, sim: &Sim, vmid: u32) -> String {
    let deadline = sim.now() + 600.0;
    let waiting = |e: &PveError| {
        matches!(
            e.class,
            ErrorClass::AgentNotReady | ErrorClass::NotRunning | ErrorClass::Transient
        )
    };
    loop {
        assert!(sim.now() < deadline, "VM {vmid}: no agent");
        match api.agent_ping(NODE, vmid).await {
            Ok(()) => break,
            Err(e) if waiting(&e) => pause(sim, 1.0).await,
            Err(e) => panic!("ping {vmid}: {e}"),
        }
    }
    loop {
        assert!(sim.now() < deadline, "VM {vmid}: no IPv4");
        match api.agent_network_interfaces(NODE, vmid).await {
            Ok(list)
                if list
                    .iter()
                    .flat_map(|i| &i.ip_addresses)
                    .any(|a| a.ip_address_type == "ipv4" && !a.ip_address.starts_with("127.")) =>
            {
                break;
            }
            Ok(_) => pause(sim, 1.0).await,
            Err(e) if waiting(&e) => pause(sim, 1.0).await,
            Err(e) => panic!("interfaces of {vmid}: {e}"),
        }
    }
    loop {
        assert!(sim.now() < deadline, "VM {vmid}: exec never finished");
        let pid = match api.agent_exec(NODE, vmid, &["uname", "-a"], None).await {
            Ok(pid) => pid,
            // A read-only command: running it again is harmless.
            Err(e) if waiting(&e) => continue,
            Err(e) => panic!("exec in {vmid}: {e}"),
        };
        loop {
            match api.agent_exec_status(NODE, vmid, pid).await {
                Ok(status) if status.exited => {
                    assert_eq!(status.exitcode, Some(0), "uname in {vmid}: {status:?}");
                    return status.out_data.unwrap_or_default();
                }
                Ok(_) => pause(sim, 0.2).await,
                Err(e) if waiting(&e) => break,
                Err(e) => panic!("exec-status in {vmid}: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn every_call_round_trips() {
    let sim = start_sim(scenario("fast"), SCALE, Vec::new()).await;
    let api = client(&sim);

    let report = api.check().await.expect("check");
    assert!(
        report.version.version.starts_with(['8', '9']),
        "{:?}",
        report.version
    );
    assert_eq!(report.nodes[0].node, NODE);
    assert_eq!(
        report.nodes[0].ssl_fingerprint.as_deref(),
        Some(sim.fingerprint().as_str())
    );
    assert!(
        api.node_status(NODE)
            .await
            .expect("node status")
            .memory_total
            > 0
    );
    let resources = api.cluster_resources(None).await.expect("resources");
    assert!(
        resources
            .iter()
            .any(|r| r.kind == "storage" && r.storage.as_deref() == Some("ssd"))
    );
    let template = api
        .find_vm(TEMPLATE)
        .await
        .expect("find")
        .expect("template listed");
    assert!(template.template);
    assert!(
        api.vm_list(NODE)
            .await
            .expect("list")
            .iter()
            .any(|v| v.vmid == TEMPLATE && v.template)
    );
    assert!(
        api.vm_status(NODE, TEMPLATE)
            .await
            .expect("status")
            .template
    );
    assert!(
        api.vm_config(NODE, TEMPLATE)
            .await
            .expect("config")
            .is_template()
    );

    let newid = api.next_id(None).await.expect("nextid");
    assert_eq!(
        api.next_id(Some(newid)).await.expect("nextid is free"),
        newid
    );
    let upid = api
        .clone_vm(
            NODE,
            TEMPLATE,
            &CloneRequest {
                newid,
                name: "round-trip".into(),
                full: true,
                ..Default::default()
            },
        )
        .await
        .expect("clone");
    assert_eq!(
        (upid.node(), upid.task_type()),
        (Some(NODE), Some("qmclone"))
    );
    let done = wait_task(&api, &sim, &upid).await;
    assert_eq!(
        (done.state, done.task_type.as_str(), done.id.as_str()),
        (TaskState::Ok, "qmclone", "9000")
    );
    let log = api.task_log(&upid, 0, 0).await.expect("log");
    assert_eq!(log.last().map(|l| l.t.as_str()), Some("TASK OK"));
    assert_eq!(log.first().map(|l| l.n), Some(1));

    let update = ConfigUpdate {
        set: vec![
            ("cores".into(), "4".into()),
            ("memory".into(), "4096".into()),
            ("ipconfig0".into(), "ip=dhcp".into()),
            ("ciuser".into(), "ubuntu".into()),
            ("sshkeys".into(), SSH_KEYS.into()),
            ("onboot".into(), "true".into()),
        ],
        ..Default::default()
    };
    api.set_config(NODE, newid, &update)
        .await
        .expect("put config");
    let config = api.vm_config(NODE, newid).await.expect("config");
    assert_eq!(
        (
            config.get("cores"),
            config.get("memory"),
            config.get("onboot")
        ),
        (Some("4"), Some("4096"), Some("1"))
    );
    assert_eq!(
        config.get("sshkeys"),
        Some(encode_sshkeys(SSH_KEYS).as_str()),
        "stored URL-encoded once"
    );
    assert!(
        config
            .net0_mac()
            .is_some_and(|mac| mac.starts_with("BC:24:11:"))
    );
    let post = ConfigUpdate {
        set: vec![("sockets".into(), "2".into())],
        ..Default::default()
    };
    if let Some(upid) = api
        .set_config_async(NODE, newid, &post)
        .await
        .expect("post config")
    {
        assert!(wait_task(&api, &sim, &upid).await.state.is_success());
    }
    assert_eq!(
        api.vm_config(NODE, newid)
            .await
            .expect("config")
            .get("sockets"),
        Some("2")
    );
    if let Some(upid) = api
        .resize(NODE, newid, "scsi0", "+2G")
        .await
        .expect("resize")
    {
        assert!(wait_task(&api, &sim, &upid).await.state.is_success());
    }

    start_carefully(&api, &sim, newid).await;
    assert_eq!(
        api.vm_status(NODE, newid).await.expect("status").status,
        "running"
    );
    // Starting a running VM: a UPID whose task fails "already running", which counts as started.
    let again = wait_task(
        &api,
        &sim,
        &api.start(NODE, newid).await.expect("start again"),
    )
    .await;
    assert!(again.state.is_success_for_start(), "{:?}", again.state);
    let uname = verify_guest(&api, &sim, newid).await;
    assert!(uname.starts_with("Linux"), "{uname}");
    assert!(
        api.agent_os_info(NODE, newid)
            .await
            .expect("osinfo")
            .id
            .is_some()
    );
    assert!(
        !api.agent_host_name(NODE, newid)
            .await
            .expect("host name")
            .is_empty()
    );

    // A shutdown interrupted by stop_task, then stop, then delete.
    let shutdown = api
        .shutdown(NODE, newid, Some(60), false)
        .await
        .expect("shutdown");
    api.stop_task(&shutdown).await.expect("stop task");
    match wait_task(&api, &sim, &shutdown).await.state {
        TaskState::Ok => {} // it finished before the stop arrived
        TaskState::Failed(text) => assert!(text.contains("interrupt"), "{text}"),
        other => panic!("shutdown ended {other:?}"),
    }
    assert!(
        wait_task(&api, &sim, &api.stop(NODE, newid).await.expect("stop"))
            .await
            .state
            .is_success()
    );
    assert!(
        wait_task(
            &api,
            &sim,
            &api.delete_vm(NODE, newid, true).await.expect("delete")
        )
        .await
        .state
        .is_success()
    );
    assert_eq!(
        api.vm_status(NODE, newid).await.expect_err("gone").class,
        ErrorClass::NotFound
    );

    let stats = api.stats();
    assert_eq!(
        stats.requests_total,
        sim.stats().requests_total,
        "client and simulator count alike"
    );
    assert!(
        stats
            .by_endpoint
            .contains_key("POST /nodes/{node}/qemu/{vmid}/clone")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn every_error_class_comes_from_real_behaviour() {
    let mut faults = scenario("fast");
    // Clone #1 is the slow one below, #2 the one without an agent.
    faults.faults.agent_never_up = vec![2];
    // A clone that takes long enough (200 simulated seconds) to be caught while locked.
    faults.timing.clone_overhead_s = pve_rollout::sim::scenario::Span {
        min: 200.0,
        max: 200.0,
    };
    faults.auth.tokens.push(TokenSpec {
        id: "audit@pve!ro".into(),
        secret: "1b2c3d4e-0000-4000-8000-00000000a0d1".into(),
        privsep: true,
        privileges: vec!["VM.Audit".into(), "Sys.Audit".into()],
        acl: Vec::new(),
    });
    let sim = start_sim(faults, SCALE, Vec::new()).await;
    let api = client(&sim);

    // NotFound, InvalidParameter, AlreadyExists, NotRunning, Other.
    let missing = api.vm_status(NODE, 4242).await.expect_err("missing");
    assert_eq!(
        (missing.class, missing.status),
        (ErrorClass::NotFound, Some(500)),
        "{missing}"
    );
    assert!(missing.reason.contains("does not exist"), "{missing}");
    let taken = api.next_id(Some(TEMPLATE)).await.expect_err("taken");
    assert_eq!(taken.class, ErrorClass::InvalidParameter, "{taken}");
    assert!(taken.errors.contains_key("vmid"), "{taken:?}");
    let bad_name = CloneRequest {
        newid: 4243,
        name: "my_vm".into(),
        ..Default::default()
    };
    let invalid = api
        .clone_vm(NODE, TEMPLATE, &bad_name)
        .await
        .expect_err("invalid name");
    assert_eq!(
        (invalid.class, invalid.status),
        (ErrorClass::InvalidParameter, Some(400)),
        "{invalid}"
    );
    assert!(invalid.errors.contains_key("name"), "{invalid:?}");
    let onto_template = CloneRequest {
        newid: TEMPLATE,
        name: "dup".into(),
        ..Default::default()
    };
    assert_eq!(
        api.clone_vm(NODE, TEMPLATE, &onto_template)
            .await
            .expect_err("exists")
            .class,
        ErrorClass::AlreadyExists
    );
    let stopped = api
        .agent_ping(NODE, TEMPLATE)
        .await
        .expect_err("template is stopped");
    assert_eq!(stopped.class, ErrorClass::NotRunning, "{stopped}");

    // Locked: the target of a clone in progress; then the clone is interrupted.
    let newid = api.next_id(None).await.expect("nextid");
    let request = CloneRequest {
        newid,
        name: "slow-clone".into(),
        full: true,
        ..Default::default()
    };
    let upid = api.clone_vm(NODE, TEMPLATE, &request).await.expect("clone");
    let deadline = sim.now() + 100.0;
    while api.find_vm(newid).await.expect("resources").is_none() {
        assert!(sim.now() < deadline, "clone target never appeared");
        pause(&sim, 0.2).await;
    }
    let update = ConfigUpdate {
        set: vec![("cores".into(), "2".into())],
        ..Default::default()
    };
    let locked = api
        .set_config(NODE, newid, &update)
        .await
        .expect_err("locked");
    // The clone holds the new VM's config lock: the update waits 10 s for it, then times out.
    assert_eq!(locked.class, ErrorClass::Transient, "{locked}");
    assert_eq!(
        locked.to_string(),
        format!(
            "PUT /nodes/{NODE}/qemu/{newid}/config: 500 can't lock file '/var/lock/qemu-server/lock-{newid}.conf' - got timeout"
        )
    );
    // Locked: cloning the VM being cloned meets its `lock: clone` property at once.
    let of_locked = CloneRequest {
        newid: newid + 1,
        name: "of-locked".into(),
        ..Default::default()
    };
    let locked = api
        .clone_vm(NODE, newid, &of_locked)
        .await
        .expect_err("source locked");
    assert_eq!(locked.class, ErrorClass::Locked, "{locked}");
    assert_eq!(locked.reason, "VM is locked (clone)");
    api.stop_task(&upid).await.expect("stop clone");
    assert!(matches!(
        wait_task(&api, &sim, &upid).await.state,
        TaskState::Failed(_)
    ));

    // AgentNotReady: clone #2 of this scenario never gets an agent (a linked clone: quick).
    let agentless = api.next_id(None).await.expect("nextid");
    assert_eq!(
        clone_carefully(&api, &sim, agentless, "no-agent", false).await,
        0
    );
    start_carefully(&api, &sim, agentless).await;
    let not_ready = api.agent_ping(NODE, agentless).await.expect_err("no agent");
    assert_eq!(not_ready.class, ErrorClass::AgentNotReady, "{not_ready}");
    assert_eq!(not_ready.reason, "QEMU guest agent is not running");
    // Other: a program the guest does not have.
    let missing = api.next_id(None).await.expect("nextid");
    clone_carefully(&api, &sim, missing, "with-agent", false).await;
    start_carefully(&api, &sim, missing).await;
    verify_guest(&api, &sim, missing).await;
    let no_such = api
        .agent_exec(NODE, missing, &["/no/such/program"], None)
        .await
        .expect_err("missing binary");
    assert_eq!(
        (no_such.class, no_such.status),
        (ErrorClass::Other, Some(500)),
        "{no_such}"
    );
    // The reason phrase carries PVE's non-ASCII quotes; the client falls back on the message.
    assert!(
        no_such
            .reason
            .starts_with("Agent error: Guest agent command failed"),
        "{no_such:?}"
    );

    // Auth: a wrong token secret, a wrong password. Permission: a token without VM.Clone.
    let wrong = Auth::Token {
        token_id: sim.token_id(),
        secret: Secret::new("00000000-0000-4000-8000-000000000000"),
    };
    let denied = Client::new(client_config(&sim, wrong, SCALE))
        .expect("client")
        .version()
        .await
        .expect_err("401");
    assert_eq!(
        (denied.class, denied.status),
        (ErrorClass::Auth, Some(401)),
        "{denied}"
    );
    let auditor = Auth::Token {
        token_id: "audit@pve!ro".into(),
        secret: Secret::new("1b2c3d4e-0000-4000-8000-00000000a0d1"),
    };
    let auditor = Client::new(client_config(&sim, auditor, SCALE)).expect("client");
    assert!(auditor.vm_status(NODE, TEMPLATE).await.is_ok());
    let forbidden = auditor
        .clone_vm(
            NODE,
            TEMPLATE,
            &CloneRequest {
                newid: 4244,
                name: "nope".into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("403");
    assert_eq!(
        (forbidden.class, forbidden.status),
        (ErrorClass::Permission, Some(403)),
        "{forbidden}"
    );
    sim.shutdown().await;

    // Transient: every node request answered 595, retried until the policy gives up.
    let mut unreachable = scenario("fast");
    unreachable.faults.p_595 = 1.0;
    let sim = start_sim(unreachable, SCALE, Vec::new()).await;
    let api = client(&sim);
    let transient = api.vm_status(NODE, TEMPLATE).await.expect_err("595");
    assert_eq!(
        (transient.class, transient.status),
        (ErrorClass::Transient, Some(595)),
        "{transient}"
    );
    assert_eq!(
        api.stats().by_endpoint["GET /nodes/{node}/qemu/{vmid}/status/current"].count,
        6,
        "6 attempts"
    );
    assert_eq!(
        sim.stats()
            .requests_by_endpoint
            .get("GET /nodes/{node}/qemu/{vmid}/status/current"),
        Some(&6)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn tls_trust_modes_against_the_simulator() {
    let sim = start_sim(scenario("fast"), SCALE, Vec::new()).await;
    let version = |tls: TlsTrust| {
        let config = ClientConfig {
            tls,
            ..client_config(&sim, token_auth(&sim), SCALE)
        };
        async move { Client::new(config)?.version().await }
    };
    assert!(
        version(TlsTrust::Fingerprint(sim.fingerprint()))
            .await
            .is_ok(),
        "pinned"
    );
    assert!(
        version(TlsTrust::Fingerprint(
            sim.fingerprint().replace(':', "").to_lowercase()
        ))
        .await
        .is_ok()
    );

    let other = "0F:".repeat(31) + "0F";
    let mismatch = version(TlsTrust::Fingerprint(other.clone()))
        .await
        .expect_err("wrong pin");
    assert_eq!(mismatch.class, ErrorClass::Tls, "{mismatch}");
    let text = mismatch.to_string();
    assert!(
        text.contains(&other) && text.contains(&sim.fingerprint()),
        "both fingerprints: {text}"
    );

    let unknown = version(TlsTrust::System).await.expect_err("self-signed");
    assert_eq!(unknown.class, ErrorClass::Tls, "{unknown}");
    let line = format!("fingerprint = \"{}\"", sim.fingerprint());
    assert!(unknown.to_string().lines().any(|l| l == line), "{unknown}");

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("pve-root-ca.pem");
    std::fs::write(&ca, sim.cert_pem()).expect("write");
    assert!(version(TlsTrust::CaFile(ca)).await.is_ok(), "CA file");
    assert!(version(TlsTrust::Insecure).await.is_ok(), "insecure");
    // The refused handshakes never became requests.
    assert_eq!(
        sim.stats().requests_by_endpoint.get("GET /version"),
        Some(&4)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn ticket_auth_with_csrf_renewal_and_relogin() {
    // 1 simulated hour = 0.72 s: the client renews after an hour, the simulator expires at two.
    let scale = 0.0002;
    let users = vec![("deploy@pve".to_string(), "s3cret-Passw0rd".to_string())];
    let sim = start_sim(scenario("fast"), scale, users).await;
    let password = || Auth::Password {
        user: "deploy@pve".into(),
        password: Secret::new("s3cret-Passw0rd"),
    };
    let api = Client::new(client_config(&sim, password(), scale)).expect("client");
    let logins = |sim: &Sim| {
        sim.stats()
            .requests_by_endpoint
            .get("POST /access/ticket")
            .copied()
            .unwrap_or(0)
    };

    api.version().await.expect("GET with the ticket");
    let newid = api.next_id(None).await.expect("nextid");
    clone_carefully(&api, &sim, newid, "ticket-vm", false).await; // POSTs carry the CSRF token
    assert_eq!(logins(&sim), 1);
    while sim.now() < 3700.0 {
        pause(&sim, 60.0).await;
    }
    api.vm_status(NODE, newid)
        .await
        .expect("renewed before expiry");
    assert_eq!(logins(&sim), 2, "renewed once");
    assert_eq!(
        sim.stats().responses_by_status.get(&401),
        None,
        "never refused"
    );

    // A client that never renews (real time) outlives its ticket: one 401, one login, done.
    let stale = Client::new(client_config(&sim, password(), 1.0)).expect("client");
    stale.version().await.expect("login");
    let expiry = sim.now() + 7300.0;
    while sim.now() < expiry {
        pause(&sim, 600.0).await;
    }
    stale
        .start(NODE, newid)
        .await
        .expect("start after re-login");
    assert_eq!(logins(&sim), 4);
    assert_eq!(sim.stats().responses_by_status.get(&401), Some(&1));

    let wrong = Auth::Password {
        user: "deploy@pve".into(),
        password: Secret::new("not-the-password"),
    };
    let refused = Client::new(client_config(&sim, wrong, scale))
        .expect("client")
        .version()
        .await
        .expect_err("bad");
    assert_eq!(
        (refused.class, refused.status),
        (ErrorClass::Auth, Some(401)),
        "{refused}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_lost_clone_answer_never_clones_twice() {
    let mut lossy = scenario("fast");
    lossy.faults.p_clone_response_lost = 1.0;
    let sim = start_sim(lossy, SCALE, Vec::new()).await;
    let api = client(&sim);
    let newid = api.next_id(None).await.expect("nextid");
    let request = CloneRequest {
        newid,
        name: "lost-answer".into(),
        full: true,
        ..Default::default()
    };
    let error = api
        .clone_vm(NODE, TEMPLATE, &request)
        .await
        .expect_err("answer lost");
    assert_eq!(error.class, ErrorClass::AlreadyExists, "{error}");
    assert_eq!(
        clone_carefully(&api, &sim, newid, "lost-answer", true).await,
        0
    );
    let stats = sim.stats();
    assert_eq!(
        stats.clones_by_name.get("lost-answer"),
        Some(&1),
        "{:?}",
        stats.clones_by_name
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_in_flight_cap_holds_under_50_callers() {
    let sim = start_sim(scenario("fast"), SCALE, Vec::new()).await;
    let api = client(&sim);
    let callers: Vec<_> = (0..50)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    api.vm_status(NODE, TEMPLATE).await.map(drop)
                } else {
                    api.vm_config(NODE, TEMPLATE).await.map(drop)
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("join").expect("call");
    }
    let sim_stats = sim.stats();
    assert!(
        sim_stats.peak_in_flight <= 2,
        "simulator saw {} at once",
        sim_stats.peak_in_flight
    );
    let stats = api.stats();
    assert_eq!(stats.peak_in_flight, 2);
    assert_eq!(stats.requests_total, 50);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_flaky_scenario_is_ridden_out() {
    let sim = start_sim(scenario("flaky"), SCALE, Vec::new()).await;
    let api = client(&sim);
    let names: Vec<String> = (1..=4).map(|i| format!("flaky-{i}")).collect();
    let first = api.next_id(None).await.expect("nextid");
    let rollouts = names.iter().enumerate().map(|(i, name)| {
        let (api, name) = (api.clone(), name.clone());
        let sim = &sim;
        async move {
            let vmid = first + i as u32;
            let failed_clones = clone_carefully(&api, sim, vmid, &name, true).await;
            let update = ConfigUpdate {
                set: vec![
                    ("cores".into(), "2".into()),
                    ("sshkeys".into(), SSH_KEYS.into()),
                ],
                ..Default::default()
            };
            loop {
                match api.set_config(NODE, vmid, &update).await {
                    Ok(()) => break,
                    Err(e) if e.class == ErrorClass::Transient => continue,
                    Err(e) => panic!("config of {vmid}: {e}"),
                }
            }
            start_carefully(&api, sim, vmid).await;
            (name, failed_clones, verify_guest(&api, sim, vmid).await)
        }
    });
    let outcomes = futures_util::future::join_all(rollouts).await;
    let stats = sim.stats();
    for (name, failed_clones, uname) in &outcomes {
        assert!(uname.starts_with("Linux"), "{name}: {uname}");
        // At least one accepted clone plus one per clone task seen failing (storage lock
        // timeouts). A clone whose answer was lost may be accepted a second time with the same
        // id before the first one's config exists; PVE lets at most one of them finish, so
        // what must hold is that each name exists exactly once.
        let accepted = stats.clones_by_name.get(name).copied().unwrap_or(0);
        assert!(
            accepted > *failed_clones,
            "{name}: {:?}",
            stats.clones_by_name
        );
    }
    let vms = api.vm_list(NODE).await.expect("vm list");
    for (name, _, _) in &outcomes {
        let same_name = vms
            .iter()
            .filter(|v| v.name.as_deref() == Some(name))
            .count();
        assert_eq!(same_name, 1, "{name} exists exactly once: {vms:?}");
    }
    let client_stats = api.stats();
    println!(
        "flaky, 4 VMs: {} requests seen by the simulator ({} by the client, {} retries), statuses {:?}",
        stats.requests_total,
        client_stats.requests_total,
        client_stats.retries_total,
        stats.responses_by_status
    );
    println!("by endpoint: {:#?}", stats.requests_by_endpoint);
    sim.shutdown().await;
}

#[tokio::test]
async fn no_secret_in_errors_debug_or_logs() {
    let captured = CapturedLog::default();
    let _guard = captured.set_default();

    let password = "pa55-word-never-shown";
    let sim = start_sim(
        scenario("fast"),
        0.001,
        vec![("deploy@pve".into(), password.into())],
    )
    .await;
    let mut shown = Vec::new();
    let configs = [
        client_config(&sim, token_auth(&sim), 0.001),
        client_config(
            &sim,
            Auth::Password {
                user: "deploy@pve".into(),
                password: Secret::new(password),
            },
            0.001,
        ),
    ];
    for config in configs {
        shown.push(format!("{config:?}"));
        let api = Client::new(config).expect("client");
        api.version().await.expect("version");
        let update = ConfigUpdate {
            set: vec![("cipassword".into(), "guest-secret-9".into())],
            ..Default::default()
        };
        let locked_or_ok = api.set_config(NODE, TEMPLATE, &update).await;
        shown.push(format!("{locked_or_ok:?}"));
        shown.push(format!("{:?}", api.vm_status(NODE, 4242).await));
        shown.push(format!("{api:?} {:?}", api.stats()));
    }
    for (auth, tls) in [
        (
            Auth::Token {
                token_id: sim.token_id(),
                secret: Secret::new("ffffffff-0000-4000-8000-000000000000"),
            },
            None,
        ),
        (
            Auth::Password {
                user: "deploy@pve".into(),
                password: Secret::new("wrong-pa55-word"),
            },
            None,
        ),
        (token_auth(&sim), Some(TlsTrust::System)),
    ] {
        let mut config = client_config(&sim, auth, 0.001);
        if let Some(tls) = tls {
            config.tls = tls;
        }
        let error = Client::new(config)
            .expect("client")
            .version()
            .await
            .expect_err("refused");
        shown.push(format!("{error} {error:?}"));
    }
    let logs = captured.text();
    assert!(
        logs.contains("GET /version"),
        "the client's trace lines were captured:\n{logs}"
    );
    for secret in [
        sim.token_secret().as_str(),
        password,
        "guest-secret-9",
        "wrong-pa55-word",
        "ffffffff-0000-4000-8000-000000000000",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs");
        for text in &shown {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    // Tickets and CSRF tokens (`PVE:deploy@pve:...`) never appear either.
    assert!(
        !logs.contains("PVE:deploy@pve:") && !shown.iter().any(|t| t.contains("PVE:deploy@pve:"))
    );
    sim.shutdown().await;
}
