//! The command line as an operator meets it: the binary run as a child process with its own
//! working directory and environment (never this process's), so the tests cannot race.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_pve-rollout");

/// `pve-rollout ARGS` in `cwd` with only the given environment (plus PATH for bash).
fn run(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).current_dir(cwd).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("pve-rollout runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_bash_completion_loads_in_bash() {
    let dir = Path::new(BIN).parent().expect("bin dir");
    let script = format!(
        "source <('{}' completions bash) && complete -p pve-rollout",
        BIN.replace('\'', r"'\''")
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .current_dir(dir)
        .output()
        .expect("bash runs");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "bash: {}", text(&out.stderr));
    assert!(
        stdout.contains("complete") && stdout.contains("pve-rollout"),
        "{stdout}"
    );
    // It completes the subcommands, the new ones included.
    let script = format!(
        "source <('{}' completions bash) && COMP_WORDS=(pve-rollout '') COMP_CWORD=1 \
         && _pve__rollout pve-rollout '' pve-rollout && echo \"${{COMPREPLY[@]}}\"",
        BIN.replace('\'', r"'\''")
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .output()
        .expect("bash runs");
    let words = text(&out.stdout);
    for sub in ["deploy", "plan", "init", "import-tf", "completions", "man"] {
        assert!(
            words.split_whitespace().any(|w| w == sub),
            "{sub} not completed: {words}"
        );
    }
}

#[test]
fn every_shell_gets_a_script_and_man_prints_a_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(dir.path(), &[], &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("pve-rollout"), "{shell}");
    }
    let out = run(dir.path(), &[], &["man"]);
    let page = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(page.contains(".TH pve-rollout 1"), "{page}");
    let pages = dir.path().join("man1");
    let out = run(dir.path(), &[], &["man", "--dir", "man1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for name in [
        "pve-rollout.1",
        "pve-rollout-deploy.1",
        "pve-rollout-init.1",
    ] {
        assert!(pages.join(name).is_file(), "{name} not written");
    }
}

/// A deploy.toml that fails validation in a way that names its own path: enough to see which
/// file was picked without a cluster.
fn bad_config(path: &Path) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        path,
        "[proxmox]\nurl = \"https://pve.invalid:8006\"\ntoken_id = \"root@pam!x\"\n\n[rollout]\nvm_count = 0\nnodes = [\"pve1\"]\n",
    )
    .expect("write");
}

#[test]
fn plan_finds_its_config_in_order_and_says_where_it_looked() {
    let root = tempfile::tempdir().expect("tempdir");
    let work = root.path().join("work");
    let home = root.path().join("home");
    std::fs::create_dir_all(&work).expect("mkdir");
    let home_s = home.to_str().expect("utf-8 path");

    let out = run(&work, &[("HOME", home_s)], &["plan"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("$PVE_ROLLOUT_CONFIG (not set)"), "{err}");
    assert!(
        err.contains(&work.join("deploy.toml").display().to_string()),
        "{err}"
    );
    assert!(
        err.contains(
            &home
                .join(".config/pve-rollout/deploy.toml")
                .display()
                .to_string()
        ),
        "{err}"
    );

    let in_home = home.join(".config/pve-rollout/deploy.toml");
    bad_config(&in_home);
    let out = run(&work, &[("HOME", home_s)], &["plan"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains(&in_home.display().to_string()) && err.contains("vm_count"),
        "{err}"
    );

    let xdg = root.path().join("xdg");
    let in_xdg = xdg.join("pve-rollout/deploy.toml");
    bad_config(&in_xdg);
    let env = [
        ("HOME", home_s),
        ("XDG_CONFIG_HOME", xdg.to_str().expect("utf-8")),
    ];
    let err = text(&run(&work, &env, &["plan"]).stderr);
    assert!(err.contains(&in_xdg.display().to_string()), "{err}");

    bad_config(&work.join("deploy.toml"));
    let err = text(&run(&work, &env, &["plan"]).stderr);
    assert!(
        err.contains(&work.join("deploy.toml").display().to_string()),
        "{err}"
    );

    let named = root.path().join("named.toml");
    bad_config(&named);
    let env = [
        ("HOME", home_s),
        ("PVE_ROLLOUT_CONFIG", named.to_str().expect("utf-8")),
    ];
    let err = text(&run(&work, &env, &["plan"]).stderr);
    assert!(err.contains(&named.display().to_string()), "{err}");

    let explicit = root.path().join("explicit.toml");
    bad_config(&explicit);
    let err = text(
        &run(
            &work,
            &env,
            &["plan", "-c", explicit.to_str().expect("utf-8")],
        )
        .stderr,
    );
    assert!(err.contains(&explicit.display().to_string()), "{err}");
}
