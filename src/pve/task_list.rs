//! `GET /nodes/{node}/tasks`: one request that tells how many tasks of a node stand.
//!
//! PVE serves it in pveproxy (it is not a protected call: no pvedaemon worker) on the node asked
//! about. It never refuses a valid request: a caller without `Sys.Audit` on `/nodes/{node}` gets
//! only its own tasks (a token sees the tasks started with that token, a user its own and its
//! tokens'). With `source=active` it lists the node's running tasks (`status` `RUNNING`) and those
//! that ended but are not archived yet (`status` is the exit status, `endtime` set); an archived
//! task is no longer there. `limit` defaults to 50 and 0 means none: ask for enough.

use reqwest::Method;
use serde::Deserialize;

use super::decode::{i64_opt, string_opt, string_or_empty};
use super::transport::{Request, decode};
use super::{Client, Result, TaskState, Upid};

/// Which tasks `node_tasks` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskSource {
    /// Running, and ended but not yet archived.
    #[default]
    Active,
    /// Archived (PVE's default).
    Archive,
    All,
}

/// The filters of `GET /nodes/{node}/tasks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskListQuery {
    pub source: TaskSource,
    /// Only this task type (`qmclone`, `qmstart`, ...).
    pub typefilter: Option<String>,
    /// Only tasks whose id is this VM (a clone's id is its source VM).
    pub vmid: Option<u32>,
    /// Only tasks started at or after this epoch second.
    pub since: Option<i64>,
    /// At most this many (at least 1: PVE lists nothing for 0).
    pub limit: u64,
}

impl Default for TaskListQuery {
    fn default() -> Self {
        TaskListQuery {
            source: TaskSource::Active,
            typefilter: None,
            vmid: None,
            since: None,
            limit: 500,
        }
    }
}

/// One entry of a node's task list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTask {
    pub upid: Upid,
    pub task_type: String,
    pub id: String,
    /// `user@realm`, or `user@realm!token` for a token's task.
    pub user: String,
    pub starttime: Option<i64>,
    pub endtime: Option<i64>,
    /// `Running` while PVE says `RUNNING` (or no status and no end time), else the exit status.
    pub state: TaskState,
}

/// A node's task list as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTasks {
    pub tasks: Vec<NodeTask>,
    /// Fewer entries than the limit came back, so nothing matching was cut off: a task that is
    /// missing (and matches the filters) is not in the listed source.
    pub complete: bool,
}

#[derive(Deserialize)]
struct WireNodeTask {
    #[serde(default, deserialize_with = "string_or_empty")]
    upid: String,
    #[serde(rename = "type", default, deserialize_with = "string_or_empty")]
    task_type: String,
    #[serde(default, deserialize_with = "string_or_empty")]
    id: String,
    #[serde(default, deserialize_with = "string_or_empty")]
    user: String,
    #[serde(default, deserialize_with = "string_opt")]
    tokenid: Option<String>,
    #[serde(default, deserialize_with = "i64_opt")]
    starttime: Option<i64>,
    #[serde(default, deserialize_with = "i64_opt")]
    endtime: Option<i64>,
    #[serde(default, deserialize_with = "string_opt")]
    status: Option<String>,
}

impl WireNodeTask {
    /// `None` for an entry without a UPID (nothing to follow it by).
    fn into_task(self) -> Option<NodeTask> {
        let upid = Upid(self.upid);
        let parts = upid.parts()?;
        let state = match self.status.as_deref().map(str::trim) {
            Some("RUNNING" | "running") => TaskState::Running,
            Some(exit) if !exit.is_empty() => TaskState::from_exit_status(exit),
            _ if self.endtime.is_none() => TaskState::Running,
            _ => TaskState::Failed("task ended without exit status".into()),
        };
        let user = match self.tokenid {
            Some(token) if !self.user.contains('!') && !self.user.is_empty() => {
                format!("{}!{token}", self.user)
            }
            _ if self.user.is_empty() => parts.user.to_string(),
            _ => self.user,
        };
        Some(NodeTask {
            task_type: if self.task_type.is_empty() {
                parts.task_type.to_string()
            } else {
                self.task_type
            },
            id: if self.id.is_empty() {
                parts.id.to_string()
            } else {
                self.id
            },
            user,
            starttime: self.starttime.or(i64::try_from(parts.starttime).ok()),
            endtime: self.endtime,
            state,
            upid,
        })
    }
}

impl Client {
    /// `GET /nodes/{node}/tasks` with `query`'s filters.
    pub async fn node_tasks(&self, node: &str, query: &TaskListQuery) -> Result<NodeTasks> {
        let limit = query.limit.max(1);
        let source = match query.source {
            TaskSource::Active => "active",
            TaskSource::Archive => "archive",
            TaskSource::All => "all",
        };
        let mut request = Request::new(Method::GET, "/nodes/{node}/tasks", &[node])
            .param("source", source)
            .param("limit", limit.to_string());
        if let Some(kind) = &query.typefilter {
            request = request.param("typefilter", kind.as_str());
        }
        if let Some(vmid) = query.vmid {
            request = request.param("vmid", vmid.to_string());
        }
        if let Some(since) = query.since {
            request = request.param("since", since.to_string());
        }
        let data = self.inner.call(&request).await?;
        let wire: Vec<WireNodeTask> = decode(&request.call(), data)?;
        let listed = wire.len() as u64;
        Ok(NodeTasks {
            tasks: wire
                .into_iter()
                .filter_map(WireNodeTask::into_task)
                .collect(),
            complete: listed < limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(value: serde_json::Value) -> Option<NodeTask> {
        serde_json::from_value::<WireNodeTask>(value)
            .expect("decodes")
            .into_task()
    }

    #[test]
    fn entries_decode_as_pve_lists_them() {
        let running = task(json!({
            "upid": "UPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam!ci:",
            "node": "pve1", "pid": 238066, "pstart": 28492756, "starttime": 1724424369,
            "type": "qmclone", "id": "9000", "user": "root@pam", "tokenid": "ci",
            "status": "RUNNING"
        }))
        .expect("task");
        assert_eq!(running.state, TaskState::Running);
        assert_eq!(running.user, "root@pam!ci");
        assert_eq!(running.task_type, "qmclone");
        assert_eq!(running.starttime, Some(1724424369));
        let ended = task(json!({
            "upid": "UPID:pve1:0003A1F3:01B2C3D5:66C8A0B2:qmstart:101:root@pam:",
            "type": "qmstart", "id": "101", "user": "root@pam",
            "endtime": "1724424400", "status": "WARNINGS: 2"
        }))
        .expect("task");
        assert_eq!(ended.state, TaskState::Warnings(2));
        assert_eq!(ended.endtime, Some(1724424400));
        let failed = task(json!({
            "upid": "UPID:pve1:0003A1F4:01B2C3D6:66C8A0B3:qmclone:9000:root@pam:",
            "endtime": 1724424500, "status": "clone failed: interrupted by signal"
        }))
        .expect("task");
        assert!(matches!(failed.state, TaskState::Failed(ref t) if t.contains("interrupted")));
        // Fields left out come from the UPID.
        assert_eq!(
            (failed.task_type.as_str(), failed.id.as_str()),
            ("qmclone", "9000")
        );
        assert_eq!(failed.starttime, Some(0x66C8A0B3));
        // The simulator's older shape: no status while running.
        let bare =
            task(json!({"upid": "UPID:pve2:00000001:00000002:66C8A0B4:resize:102:root@pam:"}))
                .expect("task");
        assert_eq!(bare.state, TaskState::Running);
        assert!(task(json!({"upid": "nope"})).is_none());
    }
}
