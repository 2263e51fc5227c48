use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn phases(list: &[(&str, &str, Option<&str>)]) -> IndexMap<String, PhaseTimes> {
    list.iter()
        .map(|(name, started, finished)| {
            (
                name.to_string(),
                PhaseTimes {
                    started: Some(at(started)),
                    finished: finished.map(at),
                },
            )
        })
        .collect()
}

fn sample() -> Summary {
    Summary {
        schema_version: SCHEMA_VERSION,
        on_finished: None,
        rollout: RolloutInfo {
            id: "web-rollout".into(),
            proxmox_url: "https://pve1.example.org:8006".into(),
            template: "ubuntu".into(),
            mode: "pipelined".into(),
            vm_count: 3,
            deployment_delay: "30s".into(),
            nodes: vec!["pve1".into(), "pve-2".into()],
            started: at("2026-11-25T17:00:00.000Z"),
            finished: Some(at("2026-11-25T17:05:30.250Z")),
            aborted: false,
        },
        vms: vec![
            VmSummary {
                name: "web-1".into(),
                vmid: 101,
                node: "pve1".into(),
                state: "verified".into(),
                ip: Some("10.0.0.11".into()),
                ip_candidates: vec!["10.0.0.11".into(), "172.17.0.1".into()],
                uname: Some(
                    "Linux web-1 6.8.0-45-generic #45-Ubuntu SMP x86_64 GNU/Linux\n".into(),
                ),
                os: Some("Ubuntu 24.04.1 LTS".into()),
                attempts: 1,
                error: None,
                checks: Vec::new(),
                hook: None,
                phases: phases(&[
                    (
                        "cloning",
                        "2026-11-25T17:00:00.000Z",
                        Some("2026-11-25T17:00:40.500Z"),
                    ),
                    (
                        "configuring",
                        "2026-11-25T17:00:40.500Z",
                        Some("2026-11-25T17:00:42.000Z"),
                    ),
                    (
                        "booting",
                        "2026-11-25T17:00:42.000Z",
                        Some("2026-11-25T17:00:45.000Z"),
                    ),
                    (
                        "awaiting-agent",
                        "2026-11-25T17:00:45.000Z",
                        Some("2026-11-25T17:01:30.000Z"),
                    ),
                    (
                        "ip-found",
                        "2026-11-25T17:01:30.000Z",
                        Some("2026-11-25T17:01:31.000Z"),
                    ),
                    (
                        "verifying",
                        "2026-11-25T17:01:31.000Z",
                        Some("2026-11-25T17:02:10.123Z"),
                    ),
                ]),
                nics: Vec::new(),
                pool: None,
                tags: Vec::new(),
            },
            VmSummary {
                name: "web-2".into(),
                vmid: 102,
                node: "pve-2".into(),
                state: "failed".into(),
                ip: None,
                ip_candidates: vec![],
                uname: None,
                os: None,
                attempts: 2,
                error: Some("awaiting-agent: QEMU guest agent is not running | after 15m".into()),
                checks: Vec::new(),
                hook: None,
                phases: phases(&[
                    (
                        "cloning",
                        "2026-11-25T17:00:30.000Z",
                        Some("2026-11-25T17:01:10.000Z"),
                    ),
                    ("awaiting-agent", "2026-11-25T17:01:20.000Z", None),
                ]),
                nics: Vec::new(),
                pool: None,
                tags: Vec::new(),
            },
            VmSummary {
                name: "web-3".into(),
                vmid: 103,
                node: "pve-2".into(),
                state: "ip-found".into(),
                ip: Some("192.168.7.3".into()),
                ip_candidates: vec!["192.168.7.3".into()],
                uname: None,
                os: None,
                attempts: 1,
                error: None,
                phases: IndexMap::new(),
                checks: Vec::new(),
                hook: None,
                nics: Vec::new(),
                pool: None,
                tags: Vec::new(),
            },
        ],
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn writes_every_file_and_reports_the_paths_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out/nested");
    let paths = write_all(&dir, &sample()).unwrap();
    let names: Vec<_> = paths
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "summary.json",
            "summary.md",
            "inventory.ini",
            "vm_101_summary.txt",
            "vm_101_ip.txt",
            "vm_102_summary.txt",
            "vm_103_summary.txt",
            "vm_103_ip.txt",
        ]
    );
    // No temp file left behind, nothing else written.
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listing(&dir), expected);
}

/// A VM's files written when it settled are left as they are by the final export (same text:
/// the same file, not a new one renamed over it), and the rollout's end is not in them; a file
/// whose text changed is written again, the others are not.
#[test]
fn files_written_when_a_vm_settled_are_kept_by_the_final_export() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut s = sample();
    s.rollout.finished = None;
    let early = write_vm_files(dir, &s.rollout, &s.vms[0]).unwrap();
    let names: Vec<_> = early
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["vm_101_summary.txt", "vm_101_ip.txt"]);
    let inode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().ino();
    let before = (inode("vm_101_summary.txt"), inode("vm_101_ip.txt"));
    // The rollout ends: the same VM 101, now with the rollout's end in summary.md and .json.
    let mut end = sample();
    write_all(dir, &end).unwrap();
    assert_eq!(
        (inode("vm_101_summary.txt"), inode("vm_101_ip.txt")),
        before,
        "unchanged files kept"
    );
    let other = inode("vm_102_summary.txt");
    end.vms[0].ip = Some("10.0.0.99".into());
    write_all(dir, &end).unwrap();
    assert_ne!(
        inode("vm_101_ip.txt"),
        before.1,
        "a changed file is written again"
    );
    assert_ne!(inode("vm_101_summary.txt"), before.0, "it names the IP too");
    assert_eq!(inode("vm_102_summary.txt"), other, "the others are kept");
    assert_eq!(
        std::fs::read_to_string(dir.join("vm_101_ip.txt")).unwrap(),
        "10.0.0.99\n"
    );
    assert_eq!(listing(dir).len(), 8, "{:?}", listing(dir));
}

#[test]
fn summary_json_round_trips_with_millisecond_utc_times() {
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), &sample()).unwrap();
    let text = std::fs::read_to_string(tmp.path().join("summary.json")).unwrap();
    let back: Summary = serde_json::from_str(&text).unwrap();
    assert_eq!(back, sample());
    assert!(text.contains("\"schema_version\": 2"), "{text}");
    assert!(
        text.contains("\"finished\": \"2026-11-25T17:05:30.250Z\""),
        "{text}"
    );
    assert!(
        text.contains("\"finished\": \"2026-11-25T17:02:10.123Z\""),
        "{text}"
    );
    assert!(text.contains("\"finished\": null"), "{text}");
    assert!(text.ends_with("}\n"));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Phases keep their order in the file (serde_json's Value would sort them, so look at text).
    let order: Vec<usize> = [
        "cloning",
        "configuring",
        "booting",
        "awaiting-agent",
        "ip-found",
        "verifying",
    ]
    .iter()
    .map(|k| text.find(&format!("\"{k}\": {{")).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert_eq!(
        value["vms"][1]["error"],
        "awaiting-agent: QEMU guest agent is not running | after 15m"
    );
}

#[test]
fn inventory_groups_hosts_by_node_and_verified() {
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), &sample()).unwrap();
    let text = std::fs::read_to_string(tmp.path().join("inventory.ini")).unwrap();
    assert_eq!(
        text,
        "# Ansible inventory written by pve-rollout for rollout web-rollout\n\
         # 1 verified, 1 failed, 0 skipped, 1 unfinished of 3\n\
         \n[pve1]\nweb-1 ansible_host=10.0.0.11\n\
         \n[pve_2]\nweb-3 ansible_host=192.168.7.3\n\
         \n[verified]\nweb-1 ansible_host=10.0.0.11\n\
         \n[pve_rollout:children]\npve1\npve_2\n"
    );
}

#[test]
fn ansible_group_names_are_safe() {
    assert_eq!(group_name("pve1"), "pve1");
    assert_eq!(group_name("pve-2.lab"), "pve_2_lab");
    assert_eq!(group_name("1node"), "node_1node");
    assert_eq!(group_name("verified"), "node_verified");
    assert_eq!(group_name("all"), "node_all");
}

#[test]
fn seed_files_per_vm() {
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), &sample()).unwrap();
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap();
    assert_eq!(read("vm_101_ip.txt"), "10.0.0.11\n");
    assert_eq!(read("vm_103_ip.txt"), "192.168.7.3\n");
    assert!(!tmp.path().join("vm_102_ip.txt").exists());

    let ok = read("vm_101_summary.txt");
    for line in [
        "Deployment summary for web-1 (VM 101)",
        "VM name:       web-1",
        "VM id:         101",
        "Node:          pve1",
        "State:         verified",
        "IP address:    10.0.0.11",
        "IP candidates: 10.0.0.11, 172.17.0.1",
        "OS:            Ubuntu 24.04.1 LTS",
        "uname -a:      Linux web-1 6.8.0-45-generic #45-Ubuntu SMP x86_64 GNU/Linux",
        "Attempts:      1",
        "Total time:    2m10s",
        "  cloning         2026-11-25T17:00:00.000Z  2026-11-25T17:00:40.500Z  40.5s",
        "  verifying       2026-11-25T17:01:31.000Z  2026-11-25T17:02:10.123Z  39.1s",
        "  id             web-rollout",
    ] {
        assert!(ok.lines().any(|l| l == line), "missing {line:?} in\n{ok}");
    }
    assert!(!ok.contains("Error:"));

    let failed = read("vm_102_summary.txt");
    for line in [
        "State:         failed",
        "IP address:    -",
        "IP candidates: -",
        "Attempts:      2",
        "Error:         awaiting-agent: QEMU guest agent is not running | after 15m",
        "  awaiting-agent  2026-11-25T17:01:20.000Z  -                         -",
    ] {
        assert!(
            failed.lines().any(|l| l == line),
            "missing {line:?} in\n{failed}"
        );
    }
    assert!(read("vm_103_summary.txt").contains("  (none started)"));
}

#[test]
fn summary_md_has_the_table_details_and_phase_durations() {
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), &sample()).unwrap();
    let md = std::fs::read_to_string(tmp.path().join("summary.md")).unwrap();
    for line in [
        "# Rollout web-rollout",
        "- Finished: 2026-11-25T17:05:30.250Z (after 5m30s)",
        "- Result: 1 verified, 1 failed, 0 skipped, 1 unfinished of 3",
        "| VM | VMID | Node | State | IP | Attempts | Time |",
        "| web-1 | 101 | pve1 | verified | 10.0.0.11 | 1 | 2m10s |",
        "| web-2 | 102 | pve-2 | failed | - | 2 | 50.0s |",
        "| web-3 | 103 | pve-2 | ip-found | 192.168.7.3 | 1 | - |",
        "## web-2 (102)",
        "- Error: awaiting-agent: QEMU guest agent is not running | after 15m",
        "- uname: `Linux web-1 6.8.0-45-generic #45-Ubuntu SMP x86_64 GNU/Linux`",
        "| awaiting-agent | 2026-11-25T17:00:45.000Z | 2026-11-25T17:01:30.000Z | 45.0s |",
        "| awaiting-agent | 2026-11-25T17:01:20.000Z | - | - |",
    ] {
        assert!(md.lines().any(|l| l == line), "missing {line:?} in\n{md}");
    }
    assert!(!md.contains("Aborted"));
}

#[test]
fn cells_cannot_break_the_markdown_table() {
    assert_eq!(cell("a|b\nc"), "a\\|b c");
}

#[test]
fn aborted_rollouts_say_so() {
    let mut summary = sample();
    summary.rollout.aborted = true;
    summary.rollout.finished = None;
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), &summary).unwrap();
    let md = std::fs::read_to_string(tmp.path().join("summary.md")).unwrap();
    assert!(md.contains("- **Aborted** by the operator"), "{md}");
    assert!(md.contains("- Finished: not yet"), "{md}");
}

#[test]
fn rewriting_replaces_files_and_leaves_no_temp() {
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), &sample()).unwrap();
    let mut summary = sample();
    summary.vms[0].ip = Some("10.0.0.99".into());
    write_all(tmp.path(), &summary).unwrap();
    let ip = std::fs::read_to_string(tmp.path().join("vm_101_ip.txt")).unwrap();
    assert_eq!(ip, "10.0.0.99\n");
    assert!(
        listing(tmp.path()).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        listing(tmp.path())
    );
}

#[test]
fn a_file_in_the_way_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("out");
    std::fs::write(&blocker, "x").unwrap();
    let err = write_all(&blocker, &sample()).unwrap_err();
    assert!(matches!(err, ReportError::CreateDir { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("cannot create the output directory"),
        "{err}"
    );
    // A directory where a file should go: the write fails, the temp file is cleaned up.
    let dir = tmp.path().join("d");
    std::fs::create_dir_all(dir.join("summary.json")).unwrap();
    let err = write_all(&dir, &sample()).unwrap_err();
    assert!(err.to_string().contains("summary.json"), "{err}");
    assert_eq!(listing(&dir), ["summary.json"]);
}

#[test]
fn elapsed_and_formatting() {
    assert_eq!(format_elapsed(Duration::from_millis(850)), "850ms");
    assert_eq!(format_elapsed(Duration::from_millis(12_345)), "12.3s");
    assert_eq!(format_elapsed(Duration::from_secs(123)), "2m03s");
    assert_eq!(format_elapsed(Duration::from_secs(3720)), "1h02m");
    let s = sample();
    assert_eq!(s.vms[0].elapsed(), Some(Duration::from_millis(130_123)));
    assert_eq!(s.vms[2].elapsed(), None);
    assert_eq!(s.count("verified"), 1);
}

#[test]
fn checks_and_hooks_are_in_the_per_vm_file_and_the_markdown() {
    let mut s = sample();
    s.vms[0].checks = vec![CheckReport {
        name: "ssh listens".into(),
        passed: false,
        exit_code: Some(1),
        runs: 2,
        error: Some("exit 1, expected 0".into()),
        stdout_tail: vec![],
        stderr_tail: vec!["port 22 closed".into()],
    }];
    s.vms[0].hook = Some(HookReport {
        state: "failed".into(),
        exit_code: Some(3),
        result: Some("exit 3".into()),
        tail: vec!["unreachable".into()],
    });
    s.on_finished = Some(HookReport {
        state: "succeeded".into(),
        exit_code: Some(0),
        result: Some("exit 0".into()),
        tail: vec![],
    });
    let text = vm_text(&s.rollout, &s.vms[0]);
    assert!(
        text.contains(
            "  ssh listens: failed: exit 1, expected 0 (2 runs)\n    stderr| port 22 closed\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("on_verified hook: failed (exit 3)\n    | unreachable\n"),
        "{text}"
    );
    let md = markdown(&s);
    assert!(
        md.contains("- Check \"ssh listens\": failed: exit 1, expected 0 (2 runs)"),
        "{md}"
    );
    assert!(md.contains("- Hook: failed (exit 3)"), "{md}");
    assert!(
        md.contains("- on_finished hook: succeeded (exit 0)"),
        "{md}"
    );
    // A summary without them reads as before, and the JSON carries them.
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json["vms"][0]["checks"][0]["stderr_tail"][0],
        "port 22 closed"
    );
    assert_eq!(json["vms"][0]["hook"]["exit_code"], 3);
    assert_eq!(json["on_finished"]["state"], "succeeded");
}

#[test]
fn the_per_vm_inventory_holds_that_vm_alone_as_verified() {
    let dir = tempfile::tempdir().unwrap();
    let s = sample();
    // Not yet `verified` in the record when its hook starts: the inventory says it is.
    let vm = &s.vms[2];
    let path = write_vm_inventory(dir.path(), &s.rollout.id, vm).unwrap();
    assert_eq!(
        path,
        dir.path().join(format!("vm_{}_inventory.ini", vm.vmid))
    );
    let text = std::fs::read_to_string(path).unwrap();
    let host = format!("{} ansible_host={}", vm.name, vm.ip.as_deref().unwrap());
    assert!(text.contains(&format!("[verified]\n{host}\n")), "{text}");
    for other in s.vms.iter().filter(|o| o.name != vm.name) {
        assert!(!text.contains(&other.name), "{text}");
    }
}

#[test]
fn summary_md_ends_with_a_mermaid_gantt_of_every_vms_phases() {
    let md = markdown(&sample());
    let start = md.find("```mermaid\n").expect("a mermaid block");
    let chart = &md[start..];
    assert!(
        chart.ends_with("```\n"),
        "the chart is the last thing:\n{chart}"
    );
    let lines: Vec<&str> = chart.lines().collect();
    assert_eq!(lines[1], "gantt");
    assert!(lines.contains(&"    dateFormat x"));
    assert!(lines.contains(&"    axisFormat %H:%M:%S"));
    let sections: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("    section "))
        .collect();
    assert_eq!(sections, ["web-1 (101)", "web-2 (102)", "web-3 (103)"]);
    // Every task line: `<phase> :<tag>, <unique id>, <start ms>, <end ms>` with start <= end.
    let mut ids = std::collections::BTreeSet::new();
    let mut tasks = Vec::new();
    for line in lines.iter().filter(|l| l.contains(" :")) {
        let (name, rest) = line.trim().split_once(" :").expect("name :spec");
        let parts: Vec<&str> = rest.split(", ").collect();
        assert_eq!(parts.len(), 4, "{line}");
        assert!(["done", "active", "crit"].contains(&parts[0]), "{line}");
        assert!(ids.insert(parts[1].to_string()), "duplicate id in {line}");
        let start: i64 = parts[2].parse().expect("start ms");
        let end: i64 = parts[3].parse().expect("end ms");
        assert!(start <= end, "{line}");
        tasks.push((name.to_string(), parts[0].to_string(), start, end));
    }
    // web-1's six phases, web-2's two (the open one where it failed is crit, up to the end).
    assert_eq!(tasks.len(), 8, "{chart}");
    assert_eq!(
        tasks[0],
        (
            "cloning".to_string(),
            "done".to_string(),
            at("2026-11-25T17:00:00.000Z").as_millisecond(),
            at("2026-11-25T17:00:40.500Z").as_millisecond()
        )
    );
    assert_eq!(tasks[7].0, "awaiting-agent");
    assert_eq!(tasks[7].1, "crit");
    assert_eq!(tasks[7].3, at("2026-11-25T17:05:30.250Z").as_millisecond());
}

#[test]
fn nics_pool_and_tags_are_in_the_json_the_markdown_and_the_per_vm_file() {
    let mut s = sample();
    s.vms[0].nics = vec![
        NicSummary {
            name: "net0".into(),
            mac: Some("BC:24:11:00:00:01".into()),
            bridge: "vmbr1".into(),
            vlan: None,
            expected: vec![],
            reported: vec!["10.20.0.104".into()],
        },
        NicSummary {
            name: "net1".into(),
            mac: Some("BC:24:11:00:00:02".into()),
            bridge: "vmbr2".into(),
            vlan: Some(20),
            expected: vec!["10.0.20.20/24".into()],
            reported: vec!["10.0.20.20".into()],
        },
    ];
    s.vms[0].pool = Some("web".into());
    s.vms[0].tags = vec!["prod".into(), "pve-rollout".into()];
    let net1 = "net1 on vmbr2 VLAN 20 (MAC BC:24:11:00:00:02): 10.0.20.20, expected 10.0.20.20/24";
    assert!(vm_text(&s.rollout, &s.vms[0]).contains(&format!(
        "NICs:\n  net0 on vmbr1 (MAC BC:24:11:00:00:01): 10.20.0.104\n  {net1}\n"
    )));
    assert!(markdown(&s).contains(&format!("- NIC {net1}\n")));
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["vms"][0]["nics"][1]["vlan"], 20);
    assert_eq!(json["vms"][0]["nics"][1]["expected"][0], "10.0.20.20/24");
    assert_eq!(json["vms"][0]["pool"], "web");
    assert_eq!(json["vms"][0]["tags"][1], "pve-rollout");
    // A schema 1 file (no nics, pool or tags) still reads.
    let mut old = serde_json::to_value(sample()).unwrap();
    old["schema_version"] = 1.into();
    for vm in old["vms"].as_array_mut().unwrap() {
        let vm = vm.as_object_mut().unwrap();
        for key in ["nics", "pool", "tags"] {
            vm.remove(key);
        }
    }
    let read: Summary = serde_json::from_value(old).unwrap();
    assert_eq!(read.vms, sample().vms);
}
