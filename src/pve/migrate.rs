//! Moving a VM to another node: `POST migrate`.

use reqwest::Method;

use super::calls::{required_upid, vmid_text};
use super::transport::Request;
use super::{Client, Result, Upid};

impl Client {
    /// `POST migrate` of a stopped VM to `target`, its local disks onto `targetstorage` there:
    /// a `qmigrate` task. Not repeated after an unknown outcome (a second request for a VM
    /// being migrated fails on its lock); look where the VM is instead.
    pub async fn migrate(
        &self,
        node: &str,
        vmid: u32,
        target: &str,
        targetstorage: &str,
    ) -> Result<Upid> {
        let request = Request::new(
            Method::POST,
            "/nodes/{node}/qemu/{vmid}/migrate",
            &[node, &vmid_text(vmid)],
        )
        .param("target", target)
        .param("targetstorage", targetstorage)
        .idempotent(false);
        let data = self.inner.call(&request).await?;
        required_upid(&request.call(), data)
    }
}
