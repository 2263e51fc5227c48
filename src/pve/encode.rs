//! Request encoding: path segments, the `sshkeys` double encoding, 0/1 booleans, config updates.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::ConfigUpdate;

/// Everything but RFC 3986 unreserved characters: UPIDs carry `:`, `@` and `!`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What PVE's `urlencoded` format lets through unencoded (`^[-%a-zA-Z0-9_.!~*'()]*$`, minus the
/// `%` that starts an escape).
const SSHKEYS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// One path segment, percent-encoded.
pub(crate) fn segment(text: &str) -> String {
    utf8_percent_encode(text, PATH_SEGMENT).to_string()
}

/// A path from a template such as `/nodes/{node}/qemu/{vmid}/config` and its arguments in order:
/// `(encoded path for the URL, readable path for errors and logs)`.
pub(crate) fn path(template: &str, args: &[&str]) -> (String, String) {
    let mut encoded = String::with_capacity(template.len() + 32);
    let mut readable = String::with_capacity(template.len() + 32);
    let mut args = args.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let literal = &rest[..open];
        encoded.push_str(literal);
        readable.push_str(literal);
        let arg = args.next().copied().unwrap_or_default();
        encoded.push_str(&segment(arg));
        readable.push_str(arg);
        rest = &rest[open + close + 1..];
    }
    encoded.push_str(rest);
    readable.push_str(rest);
    (encoded, readable)
}

/// The `sshkeys` value PVE wants *after* form decoding: the key text percent-encoded once (spaces
/// as `%20`, newlines as `%0A`). The form encoder then encodes it a second time on the wire.
pub fn encode_sshkeys(keys: &str) -> String {
    utf8_percent_encode(keys, SSHKEYS).to_string()
}

/// Form booleans must be exactly `0` or `1` (`true` fails PVE's type check).
pub(crate) fn bool01(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

/// Free-text keys whose value `true`/`false` is meant literally and not as a boolean.
const FREE_TEXT_KEYS: &[&str] = &[
    "description",
    "name",
    "tags",
    "ciuser",
    "cipassword",
    "searchdomain",
    "nameserver",
];

/// Form parameters of a config update: `sshkeys` encoded once more, `true`/`false` as 1/0,
/// `delete` as PVE's comma list, `digest` for optimistic locking.
pub(crate) fn config_params(update: &ConfigUpdate) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = update
        .set
        .iter()
        .map(|(key, value)| {
            let value = match (key.as_str(), value.as_str()) {
                ("sshkeys", keys) => encode_sshkeys(keys),
                (key, "true") if !FREE_TEXT_KEYS.contains(&key) => "1".to_string(),
                (key, "false") if !FREE_TEXT_KEYS.contains(&key) => "0".to_string(),
                (_, value) => value.to_string(),
            };
            (key.clone(), value)
        })
        .collect();
    if !update.delete.is_empty() {
        params.push(("delete".into(), update.delete.join(",")));
    }
    if let Some(digest) = &update.digest {
        params.push(("digest".into(), digest.clone()));
    }
    params
}

/// Keys of a parameter list, for logs (values may be secrets such as `cipassword`).
pub(crate) fn param_keys(params: &[(String, String)]) -> String {
    let mut keys: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    keys.dedup();
    keys.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::Upid;

    #[test]
    fn sshkeys_are_encoded_twice_on_the_wire() {
        let keys = "ssh-ed25519 AAAAC3Nza+x/9k deploy@ci";
        assert_eq!(
            encode_sshkeys(keys),
            "ssh-ed25519%20AAAAC3Nza%2Bx%2F9k%20deploy%40ci"
        );
        let update = ConfigUpdate {
            set: vec![("sshkeys".into(), keys.into())],
            ..Default::default()
        };
        let body = serde_urlencoded::to_string(config_params(&update)).expect("encodes");
        assert_eq!(
            body,
            "sshkeys=ssh-ed25519%2520AAAAC3Nza%252Bx%252F9k%2520deploy%2540ci"
        );
    }

    #[test]
    fn sshkeys_after_form_decoding_match_pves_pattern() {
        let keys = "ssh-rsa AAAAB3NzaC1yc2E= a@b\nssh-ed25519 AAAAC3 (laptop) ~*!'\n";
        let encoded = encode_sshkeys(keys);
        assert!(
            encoded
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-%_.!~*'()".contains(c)),
            "{encoded}"
        );
        assert!(encoded.contains("%0A"));
        assert!(!encoded.contains('+'));
        let decoded = percent_encoding::percent_decode_str(&encoded)
            .decode_utf8()
            .expect("utf8");
        assert_eq!(decoded, keys);
    }

    #[test]
    fn config_booleans_go_as_0_1_and_delete_as_a_list() {
        let update = ConfigUpdate {
            set: vec![
                ("onboot".into(), "true".into()),
                ("numa".into(), "false".into()),
                ("description".into(), "true".into()),
                ("cores".into(), "4".into()),
                ("net0".into(), "virtio,bridge=vmbr1".into()),
            ],
            delete: vec!["ide0".into(), "serial0".into()],
            digest: Some("abc".into()),
        };
        let body = serde_urlencoded::to_string(config_params(&update)).expect("encodes");
        assert_eq!(
            body,
            "onboot=1&numa=0&description=true&cores=4&net0=virtio%2Cbridge%3Dvmbr1&delete=ide0%2Cserial0&digest=abc"
        );
    }

    #[test]
    fn exec_command_goes_as_repeated_keys() {
        let params: Vec<(&str, &str)> = ["/bin/sh", "-c", "echo hi"]
            .iter()
            .map(|a| ("command", *a))
            .collect();
        assert_eq!(
            serde_urlencoded::to_string(params).expect("encodes"),
            "command=%2Fbin%2Fsh&command=-c&command=echo+hi"
        );
    }

    #[test]
    fn paths_encode_upids_once() {
        let upid = "UPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam!ci:";
        let (encoded, readable) = path("/nodes/{node}/tasks/{upid}/status", &["pve1", upid]);
        assert_eq!(
            encoded,
            "/nodes/pve1/tasks/UPID%3Apve1%3A0003A1F2%3A01B2C3D4%3A66C8A0B1%3Aqmclone%3A9000%3Aroot%40pam%21ci%3A/status"
        );
        assert_eq!(readable, format!("/nodes/pve1/tasks/{upid}/status"));
        assert_eq!(path("/version", &[]).0, "/version");
        assert_eq!(
            path("/nodes/{node}/qemu/{vmid}", &["pve 1", "101"]).0,
            "/nodes/pve%201/qemu/101"
        );
    }

    #[test]
    fn upids_parse() {
        let upid = Upid("UPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam:".into());
        let parts = upid.parts().expect("parses");
        assert_eq!(parts.node, "pve1");
        assert_eq!(parts.pid, 238_066);
        assert_eq!(parts.pstart, 28_492_756);
        assert_eq!(parts.starttime, 1_724_424_369);
        assert_eq!(parts.task_type, "qmclone");
        assert_eq!(parts.id, "9000");
        assert_eq!(parts.user, "root@pam");
        assert_eq!(upid.node(), Some("pve1"));
        assert_eq!(upid.task_type(), Some("qmclone"));

        let token = Upid("UPID:node-2:00001234:123456789:66C8A0B1:imgcopy::root@pam!ci:".into());
        assert_eq!(
            token.parts().map(|p| (p.node, p.id, p.user, p.pstart)),
            Some(("node-2", "", "root@pam!ci", 0x1_2345_6789))
        );

        for bad in [
            "",
            "UPID",
            "XPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam:",
            "UPID::0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam:",
            "UPID:pve1:nothex:01B2C3D4:66C8A0B1:qmclone:9000:root@pam:",
            "UPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000::",
            "UPID:pve1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam:extra:",
            "UPID:pve_1:0003A1F2:01B2C3D4:66C8A0B1:qmclone:9000:root@pam:",
        ] {
            assert_eq!(Upid(bad.into()).node(), None, "{bad}");
        }
    }
}
