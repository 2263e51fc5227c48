//! The client against a scripted HTTPS server: exact wire encoding, TLS trust modes, ticket
//! handling, retries, the in-flight cap and secrecy. (Behaviour against a faithful PVE is
//! covered by the simulator tests under `tests/`.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::test_server::{self, Reply, Seen, TestServer};
use super::*;
use crate::testing::CapturedLog;

const TOKEN_SECRET: &str = "5f0c1d2e-aaaa-bbbb-cccc-0123456789ab";
const PASSWORD: &str = "correct-horse-battery";
const UPID: &str = "UPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam!ci:";

fn token() -> Auth {
    Auth::Token {
        token_id: "root@pam!ci".into(),
        secret: Secret::new(TOKEN_SECRET),
    }
}

fn config(server: &TestServer, auth: Auth, tls: TlsTrust) -> ClientConfig {
    ClientConfig {
        tls,
        time_scale: 0.001,
        request_timeout: Duration::from_secs(5),
        // Scaled to 3.6 s: room for all six attempts however slow the machine.
        retry: RetryPolicy {
            max_elapsed: Duration::from_secs(3600),
            ..RetryPolicy::default()
        },
        ..ClientConfig::new(server.url.clone(), auth)
    }
}

fn pinned(server: &TestServer) -> TlsTrust {
    TlsTrust::Fingerprint(server.fingerprint.clone())
}

fn client(server: &TestServer) -> Client {
    Client::new(config(server, token(), pinned(server))).expect("client")
}

/// Answers the typed calls with the shapes PVE documents.
fn pve_like(seen: &Seen) -> Reply {
    match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/version") => {
            Reply::data(json!({"version":"8.3.2","release":"8.3","repoid":"abc"}))
        }
        ("GET", "/nodes") => Reply::data(
            json!([{"node":"pve1","status":"online","maxmem":"1000","ssl_fingerprint":"AA"}]),
        ),
        ("GET", "/cluster/nextid") => Reply::data(json!("105")),
        ("GET", "/nodes/pve1/status") => {
            Reply::data(json!({"memory":{"total":100,"used":"40","free":60}}))
        }
        ("GET", "/cluster/resources") => {
            Reply::data(json!([{"id":"qemu/9000","vmid":"9000","type":"qemu","template":1}]))
        }
        ("GET", "/nodes/pve1/qemu") => {
            Reply::data(json!([{"vmid":9000,"status":"stopped","template":"1"}]))
        }
        ("GET", "/nodes/pve1/qemu/101/status/current") => {
            Reply::data(json!({"vmid":101,"status":"running","agent":1}))
        }
        ("GET", "/nodes/pve1/qemu/101/config") => Reply::data(
            json!({"memory":"2048","cores":2,"net0":"virtio=bc:24:11:00:00:01,bridge=vmbr1"}),
        ),
        ("PUT", "/nodes/pve1/qemu/101/config") => Reply::data(json!(null)),
        ("POST", "/nodes/pve1/qemu/101/config") => Reply::data(json!(UPID)),
        ("POST", "/nodes/pve1/qemu/9000/clone") => Reply::data(json!(UPID)),
        ("PUT", "/nodes/pve1/qemu/101/resize") => Reply::data(json!(null)),
        ("POST", path) if path.starts_with("/nodes/pve1/qemu/101/status/") => {
            Reply::data(json!(UPID))
        }
        ("DELETE", "/nodes/pve1/qemu/101") => Reply::data(json!(UPID)),
        ("GET", path) if path.ends_with("/status") && path.contains("/tasks/") => Reply::data(
            json!({"status":"stopped","exitstatus":"WARNINGS: 1","type":"qmclone","id":9000,"user":"root@pam","tokenid":"ci"}),
        ),
        ("GET", path) if path.ends_with("/log") => Reply::data(json!([{"n":1,"t":"TASK OK"}])),
        ("DELETE", path) if path.contains("/tasks/") => Reply::data(json!(null)),
        ("POST", "/nodes/pve1/qemu/101/agent/ping") => Reply::data(json!({"result":{}})),
        ("GET", "/nodes/pve1/qemu/101/agent/network-get-interfaces") => Reply::data(
            json!({"result":[{"name":"eth0","hardware-address":"bc:24:11:00:00:01","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"10.0.0.5","prefix":24}]}]}),
        ),
        ("GET", "/nodes/pve1/qemu/101/agent/get-osinfo") => {
            Reply::data(json!({"result":{"id":"ubuntu","pretty-name":"Ubuntu"}}))
        }
        ("GET", "/nodes/pve1/qemu/101/agent/get-host-name") => {
            Reply::data(json!({"result":{"host-name":"web-1"}}))
        }
        ("POST", "/nodes/pve1/qemu/101/agent/exec") => Reply::data(json!({"pid":4711})),
        ("GET", "/nodes/pve1/qemu/101/agent/exec-status") => {
            Reply::data(json!({"exited":1,"exitcode":0,"out-data":"Linux\n"}))
        }
        _ => Reply::error(
            501,
            &format!("Method '{} {}' not implemented", seen.method, seen.path),
            "",
        ),
    }
}

#[tokio::test]
async fn every_call_is_encoded_as_pve_wants_and_decoded() {
    let server = test_server::start(pve_like).await;
    let api = client(&server);
    let upid = Upid(UPID.into());

    let report = api.check().await.expect("check");
    assert_eq!(
        (
            report.version.version.as_str(),
            report.nodes[0].node.as_str()
        ),
        ("8.3.2", "pve1")
    );
    assert_eq!(
        (report.auth.as_str(), report.url.as_str()),
        ("API token", server.url.as_str())
    );
    assert_eq!(
        report.tls,
        format!("pinned fingerprint {}", server.fingerprint)
    );
    assert_eq!(api.version().await.expect("version").release, "8.3");
    assert_eq!(api.nodes().await.expect("nodes")[0].maxmem, Some(1000));
    assert_eq!(api.next_id(None).await.expect("nextid"), 105);
    assert_eq!(api.next_id(Some(105)).await.expect("nextid"), 105);
    assert_eq!(
        api.node_status("pve1").await.expect("status").memory_used,
        40
    );
    assert!(
        api.cluster_resources(Some(ResourceType::Vm))
            .await
            .expect("resources")[0]
            .template
    );
    assert!(api.vm_list("pve1").await.expect("list")[0].template);
    assert!(api.vm_status("pve1", 101).await.expect("status").agent);
    let config = api.vm_config("pve1", 101).await.expect("config");
    assert_eq!(
        (config.get("memory"), config.net0_mac().as_deref()),
        (Some("2048"), Some("BC:24:11:00:00:01"))
    );
    let update = ConfigUpdate {
        set: vec![
            ("sshkeys".into(), "ssh-ed25519 AAAA+x/9k deploy@ci\n".into()),
            ("onboot".into(), "true".into()),
        ],
        delete: vec!["ide0".into()],
        digest: None,
    };
    api.set_config("pve1", 101, &update)
        .await
        .expect("put config");
    assert_eq!(
        api.set_config_async("pve1", 101, &update)
            .await
            .expect("post config"),
        Some(upid.clone())
    );
    let clone = CloneRequest {
        newid: 123,
        name: "web-1".into(),
        full: true,
        storage: Some("ssd".into()),
        ..Default::default()
    };
    assert_eq!(
        api.clone_vm("pve1", 9000, &clone).await.expect("clone"),
        upid
    );
    assert_eq!(
        api.resize("pve1", 101, "scsi0", "128G")
            .await
            .expect("resize"),
        None
    );
    api.start("pve1", 101).await.expect("start");
    api.shutdown("pve1", 101, Some(60), true)
        .await
        .expect("shutdown");
    api.stop("pve1", 101).await.expect("stop");
    api.delete_vm("pve1", 101, true).await.expect("delete");
    let status = api.task_status(&upid).await.expect("task status");
    assert_eq!(
        (status.state, status.user.as_str(), status.id.as_str()),
        (TaskState::Warnings(1), "root@pam!ci", "9000")
    );
    assert_eq!(
        api.task_log(&upid, 0, 0).await.expect("log")[0].t,
        "TASK OK"
    );
    api.stop_task(&upid).await.expect("stop task");
    api.agent_ping("pve1", 101).await.expect("ping");
    let interfaces = api
        .agent_network_interfaces("pve1", 101)
        .await
        .expect("interfaces");
    assert_eq!(interfaces[0].ip_addresses[0].ip_address, "10.0.0.5");
    assert_eq!(
        api.agent_os_info("pve1", 101)
            .await
            .expect("os")
            .pretty_name
            .as_deref(),
        Some("Ubuntu")
    );
    assert_eq!(
        api.agent_host_name("pve1", 101).await.expect("host"),
        "web-1"
    );
    assert_eq!(
        api.agent_exec("pve1", 101, &["/bin/sh", "-c", "uname -a"], Some("in"))
            .await
            .expect("exec"),
        4711
    );
    let exec = api
        .agent_exec_status("pve1", 101, 4711)
        .await
        .expect("exec status");
    assert_eq!(
        (exec.exited, exec.exitcode, exec.out_data.as_deref()),
        (true, Some(0), Some("Linux\n"))
    );

    let seen = server.seen();
    let find = |method: &str, path: &str| -> Seen {
        seen.iter()
            .find(|s| s.method == method && s.path == path)
            .cloned()
            .unwrap_or_else(|| panic!("{method} {path}"))
    };
    for request in &seen {
        assert_eq!(
            request.header("authorization"),
            Some(format!("PVEAPIToken=root@pam!ci={TOKEN_SECRET}").as_str())
        );
        assert_eq!(
            request.header("csrfpreventiontoken"),
            None,
            "tokens need no CSRF"
        );
        if request.method == "GET" || request.method == "DELETE" {
            assert!(
                request.body.is_empty(),
                "{}: no body on GET/DELETE",
                request.call()
            );
            assert_eq!(
                request.header("content-length").unwrap_or("0"),
                "0",
                "{}",
                request.call()
            );
        } else {
            assert_eq!(
                request.header("content-type"),
                Some("application/x-www-form-urlencoded"),
                "{}",
                request.call()
            );
        }
    }
    assert_eq!(
        find("GET", "/cluster/resources").query.as_deref(),
        Some("type=vm")
    );
    assert!(
        seen.iter()
            .any(|s| s.path == "/cluster/nextid" && s.query.as_deref() == Some("vmid=105"))
    );
    let put = find("PUT", "/nodes/pve1/qemu/101/config");
    assert_eq!(
        put.body,
        "sshkeys=ssh-ed25519%2520AAAA%252Bx%252F9k%2520deploy%2540ci%250A&onboot=1&delete=ide0"
    );
    assert_eq!(
        find("POST", "/nodes/pve1/qemu/9000/clone").body,
        "newid=123&name=web-1&full=1&storage=ssd"
    );
    assert_eq!(
        find("PUT", "/nodes/pve1/qemu/101/resize").body,
        "disk=scsi0&size=128G"
    );
    assert_eq!(
        find("POST", "/nodes/pve1/qemu/101/status/shutdown").body,
        "forceStop=1&timeout=60"
    );
    assert_eq!(
        find("DELETE", "/nodes/pve1/qemu/101").query.as_deref(),
        Some("purge=1")
    );
    assert_eq!(
        find("POST", "/nodes/pve1/qemu/101/agent/exec").body,
        "command=%2Fbin%2Fsh&command=-c&command=uname+-a&input-data=in"
    );
    assert_eq!(
        find("GET", "/nodes/pve1/qemu/101/agent/exec-status")
            .query
            .as_deref(),
        Some("pid=4711")
    );
    let encoded_upid =
        "UPID%3Apve1%3A0003A1F2%3A01B2C3D4%3A66C8A0B1%3Aqmclone%3A9000%3Aroot%40pam%21ci%3A";
    assert!(
        seen.iter()
            .any(|s| s.path == format!("/nodes/pve1/tasks/{encoded_upid}/status"))
    );
    assert_eq!(
        find("GET", &format!("/nodes/pve1/tasks/{encoded_upid}/log"))
            .query
            .as_deref(),
        Some("start=0&limit=0")
    );

    let stats = api.stats();
    assert_eq!(stats.requests_total, seen.len() as u64);
    assert_eq!(
        stats.by_endpoint["GET /nodes/{node}/tasks/{upid}/status"].count,
        1
    );
    assert_eq!(stats.by_endpoint["GET /cluster/nextid"].count, 2);
    assert_eq!(stats.by_endpoint["GET /version"].count, 2);
}

#[tokio::test]
async fn errors_carry_status_reason_message_errors_and_class() {
    let server = test_server::start(|seen| match seen.path.as_str() {
        // PVE < 8.3: the reason phrase is the only text.
        "/nodes/pve1/qemu/101/config" => Reply::error(500, "VM is locked (clone)", r#"{"data":null}"#),
        "/nodes/pve1/qemu/102/config" => Reply::die("Configuration file 'nodes/pve1/qemu-server/102.conf' does not exist"),
        "/nodes/pve1/qemu/9000/clone" => Reply::error(
            400,
            "Parameter verification failed.",
            r#"{"data":null,"errors":{"name":"invalid format - value does not look like a valid DNS name\n"},"message":"Parameter verification failed.\n"}"#,
        ),
        "/nodes/pve1/qemu/101/status/current" => Reply::error(403, "Permission check failed (/vms/101, VM.Audit)", ""),
        "/nodes/pve1/qemu/101/agent/ping" => Reply::die("QEMU guest agent is not running"),
        "/nodes/pve1/qemu/101/agent/get-osinfo" => {
            Reply::data(json!({"result":{"error":{"class":"CommandNotFound","desc":"Command guest-get-osinfo has been disabled"}}}))
        }
        "/nodes/pve1/qemu/101/agent/exec" => Reply::die("VM 101 is not running"),
        "/nodes/pve1/qemu/103/status/start" => Reply::die("unable to create VM 103: config file already exists"),
        _ => Reply::error(501, "Method not implemented", ""),
    })
    .await;
    let api = client(&server);

    let locked = api.vm_config("pve1", 101).await.expect_err("locked");
    assert_eq!(
        (locked.class, locked.status, locked.reason.as_str()),
        (ErrorClass::Locked, Some(500), "VM is locked (clone)")
    );
    assert_eq!(
        locked.to_string(),
        "GET /nodes/pve1/qemu/101/config: 500 VM is locked (clone)"
    );
    let missing = api.vm_config("pve1", 102).await.expect_err("missing");
    assert_eq!(missing.class, ErrorClass::NotFound);
    assert_eq!(
        missing.message.as_deref(),
        Some("Configuration file 'nodes/pve1/qemu-server/102.conf' does not exist")
    );
    let invalid = api
        .clone_vm(
            "pve1",
            9000,
            &CloneRequest {
                newid: 123,
                name: "my_vm".into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("invalid");
    assert_eq!(invalid.class, ErrorClass::InvalidParameter);
    assert_eq!(
        invalid.errors["name"],
        "invalid format - value does not look like a valid DNS name"
    );
    assert!(invalid.to_string().ends_with("400 Parameter verification failed. - name: invalid format - value does not look like a valid DNS name"));
    assert_eq!(
        api.vm_status("pve1", 101).await.expect_err("403").class,
        ErrorClass::Permission
    );
    assert_eq!(
        api.agent_ping("pve1", 101).await.expect_err("agent").class,
        ErrorClass::AgentNotReady
    );
    let qga = api
        .agent_os_info("pve1", 101)
        .await
        .expect_err("qga error object");
    assert_eq!((qga.class, qga.status), (ErrorClass::Other, Some(200)));
    assert!(
        qga.to_string()
            .contains("CommandNotFound: Command guest-get-osinfo has been disabled"),
        "{qga}"
    );
    assert_eq!(
        api.agent_exec("pve1", 101, &["true"], None)
            .await
            .expect_err("stopped")
            .class,
        ErrorClass::NotRunning
    );
    assert_eq!(
        api.start("pve1", 103).await.expect_err("exists").class,
        ErrorClass::AlreadyExists
    );
    let unknown = api.stop("pve1", 104).await.expect_err("501");
    assert_eq!(
        (unknown.class, unknown.status),
        (ErrorClass::Other, Some(501))
    );
    // None of these was retried.
    assert_eq!(api.stats().retries_total, 0);
}

#[tokio::test]
async fn tls_pinned_ca_system_and_insecure() {
    let server = test_server::start(pve_like).await;
    let version = |tls: TlsTrust| {
        let config = config(&server, token(), tls);
        async move { Client::new(config)?.version().await }
    };
    // Pinned, in any spelling.
    assert!(version(pinned(&server)).await.is_ok());
    assert!(
        version(TlsTrust::Fingerprint(
            server.fingerprint.replace(':', "").to_lowercase()
        ))
        .await
        .is_ok()
    );

    // A wrong pin: refused, both fingerprints shown.
    let wrong = "AB:".repeat(31) + "AB";
    let refused = version(TlsTrust::Fingerprint(wrong.clone()))
        .await
        .expect_err("wrong pin");
    assert_eq!(refused.class, ErrorClass::Tls, "{refused}");
    let text = refused.to_string();
    assert!(
        text.contains(&format!("pinned: {wrong}"))
            && text.contains(&format!("server: {}", server.fingerprint)),
        "{text}"
    );

    // Unknown issuer under the system roots: the fingerprint and the exact line to add.
    let untrusted = version(TlsTrust::System).await.expect_err("untrusted");
    assert_eq!(untrusted.class, ErrorClass::Tls);
    let text = untrusted.to_string();
    assert!(text.contains(&server.fingerprint), "{text}");
    assert!(
        text.lines()
            .any(|l| l == format!("fingerprint = \"{}\"", server.fingerprint)),
        "{text}"
    );

    // The CA file that signed it.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("pve-root-ca.pem");
    std::fs::write(&ca, &server.ca_pem).expect("write");
    assert!(version(TlsTrust::CaFile(ca)).await.is_ok());

    // Insecure: accepted.
    assert!(version(TlsTrust::Insecure).await.is_ok());
    // Refused handshakes never reached the handler.
    assert_eq!(
        server
            .calls()
            .iter()
            .filter(|c| *c == "GET /version")
            .count(),
        4
    );
}

/// A ticket server: tickets `PVE:root@pam:N::sig` numbered from 1; `valid_from` retires older ones.
struct TicketDesk {
    issued: AtomicUsize,
    valid_from: AtomicUsize,
    logins: Mutex<Vec<String>>,
}

fn ticket_number(text: &str) -> Option<usize> {
    text.strip_prefix("PVE:root@pam:")?
        .split("::")
        .next()?
        .parse()
        .ok()
}

fn ticket_server(desk: Arc<TicketDesk>) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |seen| {
        if seen.path == "/access/ticket" {
            let form: Vec<(String, String)> = serde_urlencoded::from_str(&seen.body).expect("form");
            let password = form
                .iter()
                .find(|(k, _)| k == "password")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            desk.logins.lock().expect("lock").push(password.clone());
            let renewing = ticket_number(&password)
                .is_some_and(|n| n >= desk.valid_from.load(Ordering::SeqCst));
            if password != PASSWORD && !renewing {
                return Reply::error(
                    401,
                    "authentication failure",
                    r#"{"data":null,"message":"authentication failure\n"}"#,
                );
            }
            let n = desk.issued.fetch_add(1, Ordering::SeqCst) + 1;
            return Reply::data(
                json!({"username":"root@pam","ticket":format!("PVE:root@pam:{n}::sig"),"CSRFPreventionToken":format!("{n}:csrf")}),
            );
        }
        let cookie = seen.header("cookie").unwrap_or_default();
        let Some(n) = cookie
            .strip_prefix("PVEAuthCookie=")
            .and_then(ticket_number)
        else {
            return Reply::error(401, "No ticket", "");
        };
        if n < desk.valid_from.load(Ordering::SeqCst) {
            return Reply::error(401, "Authentication failed!", "");
        }
        if seen.method != "GET"
            && seen.header("csrfpreventiontoken") != Some(format!("{n}:csrf").as_str())
        {
            return Reply::error(401, "Permission denied - invalid csrf token", "");
        }
        pve_like(seen)
    }
}

#[tokio::test]
async fn ticket_auth_with_csrf_renewal_and_one_relogin() {
    let desk = Arc::new(TicketDesk {
        issued: AtomicUsize::new(0),
        valid_from: AtomicUsize::new(1),
        logins: Mutex::new(Vec::new()),
    });
    let server = test_server::start(ticket_server(desk.clone())).await;
    let password = Auth::Password {
        user: "root@pam".into(),
        password: Secret::new(PASSWORD),
    };
    let api = Client::new(config(&server, password, pinned(&server))).expect("client");

    // Login once, then GET without CSRF and POST with it.
    api.version().await.expect("version");
    api.start("pve1", 101).await.expect("start");
    assert_eq!(desk.logins.lock().expect("lock").as_slice(), [PASSWORD]);
    let seen = server.seen();
    assert_eq!(
        seen.iter()
            .find(|s| s.path == "/version")
            .and_then(|s| s.header("csrfpreventiontoken")),
        None
    );
    assert_eq!(
        seen.iter()
            .find(|s| s.method == "POST" && s.path.ends_with("/start"))
            .and_then(|s| s.header("csrfpreventiontoken")),
        Some("1:csrf")
    );

    // An hour later (scaled): renewed by posting the current ticket as the password.
    api.inner
        .backdate_ticket(Duration::from_secs_f64(3600.0 * 0.001))
        .await;
    api.version().await.expect("version after renewal");
    assert_eq!(
        desk.logins.lock().expect("lock").last().map(String::as_str),
        Some("PVE:root@pam:1::sig")
    );
    assert!(
        server
            .seen()
            .last()
            .is_some_and(|s| s.header("cookie") == Some("PVEAuthCookie=PVE:root@pam:2::sig"))
    );

    // The server forgets the ticket (restart, expiry): one 401, one fresh login, done.
    desk.valid_from.store(3, Ordering::SeqCst);
    api.start("pve1", 101).await.expect("start after relogin");
    assert_eq!(
        desk.logins.lock().expect("lock").last().map(String::as_str),
        Some(PASSWORD)
    );
    let calls = server.calls();
    assert_eq!(
        &calls[calls.len() - 3..],
        [
            "POST /nodes/pve1/qemu/101/status/start",
            "POST /access/ticket",
            "POST /nodes/pve1/qemu/101/status/start"
        ]
    );

    // Bad credentials: an Auth error, not retried, no secret in it.
    let wrong = Auth::Password {
        user: "root@pam".into(),
        password: Secret::new("wrong-password-123"),
    };
    let error = Client::new(config(&server, wrong, pinned(&server)))
        .expect("client")
        .version()
        .await
        .expect_err("bad password");
    assert_eq!((error.class, error.status), (ErrorClass::Auth, Some(401)));
    assert_eq!(
        error.to_string(),
        "POST /access/ticket: 401 authentication failure"
    );
}

#[tokio::test]
async fn transient_errors_are_retried_only_when_safe() {
    let version_failures = Arc::new(AtomicUsize::new(0));
    let start_failures = Arc::new(AtomicUsize::new(0));
    let server = test_server::start({
        let (version_failures, start_failures) = (version_failures.clone(), start_failures.clone());
        move |seen| match seen.call().as_str() {
            "GET /version" if version_failures.fetch_add(1, Ordering::SeqCst) < 2 => {
                Reply::error(596, "Connection timed out", "")
            }
            "POST /nodes/pve1/qemu/101/status/start" => {
                Reply::error(596, "Connection timed out", "")
            }
            // 595: pveproxy never reached pvedaemon, so the start did not happen: safe to repeat.
            "POST /nodes/pve1/qemu/102/status/start"
                if start_failures.fetch_add(1, Ordering::SeqCst) < 2 =>
            {
                Reply::error(595, "No route to host", "")
            }
            "POST /nodes/pve1/qemu/102/status/start" => Reply::data(json!(UPID)),
            "PUT /nodes/pve1/qemu/101/config" => {
                Reply::die("can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout")
            }
            _ => pve_like(seen),
        }
    })
    .await;
    let api = client(&server);

    assert!(api.version().await.is_ok(), "two 596s ridden out");
    assert_eq!(
        server
            .calls()
            .iter()
            .filter(|c| *c == "GET /version")
            .count(),
        3
    );
    let start = api
        .start("pve1", 101)
        .await
        .expect_err("596 on a start is not repeated");
    assert_eq!(
        (start.class, start.status),
        (ErrorClass::Transient, Some(596))
    );
    assert_eq!(
        server
            .calls()
            .iter()
            .filter(|c| c.ends_with("101/status/start"))
            .count(),
        1
    );
    assert!(
        api.start("pve1", 102).await.is_ok(),
        "595 on a start is repeated"
    );
    let update = ConfigUpdate {
        set: vec![("cores".into(), "2".into())],
        ..Default::default()
    };
    let locked = api
        .set_config("pve1", 101, &update)
        .await
        .expect_err("lock never free");
    assert_eq!(locked.class, ErrorClass::Transient);
    assert_eq!(
        server
            .calls()
            .iter()
            .filter(|c| *c == "PUT /nodes/pve1/qemu/101/config")
            .count(),
        6,
        "all 6 attempts"
    );
    assert_eq!(
        server
            .calls()
            .iter()
            .filter(|c| c.ends_with("102/status/start"))
            .count(),
        3
    );
    assert_eq!(api.stats().retries_total, 2 + 2 + 5);
}

#[tokio::test]
async fn a_clone_whose_answer_is_lost_is_never_repeated_blindly() {
    // The POST is executed (the VM appears) but the answer is lost (596).
    let cloned = Arc::new(AtomicUsize::new(0));
    let server = test_server::start({
        let cloned = cloned.clone();
        move |seen| match seen.call().as_str() {
            "POST /nodes/pve1/qemu/9000/clone" => {
                if cloned.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::error(596, "Connection timed out", "")
                } else {
                    Reply::die("unable to create VM 123: config file already exists")
                }
            }
            "GET /cluster/resources" if cloned.load(Ordering::SeqCst) > 0 => {
                Reply::data(json!([{"id":"qemu/123","vmid":123,"type":"qemu","node":"pve1","status":"unknown","lock":"clone"}]))
            }
            _ => pve_like(seen),
        }
    })
    .await;
    let api = client(&server);
    let request = CloneRequest {
        newid: 123,
        name: "web-1".into(),
        full: true,
        ..Default::default()
    };
    let error = api
        .clone_vm("pve1", 9000, &request)
        .await
        .expect_err("lost answer");
    assert_eq!(error.class, ErrorClass::AlreadyExists, "{error}");
    assert!(
        error.to_string().contains("VM 123 exists on pve1"),
        "{error}"
    );
    assert_eq!(cloned.load(Ordering::SeqCst), 1, "one POST only");
    // The caller retrying with the same newid is told the same, by PVE itself.
    assert_eq!(
        api.clone_vm("pve1", 9000, &request)
            .await
            .expect_err("exists")
            .class,
        ErrorClass::AlreadyExists
    );

    // The POST never ran (the VM is absent): repeated with the same newid, and it succeeds.
    let attempts = Arc::new(AtomicUsize::new(0));
    let server = test_server::start({
        let attempts = attempts.clone();
        move |seen| match seen.call().as_str() {
            "POST /nodes/pve1/qemu/9000/clone" if attempts.fetch_add(1, Ordering::SeqCst) == 0 => {
                Reply::error(596, "Connection timed out", "")
            }
            "GET /cluster/resources" => Reply::data(json!([])),
            _ => pve_like(seen),
        }
    })
    .await;
    let api = client(&server);
    assert_eq!(
        api.clone_vm("pve1", 9000, &request).await.expect("clone").0,
        UPID
    );
    let posts: Vec<Seen> = server
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert_eq!(posts.len(), 2);
    assert!(posts.iter().all(|p| p.body.starts_with("newid=123&")));
    assert_eq!(
        server.calls(),
        [
            "POST /nodes/pve1/qemu/9000/clone",
            "GET /cluster/resources",
            "POST /nodes/pve1/qemu/9000/clone"
        ]
    );
}

#[tokio::test]
async fn client_timeouts_are_transient_and_checked_for_clones() {
    let server = test_server::start(|seen| match seen.call().as_str() {
        "GET /version" => pve_like(seen).after(Duration::from_secs(3)),
        "POST /nodes/pve1/qemu/9000/clone" => pve_like(seen).after(Duration::from_secs(3)),
        "GET /cluster/resources" => Reply::data(
            json!([{"id":"qemu/123","vmid":123,"type":"qemu","node":"pve1","name":"web-1"}]),
        ),
        _ => pve_like(seen),
    })
    .await;
    let config = ClientConfig {
        request_timeout: Duration::from_millis(200),
        retry: RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        },
        ..config(&server, token(), pinned(&server))
    };
    let api = Client::new(config).expect("client");
    let timeout = api.version().await.expect_err("timeout");
    assert_eq!(
        (timeout.class, timeout.status),
        (ErrorClass::Transient, None)
    );
    assert!(timeout.reason.contains("no answer within"), "{timeout}");
    let request = CloneRequest {
        newid: 123,
        name: "web-1".into(),
        ..Default::default()
    };
    let clone = api
        .clone_vm("pve1", 9000, &request)
        .await
        .expect_err("timeout");
    assert_eq!(clone.class, ErrorClass::AlreadyExists);
    assert!(
        clone.to_string().contains("named \"web-1\": this clone"),
        "{clone}"
    );
    assert_eq!(
        server
            .calls()
            .iter()
            .filter(|c| c.ends_with("/clone"))
            .count(),
        1
    );
}

#[tokio::test]
async fn in_flight_cap_holds_for_clones_of_the_client() {
    let server = test_server::start(|seen| pve_like(seen).after(Duration::from_millis(20))).await;
    let api = client(&server);
    let calls = (0..30).map(|_| {
        let api = api.clone();
        tokio::spawn(async move { api.vm_status("pve1", 101).await })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.expect("join").expect("status");
    }
    assert_eq!(
        server.peak_in_flight(),
        2,
        "never more than max_in_flight at the server"
    );
    let stats = api.stats();
    assert_eq!(stats.peak_in_flight, 2);
    let endpoint = stats.by_endpoint["GET /nodes/{node}/qemu/{vmid}/status/current"];
    assert_eq!((endpoint.count, endpoint.errors), (30, 0));
    // 30 calls of >= 20 ms, two at a time.
    assert!(
        endpoint.total_latency >= Duration::from_millis(600),
        "{:?}",
        endpoint.total_latency
    );
}

/// Calls about VMs on four nodes, one of them stuck: each node sees at most its cap, the stuck
/// one does not hold up the others, and the global ceiling holds.
#[tokio::test]
async fn in_flight_caps_hold_per_node_and_overall() {
    let server = test_server::start(|seen| {
        let stuck = seen.path.starts_with("/nodes/pve1/");
        let delay = Duration::from_millis(if stuck { 2000 } else { 20 });
        Reply::data(json!({"status": "running", "vmid": 101})).after(delay)
    })
    .await;
    let api = Client::new(ClientConfig {
        max_in_flight: 8,
        max_in_flight_per_node: 2,
        ..config(&server, token(), pinned(&server))
    })
    .expect("client");
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls: Vec<_> = (0..24)
        .map(|i| {
            let (api, finished) = (api.clone(), finished.clone());
            let node = format!("pve{}", i % 4 + 1);
            tokio::spawn(async move {
                api.vm_status(&node, 101).await.expect("status");
                (
                    node,
                    finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                )
            })
        })
        .collect();
    let mut order = Vec::new();
    for call in calls {
        order.push(call.await.expect("join"));
    }
    // Under one cap of 2 for the whole process, pve1's first two calls would hold it and every
    // other call would wait for them; per node, the 18 others finish first.
    let last_other = order
        .iter()
        .filter(|(n, _)| n != "pve1")
        .map(|(_, k)| *k)
        .max();
    let first_stuck = order
        .iter()
        .filter(|(n, _)| n == "pve1")
        .map(|(_, k)| *k)
        .min();
    assert!(
        last_other < first_stuck,
        "the other nodes waited for pve1: {order:?}"
    );
    let by_node = server.peak_in_flight_by_node();
    assert_eq!(
        ["pve1", "pve2", "pve3", "pve4"].map(|n| by_node.get(n).copied()),
        [Some(2), Some(2), Some(2), Some(2)],
        "every node reached its cap and no more: {by_node:?}"
    );
    assert!(server.peak_in_flight() <= 8, "{}", server.peak_in_flight());
    let stats = api.stats();
    assert_eq!(stats.peak_in_flight_by_node.get("pve1"), Some(&2));
    assert!(stats.peak_in_flight <= 8);
}

#[tokio::test]
async fn secrets_never_appear_in_errors_debug_or_logs() {
    let captured = CapturedLog::default();
    let _guard = captured.set_default();

    let desk = Arc::new(TicketDesk {
        issued: AtomicUsize::new(0),
        valid_from: AtomicUsize::new(1),
        logins: Mutex::new(Vec::new()),
    });
    let server = test_server::start(ticket_server(desk.clone())).await;
    let mut shown = Vec::new();

    // Ticket auth: login, a write with CSRF, a forced relogin, a config update carrying a password.
    let password = Auth::Password {
        user: "root@pam".into(),
        password: Secret::new(PASSWORD),
    };
    let config_with_password = config(&server, password, pinned(&server));
    shown.push(format!("{config_with_password:?}"));
    let api = Client::new(config_with_password).expect("client");
    api.version().await.expect("version");
    desk.valid_from.store(2, Ordering::SeqCst);
    let update = ConfigUpdate {
        set: vec![("cipassword".into(), "guest-pass-4321".into())],
        ..Default::default()
    };
    api.set_config("pve1", 101, &update).await.expect("config");
    shown.push(format!("{api:?} {:?}", api.stats()));
    let wrong = Auth::Password {
        user: "root@pam".into(),
        password: Secret::new("wrong-password-123"),
    };
    let error = Client::new(config(&server, wrong, pinned(&server)))
        .expect("client")
        .version()
        .await
        .expect_err("bad");
    shown.push(format!("{error} {error:?}"));

    // Token auth: refused by the server, refused TLS, an unreachable host.
    for (tls, url) in [
        (pinned(&server), server.url.clone()),
        (TlsTrust::System, server.url.clone()),
        (TlsTrust::Insecure, "https://127.0.0.1:1".to_string()),
    ] {
        let config = ClientConfig {
            url,
            ..config(&server, token(), tls)
        };
        shown.push(format!("{config:?}"));
        let api = Client::new(config).expect("client");
        let error = api.version().await.expect_err("fails");
        shown.push(format!("{error} {error:?} {api:?}"));
    }

    let logs = captured.text();
    assert!(
        logs.contains("POST /access/ticket"),
        "trace output was captured:\n{logs}"
    );
    let tickets = (1..=4)
        .map(|n| format!("PVE:root@pam:{n}::sig"))
        .chain((1..=4).map(|n| format!("{n}:csrf")));
    for secret in [
        PASSWORD.to_string(),
        TOKEN_SECRET.to_string(),
        "wrong-password-123".into(),
        "guest-pass-4321".into(),
    ]
    .into_iter()
    .chain(tickets)
    {
        assert!(!logs.contains(&secret), "{secret} in logs:\n{logs}");
        for text in &shown {
            assert!(!text.contains(&secret), "{secret} in {text}");
        }
    }
}

#[tokio::test]
async fn insecure_mode_is_logged_at_start() {
    let captured = CapturedLog::default();
    let _guard = captured.set_default();
    let server = test_server::start(pve_like).await;
    let api = Client::new(config(&server, token(), TlsTrust::Insecure)).expect("client");
    let logs = captured.text();
    assert!(
        logs.contains("INFO") && logs.contains("TLS certificate verification is OFF"),
        "{logs}"
    );
    assert_eq!(
        api.check().await.expect("check").tls,
        "NOT VERIFIED (insecure = true)"
    );
}

#[test]
fn bad_settings_are_refused_with_the_reason() {
    let url = "https://127.0.0.1:8006";
    let refuse = |config: ClientConfig| {
        Client::new(config)
            .map(drop)
            .expect_err("refused")
            .to_string()
    };
    assert!(
        refuse(ClientConfig {
            max_in_flight: 0,
            ..ClientConfig::new(url, token())
        })
        .contains("max_in_flight")
    );
    assert!(
        refuse(ClientConfig {
            time_scale: 0.0,
            ..ClientConfig::new(url, token())
        })
        .contains("time_scale")
    );
    assert!(refuse(ClientConfig::new("http://pve:8006", token())).contains("https://"));
    let bad_token = Auth::Token {
        token_id: "root@pam".into(),
        secret: Secret::new(TOKEN_SECRET),
    };
    assert!(refuse(ClientConfig::new(url, bad_token)).contains("user@realm!tokenid"));
    let bad_user = Auth::Password {
        user: "root".into(),
        password: Secret::new(PASSWORD),
    };
    assert!(refuse(ClientConfig::new(url, bad_user)).contains("user@realm"));
    let text = refuse(ClientConfig {
        tls: TlsTrust::Fingerprint("AB:CD".into()),
        ..ClientConfig::new(url, token())
    });
    assert!(text.contains("64"), "{text}");
}

#[tokio::test]
async fn node_tasks_asks_with_its_filters_and_tells_a_cut_off_list() {
    let server = test_server::start(|_| {
        let upid = |n: u32| format!("UPID:pve2:{n:08X}:00000002:66C8A0B4:qmclone:9000:root@pam:");
        Reply::data(json!([
            {"upid": upid(1), "type": "qmclone", "id": "9000", "user": "root@pam", "status": "RUNNING"},
            {"upid": upid(2), "type": "qmclone", "id": "9000", "user": "root@pam",
             "endtime": 1724424400, "status": "OK"},
        ]))
    })
    .await;
    let api = client(&server);
    let query = TaskListQuery {
        typefilter: Some("qmclone".into()),
        vmid: Some(9000),
        since: Some(1724424000),
        limit: 2,
        ..TaskListQuery::default()
    };
    let list = api.node_tasks("pve2", &query).await.expect("list");
    assert_eq!(
        list.tasks
            .iter()
            .map(|t| t.state.clone())
            .collect::<Vec<_>>(),
        [TaskState::Running, TaskState::Ok]
    );
    assert!(
        !list.complete,
        "as many entries as the limit: maybe cut off"
    );
    let wider = api
        .node_tasks("pve2", &TaskListQuery::default())
        .await
        .expect("list");
    assert!(wider.complete);
    let seen = server.seen();
    assert_eq!(seen[0].call(), "GET /nodes/pve2/tasks");
    assert_eq!(
        seen[0].query.as_deref(),
        Some("source=active&limit=2&typefilter=qmclone&vmid=9000&since=1724424000")
    );
    assert_eq!(seen[1].query.as_deref(), Some("source=active&limit=500"));
    assert_eq!(
        api.stats().peak_in_flight_by_node.get("pve2"),
        Some(&1),
        "counted against the node asked about"
    );
}
