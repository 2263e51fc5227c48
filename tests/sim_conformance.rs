//! The simulator's fidelity checklist, item by item, at the wire level:
//! real HTTPS, raw status lines (reason phrases), headers and bodies.

#[path = "sim_common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use pve_rollout::sim::scenario::{NodeOutage, TokenSpec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SCALE: f64 = 0.01;

fn fp(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn is_upid(u: &str, kind: &str, id: &str) -> bool {
    let f: Vec<&str> = u.split(':').collect();
    let hex = |s: &str, n: &[usize]| {
        n.contains(&s.len())
            && s.bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
    };
    f.len() == 9
        && f[0] == "UPID"
        && f[1] == "pve1"
        && hex(f[2], &[8])
        && hex(f[3], &[8, 9])
        && hex(f[4], &[8])
        && f[5] == kind
        && f[6] == id
        && f[7] == "root@pam!rollout"
        && f[8].is_empty()
}

// 1. HTTPS under /api2/json with a PVE-style node certificate; its fingerprint in /nodes.
#[tokio::test]
async fn item01_https_certificate_and_fingerprint() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    let r = c.get("/nodes").await;
    assert_eq!(fp(&r.peer_cert), sim.fingerprint());
    let f = sim.fingerprint();
    assert_eq!(f.len(), 95);
    assert!(
        f.chars()
            .all(|ch| ch == ':' || ch.is_ascii_hexdigit() && !ch.is_ascii_lowercase())
    );
    assert_eq!(r.data()[0]["ssl_fingerprint"], json!(f));
    // The SAN names localhost too.
    let tcp = tokio::net::TcpStream::connect(sim.addr())
        .await
        .expect("tcp");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    tls_connector(&sim.cert_pem())
        .connect(name, tcp)
        .await
        .expect("localhost is in the SAN");
    // The leaf carries the PVE subject.
    let der = r.peer_cert.clone();
    let contains = |s: &str| der.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(
        contains("PVE Cluster Node")
            && contains("Proxmox Virtual Environment")
            && contains("pve1.sim.local")
    );
    // Plain HTTP on the port is redirected to https.
    let mut tcp = tokio::net::TcpStream::connect(sim.addr())
        .await
        .expect("tcp");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET /api2/json/version HTTP/1.1\r\nHost: x:8006\r\n\r\n")
        .await
        .expect("w");
    let mut b = String::new();
    tcp.read_to_string(&mut b).await.expect("r");
    assert!(
        b.starts_with(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: https://x:8006/api2/json/version"
        ),
        "{b}"
    );
}

// 2. Every 2xx body is {"data": …}; void handlers give null; the task log adds total.
#[tokio::test]
async fn item02_envelope() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    let v = c.get("/version").await.json();
    assert_eq!(
        v.as_object().expect("obj").keys().collect::<Vec<_>>(),
        ["data"]
    );
    assert_eq!(v["data"]["version"], "8.4.1");
    clone_vm(&c, &sim, 101, "a").await;
    assert_eq!(
        c.put("/nodes/pve1/qemu/101/config", "cores=2").await.json(),
        json!({"data": null})
    );
    let upid = c.post("/nodes/pve1/qemu/101/status/start", "").await.data();
    let upid = upid.as_str().expect("upid");
    c.wait_task(&sim, upid, 60.0).await;
    let log = c.get(&format!("/nodes/pve1/tasks/{upid}/log")).await.json();
    assert_eq!(log["total"], json!(2));
    assert_eq!(
        log["data"],
        json!([{"n": 1, "t": "generating cloud-init ISO"}, {"n": 2, "t": "TASK OK"}])
    );
}

// 3 + 4. The error text is the reason phrase; the body has message (with \n) and errors.
#[tokio::test]
async fn item03_04_reason_phrase_and_error_bodies() {
    let (_sim, c) = start(opts("fast", SCALE)).await;
    let r = c.get("/nodes/pve1/qemu/555/status/current").await;
    let b = r.expect_err(
        500,
        "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist",
    );
    assert_eq!(
        b,
        json!({"data": null, "message": "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist\n"})
    );
    let r = c.post("/nodes/pve1/qemu/9000/clone", "newid=99").await;
    let b = r.expect_err(400, "Parameter verification failed.");
    assert_eq!(
        b,
        json!({"data": null, "message": "Parameter verification failed.\n",
               "errors": {"newid": "invalid format - value does not look like a valid VM ID\n"}})
    );
}

// 5. 401s: empty body, no Content-Type, ~3 s delay; ticket failure has a JSON body.
#[tokio::test]
async fn item05_unauthorized() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    let cases = [
        (Cred::None, "No ticket"),
        (
            Cred::Token("root@pam!rollout=wrong".into()),
            "Authentication failed!",
        ),
        (
            Cred::Token("root@pam!nope=x".into()),
            "Authentication failed!",
        ),
        (
            Cred::Ticket {
                ticket: "PVE:root@pam:00000000::AAAA".into(),
                csrf: None,
            },
            "Authentication failed!",
        ),
    ];
    for (cred, reason) in cases {
        let t = Instant::now();
        let r = c.with(cred).get("/version").await;
        assert!(elapsed_sim(t, &sim) >= 3.0, "401 must be delayed ~3 s");
        r.expect_err(401, reason);
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-type"), None);
        assert_eq!(r.header("content-length"), Some("0"));
    }
    let t = Instant::now();
    let r = c
        .with(Cred::None)
        .post("/access/ticket", "username=root@pam&password=bad")
        .await;
    assert!(elapsed_sim(t, &sim) >= 3.0);
    assert_eq!(
        r.expect_err(401, "authentication failure"),
        json!({"data": null, "message": "authentication failure\n"})
    );
}

// 6. Connection: close on >= 400, Keep-Alive otherwise; Server, Date = Expires, no-cache.
#[tokio::test]
async fn item06_headers() {
    let (_sim, c) = start(opts("fast", SCALE)).await;
    let (ok, second) = c.keep_alive_pair("/version").await;
    assert_eq!(ok.header("connection"), Some("Keep-Alive"));
    assert_eq!(
        (second.status, second.header("connection")),
        (200, Some("close"))
    );
    assert_eq!(ok.header("server"), Some("pve-api-daemon/3.0"));
    assert_eq!(
        ok.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    assert_eq!(ok.header("cache-control"), Some("max-age=0"));
    assert_eq!(ok.header("pragma"), Some("no-cache"));
    assert!(ok.header("date").is_some_and(|d| d.ends_with(" GMT")));
    assert_eq!(ok.header("expires"), ok.header("date"));
    for r in [
        c.get("/nodes/pve1/qemu/555/config").await,
        c.get("/nope").await,
        c.post("/nodes/pve1/qemu/9000/clone", "").await,
    ] {
        assert!(r.status >= 400);
        assert_eq!(
            r.header("connection"),
            Some("close"),
            "{} {}",
            r.status,
            r.reason
        );
        assert_eq!(r.header("server"), Some("pve-api-daemon/3.0"));
    }
}

async fn login(c: &Client) -> (String, String) {
    let d = c
        .with(Cred::None)
        .post("/access/ticket", "username=root&realm=pam&password=s3cret")
        .await
        .data();
    (
        d["ticket"].as_str().expect("ticket").into(),
        d["CSRFPreventionToken"].as_str().expect("csrf").into(),
    )
}

fn with_user(scale: f64) -> pve_rollout::sim::SimOptions {
    let mut o = opts("fast", scale);
    o.users = vec![("root@pam".into(), "s3cret".into())];
    o
}

// 7. Tokens split at the last '=', need no CSRF; tickets need CSRF on writes.
#[tokio::test]
async fn item07_token_and_ticket_auth() {
    let (_sim, c) = start(with_user(SCALE)).await;
    // Token writes need no CSRF token (a 400 proves it passed authentication).
    c.post("/nodes/pve1/qemu/9000/clone", "")
        .await
        .expect_err(400, "Parameter verification failed.");
    let spaced = c.with(Cred::Header(format!(
        "PVEAPIToken {}",
        match &c.cred {
            Cred::Token(t) => t.clone(),
            _ => unreachable!(),
        }
    )));
    assert_eq!(spaced.get("/version").await.status, 200);
    let (ticket, csrf) = login(&c).await;
    let t = c.with(Cred::Ticket {
        ticket: ticket.clone(),
        csrf: None,
    });
    assert_eq!(t.get("/version").await.status, 200);
    t.post("/nodes/pve1/qemu/9000/clone", "newid=101")
        .await
        .expect_err(401, "Permission denied - invalid csrf token");
    let t = c.with(Cred::Ticket {
        ticket: ticket.clone(),
        csrf: Some("00000000:forged".into()),
    });
    t.post("/nodes/pve1/qemu/9000/clone", "newid=101")
        .await
        .expect_err(401, "Permission denied - invalid csrf token");
    let t = c.with(Cred::Ticket {
        ticket: ticket.clone(),
        csrf: Some(csrf),
    });
    let upid = t
        .post("/nodes/pve1/qemu/9000/clone", "newid=101")
        .await
        .data();
    // Ticket users appear without a token in UPIDs.
    assert!(
        upid.as_str()
            .expect("upid")
            .ends_with(":qmclone:9000:root@pam:"),
        "{upid}"
    );
    // Fallback: the ticket in the Authorization header.
    let h = c.with(Cred::Header(format!("PVEAuthCookie={ticket}")));
    assert_eq!(h.get("/version").await.status, 200);
}

// 8. Ticket login, renewal with the old ticket, 2 h expiry in simulated time.
#[tokio::test]
async fn item08_ticket_format_renewal_expiry() {
    let scale = 0.0002;
    let (sim, c) = start(with_user(scale)).await;
    let d = c
        .with(Cred::None)
        .post("/access/ticket", "username=root@pam&password=s3cret")
        .await
        .data();
    // The ticket was made no later than this (a loaded machine may be slow to answer).
    let issued = sim.now();
    assert_eq!(d["username"], "root@pam");
    assert!(d["cap"]["vms"]["VM.Audit"] == 1, "{d}");
    let ticket = d["ticket"].as_str().expect("ticket").to_string();
    let p: Vec<&str> = ticket.split(':').collect();
    assert_eq!(
        (p.len(), p[0], p[1], p[3]),
        (5, "PVE", "root@pam", ""),
        "{ticket}"
    );
    assert!(p[2].len() == 8 && p[2].bytes().all(|b| b.is_ascii_hexdigit()) && !p[4].is_empty());
    let csrf = d["CSRFPreventionToken"].as_str().expect("csrf");
    let (ts, sig) = csrf.split_once(':').expect("csrf format");
    assert!(
        ts.len() == 8
            && ts
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
            && !sig.is_empty()
    );
    // Renewal: the old ticket as the password.
    let form = format!("username=root@pam&password={}", enc(&ticket));
    let renewed = c
        .with(Cred::None)
        .post("/access/ticket", &form)
        .await
        .data();
    assert_eq!(renewed["username"], "root@pam");
    // After 2 h of simulated time the ticket is refused.
    let until = issued + 7201.0 - sim.now();
    tokio::time::sleep(std::time::Duration::from_secs_f64(until.max(0.0) * scale)).await;
    c.with(Cred::Ticket { ticket, csrf: None })
        .get("/version")
        .await
        .expect_err(401, "Authentication failed!");
}

// 9. 403 texts; lists filter; a privsep token without ACLs sees nothing.
#[tokio::test]
async fn item09_permissions() {
    let mut o = opts("fast", SCALE);
    o.scenario.auth.tokens = vec![
        TokenSpec {
            id: "audit@pve!ro".into(),
            secret: "ro-secret".into(),
            privsep: true,
            privileges: vec!["VM.Audit".into()],
            acl: Vec::new(),
        },
        TokenSpec {
            id: "nobody@pve!none".into(),
            secret: "none-secret".into(),
            privsep: true,
            privileges: vec![],
            acl: Vec::new(),
        },
    ];
    let (_sim, c) = start(o).await;
    let ro = c.with(Cred::Token("audit@pve!ro=ro-secret".into()));
    ro.post("/nodes/pve1/qemu/9000/status/start", "")
        .await
        .expect_err(403, "Permission check failed (/vms/9000, VM.PowerMgmt)");
    ro.put("/nodes/pve1/qemu/9000/config", "cores=4").await.expect_err(
        403,
        "Permission check failed (/vms/9000, VM.Config.Disk|VM.Config.CDROM|VM.Config.CPU|VM.Config.Memory|VM.Config.Network|VM.Config.HWType|VM.Config.Options|VM.Config.Cloudinit)",
    );
    ro.post("/nodes/pve1/qemu/9000/clone", "newid=101")
        .await
        .expect_err(403, "Permission check failed (/vms/9000, VM.Clone)");
    assert_eq!(
        ro.get("/nodes/pve1/qemu")
            .await
            .data()
            .as_array()
            .expect("list")
            .len(),
        1
    );
    let none = c.with(Cred::Token("nobody@pve!none=none-secret".into()));
    assert_eq!(
        none.get("/cluster/resources?type=vm").await.data(),
        json!([])
    );
    assert_eq!(none.get("/nodes/pve1/qemu").await.data(), json!([]));
    none.get("/nodes/pve1/qemu/9000/config")
        .await
        .expect_err(403, "Permission check failed (/vms/9000, VM.Audit)");
    let nodes = none.get("/nodes").await.data();
    assert!(
        nodes[0].get("maxmem").is_none(),
        "stats need Sys.Audit: {nodes}"
    );
}

// 10. 501 for unknown routes and methods, bodies on GET/DELETE, chunked bodies, HEAD. No 404.
#[tokio::test]
async fn item10_not_implemented() {
    let (_sim, c) = start(opts("fast", SCALE)).await;
    let r = c.get("/nodes/pve1/qemu/101/foo").await;
    assert_eq!(
        r.expect_err(501, "Method 'GET /nodes/pve1/qemu/101/foo' not implemented")["message"],
        "Method 'GET /nodes/pve1/qemu/101/foo' not implemented"
    );
    c.delete("/version")
        .await
        .expect_err(501, "Method 'DELETE /version' not implemented");
    c.get("/does/not/exist")
        .await
        .expect_err(501, "Method 'GET /does/not/exist' not implemented");
    let r = c.request("HEAD", "/version", None, &[]).await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (501, "method 'HEAD' not available")
    );
    c.request("PATCH", "/version", None, &[])
        .await
        .expect_err(501, "method 'PATCH' not available");
    // A GET with a body (the 3 bytes its Content-Length promises).
    let head = format!(
        "GET /api2/json/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: PVEAPIToken={}\r\nContent-Length: 3\r\n\r\n",
        match &c.cred {
            Cred::Token(t) => t.clone(),
            _ => unreachable!(),
        }
    );
    let r = c.raw(&head, b"a=1").await;
    assert_eq!(
        (r.status, r.reason.as_str(), r.text().as_str()),
        (
            501,
            "Unexpected content for method 'GET'",
            "Unexpected content for method 'GET'"
        )
    );
    let head = format!(
        "POST /api2/json/nodes/pve1/qemu/9000/clone HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: PVEAPIToken={}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n9\r\nnewid=101\r\n0\r\n\r\n",
        match &c.cred {
            Cred::Token(t) => t.clone(),
            _ => unreachable!(),
        }
    );
    let r = c.raw(&head, b"").await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (501, "chunked transfer encoding not supported")
    );
    // A trailing slash and percent-encoded segments route normally.
    assert_eq!(c.get("/version/").await.status, 200);
    assert_eq!(c.get("/nodes/%70ve1/qemu").await.status, 200);
    // No format segment.
    let r = c
        .raw(
            "GET /api2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"",
        )
        .await;
    assert_eq!((r.status, r.reason.as_str()), (501, "no such uri"));
}

// 11. Parameter validation with PVE's messages.
#[tokio::test]
async fn item11_parameter_errors() {
    let (_sim, c) = start(opts("fast", SCALE)).await;
    let e = c
        .post("/nodes/pve1/qemu/9000/clone", "foo=1&full=true")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["newid"],
        "property is missing and it is not optional"
    );
    assert_eq!(
        e["errors"]["foo"],
        "property is not defined in schema and the schema does not allow additional properties"
    );
    assert_eq!(
        e["errors"]["full"],
        "type check ('boolean') failed - got 'true'"
    );
    let e = c
        .post("/nodes/pve1/qemu/9000/clone", "newid=abc")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["newid"],
        "type check ('integer') failed - got 'abc'"
    );
    let e = c
        .get("/nodes/pve1/qemu/abc/config")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["vmid"],
        "type check ('integer') failed - got 'abc'"
    );
    let e = c
        .put("/nodes/pve1/qemu/9000/config", "cores=0")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(e["errors"]["cores"], "value must have a minimum value of 1");
    let e = c
        .get("/cluster/resources?type=qemu")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["type"],
        "value 'qemu' does not have a value in the enumeration 'vm, storage, node, sdn'"
    );
    let e = c
        .get("/nodes/pve1/qemu/9000/config?node=pve2")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["node"],
        "duplicate parameter (already defined in URI) with conflicting values!"
    );
    let e = c
        .put(
            "/nodes/pve1/qemu/9000/config",
            "net0=virtio%2Cbridg%3Dvmbr1",
        )
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["net0"],
        "invalid format - invalid key in comma-separated list property: bridg\n"
    );
    let e = c
        .post("/nodes/pve1/qemu/9000/clone", "newid=101&name=my_vm")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["name"],
        "invalid format - value does not look like a valid DNS name\n"
    );
    // JSON bodies may use true/false.
    let r = c
        .request(
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            None,
            &[
                ("Content-Type", "application/json"),
                ("Content-Length", "0"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
}

// 12. nextid is a string and reserves nothing; a taken vmid is a 400.
#[tokio::test]
async fn item12_nextid() {
    let (_sim, c) = start(opts("fast", SCALE)).await;
    assert_eq!(c.get("/cluster/nextid").await.data(), json!("100"));
    assert_eq!(
        c.get("/cluster/nextid").await.data(),
        json!("100"),
        "nothing is reserved"
    );
    assert_eq!(c.get("/cluster/nextid?vmid=105").await.data(), json!("105"));
    let e = c
        .get("/cluster/nextid?vmid=9000")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(e["errors"], json!({"vmid": "VM 9000 already exists"}));
}

// 13. Integer/boolean config keys are numbers; property strings are strings.
#[tokio::test]
async fn item13_config_value_types() {
    let (_sim, c) = start(opts("fast", SCALE)).await;
    let d = c.get("/nodes/pve1/qemu/9000/config").await.data();
    assert_eq!(
        (
            d["cores"].clone(),
            d["sockets"].clone(),
            d["template"].clone(),
            d["numa"].clone()
        ),
        (json!(2), json!(1), json!(1), json!(0))
    );
    assert_eq!(
        (d["memory"].clone(), d["agent"].clone()),
        (json!("2048"), json!("1"))
    );
    assert!(d["digest"].as_str().is_some_and(|s| s.len() == 40));
    assert!(d.get("vmid").is_none());
    let st = c.get("/nodes/pve1/qemu/9000/status/current").await.data();
    assert_eq!(
        (
            st["vmid"].clone(),
            st["template"].clone(),
            st["agent"].clone(),
            st["status"].clone()
        ),
        (json!(9000), json!(1), json!(1), json!("stopped"))
    );
}

// 14. A VM missing on {node} (including the wrong node) is a 500 "does not exist".
#[tokio::test]
async fn item14_missing_vm_and_wrong_node() {
    let (_sim, c) = start(opts("cluster", SCALE)).await;
    c.get("/nodes/pve2/qemu/9000/config").await.expect_err(
        500,
        "Configuration file 'nodes/pve2/qemu-server/9000.conf' does not exist",
    );
    c.get("/nodes/pve1/qemu/4242/status/current")
        .await
        .expect_err(
            500,
            "Configuration file 'nodes/pve1/qemu-server/4242.conf' does not exist",
        );
}

// 15. UPID format and task types.
#[tokio::test]
async fn item15_upids() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    let u = c
        .post("/nodes/pve1/qemu/9000/clone", "newid=101&full=1")
        .await
        .data();
    assert!(is_upid(u.as_str().expect("s"), "qmclone", "9000"), "{u}");
    c.wait_task(&sim, u.as_str().expect("s"), 60.0).await;
    let u = c
        .post("/nodes/pve1/qemu/101/config", "cores=2")
        .await
        .data();
    assert!(is_upid(u.as_str().expect("s"), "qmconfig", "101"), "{u}");
    let u = c
        .put("/nodes/pve1/qemu/101/resize", "disk=scsi0&size=%2B1G")
        .await
        .data();
    assert!(is_upid(u.as_str().expect("s"), "resize", "101"), "{u}");
    for (op, kind) in [
        ("start", "qmstart"),
        ("shutdown", "qmshutdown"),
        ("stop", "qmstop"),
    ] {
        let u = c
            .post(&format!("/nodes/pve1/qemu/101/status/{op}"), "")
            .await
            .data();
        assert!(is_upid(u.as_str().expect("s"), kind, "101"), "{u}");
        c.wait_task(&sim, u.as_str().expect("s"), 120.0).await;
    }
    let u = c.delete("/nodes/pve1/qemu/101").await.data();
    assert!(is_upid(u.as_str().expect("s"), "qmdestroy", "101"), "{u}");
}

// 16. Task status fields, exit statuses, token split, no such task.
#[tokio::test]
async fn item16_task_status() {
    let (sim, c) = start(slow_clone_opts(SCALE)).await;
    let upid = begin_clone(&c, &sim, 101, "").await;
    let st = c
        .get(&format!("/nodes/pve1/tasks/{upid}/status"))
        .await
        .data();
    assert_eq!(st["status"], "running");
    assert!(st.get("exitstatus").is_none());
    assert!(st["pid"].is_u64() && st["pstart"].is_u64() && st["starttime"].is_u64());
    assert_eq!(
        (
            st["id"].clone(),
            st["type"].clone(),
            st["user"].clone(),
            st["tokenid"].clone(),
            st["node"].clone()
        ),
        (
            json!("9000"),
            json!("qmclone"),
            json!("root@pam"),
            json!("rollout"),
            json!("pve1")
        )
    );
    let done = c.wait_task(&sim, &upid, 600.0).await;
    assert_eq!(done["exitstatus"], "OK");
    // Percent-encoded UPIDs work too (bpg's PathEscape).
    assert_eq!(
        c.get(&format!("/nodes/pve1/tasks/{}/status", enc(&upid)))
            .await
            .data()["status"],
        "stopped"
    );
    let fake = "UPID:pve1:00001234:00005678:66C8A0B1:qmclone:9000:root@pam:";
    let e = c
        .get(&format!("/nodes/pve1/tasks/{fake}/status"))
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(e["errors"], json!({"upid": "no such task"}));
    let e = c
        .get("/nodes/pve1/tasks/UPID:garbage/status")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(e["errors"], json!({"upid": "unable to parse worker upid"}));
    // A failed task's exit status is its error text.
    let u = c
        .post("/nodes/pve1/qemu/9000/status/start", "")
        .await
        .data();
    let st = c.wait_task(&sim, u.as_str().expect("s"), 60.0).await;
    assert_eq!(st["exitstatus"], "you can't start a vm if it's a template");
}

// 17. Task log paging, final line, "no content", DELETE → interrupt.
#[tokio::test]
async fn item17_task_log_and_stop() {
    let (sim, c) = start(slow_clone_opts(SCALE)).await;
    clone_vm(&c, &sim, 100, "short").await;
    let done = clone_vm(&c, &sim, 102, "short2").await;
    let first = done["upid"].as_str().expect("upid").to_string();
    let all = task_log(&c, &first).await;
    assert_eq!(
        all[0],
        "create full clone of drive efidisk0 (ssd:base-9000-disk-0)"
    );
    assert_eq!(all.last().map(String::as_str), Some("TASK OK"));
    let page = c
        .get(&format!("/nodes/pve1/tasks/{first}/log?start=1&limit=2"))
        .await
        .json();
    assert_eq!(
        page["data"],
        json!([{"n": 2, "t": all[1]}, {"n": 3, "t": all[2]}])
    );
    assert_eq!(page["total"].as_u64(), Some(all.len() as u64));
    let default_page = c
        .get(&format!("/nodes/pve1/tasks/{first}/log"))
        .await
        .data();
    assert_eq!(default_page.as_array().expect("a").len(), all.len().min(50));
    let upid = begin_clone(&c, &sim, 101, "").await;
    assert_eq!(
        c.delete(&format!("/nodes/pve1/tasks/{upid}")).await.json(),
        json!({"data": null})
    );
    let st = c.wait_task(&sim, &upid, 30.0).await;
    assert_eq!(st["exitstatus"], "clone failed: interrupted by signal");
    let log = task_log(&c, &upid).await;
    assert_eq!(
        log.last().map(String::as_str),
        Some("TASK ERROR: clone failed: interrupted by signal")
    );
    c.get("/nodes/pve1/qemu/101/config").await.expect_err(
        500,
        "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist",
    );
    // A running task with no output yet: "no content"; interrupting it: "received interrupt".
    // (A paused guest ignores ACPI, so this shutdown runs until its 600 s timeout.)
    start_vm(&c, &sim, 100).await;
    let s = c
        .post("/nodes/pve1/qemu/100/status/suspend", "")
        .await
        .data();
    c.wait_task(&sim, s.as_str().expect("s"), 30.0).await;
    let u = c
        .post(
            "/nodes/pve1/qemu/100/status/shutdown",
            "timeout=600&forceStop=1",
        )
        .await
        .data();
    let u = u.as_str().expect("s");
    assert_eq!(
        c.get(&format!("/nodes/pve1/tasks/{u}/log")).await.json(),
        json!({"data": [{"n": 1, "t": "no content"}], "total": 1})
    );
    assert_eq!(
        c.delete(&format!("/nodes/pve1/tasks/{u}")).await.json(),
        json!({"data": null})
    );
    assert_eq!(
        c.wait_task(&sim, u, 30.0).await["exitstatus"],
        "received interrupt"
    );
    assert_eq!(task_log(&c, u).await, ["TASK ERROR: received interrupt"]);
    let done = c
        .get(&format!("/nodes/pve1/tasks/{upid}/log?limit=0"))
        .await
        .json();
    assert_eq!(done["total"].as_u64(), Some(log.len() as u64));
}

// 18. Clone: synchronous checks, UPID, lock: clone, new MACs and uuid, default name, linked by
// default, target.
#[tokio::test]
async fn item18_clone_semantics() {
    let (sim, c) = start(slow_clone_opts(SCALE)).await;
    c.post(
        "/nodes/pve1/qemu/9000/clone",
        "newid=101&full=0&storage=ssd",
    )
    .await
    .expect_err(500, "parameter 'storage' not allowed for linked clones");
    c.post("/nodes/pve1/qemu/9000/clone", "newid=101&target=pve2")
        .await
        .expect_err(500, "no such cluster node 'pve2'");
    c.post(
        "/nodes/pve1/qemu/9000/clone",
        "newid=101&full=1&storage=nope",
    )
    .await
    .expect_err(500, "storage 'nope' does not exist");
    let e = c
        .post(
            "/nodes/pve1/qemu/9000/clone",
            "newid=101&full=1&storage=local",
        )
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["storage"],
        "storage 'local' does not support vm images"
    );
    c.post("/nodes/pve1/qemu/999/clone", "newid=101")
        .await
        .expect_err(
            500,
            "unable to find configuration file for VM 999 on node 'pve1'",
        );
    c.post("/nodes/pve1/qemu/9000/clone", "newid=101&pool=ci")
        .await
        .expect_err(403, "Permission check failed (pool 'ci' does not exist)");
    // Linked clone by default for a template.
    let u = c
        .post("/nodes/pve1/qemu/9000/clone", "newid=100")
        .await
        .data();
    let u = u.as_str().expect("s").to_string();
    assert_eq!(c.wait_task(&sim, &u, 60.0).await["exitstatus"], "OK");
    let linked = c.get("/nodes/pve1/qemu/100/config").await.data();
    assert_eq!(linked["name"], "Copy-of-VM-ubuntu");
    assert!(
        linked["scsi0"]
            .as_str()
            .expect("scsi0")
            .starts_with("ssd:base-9000-disk-1/vm-100-disk-"),
        "{linked}"
    );
    assert!(linked.get("template").is_none());
    assert!(
        task_log(&c, &u)
            .await
            .contains(&"create linked clone of drive scsi0 (ssd:base-9000-disk-1)".to_string())
    );
    c.post("/nodes/pve1/qemu/9000/clone", "newid=100")
        .await
        .expect_err(500, "unable to create VM 100: config file already exists");
    // Full clone: lock while running, then a fresh identity.
    let upid = begin_clone(&c, &sim, 101, "&name=web-1&storage=ssd&format=qcow2").await;
    c.post("/nodes/pve1/qemu/101/clone", "newid=102")
        .await
        .expect_err(500, "VM is locked (clone)");
    let tmpl = c.get("/nodes/pve1/qemu/9000/config").await.data();
    c.wait_task(&sim, &upid, 600.0).await;
    let vm = c.get("/nodes/pve1/qemu/101/config").await.data();
    assert_eq!(vm["name"], "web-1");
    assert!(vm.get("lock").is_none());
    assert_eq!(
        vm["scsi0"], "ssd:vm-101-disk-1,discard=on,iothread=1,size=128G",
        "lvm-thin falls back to raw"
    );
    let mac = |c: &Value| {
        c["net0"]
            .as_str()
            .expect("net0")
            .split(['=', ','])
            .nth(1)
            .expect("mac")
            .to_string()
    };
    assert!(mac(&vm).starts_with("BC:24:11:") && mac(&vm) != mac(&tmpl));
    assert_ne!(vm["smbios1"], tmpl["smbios1"]);
    let log = task_log(&c, &upid).await;
    for line in [
        "create full clone of drive scsi0 (ssd:base-9000-disk-1)",
        "  Logical volume \"vm-101-disk-1\" created.",
        "transferred 128.0 GiB of 128.0 GiB (100.00%)",
        "TASK OK",
    ] {
        assert!(
            log.iter().any(|l| l == line),
            "missing {line:?} in {log:#?}"
        );
    }
    // Progress lines of the 128 GiB copy: at least every tenth, increasing.
    let pcts: Vec<f64> = log
        .iter()
        .filter(|l| l.starts_with("transferred ") && l.contains(" of 128.0 GiB ("))
        .filter_map(|l| l.rsplit('(').next()?.trim_end_matches("%)").parse().ok())
        .collect();
    assert!(
        pcts.len() >= 10 && pcts.windows(2).all(|w| w[0] < w[1]),
        "{pcts:?}"
    );
}

#[tokio::test]
async fn item18_clone_target_on_shared_storage() {
    let (sim, c) = start(opts("cluster", SCALE)).await;
    let u = c
        .post(
            "/nodes/pve1/qemu/9000/clone",
            "newid=120&full=1&target=pve3&name=far",
        )
        .await
        .data();
    let u = u.as_str().expect("s").to_string();
    assert!(
        u.starts_with("UPID:pve1:"),
        "the task stays on the source node"
    );
    assert_eq!(c.wait_task(&sim, &u, 120.0).await["exitstatus"], "OK");
    let vm = c.get("/nodes/pve3/qemu/120/config").await.data();
    assert!(
        vm["scsi0"]
            .as_str()
            .expect("scsi0")
            .starts_with("shared:120/vm-120-disk-"),
        "{vm}"
    );
    c.get("/nodes/pve1/qemu/120/config").await.expect_err(
        500,
        "Configuration file 'nodes/pve1/qemu-server/120.conf' does not exist",
    );
    // A VM on local storage cannot be cloned across nodes.
    let u = c
        .post("/nodes/pve3/qemu/120/clone", "newid=121&full=1&storage=ssd")
        .await
        .data();
    assert_eq!(
        c.wait_task(&sim, u.as_str().expect("s"), 120.0).await["exitstatus"],
        "OK"
    );
    c.post("/nodes/pve3/qemu/121/clone", "newid=122&target=pve4")
        .await
        .expect_err(500, "can't clone VM to node 'pve4' (VM uses local storage)");
    c.post(
        "/nodes/pve1/qemu/9000/clone",
        "newid=123&target=pve4&storage=ssd",
    )
    .await
    .expect_err(500, "can't clone to non-shared storage 'ssd'");
}

// 19. Parallel clones of a stopped template; the same newid twice; lock timeouts; target locked.
#[tokio::test]
async fn item19_clone_concurrency() {
    let (sim, c) = start(slow_clone_opts(0.003)).await;
    let mut upids = Vec::new();
    for id in 101..=104 {
        upids.push(
            c.post("/nodes/pve1/qemu/9000/clone", &format!("newid={id}&full=1"))
                .await
                .data(),
        );
    }
    // The same newid again: the temp config already exists (or the task loses the lock race).
    c.until(&sim, 30.0, "temp config of 101", || async {
        (c.get("/nodes/pve1/qemu/101/config").await.status == 200).then_some(())
    })
    .await;
    c.post("/nodes/pve1/qemu/9000/clone", "newid=101&full=1")
        .await
        .expect_err(500, "unable to create VM 101: config file already exists");
    // Exclusive operations on the template wait 10 s for the shared clone lock, then fail.
    let t = Instant::now();
    c.put("/nodes/pve1/qemu/9000/config", "description=x")
        .await
        .expect_err(
            500,
            "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout",
        );
    assert!(elapsed_sim(t, &sim) >= 10.0);
    // Every operation on a clone target waits 10 s for the lock the clone holds, then times out.
    let t = Instant::now();
    c.put("/nodes/pve1/qemu/102/config", "cores=2")
        .await
        .expect_err(
            500,
            "can't lock file '/var/lock/qemu-server/lock-102.conf' - got timeout",
        );
    assert!(elapsed_sim(t, &sim) >= 10.0);
    let s = c.post("/nodes/pve1/qemu/102/status/start", "").await.data();
    assert_eq!(
        c.wait_task(&sim, s.as_str().expect("s"), 60.0).await["exitstatus"],
        "can't lock file '/var/lock/qemu-server/lock-102.conf' - got timeout"
    );
    let d = c.delete("/nodes/pve1/qemu/103").await.data();
    assert_eq!(
        c.wait_task(&sim, d.as_str().expect("s"), 60.0).await["exitstatus"],
        "can't lock file '/var/lock/qemu-server/lock-103.conf' - got timeout"
    );
    for u in upids {
        assert_eq!(
            c.wait_task(&sim, u.as_str().expect("s"), 900.0).await["exitstatus"],
            "OK",
            "parallel clones all succeed"
        );
    }
}

// 20. /cluster/resources: a new VM is status unknown with lock clone until pvestatd reports it.
#[tokio::test]
async fn item20_resources_before_pvestatd() {
    let mut o = slow_clone_opts(SCALE);
    o.scenario.timing.pvestatd_interval_s = 1e6;
    let (sim, c) = start(o).await;
    begin_clone(&c, &sim, 101, "&name=web-1").await;
    let res = c.get("/cluster/resources?type=vm").await.data();
    let e = res
        .as_array()
        .expect("a")
        .iter()
        .find(|v| v["vmid"] == 101)
        .expect("listed at once")
        .clone();
    assert_eq!(
        e,
        json!({"id": "qemu/101", "vmid": 101, "type": "qemu", "node": "pve1", "status": "unknown", "lock": "clone"})
    );
    let t = res
        .as_array()
        .expect("a")
        .iter()
        .find(|v| v["vmid"] == 9000)
        .expect("template")
        .clone();
    assert_eq!(
        (
            t["name"].clone(),
            t["template"].clone(),
            t["status"].clone()
        ),
        (json!("ubuntu"), json!(1), json!("stopped"))
    );

    let mut o = opts("fast", SCALE);
    o.scenario.timing.pvestatd_interval_s = 2.0;
    let (sim, c) = start(o).await;
    clone_vm(&c, &sim, 101, "web-1").await;
    c.until(&sim, 10.0, "pvestatd report", || async {
        let res = c.get("/cluster/resources?type=vm").await.data();
        let e = res.as_array()?.iter().find(|v| v["vmid"] == 101)?.clone();
        (e["status"] == "stopped"
            && e["name"] == "web-1"
            && e["template"] == 0
            && e["maxmem"] == 2147483648u64)
            .then_some(())
    })
    .await;
}

async fn running_vm(c: &Client, sim: &pve_rollout::sim::Sim, vmid: u32) {
    clone_vm(c, sim, vmid, &format!("vm{vmid}")).await;
    start_vm(c, sim, vmid).await;
}

// 21. Config: POST → qmconfig UPID, PUT → null, digest, no options, pending on a running VM.
#[tokio::test]
async fn item21_config_update() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    clone_vm(&c, &sim, 101, "web-1").await;
    let u = c
        .post(
            "/nodes/pve1/qemu/101/config",
            "cores=4&memory=4096&cipassword=hunter2",
        )
        .await
        .data();
    let u = u.as_str().expect("s").to_string();
    c.wait_task(&sim, &u, 30.0).await;
    assert_eq!(
        task_log(&c, &u).await[0],
        "update VM 101: -cipassword <hidden> -cores 4 -memory 4096"
    );
    let d = c.get("/nodes/pve1/qemu/101/config").await.data();
    assert_eq!(
        (
            d["cores"].clone(),
            d["memory"].clone(),
            d["cipassword"].clone()
        ),
        (json!(4), json!("4096"), json!("**********"))
    );
    assert_eq!(
        c.put("/nodes/pve1/qemu/101/config", "sockets=2")
            .await
            .json(),
        json!({"data": null})
    );
    c.put(
        "/nodes/pve1/qemu/101/config",
        "cores=2&digest=0000000000000000000000000000000000000000",
    )
    .await
    .expect_err(500, "checksum mismatch (file change by other user?)");
    let digest = c.get("/nodes/pve1/qemu/101/config").await.data()["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    assert_eq!(
        c.put(
            "/nodes/pve1/qemu/101/config",
            &format!("cores=2&digest={digest}")
        )
        .await
        .status,
        200
    );
    c.put("/nodes/pve1/qemu/101/config", "")
        .await
        .expect_err(500, "no options specified");
    assert_eq!(
        c.post("/nodes/pve1/qemu/101/config", "onboot=1&background_delay=5")
            .await
            .json(),
        json!({"data": null})
    );
    // Running: non-hotpluggable keys stay pending; GET shows them unless current=1.
    start_vm(&c, &sim, 101).await;
    c.put("/nodes/pve1/qemu/101/config", "cores=8&name=web-one")
        .await
        .data();
    assert_eq!(
        c.get("/nodes/pve1/qemu/101/config").await.data()["cores"],
        8
    );
    let cur = c.get("/nodes/pve1/qemu/101/config?current=1").await.data();
    assert_eq!(
        (cur["cores"].clone(), cur["name"].clone()),
        (json!(2), json!("web-one"))
    );
    let pending = c.get("/nodes/pve1/qemu/101/pending").await.data();
    assert!(
        pending
            .as_array()
            .expect("a")
            .iter()
            .any(|p| p["key"] == "cores" && p["pending"] == 8 && p["value"] == 2)
    );
    let s = c.post("/nodes/pve1/qemu/101/status/stop", "").await.data();
    c.wait_task(&sim, s.as_str().expect("s"), 30.0).await;
    start_vm(&c, &sim, 101).await;
    assert_eq!(
        c.get("/nodes/pve1/qemu/101/config?current=1").await.data()["cores"],
        8,
        "applied at the next start"
    );
}

// 22. sshkeys must be URL-encoded after form decoding, and are stored that way.
#[tokio::test]
async fn item22_sshkeys() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    clone_vm(&c, &sim, 101, "web-1").await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOqxeyx9k1Hj4Iu6aW0QZmZ7ZWl3b2NqZmJ6eGJ0YWJjZGVm deploy@ci";
    let once = enc(key);
    let twice = enc(&once);
    assert_eq!(
        c.put("/nodes/pve1/qemu/101/config", &format!("sshkeys={twice}"))
            .await
            .status,
        200
    );
    assert_eq!(
        c.get("/nodes/pve1/qemu/101/config").await.data()["sshkeys"],
        json!(once)
    );
    let e = c
        .put("/nodes/pve1/qemu/101/config", &format!("sshkeys={once}"))
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["sshkeys"],
        json!(format!(
            "invalid format - invalid urlencoded string: {key}\n"
        ))
    );
    let bad = enc(&enc("ssh-ed25519 notakey x"));
    c.put("/nodes/pve1/qemu/101/config", &format!("sshkeys={bad}"))
        .await
        .expect_err(500, "SSH public key validation error");
}

// 23. net0 without a MAC gets BC:24:11:…; efidisk0 <storage>:1 allocates a disk.
#[tokio::test]
async fn item23_mac_and_efidisk() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    clone_vm(&c, &sim, 101, "web-1").await;
    c.put(
        "/nodes/pve1/qemu/101/config",
        "net0=virtio%2Cbridge%3Dvmbr1&efidisk0=ssd%3A1%2Cefitype%3D4m%2Cpre-enrolled-keys%3D1",
    )
    .await
    .data();
    let d = c.get("/nodes/pve1/qemu/101/config").await.data();
    let net0 = d["net0"].as_str().expect("net0");
    assert!(
        net0.starts_with("virtio=BC:24:11:")
            && net0.ends_with(",bridge=vmbr1")
            && net0.len() == "virtio=BC:24:11:00:00:00,bridge=vmbr1".len(),
        "{net0}"
    );
    assert_eq!(
        d["efidisk0"],
        "ssd:vm-101-disk-2,efitype=4m,pre-enrolled-keys=1,size=4M"
    );
    assert_eq!(
        d["unused0"], "ssd:vm-101-disk-0",
        "the replaced EFI disk stays as unused"
    );
    c.put(
        "/nodes/pve1/qemu/101/config",
        "efidisk0=shared%3A1%2Cefitype%3D4m%2Cpre-enrolled-keys%3D1",
    )
    .await
    .data();
    let d = c.get("/nodes/pve1/qemu/101/config").await.data();
    assert_eq!(
        d["efidisk0"],
        "shared:101/vm-101-disk-0.raw,efitype=4m,pre-enrolled-keys=1,size=528K"
    );
}

// 24. Resize returns a UPID; + is relative; shrinking and unknown disks fail in the task.
#[tokio::test]
async fn item24_resize() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    clone_vm(&c, &sim, 101, "web-1").await;
    let run = |form: &'static str| {
        let c = c.clone();
        let sim = &sim;
        async move {
            let u = c.put("/nodes/pve1/qemu/101/resize", form).await.data();
            c.wait_task(sim, u.as_str().expect("s"), 30.0).await["exitstatus"].clone()
        }
    };
    assert_eq!(run("disk=scsi0&size=%2B10G").await, "OK");
    assert!(
        c.get("/nodes/pve1/qemu/101/config").await.data()["scsi0"]
            .as_str()
            .expect("s")
            .ends_with("size=138G")
    );
    assert_eq!(run("disk=scsi0&size=200G").await, "OK");
    assert_eq!(
        run("disk=scsi0&size=200G").await,
        "OK",
        "equal size is a no-op"
    );
    assert_eq!(
        run("disk=scsi0&size=100G").await,
        "shrinking disks is not supported"
    );
    assert_eq!(
        run("disk=scsi5&size=1G").await,
        "disk 'scsi5' does not exist"
    );
    assert_eq!(run("disk=ide2&size=1G").await, "you can't resize a cdrom");
    let e = c
        .put("/nodes/pve1/qemu/101/resize", "disk=scsi0&size=lots")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["size"],
        "value does not match the regex pattern"
    );
}

// 25. Start/stop/shutdown semantics.
#[tokio::test]
async fn item25_power_semantics() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    let task = |path: String| {
        let c = c.clone();
        let sim = &sim;
        async move {
            let u = c.post(&path, "").await.data();
            c.wait_task(sim, u.as_str().expect("s"), 60.0).await["exitstatus"].clone()
        }
    };
    assert_eq!(
        task("/nodes/pve1/qemu/999/status/start".into()).await,
        "Configuration file 'nodes/pve1/qemu-server/999.conf' does not exist"
    );
    assert_eq!(
        task("/nodes/pve1/qemu/999/status/shutdown".into()).await,
        "unable to find configuration file for VM 999 on node 'pve1'"
    );
    clone_vm(&c, &sim, 101, "web-1").await;
    assert_eq!(
        task("/nodes/pve1/qemu/101/status/shutdown".into()).await,
        "OK"
    );
    assert_eq!(task("/nodes/pve1/qemu/101/status/stop".into()).await, "OK");
    assert_eq!(task("/nodes/pve1/qemu/101/status/start".into()).await, "OK");
    assert_eq!(
        task("/nodes/pve1/qemu/101/status/start".into()).await,
        "VM 101 already running"
    );
    assert_eq!(
        c.get("/nodes/pve1/qemu/101/status/current").await.data()["status"],
        "running"
    );
    c.put(
        "/nodes/pve1/qemu/101/config",
        "net1=virtio%2Cbridge%3Dvmbr9",
    )
    .await
    .data();
    assert_eq!(task("/nodes/pve1/qemu/101/status/stop".into()).await, "OK");
    assert_eq!(
        task("/nodes/pve1/qemu/101/status/start".into()).await,
        "bridge 'vmbr9' does not exist"
    );
}

// 26. Shutdown timeout, forceStop, paused VM.
#[tokio::test]
async fn item26_shutdown() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    running_vm(&c, &sim, 101).await;
    // The agent answers (shutdown asks it first; cloud-init's first-boot upgrade delays it).
    wait_agent(&c, &sim, 101).await;
    let u = c
        .post("/nodes/pve1/qemu/101/status/shutdown", "timeout=0")
        .await
        .data();
    assert_eq!(
        c.wait_task(&sim, u.as_str().expect("s"), 30.0).await["exitstatus"],
        "VM quit/powerdown failed - got timeout"
    );
    let u = c
        .post(
            "/nodes/pve1/qemu/101/status/shutdown",
            "timeout=0&forceStop=1",
        )
        .await
        .data();
    let u = u.as_str().expect("s").to_string();
    assert_eq!(c.wait_task(&sim, &u, 30.0).await["exitstatus"], "OK");
    assert_eq!(
        task_log(&c, &u).await,
        ["VM still running - terminating now with SIGTERM", "TASK OK"]
    );
    assert_eq!(
        c.get("/nodes/pve1/qemu/101/status/current").await.data()["status"],
        "stopped"
    );
    start_vm(&c, &sim, 101).await;
    let u = c
        .post("/nodes/pve1/qemu/101/status/shutdown", "")
        .await
        .data();
    assert_eq!(
        c.wait_task(&sim, u.as_str().expect("s"), 120.0).await["exitstatus"],
        "OK",
        "a booted guest powers off"
    );
    start_vm(&c, &sim, 101).await;
    let u = c
        .post("/nodes/pve1/qemu/101/status/suspend", "")
        .await
        .data();
    c.wait_task(&sim, u.as_str().expect("s"), 30.0).await;
    assert_eq!(
        c.get("/nodes/pve1/qemu/101/status/current").await.data()["qmpstatus"],
        "paused"
    );
    c.post("/nodes/pve1/qemu/101/status/shutdown", "")
        .await
        .expect_err(500, "VM is paused - cannot shutdown");
}

// 27. Destroy: running, protection, locked.
#[tokio::test]
async fn item27_destroy() {
    let (sim, c) = start(slow_clone_opts(SCALE)).await;
    let u = c
        .post("/nodes/pve1/qemu/9000/clone", "newid=101&name=web-1")
        .await
        .data();
    c.wait_task(&sim, u.as_str().expect("s"), 60.0).await;
    start_vm(&c, &sim, 101).await;
    c.delete("/nodes/pve1/qemu/101")
        .await
        .expect_err(500, "VM 101 is running - destroy failed");
    let s = c.post("/nodes/pve1/qemu/101/status/stop", "").await.data();
    c.wait_task(&sim, s.as_str().expect("s"), 30.0).await;
    c.put("/nodes/pve1/qemu/101/config", "protection=1")
        .await
        .data();
    c.delete("/nodes/pve1/qemu/101")
        .await
        .expect_err(500, "can't remove VM 101 - protection mode enabled");
    c.put("/nodes/pve1/qemu/101/config", "protection=0")
        .await
        .data();
    // A template with linked clones cannot go.
    let d = c.delete("/nodes/pve1/qemu/9000").await.data();
    let exit = c.wait_task(&sim, d.as_str().expect("s"), 60.0).await["exitstatus"]
        .as_str()
        .expect("s")
        .to_string();
    assert!(
        exit.starts_with("base volume 'ssd:base-9000-disk-")
            && exit.ends_with("' is still in use by linked cloned"),
        "{exit}"
    );
    let d = c.delete("/nodes/pve1/qemu/101?purge=1").await.data();
    let d = d.as_str().expect("s").to_string();
    assert_eq!(c.wait_task(&sim, &d, 60.0).await["exitstatus"], "OK");
    assert!(
        task_log(&c, &d)
            .await
            .iter()
            .any(|l| l.starts_with("  Logical volume \"vm-101-disk-")
                && l.ends_with("successfully removed."))
    );
    c.get("/nodes/pve1/qemu/101/config").await.expect_err(
        500,
        "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist",
    );
    c.delete("/nodes/pve1/qemu/101").await.expect_err(
        500,
        "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist",
    );
}

// 28. Agent errors, in PVE's order, with their delays.
#[tokio::test]
async fn item28_agent_errors() {
    let mut o = opts("fast", SCALE);
    o.scenario.timing.boot_s = pve_rollout::sim::scenario::Span::fixed(60.0);
    let (sim, c) = start(o).await;
    clone_vm(&c, &sim, 101, "web-1").await;
    c.get("/nodes/pve1/qemu/101/agent/get-osinfo")
        .await
        .expect_err(500, "VM 101 is not running");
    c.put("/nodes/pve1/qemu/101/config", "delete=agent")
        .await
        .data();
    c.post("/nodes/pve1/qemu/101/agent/ping", "")
        .await
        .expect_err(500, "No QEMU guest agent configured");
    c.put("/nodes/pve1/qemu/101/config", "agent=0").await.data();
    c.post("/nodes/pve1/qemu/101/agent/ping", "")
        .await
        .expect_err(500, "VM 101 is not running");
    c.put("/nodes/pve1/qemu/101/config", "agent=1").await.data();
    start_vm(&c, &sim, 101).await;
    let t = Instant::now();
    c.get("/nodes/pve1/qemu/101/agent/network-get-interfaces")
        .await
        .expect_err(500, "QEMU guest agent is not running");
    assert!(
        elapsed_sim(t, &sim) >= 3.0,
        "the ping timeout holds the request ~3 s"
    );

    let mut o = opts("fast", SCALE);
    o.scenario.faults.p_agent_timeout = 1.0;
    let (sim, c) = start(o).await;
    running_vm(&c, &sim, 101).await;
    // Wait until the agent is up (known from the stats), then every command times out.
    c.until(&sim, 60.0, "agent up", || async {
        sim.stats()
            .vms
            .iter()
            .find(|v| v.vmid == 101)?
            .agent_up_at
            .map(|_| ())
    })
    .await;
    let t = Instant::now();
    c.get("/nodes/pve1/qemu/101/agent/network-get-interfaces")
        .await
        .expect_err(
            500,
            "VM 101 qmp command 'guest-network-get-interfaces' failed - got timeout",
        );
    assert!(elapsed_sim(t, &sim) >= 5.0);
}

// 29 + 30. Agent wrapping, exec/exec-status, pid consumed, command arrays, missing binaries.
#[tokio::test]
async fn item29_30_agent_wrapping_and_exec() {
    let mut o = opts("fast", SCALE);
    o.scenario.guest.docker0 = true;
    let (sim, c) = start(o).await;
    running_vm(&c, &sim, 101).await;
    wait_agent(&c, &sim, 101).await;
    assert_eq!(
        c.post("/nodes/pve1/qemu/101/agent/ping", "").await.data(),
        json!({"result": {}})
    );
    assert_eq!(
        c.get("/nodes/pve1/qemu/101/agent/get-host-name")
            .await
            .data(),
        json!({"result": {"host-name": "vm101"}})
    );
    let os = c.get("/nodes/pve1/qemu/101/agent/get-osinfo").await.data();
    assert_eq!(
        (
            os["result"]["id"].clone(),
            os["result"]["version-id"].clone()
        ),
        (json!("ubuntu"), json!("24.04"))
    );
    let ifs = c
        .until(&sim, 60.0, "lease", || async {
            let d = c
                .get("/nodes/pve1/qemu/101/agent/network-get-interfaces")
                .await
                .data();
            (d.to_string().contains("\"10.20.")).then_some(d)
        })
        .await;
    let names: Vec<&str> = ifs["result"]
        .as_array()
        .expect("a")
        .iter()
        .map(|i| i["name"].as_str().expect("n"))
        .collect();
    assert_eq!(names, ["lo", "ens18", "docker0"]);
    let nic = &ifs["result"][1];
    let mac = nic["hardware-address"].as_str().expect("mac");
    assert_eq!(mac, mac.to_lowercase());
    let v6 = nic["ip-addresses"]
        .as_array()
        .expect("a")
        .iter()
        .find(|a| a["ip-address-type"] == "ipv6")
        .expect("v6");
    assert!(
        v6["ip-address"]
            .as_str()
            .expect("s")
            .starts_with("fe80::be24:11ff:fe")
    );

    let exec = |form: String| {
        let c = c.clone();
        let sim = &sim;
        async move {
            let r = c.post("/nodes/pve1/qemu/101/agent/exec", &form).await;
            let pid = r.data()["pid"].as_i64().expect("pid");
            assert_eq!(
                r.data().as_object().expect("o").len(),
                1,
                "exec answers only {{pid}}"
            );
            let out = c
                .until(sim, 30.0, "exited", || async {
                    let d = c
                        .get(&format!("/nodes/pve1/qemu/101/agent/exec-status?pid={pid}"))
                        .await
                        .data();
                    (d["exited"] == 1).then_some(d)
                })
                .await;
            (pid, out)
        }
    };
    let (pid, out) =
        exec("command=systemctl&command=is-active&command=qemu-guest-agent".into()).await;
    assert_eq!(
        out,
        json!({"exited": 1, "exitcode": 0, "out-data": "active\n"})
    );
    let e = c
        .get(&format!("/nodes/pve1/qemu/101/agent/exec-status?pid={pid}"))
        .await;
    e.expect_err(500, "Agent error: Invalid parameter 'pid'");
    assert_eq!(
        exec("command=true".into()).await.1,
        json!({"exited": 1, "exitcode": 0}),
        "empty streams are omitted"
    );
    assert_eq!(
        exec("command=cloud-init&command=status&command=--wait".into())
            .await
            .1["out-data"],
        "status: done\n"
    );
    assert_eq!(
        exec("command=hostname".into()).await.1["out-data"],
        "vm101\n"
    );
    assert_eq!(
        exec("command=echo&command=hello&command=world".into())
            .await
            .1["out-data"],
        "hello world\n"
    );
    assert!(
        exec("command=%2Fusr%2Fbin%2Funame&command=-a".into())
            .await
            .1["out-data"]
            .as_str()
            .expect("s")
            .starts_with("Linux vm101 6.8.0-41-generic")
    );
    // A shell list: `&&` runs the next command only after an exit 0, `;` always; the exit code
    // is the last command's, 127 for one that does not exist.
    let (_, out) = exec(
        "command=sh&command=-c&command=uname%20-a%20%26%26%20systemctl%20is-active%20nosuch%20%26%26%20echo%20never%3B%20echo%20after"
            .into(),
    )
    .await;
    let stdout = out["out-data"].as_str().expect("s");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("Linux vm101 "), "{stdout:?}");
    assert_eq!(lines[1..], ["inactive", "after"], "{stdout:?}");
    assert_eq!(out["exitcode"], 0);
    let (_, out) = exec("command=sh&command=-c&command=nosuch%20%26%26%20echo%20x".into()).await;
    assert_eq!(
        out,
        json!({"exited": 1, "exitcode": 127, "err-data": "sh: 1: nosuch: not found\n"})
    );
    let r = c
        .post("/nodes/pve1/qemu/101/agent/exec", "command=ls%20-la")
        .await;
    r.expect_err(500, "Agent error: Guest agent command failed, error was 'Failed to execute child process “ls -la” (No such file or directory)'");
    let e = c
        .post("/nodes/pve1/qemu/101/agent/exec", "")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        e["errors"]["command"],
        "property is missing and it is not optional"
    );
}

// 31. 596 after 30 s of queueing for pvedaemon's 3 workers; 595 for an offline node; unknown node.
#[tokio::test]
async fn item31_proxy_errors() {
    let (sim, c) = start(slow_clone_opts(SCALE)).await;
    begin_clone(&c, &sim, 101, "").await;
    // Each PUT holds a worker for the 10 s lock wait: 3 workers, 15 callers → the tail waits > 30
    // s.
    let t = Instant::now();
    let mut jobs = Vec::new();
    for _ in 0..15 {
        let c = c.clone();
        jobs.push(tokio::spawn(async move {
            c.put("/nodes/pve1/qemu/9000/config", "description=x").await
        }));
    }
    let mut timed_out = 0;
    for j in jobs {
        let r = j.await.expect("join");
        if r.status == 596 {
            timed_out += 1;
            assert_eq!(r.reason, "Connection timed out");
            assert!(r.body.is_empty());
        } else {
            r.expect_err(
                500,
                "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout",
            );
        }
    }
    assert!(
        timed_out >= 3,
        "the requests queued past 30 s got 596 ({timed_out})"
    );
    assert!(elapsed_sim(t, &sim) >= 30.0);
    assert!(sim.stats().peak_in_flight >= 15);

    let mut o = opts("cluster", SCALE);
    o.scenario.faults.node_offline = vec![NodeOutage {
        node: "pve8".into(),
        at_s: 0.0,
        until_s: None,
    }];
    let (_sim, c) = start(o).await;
    let r = c.get("/nodes/pve8/qemu").await;
    assert_eq!(
        (r.status, r.reason.as_str(), r.body.len()),
        (595, "No route to host", 0)
    );
    let nodes = c.get("/nodes").await.data();
    assert!(
        nodes
            .as_array()
            .expect("a")
            .iter()
            .any(|n| n["node"] == "pve8" && n["status"] == "offline")
    );
    c.get("/nodes/foo/qemu").await.expect_err(500, "hostname lookup 'foo' failed - failed to get address info for: foo: Name or service not known");
}

// A clone whose answer is lost still happens: a careful client checks before cloning again.
#[tokio::test]
async fn lost_clone_response_still_clones() {
    let mut o = opts("fast", SCALE);
    o.scenario.faults.p_clone_response_lost = 1.0;
    let (sim, c) = start(o).await;
    let t = Instant::now();
    let r = c
        .post("/nodes/pve1/qemu/9000/clone", "newid=101&full=1&name=web-1")
        .await;
    assert_eq!((r.status, r.reason.as_str()), (596, "Connection timed out"));
    assert!(elapsed_sim(t, &sim) >= 30.0);
    c.until(&sim, 60.0, "clone done", || async {
        let r = c.get("/nodes/pve1/qemu/101/config").await;
        (r.status == 200 && r.data()["name"] == "web-1" && r.data().get("lock").is_none())
            .then_some(())
    })
    .await;
    assert_eq!(sim.stats().clones_by_name.get("web-1"), Some(&1));
}

// /sim/stats: outside /api2/json, no auth, the documented fields.
#[tokio::test]
async fn sim_stats_endpoint() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    running_vm(&c, &sim, 101).await;
    wait_agent(&c, &sim, 101).await;
    let r = c
        .raw(
            "GET /sim/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"",
        )
        .await;
    assert_eq!(r.status, 200);
    let s = r.json();
    for k in [
        "requests_total",
        "requests_by_endpoint",
        "worker_seconds",
        "peak_in_flight",
        "clones_by_name",
        "vms",
    ] {
        assert!(s.get(k).is_some(), "missing {k}");
    }
    assert!(
        s["requests_by_endpoint"]["POST /nodes/{node}/qemu/{vmid}/agent/ping"].as_u64() >= Some(1)
    );
    assert!(s["requests_by_endpoint"]["GET /nodes/{node}/tasks/{upid}/status"].as_u64() >= Some(1));
    let vm = s["vms"]
        .as_array()
        .expect("a")
        .iter()
        .find(|v| v["vmid"] == 101)
        .expect("vm")
        .clone();
    for k in [
        "vmid",
        "name",
        "node",
        "cloned_at",
        "started_at",
        "agent_up_at",
        "first_agent_ok_at",
        "clone_s",
        "boot_s",
        "agent_s",
        "dhcp_s",
    ] {
        assert!(!vm[k].is_null(), "vm field {k}: {vm}");
    }
    assert!(s["worker_seconds"].as_f64() > Some(0.0));
}

// An ordinary client library works against the simulator (reqwest with the CA).
#[tokio::test]
async fn reqwest_client_interoperates() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (sim, _c) = start(opts("fast", SCALE)).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(sim.cert_pem().as_bytes()).expect("pem"),
        )
        .build()
        .expect("client");
    let auth = format!("PVEAPIToken={}={}", sim.token_id(), sim.token_secret());
    let r = client
        .get(format!("{}/api2/json/cluster/nextid", sim.url()))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"data": "100"})
    );
    let r = client
        .post(format!(
            "{}/api2/json/nodes/pve1/qemu/9000/clone",
            sim.url()
        ))
        .header("Authorization", &auth)
        .form(&[("newid", "100"), ("full", "1")])
        .send()
        .await
        .expect("send");
    assert!(
        r.json::<Value>().await.expect("json")["data"]
            .as_str()
            .expect("upid")
            .starts_with("UPID:pve1:")
    );
}

// GET /nodes/{node}/tasks (pve-manager Tasks.pm): served without a pvedaemon worker; `active`
// lists running tasks only (an ended task is archived at once), `archive` ended ones with their
// status; filters; a token without Sys.Audit sees only the tasks it started.
#[tokio::test]
async fn node_task_list_filters_and_visibility() {
    let mut o = opts("fast", SCALE);
    o.scenario.auth.tokens.push(TokenSpec {
        id: "audit@pve!ro".into(),
        secret: "ro-secret".into(),
        privsep: true,
        privileges: vec!["VM.Audit".into()],
        acl: Vec::new(),
    });
    let (sim, c) = start(o).await;
    let upid = c
        .post(
            "/nodes/pve1/qemu/9000/clone",
            "newid=101&name=web-1&full=1&storage=ssd&format=qcow2",
        )
        .await
        .data();
    let upid = upid.as_str().expect("upid").to_string();
    let workers_before = sim.stats().nodes["pve1"].requests;
    let active = c
        .get("/nodes/pve1/tasks?source=active&typefilter=qmclone")
        .await;
    assert_eq!(
        sim.stats().nodes["pve1"].requests,
        workers_before,
        "no pvedaemon worker for the task list"
    );
    let listed = active.data();
    assert_eq!(listed[0]["upid"], upid.as_str(), "{listed}");
    assert_eq!(listed[0]["status"], "RUNNING");
    assert!(listed[0].get("endtime").is_none());
    assert_eq!(
        c.get("/nodes/pve1/tasks?source=active&typefilter=qmstart")
            .await
            .data(),
        json!([])
    );
    c.wait_task(&sim, &upid, 600.0).await;
    assert_eq!(
        c.get("/nodes/pve1/tasks?source=active").await.data(),
        json!([]),
        "ended: archived, gone from the active list"
    );
    let archived = c.get("/nodes/pve1/tasks?vmid=9000").await;
    assert_eq!(archived.json()["total"], 1);
    assert_eq!(archived.data()[0]["status"], "OK");
    assert!(archived.data()[0]["endtime"].as_i64().is_some());
    assert_eq!(c.get("/nodes/pve1/tasks?limit=0").await.data(), json!([]));
    let since = archived.data()[0]["starttime"].as_i64().expect("starttime") + 1;
    assert_eq!(
        c.get(&format!("/nodes/pve1/tasks?since={since}"))
            .await
            .data(),
        json!([])
    );
    // The token did not start that clone and lacks Sys.Audit: an empty list, not a 403.
    let ro = c.with(Cred::Token("audit@pve!ro=ro-secret".into()));
    assert_eq!(
        ro.get("/nodes/pve1/tasks?source=all").await.data(),
        json!([])
    );
}
