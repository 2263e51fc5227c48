//! Bad input from the server (issue 7): whatever bytes or JSON come back, the client must not
//! panic, and what it cannot use becomes a `Decode` error naming the call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::Value;

use super::test_server::{self, Reply, TestServer};
use super::transport::{decode, decode_envelope};
use super::wire::{
    WireExecStatus, WireInterface, WireNode, WireNodeStatus, WireOsInfo, WireResource,
    WireTaskStatus, WireVersion, WireVmListEntry, WireVmStatus,
};
use super::*;

const UPID: &str = "UPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam!ci:";

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        // PVE's favourite: numbers and booleans as strings.
        "-?[0-9]{1,20}(\\.[0-9]{1,3})?".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(pve_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys the wire types read, plus noise: objects shaped like PVE's with values of any type.
fn pve_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "vmid",
            "node",
            "status",
            "name",
            "type",
            "id",
            "template",
            "maxmem",
            "mem",
            "cpu",
            "maxcpu",
            "uptime",
            "lock",
            "memory",
            "total",
            "used",
            "free",
            "version",
            "release",
            "exitstatus",
            "upid",
            "pid",
            "exited",
            "exitcode",
            "out-data",
            "err-data",
            "n",
            "t",
            "result",
            "ip-addresses",
            "ip-address",
            "ip-address-type",
            "prefix",
            "hardware-address",
            "host-name",
            "pretty-name",
            "kernel-release",
            "qmpstatus",
            "agent",
            "data",
            "error",
            "class",
            "desc",
            "storage",
            "shared",
            "hastate",
        ])
        .prop_map(str::to_string),
        "[a-z-]{1,8}",
    ]
}

fn assert_decode_error<T>(result: Result<T, PveError>, call: &str) {
    if let Err(e) = result {
        assert_eq!(e.class, ErrorClass::Decode, "{call}: {e}");
        assert_eq!(e.call, call);
        assert!(e.to_string().starts_with(call), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn envelope_of_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..300)) {
        assert_decode_error(decode_envelope("GET /x", 200, &body), "GET /x");
    }

    #[test]
    fn envelope_of_arbitrary_json(value in any_json()) {
        let body = serde_json::to_vec(&value).unwrap();
        assert_decode_error(decode_envelope("GET /x", 200, &body), "GET /x");
        // Cut anywhere: a truncated answer is a Decode error too (or, cut to nothing, no data).
        for cut in [body.len() / 2, body.len().saturating_sub(1)] {
            assert_decode_error(decode_envelope("GET /x", 200, &body[..cut]), "GET /x");
        }
    }

    #[test]
    fn every_wire_type_of_arbitrary_json(value in any_json()) {
        let call = "GET /y";
        assert_decode_error(decode::<WireVersion>(call, value.clone()), call);
        assert_decode_error(decode::<Vec<WireNode>>(call, value.clone()), call);
        assert_decode_error(decode::<WireNodeStatus>(call, value.clone()), call);
        assert_decode_error(decode::<Vec<WireResource>>(call, value.clone()), call);
        assert_decode_error(decode::<Vec<WireVmListEntry>>(call, value.clone()), call);
        if let Ok(w) = decode::<WireVmStatus>(call, value.clone()) {
            let _ = w.into_status(101);
        }
        if let Ok(w) = decode::<WireTaskStatus>(call, value.clone()) {
            let _ = w.into_status(&Upid(UPID.into()));
        }
        assert_decode_error(decode::<Vec<WireInterface>>(call, value.clone()), call);
        assert_decode_error(decode::<WireOsInfo>(call, value.clone()), call);
        assert_decode_error(decode::<WireExecStatus>(call, value.clone()), call);
        if let Value::Object(map) = &value {
            let _ = wire::vm_config(map.clone());
        }
        let _ = wire::agent_error(&value);
    }
}

/// A server that answers every request with whatever `slot` holds.
async fn slot_server(slot: Arc<Mutex<Reply>>) -> TestServer {
    test_server::start(move |_| slot.lock().expect("slot").clone()).await
}

fn client_for(server: &TestServer) -> Client {
    Client::new(ClientConfig {
        tls: TlsTrust::Fingerprint(server.fingerprint.clone()),
        time_scale: 0.001,
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new(
            server.url.clone(),
            Auth::Token {
                token_id: "root@pam!ci".into(),
                secret: Secret::new("5f0c1d2e-aaaa-bbbb-cccc-0123456789ab"),
            },
        )
    })
    .expect("client")
}

/// Every typed call with an answer to decode; returns (call, error) for each failure.
async fn every_call(client: &Client) -> Vec<(String, Option<PveError>)> {
    let upid = Upid(UPID.into());
    let mut out = Vec::new();
    macro_rules! call {
        ($name:expr, $fut:expr) => {
            out.push(($name.to_string(), $fut.await.err()));
        };
    }
    call!("GET /version", client.version());
    call!("GET /nodes", client.nodes());
    call!("GET /nodes/pve1/status", client.node_status("pve1"));
    call!("GET /cluster/resources", client.cluster_resources(None));
    call!("GET /cluster/nextid", client.next_id(None));
    call!("GET /nodes/pve1/qemu", client.vm_list("pve1"));
    call!(
        "GET /nodes/pve1/qemu/101/status/current",
        client.vm_status("pve1", 101)
    );
    call!(
        "GET /nodes/pve1/qemu/101/config",
        client.vm_config("pve1", 101)
    );
    call!(
        "GET /nodes/pve1/tasks/{upid}/status",
        client.task_status(&upid)
    );
    call!(
        "GET /nodes/pve1/tasks/{upid}/log",
        client.task_log(&upid, 0, 50)
    );
    call!(
        "GET /nodes/pve1/qemu/101/agent/network-get-interfaces",
        client.agent_network_interfaces("pve1", 101)
    );
    call!(
        "GET /nodes/pve1/qemu/101/agent/get-osinfo",
        client.agent_os_info("pve1", 101)
    );
    call!(
        "GET /nodes/pve1/qemu/101/agent/exec-status",
        client.agent_exec_status("pve1", 101, 7)
    );
    call!(
        "POST /nodes/pve1/qemu/101/status/start",
        client.start("pve1", 101)
    );
    out
}

/// Error classes a well-formed 200 answer may still legitimately carry: an agent error object
/// passed through by PVE (`{"result":{"error":...}}`) is classified by its text.
fn acceptable(e: &PveError) -> bool {
    e.class == ErrorClass::Decode || e.reason.starts_with("Agent error")
}

#[test]
fn typed_calls_on_arbitrary_answers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let slot = Arc::new(Mutex::new(Reply::data(Value::Null)));
    let server = rt.block_on(slot_server(slot.clone()));
    let client = client_for(&server);
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 48,
        ..RunnerConfig::default()
    });
    let refused = std::cell::Cell::new(0usize);
    runner
        .run(&any_json(), |value| {
            *slot.lock().expect("slot") = Reply::data(value.clone());
            for (name, error) in rt.block_on(every_call(&client)) {
                if let Some(e) = error {
                    refused.set(refused.get() + 1);
                    prop_assert!(acceptable(&e), "{name} on {value}: {e:?}");
                    prop_assert!(
                        e.to_string().starts_with(e.call.as_str())
                            && e.call.starts_with(&name[..4]),
                        "{name}: {e}"
                    );
                }
            }
            Ok(())
        })
        .expect("no input breaks a call");
    // Random JSON rarely fits a typed answer: most calls must have been refused.
    assert!(refused.get() > 48 * 5, "only {} refusals", refused.get());
}

/// Malformed answers a broken proxy or a half-dead node sends, each a clear error naming the call.
#[tokio::test]
async fn malformed_answers_are_clear_errors() {
    let html = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>\
                <body><h1>Bad Gateway</h1><p>The proxy could not reach the node.</p></body></html>";
    let long_html = format!("<html><body>{}</body></html>", "x".repeat(20_000));
    let cases: Vec<(&str, Reply, ErrorClass, &str)> = vec![
        (
            "truncated JSON",
            Reply::error(200, "OK", r#"{"data":[{"node":"pve1","status":"onl"#),
            ErrorClass::Decode,
            "not JSON",
        ),
        (
            "wrong type: a string for the node list",
            Reply::error(200, "OK", r#"{"data":"pve1"}"#),
            ErrorClass::Decode,
            "unexpected answer",
        ),
        (
            "wrong type: an object in place of the list",
            Reply::error(200, "OK", r#"{"data":{"node":"pve1"}}"#),
            ErrorClass::Decode,
            "unexpected answer",
        ),
        (
            "HTML page with 200",
            Reply::error(200, "OK", html),
            ErrorClass::Decode,
            "not JSON",
        ),
        (
            "huge HTML page with 200",
            Reply::error(200, "OK", &long_html),
            ErrorClass::Decode,
            "not JSON",
        ),
        (
            "empty body with 200",
            Reply::error(200, "OK", ""),
            ErrorClass::Decode,
            "unexpected answer",
        ),
        (
            "200 without a data key",
            Reply::error(200, "OK", r#"{"success":1}"#),
            ErrorClass::Decode,
            "unexpected answer",
        ),
        (
            "a bare JSON array, no envelope",
            Reply::error(200, "OK", r#"[{"node":"pve1"}]"#),
            ErrorClass::Decode,
            "no data envelope",
        ),
        (
            "HTML error page with 500",
            Reply::error(500, "Internal Server Error", html),
            ErrorClass::Other,
            "500 Internal Server Error",
        ),
    ];
    for (what, reply, class, says) in cases {
        let slot = Arc::new(Mutex::new(reply));
        let server = slot_server(slot).await;
        let client = client_for(&server);
        let e = client.nodes().await.expect_err(what);
        let text = e.to_string();
        assert_eq!(e.class, class, "{what}: {text}");
        assert!(text.starts_with("GET /nodes: "), "{what}: {text}");
        assert!(text.contains(says), "{what}: {text}");
        // An error line, not a dump of the page.
        assert!(text.len() < 600, "{what}: {} chars", text.len());
    }
}
