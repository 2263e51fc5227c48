//! The demo and the tests' harness: a deploy.toml and a client for the built-in simulator, so a
//! rollout against it goes through exactly the same config parsing and client as a real one.

use std::path::PathBuf;

use crate::config::{Config, ConfigError};
use crate::pve::{Auth, Client, ClientConfig, PveError, Secret, TlsTrust};
use crate::sim::Sim;

/// What a demo (or a test) rollout varies; everything else is the original wait_for_vm.sh flow's
/// default.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    pub vms: usize,
    /// `pipelined` or `sequential`.
    pub mode: String,
    pub output: PathBuf,
    pub storage: String,
    pub memory_mib: u64,
    pub deployment_delay: String,
    pub stabilization: String,
    pub agent_timeout: String,
    pub ip_timeout: String,
    pub cloud_init: bool,
    /// Requests in flight over all nodes, and per serving node.
    pub max_in_flight: usize,
    pub max_in_flight_per_node: usize,
    /// Nodes to place VMs on (see [`online_nodes`]).
    pub nodes: Vec<String>,
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings {
            vms: 8,
            mode: "pipelined".into(),
            output: PathBuf::from("demo-out"),
            storage: "ssd".into(),
            memory_mib: 4096,
            deployment_delay: "2s".into(),
            stabilization: "5s".into(),
            agent_timeout: "10m".into(),
            ip_timeout: "30m".into(),
            cloud_init: false,
            max_in_flight: crate::pve::DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_per_node: crate::pve::DEFAULT_MAX_IN_FLIGHT_PER_NODE,
            nodes: vec!["pve1".into()],
        }
    }
}

/// Where a simulator listens and how to log in: enough for a rollout in another process (the
/// scale benchmark measures the engine's memory apart from the simulator's). No `Debug`: it
/// holds the token secret.
#[derive(Clone)]
pub struct SimAccess {
    pub url: String,
    pub token_id: String,
    pub token_secret: String,
    pub fingerprint: String,
}

impl SimAccess {
    pub fn of(sim: &Sim) -> SimAccess {
        SimAccess {
            url: sim.url(),
            token_id: sim.token_id(),
            token_secret: sim.token_secret(),
            fingerprint: sim.fingerprint(),
        }
    }
}

/// A deploy.toml for the simulator (the token secret is not in it: see [`client_config`]).
pub fn config_toml(sim: &Sim, s: &DemoSettings) -> String {
    config_toml_at(&SimAccess::of(sim), s)
}

/// [`config_toml`] for a simulator known by its address.
pub fn config_toml_at(sim: &SimAccess, s: &DemoSettings) -> String {
    let dir = s
        .output
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"[proxmox]
url = "{url}"
token_id = "{token_id}"
fingerprint = "{fingerprint}"
max_in_flight = {max_in_flight}
max_in_flight_per_node = {max_in_flight_per_node}

[rollout]
name = "demo"
template = "ubuntu"
vm_count = {vms}
max_vms = 1000
vm_name_prefix = "demo"
deployment_delay = "{delay}"
nodes = [{nodes}]

[defaults]
memory = {memory}
storage = "{storage}"

[checks]
mode = "{mode}"
stabilization = "{stabilization}"
agent_timeout = "{agent_timeout}"
ip_timeout = "{ip_timeout}"
cloud_init = {cloud_init}

[output]
dir = "{dir}"
"#,
        url = sim.url,
        token_id = sim.token_id,
        fingerprint = sim.fingerprint,
        max_in_flight = s.max_in_flight,
        max_in_flight_per_node = s.max_in_flight_per_node,
        vms = s.vms,
        delay = s.deployment_delay,
        nodes = s
            .nodes
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", "),
        memory = s.memory_mib,
        storage = s.storage,
        mode = s.mode,
        stabilization = s.stabilization,
        agent_timeout = s.agent_timeout,
        ip_timeout = s.ip_timeout,
        cloud_init = s.cloud_init,
    )
}

pub fn config(sim: &Sim, s: &DemoSettings) -> Result<Config, ConfigError> {
    config_at(&SimAccess::of(sim), s)
}

/// [`config`] for a simulator known by its address.
pub fn config_at(sim: &SimAccess, s: &DemoSettings) -> Result<Config, ConfigError> {
    Config::parse(&config_toml_at(sim, s), "demo")
}

/// A client for the simulator: its generated token, its certificate pinned by fingerprint.
pub fn client_config(sim: &Sim, max_in_flight: usize, time_scale: f64) -> ClientConfig {
    client_config_at(&SimAccess::of(sim), max_in_flight, time_scale)
}

/// [`client_config`] for a simulator known by its address: the settings a real run gets from
/// deploy.toml, with only the simulator's own token, its pinned certificate and its time scale.
pub fn client_config_at(sim: &SimAccess, max_in_flight: usize, time_scale: f64) -> ClientConfig {
    let token = Auth::Token {
        token_id: sim.token_id.clone(),
        secret: Secret::new(sim.token_secret.clone()),
    };
    ClientConfig::new(sim.url.clone(), token)
        .with_tls(TlsTrust::Fingerprint(sim.fingerprint.clone()))
        .with_max_in_flight(max_in_flight)
        .with_time_scale(time_scale)
}

/// The simulator's online nodes, in its order (the demo places VMs on all of them).
pub async fn online_nodes(client: &Client) -> Result<Vec<String>, PveError> {
    Ok(client
        .nodes()
        .await?
        .into_iter()
        .filter(|n| n.status == "online")
        .map(|n| n.node)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TOKEN_SECRET_ENV;

    /// The demo, the tests and the benches talk to the simulator with exactly the client
    /// settings a real run derives from deploy.toml (timeout, retries, in-flight cap, trust);
    /// only the simulator's token, certificate and time scale are its own.
    #[test]
    fn simulator_clients_get_the_production_settings() {
        let access = SimAccess {
            url: "https://127.0.0.1:40123".into(),
            token_id: "root@pam!rollout".into(),
            token_secret: "00000000-1111-2222-3333-444444444444".into(),
            fingerprint: vec!["AB"; 32].join(":"),
        };
        let settings = DemoSettings {
            max_in_flight: 3,
            ..DemoSettings::default()
        };
        let config = config_at(&access, &settings).expect("demo config parses");
        let secret = access.token_secret.clone();
        let production = config
            .client_config_with_env(0.01, &|name| {
                (name == TOKEN_SECRET_ENV).then(|| secret.clone())
            })
            .expect("client settings");
        let demo = client_config_at(&access, 3, 0.01);
        assert_eq!(demo, production);
        let defaults = ClientConfig::new("https://pve:8006", demo.auth.clone());
        assert_eq!(demo.request_timeout, defaults.request_timeout);
        assert_eq!(demo.retry, defaults.retry);
    }
}
