//! Worker tasks: UPIDs exactly as `PVE::UPID` encodes them, task logs ending in `TASK OK` /
//! `TASK WARNINGS: n` / `TASK ERROR: …`, interruption by `DELETE …/tasks/{upid}`, and the
//! status/log/stop endpoints.

use std::future::Future;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::auth::Identity;
use super::envelope::{ApiError, ApiOk};
use super::locks::{CONTENDED_LINE, VmLockGuard};
use super::params::Params;

pub struct Task {
    pub upid: String,
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: i64,
    pub kind: String,
    pub id: String,
    /// `user@realm` (without the token).
    pub user: String,
    pub tokenid: Option<String>,
    pub log: Vec<String>,
    /// `None` while running.
    pub exit: Option<String>,
    pub warnings: u32,
    pub cancel: CancellationToken,
    pub endtime: Option<i64>,
}

impl Task {
    pub fn status_json(&self) -> Value {
        let mut v = json!({
            "upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
            "starttime": self.starttime, "type": self.kind, "id": self.id, "user": self.user,
            "status": if self.exit.is_some() { "stopped" } else { "running" },
        });
        if let Some(e) = &self.exit {
            v["exitstatus"] = json!(e);
        }
        if let Some(t) = &self.tokenid {
            v["tokenid"] = json!(t);
        }
        v
    }
}

pub fn encode_upid(
    node: &str,
    pid: u32,
    pstart: u64,
    starttime: i64,
    kind: &str,
    id: &str,
    user: &str,
) -> String {
    format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{id}:{user}:")
}

/// The node of a well-formed UPID (PVE's decoder regex), else `None`.
pub fn upid_node(upid: &str) -> Option<&str> {
    let f: Vec<&str> = upid.split(':').collect();
    let hex = |s: &str, lens: &[usize]| {
        lens.contains(&s.len()) && s.bytes().all(|c| c.is_ascii_hexdigit())
    };
    let ok = f.len() == 9
        && f[0] == "UPID"
        && super::params::is_node_name(f[1])
        && hex(f[2], &[8])
        && hex(f[3], &[8, 9])
        && hex(f[4], &[8])
        && !f[5].is_empty()
        && !f[5].contains(['/', ' '])
        && !f[6].contains(['/', ' '])
        && !f[7].is_empty()
        && f[8].is_empty();
    ok.then_some(f[1])
}

#[derive(Debug, Clone, PartialEq)]
pub enum TaskError {
    Interrupted,
    Failed(String),
}

impl From<String> for TaskError {
    fn from(s: String) -> Self {
        TaskError::Failed(s)
    }
}

impl From<&str> for TaskError {
    fn from(s: &str) -> Self {
        TaskError::Failed(s.to_string())
    }
}

pub type TaskResult = Result<(), TaskError>;

/// A running task's handle: log lines, cancellable waits.
#[derive(Clone)]
pub struct TaskCtx {
    pub shared: Arc<Shared>,
    pub upid: String,
    pub cancel: CancellationToken,
}

impl TaskCtx {
    pub fn log(&self, line: impl Into<String>) {
        let line = line.into();
        let mut st = self.shared.state();
        if let Some(t) = st.tasks.get_mut(&self.upid) {
            t.log.push(line);
        }
    }

    /// Awaits `fut` unless the task is interrupted first.
    pub async fn run<T>(&self, fut: impl Future<Output = T>) -> Result<T, TaskError> {
        tokio::select! {
            v = fut => Ok(v),
            _ = self.cancel.cancelled() => Err(TaskError::Interrupted),
        }
    }

    /// `lock_config` inside a worker: a contended lock logs `trying to acquire lock...` and then
    /// ` OK` once granted; a timeout fails the task with the lock text.
    pub async fn lock(
        &self,
        vmid: u32,
        shared: bool,
        timeout_s: f64,
    ) -> Result<VmLockGuard, TaskError> {
        let sh = &self.shared;
        let mut contended = false;
        let guard = self
            .run(sh.locks.acquire(&sh.clock, vmid, shared, timeout_s, || {
                contended = true;
                self.log(CONTENDED_LINE);
            }))
            .await??;
        if contended {
            self.log(" OK");
        }
        Ok(guard)
    }

    pub async fn sleep(&self, sim_s: f64) -> TaskResult {
        self.run(self.shared.clock.sleep(sim_s)).await
    }
}

/// Forks a worker: registers the task, returns its UPID, runs `body` in the background.
pub fn spawn<F, Fut>(
    shared: &Arc<Shared>,
    node: &str,
    kind: &str,
    id: &str,
    who: &Identity,
    body: F,
) -> String
where
    F: FnOnce(TaskCtx) -> Fut + Send + 'static,
    Fut: Future<Output = TaskResult> + Send + 'static,
{
    let cancel = shared.shutdown.child_token();
    let upid = shared
        .state()
        .new_task(&shared.clock, node, kind, id, who, cancel.clone());
    let ctx = TaskCtx {
        shared: shared.clone(),
        upid: upid.clone(),
        cancel,
    };
    tokio::spawn(async move {
        let fin = ctx.clone();
        let result = body(ctx).await;
        finish(&fin, result);
    });
    upid
}

fn finish(ctx: &TaskCtx, result: TaskResult) {
    let epoch = ctx.shared.clock.epoch();
    let mut st = ctx.shared.state();
    let Some(t) = st.tasks.get_mut(&ctx.upid) else {
        return;
    };
    let exit = match result {
        Ok(()) if t.warnings > 0 => {
            t.log.push(format!("TASK WARNINGS: {}", t.warnings));
            format!("WARNINGS: {}", t.warnings)
        }
        Ok(()) => {
            t.log.push("TASK OK".into());
            "OK".into()
        }
        Err(e) => {
            let text = match e {
                TaskError::Interrupted => "received interrupt".to_string(),
                TaskError::Failed(m) => m,
            };
            // Multi-line errors collapse into one line.
            let one = text.trim_end_matches('\n').replace('\n', " ");
            t.log.push(format!("TASK ERROR: {one}"));
            one
        }
    };
    t.exit = Some(exit);
    t.endtime = Some(epoch);
}

fn upid_param(p: &Params) -> Result<String, ApiError> {
    let upid = p.get("upid").unwrap_or_default();
    if upid_node(&upid).is_none() {
        return Err(ApiError::param("upid", "unable to parse worker upid"));
    }
    Ok(upid)
}

fn check_owner(
    who: &Identity,
    task_user: &str,
    task_token: Option<&str>,
    node: &str,
) -> Result<(), ApiError> {
    let owner =
        who.user == task_user && (who.token.is_none() || who.token.as_deref() == task_token);
    if owner {
        Ok(())
    } else {
        who.require(&format!("/nodes/{node}"), &["Sys.Audit"])
    }
}

pub fn status(shared: &Shared, who: &Identity, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    let upid = upid_param(p)?;
    let st = shared.state();
    let t = st
        .tasks
        .get(&upid)
        .filter(|t| t.node == node)
        .ok_or_else(|| ApiError::param("upid", "no such task"))?;
    check_owner(who, &t.user, t.tokenid.as_deref(), node)?;
    Ok(ApiOk::data(t.status_json()))
}

pub fn index(p: &Params) -> Result<ApiOk, ApiError> {
    upid_param(p)?;
    Ok(ApiOk::data(json!([{"name": "log"}, {"name": "status"}])))
}

pub fn log(shared: &Shared, who: &Identity, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    let upid = upid_param(p)?;
    let start = p.int("start").unwrap_or(0).max(0) as usize;
    let limit = p.int("limit").unwrap_or(50).max(0) as usize;
    let st = shared.state();
    let Some(t) = st.tasks.get(&upid).filter(|t| t.node == node) else {
        return Ok(ApiOk {
            data: json!([{"n": 1, "t": "unable to open file - No such file or directory"}]),
            total: Some(1),
        });
    };
    check_owner(who, &t.user, t.tokenid.as_deref(), node)?;
    if t.log.is_empty() {
        return Ok(ApiOk {
            data: json!([{"n": 1, "t": "no content"}]),
            total: Some(1),
        });
    }
    let take = if limit == 0 { usize::MAX } else { limit };
    let lines: Vec<Value> = t
        .log
        .iter()
        .enumerate()
        .skip(start)
        .take(take)
        .map(|(i, line)| json!({"n": i + 1, "t": line}))
        .collect();
    Ok(ApiOk {
        data: Value::Array(lines),
        total: Some(t.log.len() as u64),
    })
}

pub fn stop(shared: &Shared, who: &Identity, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    let upid = upid_param(p)?;
    let st = shared.state();
    let t = st
        .tasks
        .get(&upid)
        .filter(|t| t.node == node)
        .ok_or_else(|| ApiError::param("upid", "no such task"))?;
    let owner = who.user == t.user;
    if !owner {
        who.require(&format!("/nodes/{node}"), &["Sys.Modify"])?;
    }
    if t.exit.is_none() {
        t.cancel.cancel();
    }
    Ok(ApiOk::null())
}

/// A task's line in the task lists: a finished one's `endtime` and exit status as `status`, a
/// running one's `status` `RUNNING`.
fn list_entry(t: &Task) -> Value {
    let mut j = t.status_json();
    match t.endtime {
        Some(e) => {
            j["endtime"] = json!(e);
            j["status"] = json!(t.exit.clone().unwrap_or_default());
        }
        // `source=active` names a running task's status so (Tasks.pm).
        None => j["status"] = json!("RUNNING"),
    }
    j
}

fn newest_first(v: &mut [&Task]) {
    v.sort_by(|a, b| b.starttime.cmp(&a.starttime).then(b.pid.cmp(&a.pid)));
}

/// Whether `who` sees a task of `user` (started with token `token`) without `Sys.Audit`: a token
/// sees only the tasks started with it, a user its own and its tokens' (`Tasks.pm`).
fn sees_task(who: &Identity, user: &str, token: Option<&str>) -> bool {
    match (&who.token, token) {
        (Some(mine), Some(theirs)) => who.user == user && mine == theirs,
        (Some(_), None) => false,
        (None, _) => who.user == user,
    }
}

/// `GET /nodes/{node}/tasks`: the node's tasks, newest first, with PVE's filters: `source`
/// (`archive` = finished, the default; `active`; `all`), `typefilter`, `vmid`, `userfilter`,
/// `statusfilter`, `errors`, `since`/`until`, then `start` and `limit` paging.
pub fn list(shared: &Shared, who: &Identity, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    let limit = p.int("limit").unwrap_or(50).max(0) as usize;
    let start = p.int("start").unwrap_or(0).max(0) as usize;
    let source = p.get("source").unwrap_or_else(|| "archive".into());
    if !matches!(source.as_str(), "archive" | "active" | "all") {
        return Err(ApiError::param(
            "source",
            format!(
                "value '{source}' does not have a value in the enumeration 'archive, active, all'"
            ),
        ));
    }
    let typefilter = p.get("typefilter");
    let vmid = p.get("vmid");
    let userfilter = p.get("userfilter");
    let statusfilter: Option<Vec<String>> = p
        .get("statusfilter")
        .map(|s| s.split(',').map(|x| x.trim().to_lowercase()).collect());
    let errors = p.flag("errors");
    let since = p.int("since");
    let until = p.int("until");
    let st = shared.state();
    let mut v: Vec<&Task> = st
        .tasks
        .values()
        .filter(|t| {
            t.node == node
                && (who.has("Sys.Audit") || sees_task(who, &t.user, t.tokenid.as_deref()))
        })
        .filter(|t| match source.as_str() {
            "active" => t.exit.is_none(),
            "archive" => t.exit.is_some(),
            _ => true,
        })
        .filter(|t| {
            typefilter
                .as_ref()
                .is_none_or(|f| t.kind.contains(f.as_str()))
        })
        .filter(|t| vmid.as_ref().is_none_or(|id| &t.id == id))
        .filter(|t| {
            userfilter
                .as_ref()
                .is_none_or(|u| t.user.contains(u.as_str()))
        })
        .filter(|t| !errors || t.exit.as_ref().is_some_and(|e| e != "OK"))
        .filter(|t| {
            statusfilter.as_ref().is_none_or(|f| {
                let class = match t.exit.as_deref() {
                    None => "active",
                    Some("OK") => "ok",
                    Some(e) if e.starts_with("WARNINGS") => "warning",
                    Some(_) => "error",
                };
                f.iter().any(|x| x == class)
            })
        })
        .filter(|t| since.is_none_or(|s| t.starttime >= s))
        .filter(|t| until.is_none_or(|u| t.starttime <= u))
        .collect();
    newest_first(&mut v);
    let total = v.len() as u64;
    let items: Vec<Value> = v
        .into_iter()
        .skip(start)
        // PVE lists nothing for `limit=0` (its filter stops once the limit is used up).
        .take(limit)
        .map(list_entry)
        .collect();
    Ok(ApiOk {
        data: Value::Array(items),
        total: Some(total),
    })
}

/// `GET /cluster/tasks`: recent tasks of every node (what pvestatd shares), each with `saved`.
pub fn cluster_list(shared: &Shared, who: &Identity) -> Result<ApiOk, ApiError> {
    let st = shared.state();
    let mut v: Vec<&Task> = st
        .tasks
        .values()
        .filter(|t| who.user == t.user || who.has("Sys.Audit"))
        .collect();
    newest_first(&mut v);
    let items = v
        .into_iter()
        .take(50)
        .map(|t| {
            let mut j = list_entry(t);
            j["saved"] = json!("1");
            j
        })
        .collect();
    Ok(ApiOk::data(Value::Array(items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upid_format_round_trips() {
        let u = encode_upid(
            "pve1",
            0x3A1F2,
            0x1B2C3D4,
            0x66C8A0B1,
            "qmclone",
            "9000",
            "root@pam!ci",
        );
        assert_eq!(
            u,
            "UPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam!ci:"
        );
        assert_eq!(upid_node(&u), Some("pve1"));
        assert_eq!(u.split(':').count(), 9);
        assert_eq!(upid_node("UPID:pve1:xyz"), None);
    }
}
