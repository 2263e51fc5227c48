//! The value formats deploy.toml uses: durations, sizes, names PVE accepts, token ids,
//! fingerprints, address ranges. Each parser returns `Err(what is allowed)` so the caller can
//! name the key and the line around it.

use std::net::IpAddr;
use std::time::Duration;

use super::{AddressPool, Cidr, HostAddress};

/// `"30s"`, `"5m"`, `"1h30m"`, `"500ms"`, `"2d"`: whole numbers with units ms, s, m, h, d.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const ALLOWED: &str =
        "a duration: whole numbers with units ms, s, m, h, d, such as \"30s\", \"5m\", \"1h30m\"";
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(ALLOWED.to_string());
    }
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(ALLOWED.to_string());
        }
        let (number, tail) = rest.split_at(digits);
        let letters = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(letters);
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(ALLOWED.to_string()),
        };
        let number: u64 = number.parse().map_err(|_| ALLOWED.to_string())?;
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|part| total_ms.checked_add(part))
            .ok_or_else(|| "a duration shorter than a few million years".to_string())?;
        rest = tail;
    }
    Ok(Duration::from_millis(total_ms))
}

/// The shortest text `parse_duration` reads back as `d` (to the millisecond): `"1h30m"`, `"0s"`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

const KIB: u64 = 1024;
const SIZE_UNITS: [(char, u64); 4] = [
    ('K', KIB),
    ('M', KIB * KIB),
    ('G', KIB * KIB * KIB),
    ('T', KIB * KIB * KIB * KIB),
];

/// `"128G"`, `"512M"`, `"2T"` (also `"128GiB"`): a whole number and a unit K, M, G or T, powers
/// of 1024 as PVE counts them. Returns bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    const ALLOWED: &str = "a size: a whole number and a unit K, M, G or T (powers of 1024, as PVE \
                           counts), such as \"128G\" or \"512M\"";
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if digits == 0 {
        return Err(ALLOWED.to_string());
    }
    let unit = unit.strip_suffix("iB").unwrap_or(unit);
    let mut chars = unit.chars();
    let (Some(letter), None) = (chars.next(), chars.next()) else {
        if unit.ends_with('B') {
            return Err(format!(
                "{ALLOWED}; write \"G\" rather than \"GB\": the units are powers of 1024"
            ));
        }
        return Err(ALLOWED.to_string());
    };
    let Some(&(_, factor)) = SIZE_UNITS
        .iter()
        .find(|(u, _)| *u == letter.to_ascii_uppercase())
    else {
        return Err(ALLOWED.to_string());
    };
    let number: u64 = number.parse().map_err(|_| ALLOWED.to_string())?;
    number
        .checked_mul(factor)
        .ok_or_else(|| "a size below 16 EiB".to_string())
}

/// Bytes as PVE's size syntax with the largest exact unit: `"128G"`, `"4M"`, or plain bytes.
pub fn format_size(bytes: u64) -> String {
    for &(unit, factor) in SIZE_UNITS.iter().rev() {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    bytes.to_string()
}

/// One DNS label: letters, digits and inner hyphens, at most 63 characters.
fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// PVE's `dns-name` format (VM names, node names): dot-separated labels of letters, digits and
/// inner hyphens. On top of PVE's rule we apply the DNS lengths (63 per label, 253 in all),
/// because the name becomes the guest's hostname through cloud-init.
pub fn check_dns_name(name: &str) -> Result<(), String> {
    if name.len() <= 253 && name.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(
            "a DNS name: letters, digits and hyphens (not first or last), dot-separated labels of \
             at most 63 characters; no underscores or spaces (PVE refuses them)"
                .to_string(),
        )
    }
}

/// PVE's `pve-storage-id`: `^[a-z][a-z0-9\-_.]*[a-z0-9]$`.
pub fn check_storage_id(id: &str) -> Result<(), String> {
    let b = id.as_bytes();
    let ok = b.len() >= 2
        && b[0].is_ascii_lowercase()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(
            "a PVE storage id: lowercase letters, digits, '-', '_', '.', starting with a letter \
             and ending with a letter or digit, such as \"local-lvm\" or \"ssd\""
                .to_string(),
        )
    }
}

/// PVE's `pve-bridge-id` (`[-_.\w]+`), within Linux's 15-character interface names.
pub fn check_bridge(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err("a bridge name: up to 15 letters, digits, '-', '_', '.', such as \"vmbr1\"".to_string())
    }
}

/// A disk key PVE can resize: `scsi0`..`scsi30`, `virtio0`..`virtio15`, `sata0`..`sata5`,
/// `ide0`..`ide3`.
pub fn check_disk(disk: &str) -> Result<(), String> {
    let split = disk
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(disk.len());
    let (bus, index) = disk.split_at(split);
    let max = match bus {
        "scsi" => 30,
        "virtio" => 15,
        "sata" => 5,
        "ide" => 3,
        _ => 0,
    };
    let index_ok = !index.is_empty()
        && index.bytes().all(|c| c.is_ascii_digit())
        && (index == "0" || !index.starts_with('0'))
        && index.parse::<u32>().is_ok_and(|i| i <= max);
    if max > 0 && index_ok {
        Ok(())
    } else {
        Err("a disk key: scsi0..scsi30, virtio0..virtio15, sata0..sata5 or ide0..ide3".to_string())
    }
}

/// A tag-safe rollout name (it marks the VMs as a PVE tag and names the journal):
/// PVE's `pve-tag` format `[a-z0-9_][a-z0-9_\-+.]*`, at most 64 characters.
pub fn check_rollout_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(
            "a rollout name usable as a PVE tag: up to 64 letters, digits, '_', '-', '+', '.', \
             starting with a letter, digit or '_'"
                .to_string(),
        )
    }
}

/// A Linux user name for cloud-init's `ciuser`.
pub fn check_ciuser(user: &str) -> Result<(), String> {
    let b = user.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(
            "a Linux user name: up to 32 letters, digits, '_', '-', '.', starting with a letter \
             or '_', such as \"ubuntu\""
                .to_string(),
        )
    }
}

/// PVE realm and token names: `[A-Za-z][A-Za-z0-9.\-_]+`.
fn is_pve_ident(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

/// `user@realm`: PVE's userid (`[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+`, at most 64 characters).
pub fn check_userid(userid: &str) -> Result<(), String> {
    let ok = userid.len() <= 64
        && userid.rsplit_once('@').is_some_and(|(user, realm)| {
            !user.is_empty()
                && !user
                    .chars()
                    .any(|c| c.is_whitespace() || c == ':' || c == '/' || c == '!')
                && is_pve_ident(realm)
        });
    if ok {
        Ok(())
    } else {
        Err("a PVE user id `user@realm`, such as \"root@pam\" or \"deploy@pve\"".to_string())
    }
}

/// `user@realm!name`: a PVE API token id.
pub fn check_token_id(token_id: &str) -> Result<(), String> {
    const ALLOWED: &str = "an API token id `user@realm!name`, such as \"root@pam!rollout\" (the \
                           secret goes in token_secret_file or env PVE_TOKEN_SECRET, not here)";
    let Some((userid, name)) = token_id.split_once('!') else {
        return Err(ALLOWED.to_string());
    };
    if check_userid(userid).is_ok() && is_pve_ident(name) {
        Ok(())
    } else {
        Err(ALLOWED.to_string())
    }
}

/// `10.0.0.0/8` or `fd00::/8`, with no host bits set.
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    const ALLOWED: &str = "an address range in CIDR form, such as \"10.0.0.0/8\" or \"fd00::/8\"";
    let Some((addr, prefix)) = text.trim().split_once('/') else {
        return Err(ALLOWED.to_string());
    };
    let addr: IpAddr = addr.parse().map_err(|_| ALLOWED.to_string())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("{ALLOWED}; the prefix length is 0 to {max}"))?;
    let cidr = Cidr { addr, prefix };
    let network = cidr.network();
    if network != addr {
        return Err(format!(
            "{ALLOWED} with no host bits set; did you mean \"{network}/{prefix}\"?"
        ));
    }
    Ok(cidr)
}

/// An IPv4 host address with its prefix length, `10.0.10.21/24`: not the subnet's network or
/// broadcast address (prefixes up to /30; /31 and /32 have no such addresses).
pub fn parse_host_address(text: &str) -> Result<HostAddress, String> {
    const ALLOWED: &str = "an IPv4 address with its prefix length, such as \"10.0.10.21/24\"";
    let (ip, prefix) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| ALLOWED.to_string())?;
    let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| ALLOWED.to_string())?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(|| format!("{ALLOWED}; the prefix length is 1 to 32"))?;
    let host = HostAddress { ip, prefix };
    if prefix <= 30 {
        let network = u32::from(ip) & (u32::MAX << (32 - prefix));
        let broadcast = network | !(u32::MAX << (32 - prefix));
        if u32::from(ip) == network || u32::from(ip) == broadcast {
            return Err(format!(
                "{ALLOWED}; {ip} is the network or broadcast address of {}, not a host's",
                host.subnet().network()
            ));
        }
    }
    Ok(host)
}

/// `10.0.10.20-10.0.10.69/24`: both ends host addresses of the same subnet, first <= last.
pub fn parse_address_pool(text: &str) -> Result<AddressPool, String> {
    const ALLOWED: &str =
        "an IPv4 range with its subnet's prefix length, such as \"10.0.10.20-10.0.10.69/24\"";
    let (range, prefix) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| ALLOWED.to_string())?;
    let (first, last) = range.split_once('-').ok_or_else(|| ALLOWED.to_string())?;
    let first = parse_host_address(&format!("{first}/{prefix}")).map_err(|e| {
        format!(
            "{ALLOWED}; first address: {}",
            e.trim_start_matches(ALLOWED).trim_start_matches("; ")
        )
    })?;
    let last = parse_host_address(&format!("{last}/{prefix}")).map_err(|e| {
        format!(
            "{ALLOWED}; last address: {}",
            e.trim_start_matches(ALLOWED).trim_start_matches("; ")
        )
    })?;
    if first.ip > last.ip {
        return Err(format!("{ALLOWED}; {} comes after {}", first.ip, last.ip));
    }
    if first.subnet().network() != last.subnet().network() {
        return Err(format!(
            "{ALLOWED}; {} and {} are not in the same /{} subnet",
            first.ip, last.ip, first.prefix
        ));
    }
    Ok(AddressPool {
        first: first.ip,
        last: last.ip,
        prefix: first.prefix,
    })
}

/// Levenshtein distance, for "did you mean" on unknown keys.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print_back() {
        for (text, ms) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("2d", 172_800_000),
            ("0s", 0),
            ("1m30s", 90_000),
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(d, Duration::from_millis(ms), "{text}");
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        for bad in [
            "",
            "30",
            "s",
            "1.5h",
            "30 s",
            "-1s",
            "1y",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_are_powers_of_1024() {
        assert_eq!(parse_size("128G").unwrap(), 128 << 30);
        assert_eq!(parse_size("128GiB").unwrap(), 128 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        assert_eq!(format_size(128 << 30), "128G");
        assert_eq!(format_size(1536 << 20), "1536M");
        assert_eq!(format_size(1000), "1000");
        for bad in ["", "128", "G", "1.5G", "128 G", "128X", "-1G"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(parse_size("128GB").unwrap_err().contains("powers of 1024"));
    }

    #[test]
    fn names_follow_pve_rules() {
        for good in [
            "web-1",
            "a",
            "ubuntu-opentofu-50",
            "host.example.org",
            "9000",
        ] {
            assert!(check_dns_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "my_vm", "-web", "web-", "a..b", "web 1", long.as_str()] {
            assert!(check_dns_name(bad).is_err(), "{bad}");
        }
        assert!(check_storage_id("local-lvm").is_ok());
        assert!(check_storage_id("ssd").is_ok());
        assert!(check_storage_id("SSD").is_err());
        assert!(check_bridge("vmbr1").is_ok());
        assert!(check_bridge("vmbr 1").is_err());
        assert!(check_disk("scsi0").is_ok());
        assert!(check_disk("virtio15").is_ok());
        assert!(check_disk("scsi31").is_err());
        assert!(check_disk("scsi01").is_err());
        assert!(check_disk("efidisk0").is_err());
    }

    #[test]
    fn token_ids_and_users() {
        assert!(check_token_id("root@pam!rollout").is_ok());
        assert!(check_token_id("deploy@pve!ci-1").is_ok());
        assert!(check_token_id("a.b@example.com@ldap!tok").is_ok());
        for bad in [
            "root@pam",
            "root!tok",
            "@pam!tok",
            "root@pam!",
            "root@pam!1x",
            "ro ot@pam!t",
        ] {
            assert!(check_token_id(bad).is_err(), "{bad}");
        }
        assert!(check_userid("root@pam").is_ok());
        assert!(check_userid("root").is_err());
    }

    #[test]
    fn cidrs() {
        let c = parse_cidr("10.0.0.0/8").unwrap();
        assert_eq!(c.prefix, 8);
        assert!(parse_cidr("fd00::/8").is_ok());
        assert!(parse_cidr("0.0.0.0/0").is_ok());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("10.0.0.0").is_err());
        assert!(
            parse_cidr("10.1.2.3/8")
                .unwrap_err()
                .contains("did you mean \"10.0.0.0/8\"")
        );
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("vm_cout", "vm_count"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
