//! The typed calls: one method per endpoint the engine needs, each saying how it is encoded,
//! decoded and whether it may be repeated.
//!
//! Idempotent (retried on transient errors): every GET, PUT config (sets values), resize to an
//! absolute size, agent ping, task stop. Not idempotent (retried only when the request certainly
//! never reached the handler: connection refused, 595, a lock that could not be taken): clone,
//! POST config, start, shutdown, stop, delete, relative resize, agent exec. A clone whose outcome
//! is unknown is checked by looking for `newid` first (see `clone_vm`).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decode::value_to_u64;
use super::encode::{bool01, config_params};
use super::error::local;
use super::retry::{self, Verdict};
use super::transport::{Inner, Request, decode};
use super::wire::{
    self, WireExecPid, WireExecStatus, WireHostName, WireInterface, WireLogLine, WireNode,
    WireNodeStatus, WireOsInfo, WirePool, WireResource, WireTaskStatus, WireVersion,
    WireVmListEntry, WireVmStatus, WireVolume,
};
use super::{
    AgentInterface, Client, ClientConfig, ClientStats, CloneRequest, ConfigUpdate, ErrorClass,
    ExecStatus, NodeInfo, NodeStatus, OsInfo, PveError, Resource, ResourceType, Result,
    TaskLogLine, TaskStatus, TlsTrust, Upid, Version, VmConfig, VmListEntry, VmStatus,
    classify_message,
};

/// What `check` found: enough for `pve-rollout check` to print and for a preflight to trust the
/// connection, credentials and cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// `https://host:8006`
    pub url: String,
    /// `API token` or `ticket for user@realm` (never the secret).
    pub auth: String,
    /// How the certificate is trusted (`pinned fingerprint AB:...`, `CA file ...`, ...).
    pub tls: String,
    pub version: Version,
    pub nodes: Vec<NodeInfo>,
}

pub(super) fn vmid_text(vmid: u32) -> String {
    vmid.to_string()
}

impl Client {
    /// Builds the client (TLS, credentials, limits). Nothing is sent yet: `check` does that.
    pub fn new(config: ClientConfig) -> Result<Client> {
        Ok(Client {
            inner: std::sync::Arc::new(Inner::new(&config)?),
        })
    }

    /// The base URL (`https://host:8006`), without credentials.
    pub fn url(&self) -> &str {
        self.inner.base_url()
    }

    pub fn stats(&self) -> ClientStats {
        self.inner.stats()
    }

    /// Connects, authenticates and reads the version and the nodes: the `check` command and the
    /// preflight. A TLS, auth or connection problem comes back as the error (classes `Tls`,
    /// `Auth`, `Transient`).
    pub async fn check(&self) -> Result<CheckReport> {
        let version = self.version().await?;
        let nodes = self.nodes().await?;
        let tls = match self.inner.trust() {
            TlsTrust::Fingerprint(fp) => {
                format!(
                    "pinned fingerprint {}",
                    super::normalize_fingerprint(fp).unwrap_or_else(|_| fp.clone())
                )
            }
            TlsTrust::CaFile(path) => format!("CA file {}", path.display()),
            TlsTrust::System => "system root certificates".into(),
            TlsTrust::Insecure => "NOT VERIFIED (insecure = true)".into(),
        };
        Ok(CheckReport {
            url: self.url().to_string(),
            auth: self.inner.describe_auth(),
            tls,
            version,
            nodes,
        })
    }

    pub(super) async fn get<T: serde::de::DeserializeOwned>(&self, request: Request) -> Result<T> {
        let data = self.inner.call(&request).await?;
        decode(&request.call(), data)
    }

    pub async fn version(&self) -> Result<Version> {
        Ok(self
            .get::<WireVersion>(Request::new(Method::GET, "/version", &[]))
            .await?
            .into())
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let nodes: Vec<WireNode> = self.get(Request::new(Method::GET, "/nodes", &[])).await?;
        Ok(nodes.into_iter().map(Into::into).collect())
    }

    pub async fn node_status(&self, node: &str) -> Result<NodeStatus> {
        Ok(self
            .get::<WireNodeStatus>(Request::new(Method::GET, "/nodes/{node}/status", &[node]))
            .await?
            .into())
    }

    /// The resource pools' ids.
    pub async fn pools(&self) -> Result<Vec<String>> {
        let list: Vec<WirePool> = self.get(Request::new(Method::GET, "/pools", &[])).await?;
        Ok(list.into_iter().map(|p| p.poolid).collect())
    }

    /// The snippet volumes (`local:snippets/base.yml`) of `storage` as `node` sees it.
    pub async fn storage_snippets(&self, node: &str, storage: &str) -> Result<Vec<String>> {
        let path = "/nodes/{node}/storage/{storage}/content";
        let request = Request::new(Method::GET, path, &[node, storage]);
        let list: Vec<WireVolume> = self.get(request.param("content", "snippets")).await?;
        Ok(list.into_iter().map(|v| v.volid).collect())
    }

    pub async fn cluster_resources(&self, kind: Option<ResourceType>) -> Result<Vec<Resource>> {
        let mut request = Request::new(Method::GET, "/cluster/resources", &[]);
        if let Some(kind) = kind {
            let kind = match kind {
                ResourceType::Vm => "vm",
                ResourceType::Storage => "storage",
                ResourceType::Node => "node",
            };
            request = request.param("type", kind);
        }
        let list: Vec<WireResource> = self.get(request).await?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// The `/cluster/resources` entry of `vmid` (any node), if the VM exists.
    pub async fn find_vm(&self, vmid: u32) -> Result<Option<Resource>> {
        let vms = self.cluster_resources(Some(ResourceType::Vm)).await?;
        Ok(vms.into_iter().find(|r| r.vmid == Some(vmid)))
    }

    /// `GET /cluster/nextid` (optionally asking whether `vmid` is free). PVE answers a string.
    /// Nothing is reserved: parallel callers get the same id.
    pub async fn next_id(&self, vmid: Option<u32>) -> Result<u32> {
        let mut request = Request::new(Method::GET, "/cluster/nextid", &[]);
        if let Some(vmid) = vmid {
            request = request.param("vmid", vmid_text(vmid));
        }
        let call = request.call();
        let data = self.inner.call(&request).await?;
        value_to_u64(&data)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                let mut error = local(
                    ErrorClass::Decode,
                    &call,
                    format!("expected a VM id, got {data}"),
                );
                error.status = Some(200);
                error
            })
    }

    pub async fn vm_list(&self, node: &str) -> Result<Vec<VmListEntry>> {
        let list: Vec<WireVmListEntry> = self
            .get(Request::new(Method::GET, "/nodes/{node}/qemu", &[node]))
            .await?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    pub async fn vm_status(&self, node: &str, vmid: u32) -> Result<VmStatus> {
        let request = Request::new(
            Method::GET,
            "/nodes/{node}/qemu/{vmid}/status/current",
            &[node, &vmid_text(vmid)],
        );
        Ok(self.get::<WireVmStatus>(request).await?.into_status(vmid))
    }

    /// The config with pending changes applied (PVE's default view).
    pub async fn vm_config(&self, node: &str, vmid: u32) -> Result<VmConfig> {
        let request = Request::new(
            Method::GET,
            "/nodes/{node}/qemu/{vmid}/config",
            &[node, &vmid_text(vmid)],
        );
        Ok(wire::vm_config(self.get(request).await?))
    }

    /// `PUT config` (synchronous). Retried on transient errors: setting values twice is harmless
    /// (with a `digest`, a repeat after a lost success fails with `checksum mismatch`).
    pub async fn set_config(&self, node: &str, vmid: u32, update: &ConfigUpdate) -> Result<()> {
        let request = Request::new(
            Method::PUT,
            "/nodes/{node}/qemu/{vmid}/config",
            &[node, &vmid_text(vmid)],
        )
        .params(config_params(update))
        .idempotent(true);
        self.inner.call(&request).await.map(drop)
    }

    /// `POST config` (asynchronous: a UPID, or `None` when PVE answered null). Not repeated after
    /// an unknown outcome: new disks (`efidisk0: ssd:1`) would be allocated twice.
    pub async fn set_config_async(
        &self,
        node: &str,
        vmid: u32,
        update: &ConfigUpdate,
    ) -> Result<Option<Upid>> {
        let request = Request::new(
            Method::POST,
            "/nodes/{node}/qemu/{vmid}/config",
            &[node, &vmid_text(vmid)],
        )
        .params(config_params(update));
        let data = self.inner.call(&request).await?;
        optional_upid(&request.call(), data)
    }

    /// `POST clone`. Never creates two VMs for one request:
    /// - an error that certainly left nothing behind (connection refused, 595, a lock not taken)
    ///   is retried under the retry policy;
    /// - an error whose effect is unknown (timeout, 596) makes the client look for `newid` in
    ///   `/cluster/resources`: if it is there, the answer is an `AlreadyExists` error (the clone
    ///   most likely went through; its UPID cannot be told apart from other clones of the same
    ///   source, so inspect the VM and adopt it); if not, the POST is repeated with the same
    ///   `newid`, which PVE can execute at most once (a late duplicate fails with `config file
    ///   already exists` or a lock timeout on the target).
    ///
    /// `full: false` leaves `full` out, so PVE's default applies (linked for templates, full
    /// otherwise).
    pub async fn clone_vm(&self, node: &str, vmid: u32, request: &CloneRequest) -> Result<Upid> {
        let mut post = Request::new(
            Method::POST,
            "/nodes/{node}/qemu/{vmid}/clone",
            &[node, &vmid_text(vmid)],
        )
        .param("newid", vmid_text(request.newid))
        .param("name", request.name.as_str());
        if request.full {
            post = post.param("full", bool01(true));
        }
        for (key, value) in [
            ("description", &request.description),
            ("target", &request.target),
            ("storage", &request.storage),
            ("format", &request.format),
            ("pool", &request.pool),
        ] {
            if let Some(value) = value {
                post = post.param(key, value.as_str());
            }
        }
        let call = post.call();
        let (policy, time_scale, jitter) = self.inner.retry_policy();
        let data = retry::run(
            policy,
            time_scale,
            jitter,
            |_| async {
                let failure = match self.inner.attempt(&post).await {
                    Ok(data) => return Ok(data),
                    Err(failure) => failure,
                };
                if failure.error.class != ErrorClass::Transient {
                    return Err(Verdict::Fail(failure.error));
                }
                if !failure.error.outcome_unknown {
                    return Err(Verdict::Retry(failure.error));
                }
                tracing::debug!(
                    "{}; looking for VM {} before trying again",
                    failure.error,
                    request.newid
                );
                match self.find_vm(request.newid).await {
                    Ok(Some(found)) => Err(Verdict::Fail(clone_found(
                        &call,
                        request,
                        &found,
                        &failure.error,
                    ))),
                    Ok(None) => Err(Verdict::Retry(failure.error)),
                    // Cannot tell: hand the original error back (retry with the same newid).
                    Err(lookup) => {
                        tracing::debug!("looking for VM {} failed: {lookup}", request.newid);
                        Err(Verdict::Fail(failure.error))
                    }
                }
            },
            |next, delay, error| self.inner.note_retry(next, delay, error),
        )
        .await
        .map_err(|e| self.inner.redact(e))?;
        required_upid(&call, data)
    }

    /// `PUT resize` (`size` like `128G` or `+10G`): a UPID (PVE >= 8) or `None` (PVE 7). Only an
    /// absolute size is repeated after an unknown outcome; `+10G` twice would grow twice.
    pub async fn resize(
        &self,
        node: &str,
        vmid: u32,
        disk: &str,
        size: &str,
    ) -> Result<Option<Upid>> {
        let request = Request::new(
            Method::PUT,
            "/nodes/{node}/qemu/{vmid}/resize",
            &[node, &vmid_text(vmid)],
        )
        .param("disk", disk)
        .param("size", size)
        .idempotent(!size.trim_start().starts_with('+'));
        let data = self.inner.call(&request).await?;
        optional_upid(&request.call(), data)
    }

    /// `POST status/start`. A running VM still gets a UPID, whose task fails `VM N already
    /// running`: `TaskState::is_success_for_start` counts that as success.
    pub async fn start(&self, node: &str, vmid: u32) -> Result<Upid> {
        self.power(
            node,
            vmid,
            "/nodes/{node}/qemu/{vmid}/status/start",
            Vec::new(),
        )
        .await
    }

    pub async fn shutdown(
        &self,
        node: &str,
        vmid: u32,
        timeout: Option<u32>,
        force_stop: bool,
    ) -> Result<Upid> {
        let mut params = vec![("forceStop".to_string(), bool01(force_stop).to_string())];
        if let Some(timeout) = timeout {
            params.push(("timeout".into(), timeout.to_string()));
        }
        self.power(
            node,
            vmid,
            "/nodes/{node}/qemu/{vmid}/status/shutdown",
            params,
        )
        .await
    }

    pub async fn stop(&self, node: &str, vmid: u32) -> Result<Upid> {
        self.power(
            node,
            vmid,
            "/nodes/{node}/qemu/{vmid}/status/stop",
            Vec::new(),
        )
        .await
    }

    async fn power(
        &self,
        node: &str,
        vmid: u32,
        template: &'static str,
        params: Vec<(String, String)>,
    ) -> Result<Upid> {
        let request =
            Request::new(Method::POST, template, &[node, &vmid_text(vmid)]).params(params);
        let data = self.inner.call(&request).await?;
        required_upid(&request.call(), data)
    }

    /// `DELETE /nodes/{node}/qemu/{vmid}` (`purge=1` also drops it from backup jobs, HA, ...).
    pub async fn delete_vm(&self, node: &str, vmid: u32, purge: bool) -> Result<Upid> {
        let mut request = Request::new(
            Method::DELETE,
            "/nodes/{node}/qemu/{vmid}",
            &[node, &vmid_text(vmid)],
        )
        .idempotent(false);
        if purge {
            request = request.param("purge", bool01(true));
        }
        let data = self.inner.call(&request).await?;
        required_upid(&request.call(), data)
    }

    fn upid_node<'a>(&self, upid: &'a Upid, what: &str) -> Result<&'a str> {
        upid.node().ok_or_else(|| {
            local(
                ErrorClass::InvalidParameter,
                &format!("{what} {upid}"),
                format!("{:?} is not a UPID", upid.0),
            )
        })
    }

    /// Asked of the node named in the UPID (another node answers `no such task`).
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus> {
        let node = self.upid_node(upid, "task status of")?;
        let request = Request::new(
            Method::GET,
            "/nodes/{node}/tasks/{upid}/status",
            &[node, &upid.0],
        );
        Ok(self.get::<WireTaskStatus>(request).await?.into_status(upid))
    }

    /// Lines `start+1 ..= start+limit` (1-based `n`; `limit` 0 = all remaining).
    pub async fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> Result<Vec<TaskLogLine>> {
        let node = self.upid_node(upid, "task log of")?;
        let request = Request::new(
            Method::GET,
            "/nodes/{node}/tasks/{upid}/log",
            &[node, &upid.0],
        )
        .param("start", start.to_string())
        .param("limit", limit.to_string());
        let lines: Vec<WireLogLine> = self.get(request).await?;
        Ok(lines.into_iter().map(Into::into).collect())
    }

    /// `DELETE` the task (SIGTERM to the worker); stopping a finished task is fine, so repeatable.
    pub async fn stop_task(&self, upid: &Upid) -> Result<()> {
        let node = self.upid_node(upid, "stop task")?;
        let request = Request::new(
            Method::DELETE,
            "/nodes/{node}/tasks/{upid}",
            &[node, &upid.0],
        )
        .idempotent(true);
        self.inner.call(&request).await.map(drop)
    }

    /// A generic agent command's `{"result": ...}`; a QGA error object passed through with HTTP
    /// 200 (`{"result":{"error":{...}}}`) becomes an error.
    async fn agent(&self, request: Request) -> Result<Value> {
        let call = request.call();
        let data = self.inner.call(&request).await?;
        let result = match data {
            Value::Object(mut map) => map.remove("result").unwrap_or(Value::Null),
            other => return decode::<Never>(&call, other).map(|never| match never {}),
        };
        match wire::agent_error(&result) {
            Some(text) => Err(PveError {
                class: classify_message(&text).unwrap_or(ErrorClass::Other),
                call,
                status: Some(200),
                reason: text,
                message: None,
                errors: Default::default(),
                outcome_unknown: false,
            }),
            None => Ok(result),
        }
    }

    fn agent_request(method: Method, node: &str, vmid: u32, command: &'static str) -> Request {
        let template = match command {
            "ping" => "/nodes/{node}/qemu/{vmid}/agent/ping",
            "network-get-interfaces" => "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
            "get-osinfo" => "/nodes/{node}/qemu/{vmid}/agent/get-osinfo",
            "get-host-name" => "/nodes/{node}/qemu/{vmid}/agent/get-host-name",
            "exec" => "/nodes/{node}/qemu/{vmid}/agent/exec",
            _ => "/nodes/{node}/qemu/{vmid}/agent/exec-status",
        };
        Request::new(method, template, &[node, &vmid_text(vmid)])
    }

    /// `POST agent/ping` (a POST, but it changes nothing: repeatable).
    pub async fn agent_ping(&self, node: &str, vmid: u32) -> Result<()> {
        self.agent(Self::agent_request(Method::POST, node, vmid, "ping").idempotent(true))
            .await
            .map(drop)
    }

    pub async fn agent_network_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Vec<AgentInterface>> {
        let request = Self::agent_request(Method::GET, node, vmid, "network-get-interfaces");
        let call = request.call();
        let list: Vec<WireInterface> = decode(&call, self.agent(request).await?)?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    pub async fn agent_os_info(&self, node: &str, vmid: u32) -> Result<OsInfo> {
        let request = Self::agent_request(Method::GET, node, vmid, "get-osinfo");
        let call = request.call();
        Ok(decode::<WireOsInfo>(&call, self.agent(request).await?)?.into())
    }

    pub async fn agent_host_name(&self, node: &str, vmid: u32) -> Result<String> {
        let request = Self::agent_request(Method::GET, node, vmid, "get-host-name");
        let call = request.call();
        Ok(decode::<WireHostName>(&call, self.agent(request).await?)?.host_name)
    }

    /// Starts `argv` in the guest (one `command` form key per element, as PVE >= 8 wants);
    /// returns the pid for `agent_exec_status`. Not repeated after an unknown outcome.
    pub async fn agent_exec(
        &self,
        node: &str,
        vmid: u32,
        argv: &[&str],
        input: Option<&str>,
    ) -> Result<u64> {
        let mut request = Self::agent_request(Method::POST, node, vmid, "exec").params(
            argv.iter()
                .map(|arg| ("command".to_string(), (*arg).to_string())),
        );
        if let Some(input) = input {
            request = request.param("input-data", input);
        }
        let call = request.call();
        let data = self.inner.call(&request).await?;
        Ok(decode::<WireExecPid>(&call, data)?.pid)
    }

    /// The flat exec-status object. PVE forgets the pid after reporting `exited`; asking again
    /// gives `Agent error: Invalid parameter 'pid'`.
    pub async fn agent_exec_status(&self, node: &str, vmid: u32, pid: u64) -> Result<ExecStatus> {
        let request = Self::agent_request(Method::GET, node, vmid, "exec-status")
            .param("pid", pid.to_string());
        Ok(self.get::<WireExecStatus>(request).await?.into())
    }
}

/// Uninhabited: decoding into it always fails, with the standard decode error.
#[derive(Deserialize)]
enum Never {}

pub(super) fn required_upid(call: &str, data: Value) -> Result<Upid> {
    match optional_upid(call, data)? {
        Some(upid) => Ok(upid),
        None => {
            let mut error = local(
                ErrorClass::Decode,
                call,
                "expected a task id (UPID), got null",
            );
            error.status = Some(200);
            Err(error)
        }
    }
}

fn optional_upid(call: &str, data: Value) -> Result<Option<Upid>> {
    match data {
        Value::Null => Ok(None),
        Value::String(text) if Upid(text.clone()).node().is_some() => Ok(Some(Upid(text))),
        other => {
            let mut error = local(
                ErrorClass::Decode,
                call,
                format!("expected a task id (UPID), got {other}"),
            );
            error.status = Some(200);
            Err(error)
        }
    }
}

/// The `AlreadyExists` error for a clone whose answer was lost but whose `newid` is now there.
fn clone_found(call: &str, request: &CloneRequest, found: &Resource, lost: &PveError) -> PveError {
    let what = match (&found.name, &found.lock) {
        (Some(name), _) if *name == request.name => format!("named {name:?}: this clone"),
        (_, Some(lock)) if lock == "clone" => {
            "locked by a clone in progress: most likely this clone".to_string()
        }
        (Some(name), _) => format!(
            "named {name:?}, not {:?}: check before adopting it",
            request.name
        ),
        (None, _) => "not yet named: most likely this clone".to_string(),
    };
    local(
        ErrorClass::AlreadyExists,
        call,
        format!(
            "VM {} exists on {} after the clone request's answer was lost ({lost}); it is {what}. Not cloning again.",
            request.newid,
            found.node.as_deref().unwrap_or("?")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upids_in_answers() {
        let upid = "UPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:resize:101:root@pam:";
        assert_eq!(
            optional_upid("PUT /r", Value::String(upid.into()))
                .ok()
                .flatten()
                .map(|u| u.0),
            Some(upid.into())
        );
        assert_eq!(optional_upid("PUT /r", Value::Null).ok(), Some(None));
        assert_eq!(
            optional_upid("PUT /r", Value::String("nope".into())).map_err(|e| e.class),
            Err(ErrorClass::Decode)
        );
        assert_eq!(
            required_upid("POST /s", Value::Null).map_err(|e| e.class),
            Err(ErrorClass::Decode)
        );
    }

    #[test]
    fn a_found_clone_is_described_for_adoption() {
        let request = CloneRequest {
            newid: 123,
            name: "web-1".into(),
            ..Default::default()
        };
        let lost = local(
            ErrorClass::Transient,
            "POST /nodes/pve1/qemu/9000/clone",
            "no answer within 30s",
        );
        let found = Resource {
            id: "qemu/123".into(),
            kind: "qemu".into(),
            node: Some("pve1".into()),
            vmid: Some(123),
            name: None,
            status: Some("unknown".into()),
            template: false,
            lock: Some("clone".into()),
            tags: None,
            maxmem: None,
            mem: None,
            maxdisk: None,
            disk: None,
            storage: None,
            shared: false,
            content: None,
            plugintype: None,
        };
        let error = clone_found("POST /nodes/pve1/qemu/9000/clone", &request, &found, &lost);
        assert_eq!(error.class, ErrorClass::AlreadyExists);
        assert!(
            error.to_string().contains("VM 123 exists on pve1"),
            "{error}"
        );
        assert!(
            error.to_string().contains("most likely this clone"),
            "{error}"
        );
        let other = Resource {
            name: Some("db-1".into()),
            lock: None,
            ..found
        };
        let error = clone_found("POST /x", &request, &other, &lost);
        assert!(error.to_string().contains("not \"web-1\""), "{error}");
    }
}
