//! The one writer of discover's TOML: [`to_toml`] renders a [`Discovered`] instance as a
//! commented eniroute config (what the metadata cannot show is left as commented examples), and
//! [`write_atomic`] puts it on disk. May import `crate::model` and the discover types.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{DiscoverError, Discovered, DiscoveredEni};
use crate::model::{mac_text, Mode};

/// Render the discovered instance as a commented eniroute config.
pub fn to_toml(d: &Discovered) -> String {
    let mut out = header(d);
    if let Some(region) = &d.region {
        let _ = writeln!(out, "region = {}", quote(region));
        out.push('\n');
    }
    for eni in &d.enis {
        out.push_str(&eni_table(eni));
        out.push_str(&eip_tables(eni));
    }
    out.push_str(concat!(
        "# Optional: where traffic that is not bound to a source address leaves.\n",
        "# [egress]\n",
        "# strategy = \"failover\"     # failover (first usable via, in order) | balance (ECMP)\n",
        "# [[egress.via]]\n",
        "# eni = \"eth0\"\n",
    ));
    out
}

/// Where the config came from, and what to fill in.
fn header(d: &Discovered) -> String {
    let mut out = String::new();
    let mode = if d.hardened {
        "security-hardening mode, session token"
    } else {
        "plain reads: the service has no token endpoint"
    };
    let _ = writeln!(
        out,
        "# eniroute configuration, generated from the {}.",
        d.provider.service()
    );
    let _ = writeln!(out, "#   provider:  {}", d.provider.name());
    let _ = writeln!(out, "#   generated: {}", format_utc(d.generated_at));
    let _ = writeln!(out, "#   endpoint:  {} ({mode})", comment_safe(&d.endpoint));
    let _ = writeln!(
        out,
        "#   by:        eniroute {} `eniroute discover`",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(concat!(
        "#\n",
        "# ENIs are found by `mac`; `name` is only the label used in eniroute's output and in\n",
        "# [egress]. The metadata shows each ENI's addresses and the public IPv4 addresses it\n",
        "# maps 1:1 to private IPs (NAT mode); the cut-through and multi-eip modes, and EIPs the\n",
        "# metadata does not show, are not visible: fill in the commented [[eni.eip]] blocks\n",
        "# below. Then run `eniroute validate` and `eniroute plan`.\n",
        "\n",
    ));
    out
}

/// One `[[eni]]` table, with its comment.
fn eni_table(eni: &DiscoveredEni) -> String {
    let mut out = String::new();
    if eni.primary {
        let _ = writeln!(out, "# ENI {} (primary ENI)", comment_safe(&eni.id));
    } else {
        let _ = writeln!(out, "# ENI {}", comment_safe(&eni.id));
    }
    out.push_str("[[eni]]\n");
    let _ = writeln!(out, "name = {}", quote(&eni.name));
    let _ = writeln!(out, "mac = {}", quote(&mac_text(eni.mac)));
    if !eni.id.is_empty() {
        let _ = writeln!(out, "id = {}", quote(&eni.id));
    }
    if eni.primary {
        out.push_str("primary = true\n");
    }
    // The metadata shows no mode: nat is what the VPC does by default.
    let _ = writeln!(out, "mode = {}", quote(Mode::DEFAULT.as_str()));
    let _ = writeln!(out, "cidr = {}", quote(&eni.cidr.to_string()));
    let _ = writeln!(out, "gateway = {}", quote(&eni.gateway.to_string()));
    let _ = writeln!(out, "private_ips = {}", quote_list(&eni.private_ips));
    let mut prefixes: Vec<String> = eni.prefixes.iter().map(|p| p.to_string()).collect();
    prefixes.extend(eni.ipv6_prefixes.iter().map(|p| p.to_string()));
    if !prefixes.is_empty() {
        let _ = writeln!(out, "prefixes = {}", quote_list(&prefixes));
    }
    if !eni.ipv6.is_empty() {
        let _ = writeln!(out, "ipv6 = {}", quote_list(&eni.ipv6));
    }
    if let Some(cidr) = &eni.ipv6_cidr {
        let _ = writeln!(out, "ipv6_cidr = {}", quote(&cidr.to_string()));
    }
    if let Some(gw) = &eni.ipv6_gateway {
        let _ = writeln!(out, "ipv6_gateway = {}", quote(&gw.to_string()));
    }
    out.push('\n');
    out
}

/// The ENI's nat-mode EIPs, or a commented example when the metadata shows none. The config
/// allows one EIP on the primary ENI (DESIGN §2): further ones are listed as comments.
fn eip_tables(eni: &DiscoveredEni) -> String {
    let mut out = String::new();
    if eni.eips.is_empty() {
        if eni.primary {
            out.push_str("# The metadata shows no Elastic IP on the primary ENI.\n\n");
        } else {
            out.push_str(&secondary_eip_example(eni));
        }
        return out;
    }
    out.push_str(
        "# Public IPv4 addresses the metadata maps to this ENI (NAT mode: the VPC maps each to\n\
         # one private IP; they are not configured in the guest OS).\n",
    );
    for (i, eip) in eni.eips.iter().enumerate() {
        if eni.primary && i > 0 {
            let _ = writeln!(
                out,
                "# Also mapped, to {}: {} (the config allows one EIP on the primary ENI).",
                eip.private_ip, eip.address
            );
            continue;
        }
        out.push_str("[[eni.eip]]\n");
        let _ = writeln!(out, "address = {}", quote(&eip.address.to_string()));
        let _ = writeln!(out, "private_ip = {}", quote(&eip.private_ip.to_string()));
    }
    out.push('\n');
    out
}

/// Write `text` to `path` atomically: a temporary file in the same directory (mode 0600),
/// fsync, rename over `path`, then fsync the directory. Missing parent directories are created.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), DiscoverError> {
    let werr = |source: io::Error| DiscoverError::Write {
        path: path.to_path_buf(),
        source,
    };
    let Some(file_name) = path.file_name() else {
        return Err(werr(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        )));
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(werr)?;
    if path.is_dir() {
        return Err(werr(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a directory",
        )));
    }

    // A temporary file next to the target (same filesystem), mode 0600 from its creation,
    // renamed over the target once its bytes are on disk (tempfile removes it on failure).
    let mut prefix = OsString::from(".");
    prefix.push(file_name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(werr)?;
    tmp.write_all(text.as_bytes()).map_err(werr)?;
    tmp.as_file().sync_all().map_err(werr)?;
    tmp.persist(path).map_err(|e| werr(e.error))?;
    // Make the rename durable. Some filesystems refuse fsync on a directory: best effort.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn secondary_eip_example(eni: &DiscoveredEni) -> String {
    let private_ip = eni
        .private_ips
        .first()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "<a private IP of this ENI>".to_string());
    let mut s = String::new();
    s.push_str(concat!(
        "# Elastic IPs of this ENI are not in the metadata. To declare one, uncomment and fill in\n",
        "# a block per EIP. The mode (above) is how the EIPs are associated with this ENI:\n",
        "#   nat (default)  the VPC maps each EIP to one private IP; private_ip says which\n",
        "#                  (default: the first of private_ips). Not visible in the guest OS.\n",
        "#   cut-through    set mode = \"cut-through\": the one EIP becomes the ENI's own\n",
        "#                  address; give its gateway (and prefix, default 32); private_ips\n",
        "#                  may list only the primary private IP. No private_ip line.\n",
        "#   multi-eip      set mode = \"multi-eip\": up to 10 EIPs, each configured as a static\n",
        "#                  address (prefix default 32, gateway default this ENI's gateway).\n",
        "#                  No private_ip line.\n",
        "# [[eni.eip]]\n",
        "# address = \"<public EIP address>\"\n",
    ));
    let _ = writeln!(s, "# private_ip = {}", quote(&private_ip));
    s.push('\n');
    s
}

/// A TOML basic string with every needed escape, by the toml crate's own serializer.
fn quote(s: &str) -> String {
    ::toml::Value::String(s.to_string()).to_string()
}

fn quote_list<T: ToString>(items: &[T]) -> String {
    let parts: Vec<String> = items.iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

/// TOML comments may not contain control characters other than tab.
fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC), without panicking on any `SystemTime`.
fn format_utc(t: SystemTime) -> String {
    // humantime formats years 1970..=9999 (and would panic outside them).
    match t.duration_since(UNIX_EPOCH) {
        Ok(since) if since.as_secs() < 253_402_300_800 => {
            humantime::format_rfc3339_seconds(t).to_string()
        }
        _ => "(unknown time)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199); // 2024-02-29T23:59:59Z
        assert_eq!(format_utc(t), "2024-02-29T23:59:59Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_utc(t), "2000-02-29T00:00:00Z");
        assert_eq!(
            format_utc(UNIX_EPOCH - Duration::from_secs(1)),
            "(unknown time)"
        );
        let far = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert_eq!(format_utc(far), "(unknown time)");
    }
}
