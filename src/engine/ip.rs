//! PLACEHOLDER until the config branch lands (replaced by the real IpRules).
use std::net::IpAddr;
use crate::config::ChecksConfig;
use crate::pve::AgentInterface;
pub struct IpRules;
pub struct IpChoice { pub ip: Option<IpAddr>, pub candidates: Vec<IpAddr> }
impl IpRules {
    pub fn from_checks(_c: &ChecksConfig) -> IpRules { IpRules }
    pub fn select(&self, _i: &[AgentInterface], _mac: Option<&str>) -> IpChoice { IpChoice { ip: None, candidates: vec![] } }
}
