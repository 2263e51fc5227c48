//! Read calls for finding one's way around a cluster (`pve-rollout init`): a node's network
//! interfaces and its storages with their content types and space.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::decode::{bool_lenient, string_opt, string_or_empty, string_req, u64_opt};
use super::transport::Request;
use super::{Client, Result};

/// One `GET /nodes/{node}/network` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub iface: String,
    /// `bridge`, `OVSBridge`, `eth`, `bond`, `vlan`, ...
    pub kind: String,
    pub active: bool,
    pub comments: Option<String>,
}

impl NetworkInterface {
    /// A Linux or OVS bridge: something `net0` can be put on.
    pub fn is_bridge(&self) -> bool {
        matches!(self.kind.as_str(), "bridge" | "OVSBridge")
    }
}

/// One `GET /nodes/{node}/storage` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStorage {
    pub storage: String,
    /// The plugin: `lvmthin`, `dir`, `zfspool`, `rbd`, `nfs`, ...
    pub kind: String,
    /// Content types it holds: `images`, `rootdir`, `iso`, `vztmpl`, `backup`, `snippets`, ...
    pub content: Vec<String>,
    pub shared: bool,
    pub active: bool,
    pub enabled: bool,
    /// Bytes free, when the storage is active.
    pub avail: Option<u64>,
    pub total: Option<u64>,
}

impl NodeStorage {
    pub fn holds(&self, content: &str) -> bool {
        self.content.iter().any(|c| c == content)
    }
}

#[derive(Deserialize)]
struct WireInterface {
    #[serde(deserialize_with = "string_req")]
    iface: String,
    #[serde(rename = "type", default, deserialize_with = "string_or_empty")]
    kind: String,
    #[serde(default, deserialize_with = "bool_lenient")]
    active: bool,
    #[serde(default, deserialize_with = "string_opt")]
    comments: Option<String>,
}

#[derive(Deserialize)]
struct WireStorage {
    #[serde(deserialize_with = "string_req")]
    storage: String,
    #[serde(rename = "type", default, deserialize_with = "string_or_empty")]
    kind: String,
    #[serde(default, deserialize_with = "string_or_empty")]
    content: String,
    #[serde(default, deserialize_with = "bool_lenient")]
    shared: bool,
    #[serde(default, deserialize_with = "bool_lenient")]
    active: bool,
    // PVE leaves `enabled` out for enabled storages in some versions; absent = enabled.
    #[serde(default)]
    enabled: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "u64_opt")]
    avail: Option<u64>,
    #[serde(default, deserialize_with = "u64_opt")]
    total: Option<u64>,
}

impl Client {
    /// `GET /nodes/{node}/network` (needs `Sys.Audit` on the node), optionally filtered by
    /// `type` (`any_bridge` for every kind of bridge).
    pub async fn node_network(
        &self,
        node: &str,
        kind: Option<&str>,
    ) -> Result<Vec<NetworkInterface>> {
        let mut request = Request::new(Method::GET, "/nodes/{node}/network", &[node]);
        if let Some(kind) = kind {
            request = request.param("type", kind);
        }
        let list: Vec<WireInterface> = self.get(request).await?;
        Ok(list
            .into_iter()
            .map(|w| NetworkInterface {
                iface: w.iface,
                kind: w.kind,
                active: w.active,
                comments: w.comments,
            })
            .collect())
    }

    /// `GET /nodes/{node}/storage`: the storages this token may use on `node`, optionally only
    /// those holding `content` (`images`, `snippets`, ...).
    pub async fn node_storage(
        &self,
        node: &str,
        content: Option<&str>,
    ) -> Result<Vec<NodeStorage>> {
        let mut request = Request::new(Method::GET, "/nodes/{node}/storage", &[node]);
        if let Some(content) = content {
            request = request.param("content", content);
        }
        let list: Vec<WireStorage> = self.get(request).await?;
        Ok(list
            .into_iter()
            .map(|w| NodeStorage {
                storage: w.storage,
                kind: w.kind,
                content: w
                    .content
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                shared: w.shared,
                active: w.active,
                enabled: w
                    .enabled
                    .as_ref()
                    .is_none_or(|v| super::decode::value_to_bool(v).unwrap_or(true)),
                avail: w.avail,
                total: w.total,
            })
            .collect())
    }
}
