//! `disks = [{ slot = "scsi1", size = "200G", storage = "ssd", format = "raw" }]`: the extra
//! disks a VM gets after its clone, besides the template's boot disk.

/// One extra disk: a new volume PVE allocates in `slot` when the config is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraDisk {
    /// The drive key (`scsi1`, `virtio2`, `sata0`, `ide1`).
    pub slot: String,
    /// Bytes (a whole number of MiB, so PVE's GiB notation carries it exactly).
    pub size: u64,
    /// The storage the volume is allocated on.
    pub storage: String,
    /// `raw`, `qcow2` or `vmdk`; the storage's default when unset.
    pub format: Option<String>,
}
