//! `checks.cloud_init`: a guest whose cloud-init failed fails its VM with the detail of
//! `cloud-init status --long` (which module, the datasource) in the reason, the summary and the
//! log, not only `status: error`.

mod common;

use common::*;
use pve_rollout::engine::event::Event;
use pve_rollout::sim::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cloud_init_fails_the_vm_with_the_long_status() {
    let mut scenario = Scenario::builtin("fast").expect("fast");
    scenario.faults.cloud_init_error = vec![2];
    let settings = quick(2);
    let mut h = Harness::start_with(scenario, 51, 0.02, settings).await;
    h.config.checks.cloud_init = true;
    let (summary, events) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified", "failed"], "{summary:#?}");
    let error = summary.vms[1].error.clone().unwrap_or_default();
    assert_eq!(
        error,
        "cloud-init reported an error: status: error; detail: DataSourceNoCloud [seed=/dev/sr0]; \
         errors: ('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))"
    );
    let logged: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Log {
                vm: Some(1), text, ..
            } if text.starts_with("cloud-init status --long: ") => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        logged.contains(&"cloud-init status --long: extended_status: error - done"),
        "{logged:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Log { vm: Some(0), text, .. }
            if text.starts_with("cloud-init status --long"))),
        "the VM whose cloud-init is done runs no long status"
    );
}
