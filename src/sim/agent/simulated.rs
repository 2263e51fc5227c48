//! The modelled guest: Ubuntu 24.04 with qemu-guest-agent and cloud-init, one interface per NIC
//! carrying that NIC's MAC, its addresses (static or leased) after the DHCP delay, and a handful of commands for guest-exec.

use base64::Engine;
use serde_json::{Value, json};

use super::Reply;
use crate::sim::Shared;
use crate::sim::cluster::{ExecJob, Guest, Vm};
use crate::sim::params::Params;
use crate::sim::vmconfig;

const KERNEL: &str = "6.8.0-41-generic";
const KERNEL_VERSION: &str = "#41-Ubuntu SMP PREEMPT_DYNAMIC Fri Aug  2 20:41:06 UTC 2024";

fn stats() -> Value {
    json!({"rx-bytes": 48_211, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 402, "tx-bytes": 31_337, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 288})
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

pub fn interfaces(shared: &Shared, g: &Guest, now: f64) -> Value {
    let mut list = vec![json!({
        "name": "lo", "hardware-address": "00:00:00:00:00:00",
        "ip-addresses": [
            {"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
            {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128},
        ],
        "statistics": stats(),
    })];
    for nic in &g.nics {
        let mut addrs = Vec::new();
        if g.has_ip(now) {
            addrs.push(
                json!({"ip-address-type": "ipv4", "ip-address": nic.ipv4.to_string(), "prefix": nic.prefix}),
            );
            if let Some((ip6, prefix)) = nic.ipv6 {
                addrs.push(
                    json!({"ip-address-type": "ipv6", "ip-address": ip6.to_string(), "prefix": prefix}),
                );
            }
        }
        addrs.push(json!({"ip-address-type": "ipv6", "ip-address": vmconfig::link_local(&nic.mac), "prefix": 64}));
        list.push(json!({
            "name": nic.name(&shared.scenario.guest.nic_name), "hardware-address": nic.mac.to_lowercase(),
            "ip-addresses": addrs, "statistics": stats(),
        }));
    }
    if shared.scenario.guest.docker0 {
        list.push(json!({
            "name": "docker0", "hardware-address": "02:42:ac:11:00:01",
            "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "172.17.0.1", "prefix": 16}],
            "statistics": stats(),
        }));
    }
    Value::Array(list)
}

fn osinfo() -> Value {
    json!({
        "id": "ubuntu", "name": "Ubuntu", "pretty-name": "Ubuntu 24.04.1 LTS",
        "version": "24.04.1 LTS (Noble Numbat)", "version-id": "24.04",
        "kernel-release": KERNEL, "kernel-version": KERNEL_VERSION, "machine": "x86_64",
    })
}

pub fn command(shared: &Shared, node: &str, vmid: u32, cmd: &str, p: &Params) -> Reply {
    let now = shared.clock.now();
    let mut st = shared.state();
    let Ok(vm) = st.vm_on_mut(node, vmid) else {
        return Reply::Timeout;
    };
    let Some(g) = vm.guest.clone() else {
        return Reply::Timeout;
    };
    match cmd {
        "ping" | "fsfreeze-status" => Reply::Return(if cmd == "ping" {
            json!({})
        } else {
            json!("thawed")
        }),
        "network-get-interfaces" => {
            drop(st);
            Reply::Return(interfaces(shared, &g, now))
        }
        "get-osinfo" => Reply::Return(osinfo()),
        "get-host-name" => Reply::Return(json!({"host-name": vm.name()})),
        "info" => Reply::Return(json!({"version": "8.2.2", "supported_commands": []})),
        "get-time" => Reply::Return(json!((shared.clock.epoch() as i128) * 1_000_000_000)),
        "get-timezone" => Reply::Return(json!({"zone": "UTC", "offset": 0})),
        "get-fsinfo" | "get-users" | "get-memory-blocks" => Reply::Return(json!([])),
        "get-vcpus" => Reply::Return(Value::Array(
            (0..vm.cpus())
                .map(|i| json!({"logical-id": i, "online": true, "can-offline": i > 0}))
                .collect(),
        )),
        "get-memory-block-info" => Reply::Return(json!({"size": 134_217_728})),
        "fstrim" => Reply::Return(json!({"paths": []})),
        "shutdown" => Reply::Return(json!({})),
        "exec" => exec(vm, &g, now, shared.draw(shared.scenario.timing.exec_s), p),
        "exec-status" => exec_status(vm, now, p),
        _ => Reply::Error {
            class: "CommandNotFound".into(),
            desc: format!("The command guest-{cmd} has not been found"),
        },
    }
}

fn exec(vm: &mut Vm, g: &Guest, now: f64, runtime: f64, p: &Params) -> Reply {
    let argv: Vec<String> = p.values("command").to_vec();
    let input = p.get("input-data").unwrap_or_default();
    match run(&argv, &vm.name(), g, now, &input) {
        Err(desc) => Reply::Error {
            class: "GenericError".into(),
            desc,
        },
        Ok(out) => {
            vm.next_exec_pid += 1 + (vm.next_exec_pid % 3);
            let pid = vm.next_exec_pid;
            let done_at = now + runtime + out.extra_delay;
            vm.execs.insert(
                pid,
                ExecJob {
                    done_at,
                    exitcode: out.code,
                    out: out.stdout,
                    err: out.stderr,
                },
            );
            Reply::Return(json!({"pid": pid}))
        }
    }
}

fn exec_status(vm: &mut Vm, now: f64, p: &Params) -> Reply {
    let pid = p.int("pid").unwrap_or(-1);
    let invalid = || Reply::Error {
        class: "GenericError".into(),
        desc: "Invalid parameter 'pid'".into(),
    };
    let Some(job) = vm.execs.get(&pid) else {
        return invalid();
    };
    if job.done_at > now {
        return Reply::Return(json!({"exited": false}));
    }
    // QGA forgets the pid once it has reported the exit.
    let Some(job) = vm.execs.remove(&pid) else {
        return invalid();
    };
    let mut v = json!({"exited": true, "exitcode": job.exitcode});
    if !job.out.is_empty() {
        v["out-data"] = json!(b64(&job.out));
    }
    if !job.err.is_empty() {
        v["err-data"] = json!(b64(&job.err));
    }
    Reply::Return(v)
}

struct Output {
    code: i64,
    stdout: String,
    stderr: String,
    extra_delay: f64,
}

fn ok(stdout: impl Into<String>) -> Output {
    Output {
        code: 0,
        stdout: stdout.into(),
        stderr: String::new(),
        extra_delay: 0.0,
    }
}

fn fail(code: i64, stderr: impl Into<String>) -> Output {
    Output {
        code,
        stdout: String::new(),
        stderr: stderr.into(),
        extra_delay: 0.0,
    }
}

/// `cloud-init status [--wait] [--long]`: `running` until the guest's cloud-init ends, then
/// `done` (exit 0) or `error` (exit 1); `--wait` blocks until the end; `--long` adds the
/// extended status, the datasource and the errors, as cloud-init 24 prints them.
fn cloud_init_status(args: &[&str], g: &Guest, now: f64) -> Output {
    let wait = args.contains(&"--wait") || args.contains(&"-w");
    let long = args.contains(&"--long") || args.contains(&"-l");
    let end = g.cloud_init_at;
    let (delay, ended) = match end {
        Some(t) if wait => ((t - now).max(0.0), true),
        Some(t) => (0.0, t <= now),
        None => (0.0, false),
    };
    let (status, code) = match (ended, g.cloud_init_failed) {
        (false, _) => ("running", 0),
        (true, false) => ("done", 0),
        (true, true) => ("error", 1),
    };
    let mut out = format!("status: {status}\n");
    if long {
        let extended = match status {
            "running" => "running",
            "done" => "done",
            _ => "error - done",
        };
        // Stamped with the seconds since boot, as cloud-init does before the clock is synced.
        let since_boot = end.filter(|_| ended).unwrap_or(now) - g.started_at;
        let stamp = jiff::Timestamp::from_second(since_boot.max(0.0) as i64)
            .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string())
            .unwrap_or_default();
        let errors = if status == "error" {
            "\n\t- ('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))"
        } else {
            " []"
        };
        out.push_str(&format!(
            "extended_status: {extended}\nboot_status_code: enabled-by-generator\nlast_update: {stamp}\ndetail: DataSourceNoCloud [seed=/dev/sr0]\nerrors:{errors}\nrecoverable_errors: {{}}\n"
        ));
    }
    Output {
        code,
        stdout: out,
        stderr: String::new(),
        extra_delay: delay,
    }
}

const BIN_DIRS: &[&str] = &[
    "/usr/bin/",
    "/bin/",
    "/usr/sbin/",
    "/sbin/",
    "/usr/local/bin/",
];
const PROGRAMS: &[&str] = &[
    "uname",
    "hostname",
    "systemctl",
    "cloud-init",
    "true",
    "false",
    "echo",
    "cat",
    "sleep",
    "whoami",
    "id",
    "sh",
    "bash",
    "ls",
    "test",
    "uptime",
];

fn os_release() -> &'static str {
    "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nVERSION=\"24.04.1 LTS (Noble Numbat)\"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n"
}

/// Runs a command in the modelled guest; `Err` is QGA's spawn failure text.
fn run(argv: &[String], host: &str, g: &Guest, now: f64, input: &str) -> Result<Output, String> {
    let Some(prog) = argv.first() else {
        return Err("Guest agent command failed, error was 'Failed to execute child process “” (No such file or directory)'".into());
    };
    let base = BIN_DIRS
        .iter()
        .find_map(|d| prog.strip_prefix(d))
        .unwrap_or(prog);
    if !PROGRAMS.contains(&base) {
        return Err(format!(
            "Guest agent command failed, error was 'Failed to execute child process “{prog}” (No such file or directory)'"
        ));
    }
    let args: Vec<&str> = argv[1..].iter().map(|s| s.as_str()).collect();
    Ok(match base {
        "true" => ok(""),
        "false" => fail(1, ""),
        "hostname" => ok(format!("{host}\n")),
        "whoami" => ok("root\n"),
        "id" => ok(if args.contains(&"-un") {
            "root\n".to_string()
        } else {
            "uid=0(root) gid=0(root) groups=0(root)\n".into()
        }),
        "uptime" => ok(format!(
            " {:02}:00:00 up 0 min,  0 users,  load average: 0.08, 0.03, 0.01\n",
            12
        )),
        "echo" => {
            let (newline, words) = match args.first() {
                Some(&"-n") => (false, &args[1..]),
                _ => (true, &args[..]),
            };
            ok(format!(
                "{}{}",
                words.join(" "),
                if newline { "\n" } else { "" }
            ))
        }
        "uname" => {
            let all =
                format!("Linux {host} {KERNEL} {KERNEL_VERSION} x86_64 x86_64 x86_64 GNU/Linux");
            let parts: Vec<String> = if args.is_empty() {
                vec!["Linux".into()]
            } else if args.contains(&"-a") || args.contains(&"--all") {
                vec![all]
            } else {
                args.iter()
                    .filter_map(|a| match *a {
                        "-s" => Some("Linux".to_string()),
                        "-n" => Some(host.to_string()),
                        "-r" => Some(KERNEL.to_string()),
                        "-v" => Some(KERNEL_VERSION.to_string()),
                        "-m" | "-p" | "-i" => Some("x86_64".to_string()),
                        "-o" => Some("GNU/Linux".to_string()),
                        _ => None,
                    })
                    .collect()
            };
            ok(format!("{}\n", parts.join(" ")))
        }
        "systemctl" => match args.as_slice() {
            ["is-active", units @ ..] if !units.is_empty() => {
                let mut out = String::new();
                let mut code = 0;
                for u in units {
                    let u = u.trim_end_matches(".service");
                    if matches!(
                        u,
                        "qemu-guest-agent"
                            | "ssh"
                            | "sshd"
                            | "systemd-networkd"
                            | "cloud-init"
                            | "cloud-final"
                    ) {
                        out.push_str("active\n");
                    } else {
                        out.push_str("inactive\n");
                        code = 3;
                    }
                }
                Output {
                    code,
                    stdout: out,
                    stderr: String::new(),
                    extra_delay: 0.0,
                }
            }
            ["is-system-running", ..] => ok("running\n"),
            _ => ok(""),
        },
        "cloud-init" => match args.first() {
            Some(&"status") => cloud_init_status(&args, g, now),
            _ => fail(
                2,
                "usage: cloud-init [-h] [--version] [--debug] [--force] {init,modules,single,query,features,analyze,devel,collect-logs,clean,status,schema} ...\n",
            ),
        },
        "cat" => {
            if args.is_empty() {
                ok(input.to_string())
            } else {
                let mut out = String::new();
                let mut err = String::new();
                for f in &args {
                    match *f {
                        "/etc/os-release" | "/usr/lib/os-release" => out.push_str(os_release()),
                        "/etc/hostname" => out.push_str(&format!("{host}\n")),
                        other => {
                            err.push_str(&format!("cat: {other}: No such file or directory\n"))
                        }
                    }
                }
                Output {
                    code: if err.is_empty() { 0 } else { 1 },
                    stdout: out,
                    stderr: err,
                    extra_delay: 0.0,
                }
            }
        }
        "sleep" => {
            let secs: f64 = args
                .first()
                .and_then(|a| a.trim_end_matches('s').parse().ok())
                .unwrap_or(0.0);
            Output {
                code: 0,
                stdout: String::new(),
                stderr: String::new(),
                extra_delay: secs,
            }
        }
        "ls" => ok(
            "bin\nboot\ndev\netc\nhome\nlib\nmnt\nopt\nproc\nroot\nrun\nsbin\nsrv\nsys\ntmp\nusr\nvar\n",
        ),
        "test" => ok(""),
        _ => match args.as_slice() {
            ["-c", script] => shell(script, host, g, now, input),
            _ => ok(""),
        },
    })
}

/// `sh -c script`: simple commands (no quoting) joined by `&&` (the next runs only if the last
/// exited 0) or `;`, their output in order; the exit code is the last run's, 127 for a command
/// that does not exist.
fn shell(script: &str, host: &str, g: &Guest, now: f64, input: &str) -> Output {
    let mut out = ok("");
    let mut words: Vec<String> = Vec::new();
    let mut tokens = script
        .replace(';', " ; ")
        .replace("&&", " && ")
        .split_whitespace()
        .map(str::to_string)
        .collect::<Vec<_>>();
    tokens.push(";".into());
    // After a failed command and `&&`, the commands up to the next `;` are skipped.
    let mut skipping = false;
    for token in tokens {
        if token != "&&" && token != ";" {
            words.push(token);
            continue;
        }
        if skipping {
            skipping = token == "&&";
            words.clear();
            continue;
        }
        if !words.is_empty() {
            let step = run(&words, host, g, now + out.extra_delay, input)
                .unwrap_or_else(|_| fail(127, format!("sh: 1: {}: not found\n", words[0])));
            out.stdout.push_str(&step.stdout);
            out.stderr.push_str(&step.stderr);
            out.extra_delay += step.extra_delay;
            out.code = step.code;
            words.clear();
        }
        skipping = token == "&&" && out.code != 0;
    }
    out
}
