//! Drive property strings (`scsi0`, `efidisk0`, `ide2`, ...) and PVE's size notation.

use super::invalid_key;

/// A drive property string: the volume (or a new-disk request `<storage>:<GiB>`) and options.
#[derive(Debug, Clone, PartialEq)]
pub struct Drive {
    pub volume: String,
    pub opts: Vec<(String, String)>,
}

const DRIVE_KEYS: &[&str] = &[
    "file",
    "media",
    "size",
    "iothread",
    "cache",
    "discard",
    "ssd",
    "backup",
    "replicate",
    "aio",
    "format",
    "efitype",
    "pre-enrolled-keys",
    "ms-cert",
    "serial",
    "wwn",
    "ro",
    "snapshot",
    "werror",
    "rerror",
    "detect_zeroes",
    "cyls",
    "heads",
    "secs",
    "trans",
    "import-from",
    "mbps",
    "iops",
    "shared",
    "product",
    "vendor",
    "queues",
    "scsiblock",
];

impl Drive {
    pub fn opt(&self, k: &str) -> Option<&str> {
        self.opts
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn set_opt(&mut self, k: &str, v: String) {
        match self.opts.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v,
            None => self.opts.push((k.to_string(), v)),
        }
    }
    pub fn is_cdrom(&self) -> bool {
        self.opt("media") == Some("cdrom")
    }
    pub fn is_cloudinit(&self) -> bool {
        self.volume.contains("-cloudinit")
    }
    /// `storage` of `storage:volname`.
    pub fn storage(&self) -> Option<&str> {
        self.volume.split_once(':').map(|(s, _)| s)
    }
    pub fn size(&self) -> Option<u64> {
        self.opt("size").and_then(parse_size)
    }
    /// `Some((storage, GiB))` for a new-disk request such as `ssd:32`.
    pub fn new_disk(&self) -> Option<(String, f64)> {
        let (sid, size) = self.volume.split_once(':')?;
        if size.is_empty() || !size.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
            return None;
        }
        Some((sid.to_string(), size.parse().ok()?))
    }
    pub fn render(&self) -> String {
        // print_drive: the volume first, the options sorted.
        let mut s = self.volume.clone();
        let mut opts: Vec<&(String, String)> = self.opts.iter().collect();
        opts.sort();
        for (k, v) in opts {
            s.push_str(&format!(",{k}={v}"));
        }
        s
    }
}

pub fn parse_drive(v: &str) -> Result<Drive, String> {
    let mut volume = None;
    let mut opts = Vec::new();
    for (i, item) in v.split(',').enumerate() {
        match item.split_once('=') {
            None if i == 0 => volume = Some(item.to_string()),
            None => return Err(invalid_key(item)),
            Some(("file", f)) => volume = Some(f.to_string()),
            Some((k, val)) if DRIVE_KEYS.contains(&k) => {
                if k == "size" && parse_size(val).is_none() {
                    return Err(format!(
                        "invalid format - size: value '{val}' does not look like a valid disk size\n"
                    ));
                }
                opts.push((k.to_string(), val.to_string()));
            }
            Some((k, _)) => return Err(invalid_key(k)),
        }
    }
    match volume {
        Some(volume) if !volume.is_empty() => Ok(Drive { volume, opts }),
        _ => Err("invalid format - property 'file' is missing\n".into()),
    }
}

/// `128G`, `+10G`, `4M`, `528K`, `1024` (bytes); units are powers of 1024.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    Some((n * mult as f64).round() as u64)
}

/// PVE's `format_size`: the largest unit that divides evenly.
pub fn format_size(bytes: u64) -> String {
    for (unit, m) in [
        ('T', 1u64 << 40),
        ('G', 1 << 30),
        ('M', 1 << 20),
        ('K', 1 << 10),
    ] {
        if bytes >= m && bytes.is_multiple_of(m) {
            return format!("{}{unit}", bytes / m);
        }
    }
    bytes.to_string()
}

/// `transferred 1.3 GiB of 128.0 GiB` style: one decimal, binary units.
pub fn human_bytes(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}
