//! `--provider auto`: which cloud this is, from the firmware's DMI strings first (no network),
//! then, only when DMI does not say, by probing each service with short timeouts and no
//! retries. May import the discover session and types.

use std::fs;
use std::io::Read;
use std::path::Path;

use super::http::Session;
use super::{DiscoverError, DiscoverOptions, ProviderKind};

/// The DMI files read, at most this many bytes each.
const DMI_FILES: [&str; 6] = [
    "sys_vendor",
    "product_name",
    "bios_vendor",
    "bios_version",
    "product_version",
    "product_uuid",
];
const MAX_DMI_BYTES: u64 = 256;
/// The order services are probed in when DMI is silent.
const PROBE_ORDER: [ProviderKind; 2] = [ProviderKind::Aliyun, ProviderKind::Aws];

/// The cloud, from DMI or by probing.
pub(crate) fn detect(opts: &DiscoverOptions) -> Result<ProviderKind, DiscoverError> {
    let dmi = read_dmi(&opts.dmi_dir);
    if let Some(kind) = from_dmi(&dmi) {
        return Ok(kind);
    }
    for kind in PROBE_ORDER {
        if probe(kind, opts) {
            return Ok(kind);
        }
    }
    let vendor = dmi
        .iter()
        .find(|(k, _)| *k == "sys_vendor")
        .map(|(_, v)| format!("DMI sys_vendor {v:?}"))
        .unwrap_or_else(|| format!("no DMI strings in {}", opts.dmi_dir.display()));
    Err(DiscoverError::UnknownCloud(format!(
        "{vendor}, and neither metadata service answered"
    )))
}

/// (file, trimmed contents) of the DMI files that exist and are readable.
fn read_dmi(dir: &Path) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for name in DMI_FILES {
        let Ok(file) = fs::File::open(dir.join(name)) else {
            continue;
        };
        let mut text = String::new();
        if file.take(MAX_DMI_BYTES).read_to_string(&mut text).is_ok() {
            out.push((name, text.trim().to_string()));
        }
    }
    out
}

/// Alibaba: sys_vendor "Alibaba Cloud", product_name "Alibaba Cloud ECS" (cloud-init's
/// ds-identify matches the product name). AWS: sys_vendor / bios_vendor "Amazon EC2" (Nitro),
/// or a Xen BIOS version ending in ".amazon" and a product UUID starting with "ec2"
/// (cloud-init's ds-identify and DataSourceEc2's platform checks).
fn from_dmi(dmi: &[(&str, String)]) -> Option<ProviderKind> {
    let get = |k: &str| {
        dmi.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    if get("sys_vendor").starts_with("Alibaba Cloud")
        || get("product_name").starts_with("Alibaba Cloud ECS")
    {
        return Some(ProviderKind::Aliyun);
    }
    if get("sys_vendor") == "Amazon EC2"
        || get("bios_vendor") == "Amazon EC2"
        || get("bios_version").to_ascii_lowercase().ends_with("amazon")
        || get("product_uuid").to_ascii_lowercase().starts_with("ec2")
    {
        return Some(ProviderKind::Aws);
    }
    None
}

/// Whether the service answers its own probe path with a 200 (short timeouts, no retry).
fn probe(kind: ProviderKind, opts: &DiscoverOptions) -> bool {
    let quick = DiscoverOptions {
        connect_timeout: opts.probe_timeout,
        read_timeout: opts.probe_timeout,
        retries: 0,
        max_requests: 4,
        ..opts.clone()
    };
    let endpoint = opts.endpoint.as_deref().unwrap_or(kind.default_endpoint());
    let scheme = kind.provider().token_scheme();
    match Session::open(&quick, endpoint, scheme) {
        Ok(mut s) => matches!(s.get(kind.probe_path()), Ok(Some(_))),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dmi(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn dmi_strings_of_each_cloud() {
        let ecs = dmi(&[
            ("sys_vendor", "Alibaba Cloud"),
            ("product_name", "Alibaba Cloud ECS"),
        ]);
        assert_eq!(from_dmi(&ecs), Some(ProviderKind::Aliyun));
        let nitro = dmi(&[("sys_vendor", "Amazon EC2"), ("product_name", "m5.large")]);
        assert_eq!(from_dmi(&nitro), Some(ProviderKind::Aws));
        let xen = dmi(&[
            ("bios_version", "4.11.amazon"),
            ("product_uuid", "EC2E1916-9099-7CAF"),
        ]);
        assert_eq!(from_dmi(&xen), Some(ProviderKind::Aws));
        let kvm = dmi(&[
            ("sys_vendor", "QEMU"),
            ("product_name", "Standard PC (Q35 + ICH9, 2009)"),
        ]);
        assert_eq!(from_dmi(&kvm), None);
        assert_eq!(from_dmi(&[]), None);
    }

    #[test]
    fn dmi_is_read_from_the_given_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("sys_vendor"), "Amazon EC2\n").unwrap();
        fs::write(dir.path().join("product_name"), "x".repeat(10_000)).unwrap();
        let got = read_dmi(dir.path());
        assert_eq!(got[0], ("sys_vendor", "Amazon EC2".to_string()));
        assert_eq!(got[1].1.len(), MAX_DMI_BYTES as usize, "capped");
        assert_eq!(from_dmi(&got), Some(ProviderKind::Aws));
    }
}
