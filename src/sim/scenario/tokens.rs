//! The `[auth]` section: extra API tokens, privilege-separated or not, with their grants.

use serde::{Deserialize, Serialize};

/// Extra identities (tests of permissions). Tokens from `SimOptions` always have full rights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSpec {
    pub tokens: Vec<TokenSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// `user@realm!tokenid`
    pub id: String,
    pub secret: String,
    /// Privilege separation (PVE's default for a new token): the token has only the rights
    /// given to it here, none of its user's. Without it, full rights.
    #[serde(default = "yes")]
    pub privsep: bool,
    /// Privileges on every path (`/`, propagated).
    #[serde(default)]
    pub privileges: Vec<String>,
    /// Per-path grants, as `pveum acl modify PATH --tokens ID --roles ...` makes them.
    #[serde(default)]
    pub acl: Vec<AclSpec>,
}

/// One ACL entry of a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclSpec {
    /// `/vms/101`, `/storage/ssd`, `/pool/ci`, `/nodes/pve1`, ...
    pub path: String,
    pub privileges: Vec<String>,
    /// The grant also holds below `path` (PVE's default).
    #[serde(default = "yes")]
    pub propagate: bool,
}

fn yes() -> bool {
    true
}
