//! Task ids: `UPID:node:pid:pstart:starttime:type:id:user:`, as `PVE::UPID` encodes them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `UPID:node:pid:pstart:starttime:type:id:user:`
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Upid(pub String);

/// The fields of a UPID (`pid`, `pstart`, `starttime` decoded from hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpidParts<'a> {
    pub node: &'a str,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: u64,
    pub task_type: &'a str,
    /// May be empty (`imgcopy::`).
    pub id: &'a str,
    /// `root@pam` or `root@pam!token`.
    pub user: &'a str,
}

impl Upid {
    /// Splits `UPID:node:pid:pstart:starttime:type:id:user:` (the trailing colon is optional
    /// here); `None` when it is not a UPID.
    pub fn parts(&self) -> Option<UpidParts<'_>> {
        let mut fields = self.0.trim().split(':');
        if fields.next()? != "UPID" {
            return None;
        }
        let node = fields.next().filter(|n| !n.is_empty())?;
        let pid = u32::from_str_radix(fields.next()?, 16).ok()?;
        let pstart = u64::from_str_radix(fields.next()?, 16).ok()?;
        let starttime = u64::from_str_radix(fields.next()?, 16).ok()?;
        let task_type = fields.next().filter(|t| !t.is_empty())?;
        let id = fields.next()?;
        let user = fields.next().filter(|u| !u.is_empty())?;
        // Only the empty field after the trailing colon may follow.
        match (fields.next(), fields.next()) {
            (None | Some(""), None) => {}
            _ => return None,
        }
        let valid_node = node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        valid_node.then_some(UpidParts {
            node,
            pid,
            pstart,
            starttime,
            task_type,
            id,
            user,
        })
    }
    /// The node the task runs on (task status must be asked there).
    pub fn node(&self) -> Option<&str> {
        self.parts().map(|p| p.node)
    }
    pub fn task_type(&self) -> Option<&str> {
        self.parts().map(|p| p.task_type)
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
