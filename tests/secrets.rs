//! Secrets (issue 7): a whole rollout against the simulator, once with an API token and once with
//! a password, with every tracing event at TRACE captured; the secret must appear in no log line,
//! no output file, no event, no error text and no Debug output.
//!
//! Its own test binary: the capturing subscriber is process-global, so events from every task on
//! every runtime thread (client, engine, simulator) are caught.

use std::path::Path;
use std::sync::OnceLock;

use pve_rollout::config::Config;
use pve_rollout::demo::{self, DemoSettings};
use pve_rollout::engine::event::Event;
use pve_rollout::engine::{self, Clock, Rollout, plan};
use pve_rollout::pve::{Auth, Client, Secret};
use pve_rollout::report::Summary;
use pve_rollout::sim::{self, Scenario, SimOptions};
use pve_rollout::testing::CapturedLog;
use tokio::sync::mpsc;

const SCALE: f64 = 0.01;
const USER: &str = "rollout@pve";
const PASSWORD: &str = "Tr0ub4dor-and-3-horses-PW";

/// Everything every test's tracing events wrote (installed process-wide once, so events from
/// every runtime thread are caught).
fn captured() -> &'static CapturedLog {
    static LOG: OnceLock<CapturedLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = CapturedLog::default();
        tracing::subscriber::set_global_default(log.subscriber()).expect("first subscriber");
        log
    })
}

fn log_text() -> String {
    captured().text()
}

enum How {
    Token,
    Password,
}

struct Run {
    secret: String,
    summary: Summary,
    events: Vec<Event>,
    debug: String,
    out: tempfile::TempDir,
}

/// A rollout of 4 VMs through the real config file, secret file and client, on a simulator with
/// transient faults where the 2nd clone never gets an agent and the 3rd no IP (so error texts
/// are made too).
async fn rollout(how: How) -> Run {
    captured();
    let mut scenario = Scenario::builtin("fast").expect("fast");
    scenario.faults.agent_never_up = vec![2];
    scenario.faults.ip_never = vec![3];
    // Transient faults whose answers are logged and retried, but no lost clones (which could
    // move the ordinals above).
    scenario.faults.p_595 = 0.05;
    scenario.faults.p_config_lock_timeout = 0.1;
    scenario.faults.p_agent_timeout = 0.05;
    let sim = sim::start(SimOptions {
        scenario,
        seed: 9,
        time_scale: SCALE,
        users: vec![(USER.to_string(), PASSWORD.to_string())],
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    let out = tempfile::tempdir().expect("temp dir");
    let settings = DemoSettings {
        vms: 4,
        output: out.path().join("out"),
        deployment_delay: "2s".into(),
        stabilization: "3s".into(),
        agent_timeout: "40s".into(),
        ip_timeout: "40s".into(),
        ..DemoSettings::default()
    };
    let (secret, auth_lines) = match how {
        How::Token => (
            sim.token_secret(),
            format!("token_id = \"{}\"\n", sim.token_id()),
        ),
        How::Password => (PASSWORD.to_string(), format!("user = \"{USER}\"\n")),
    };
    let secret_path = out.path().join("secret");
    private_file(&secret_path, &format!("{secret}\n"));
    let key = match how {
        How::Token => "token_secret_file",
        How::Password => "password_file",
    };
    let text = demo::config_toml(&sim, &settings).replacen(
        &format!("token_id = \"{}\"\n", sim.token_id()),
        &format!(
            "{auth_lines}{key} = {:?}\n",
            secret_path.display().to_string()
        ),
        1,
    );
    let config = Config::parse(&text, "deploy.toml").expect("config");
    let client_config = config
        .client_config_with_env(SCALE, &|_| None)
        .expect("client config");
    match (&how, &client_config.auth) {
        (How::Token, Auth::Token { .. }) | (How::Password, Auth::Password { .. }) => {}
        (_, other) => panic!("wrong auth {other:?}"),
    }
    let client = Client::new(client_config.clone()).expect("client");
    let plan = plan::build(&client, &config).await.expect("plan");
    let (etx, mut erx) = mpsc::unbounded_channel();
    let (ctx, crx) = mpsc::unbounded_channel();
    let engine = tokio::spawn(engine::run(
        Rollout {
            client: client.clone(),
            config: config.clone(),
            plan,
            clock: Clock::new(SCALE),
            linger: false,
        },
        etx,
        crx,
    ));
    let mut events = Vec::new();
    while let Some(e) = erx.recv().await {
        events.push(e);
    }
    drop(ctx);
    let summary = engine.await.expect("engine");
    let debug = format!(
        "{config:?}\n{client_config:?}\n{client:?}\n{:?}",
        sim.stats()
    );
    sim.shutdown().await;
    Run {
        secret,
        summary,
        events,
        debug,
        out,
    }
}

fn private_file(path: &Path, content: &str) {
    std::fs::write(path, content).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

/// Every file under `dir` (outputs, per-VM files, a journal if there is one), except the
/// secret file the test itself wrote.
fn files_under(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, found);
        } else if path.file_name().is_some_and(|n| n != "secret") {
            found.push(path);
        }
    }
}

fn assert_nowhere(run: &Run) {
    let secret = run.secret.as_str();
    assert!(secret.len() >= 16, "a real secret: {}", secret.len());
    // The run did real work, with failures and their texts.
    assert!(run.summary.count("verified") >= 2, "{:#?}", run.summary);
    let errors: Vec<&str> = run
        .summary
        .vms
        .iter()
        .filter_map(|v| v.error.as_deref())
        .collect();
    assert!(!errors.is_empty(), "the run produced error texts");
    for e in &errors {
        assert!(!e.contains(secret), "error text: {e}");
    }
    let events = format!("{:?}", run.events);
    assert!(!events.contains(secret), "an event carries the secret");

    let mut files = Vec::new();
    files_under(run.out.path(), &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("summary.json"))
            && files.iter().any(|f| f.ends_with("inventory.ini")),
        "{files:?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).expect("read output");
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} contains the secret",
            file.display()
        );
    }
    assert!(!run.debug.contains(secret), "Debug output has the secret");

    let log = log_text();
    assert!(!log.contains(secret), "a log line carries the secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_secret_appears_nowhere() {
    let run = rollout(How::Token).await;
    assert_nowhere(&run);
    // TRACE was on and caught the client's own lines (spawned tasks included).
    let log = log_text();
    assert!(log.contains("TRACE"), "no trace events captured");
    assert!(
        log.contains("/cluster/resources"),
        "client calls not captured"
    );
    // Clones are sent from the engine's spawned VM tasks: those were captured too.
    assert!(log.contains("/clone"), "spawned tasks' events not captured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_appears_nowhere() {
    let run = rollout(How::Password).await;
    assert_nowhere(&run);
    assert!(
        log_text().contains(&format!("as {USER}")),
        "the login was logged"
    );

    // A wrong password: the refusal names the user, never the password tried.
    let sim = sim::start(SimOptions {
        time_scale: SCALE,
        users: vec![(USER.to_string(), PASSWORD.to_string())],
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    let wrong = "Wr0ng-but-still-secret-pw";
    let mut cc = demo::client_config(&sim, 2, SCALE);
    cc.auth = Auth::Password {
        user: USER.into(),
        password: Secret::new(wrong),
    };
    let client = Client::new(cc.clone()).expect("client");
    let e = client.version().await.expect_err("wrong password");
    let text = format!("{e} {e:?} {cc:?} {client:?}");
    assert!(!text.contains(wrong), "{text}");
    assert!(
        !log_text().contains(wrong),
        "a log line carries the wrong password"
    );
    sim.shutdown().await;
}
