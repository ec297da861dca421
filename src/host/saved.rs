//! The saved sysctls: each value eniroute found before its first change, keyed by the link's
//! MAC (or index) rather than its name, so a rename keeps it. Written ahead of the change,
//! durably (fsync'd file, atomic rename, fsync'd directory); a file that does not parse, or
//! that names anything but a sysctl eniroute manages, is refused and kept.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{HostError, State};

/// The file of the saved originals, in the namespace's state directory.
const SAVED: &str = "sysctl.json";
use crate::model::{Family, Knob};

/// The format of sysctl.json.
const VERSION: u32 = 2;
/// A saved file is at most this big (a few hundred entries).
const MAX_BYTES: u64 = 1 << 20;

/// The link a per-interface sysctl belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkKey {
    /// Lower-case MAC: the identity that survives renames (and index changes).
    pub mac: Option<String>,
    pub index: u32,
    /// The name when saved: shown in messages, and the identity only for entries migrated
    /// from the first format (which knew names alone: mac none, index 0).
    pub name: String,
}

/// One saved original value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedSysctl {
    pub family: Family,
    pub knob: Knob,
    /// None for a namespace-wide knob.
    pub link: Option<LinkKey>,
    pub value: String,
}

impl SavedSysctl {
    /// Whether this entry is the same sysctl as `other`.
    pub fn same(&self, family: Family, knob: Knob, link: Option<&LinkKey>) -> bool {
        self.family == family && self.knob == knob && self.link.as_ref() == link
    }

    fn check(&self) -> Result<(), String> {
        if self.knob.per_interface() != self.link.is_some() {
            return Err(format!("{:?} with the wrong kind of link", self.knob));
        }
        let v = &self.value;
        let numeric =
            !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_digit() || b == b'-');
        if !numeric {
            return Err(format!(
                "value {:?} is not a sysctl value eniroute saves",
                short(v)
            ));
        }
        Ok(())
    }
}

/// Values found before eniroute's first change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    #[serde(default)]
    version: u32,
    pub sysctls: Vec<SavedSysctl>,
}

/// The first format: sysctl path -> value, by interface name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedV1 {
    values: std::collections::BTreeMap<String, String>,
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

impl Saved {
    pub fn is_empty(&self) -> bool {
        self.sysctls.is_empty()
    }

    /// The saved value of a sysctl.
    pub fn get(&self, family: Family, knob: Knob, link: Option<&LinkKey>) -> Option<&SavedSysctl> {
        self.sysctls.iter().find(|s| s.same(family, knob, link))
    }

    /// Remember `value` as the original, unless one is saved already (never overwritten).
    pub fn remember(&mut self, family: Family, knob: Knob, link: Option<LinkKey>, value: &str) {
        if self.get(family, knob, link.as_ref()).is_none() {
            self.sysctls.push(SavedSysctl {
                family,
                knob,
                link,
                value: value.to_string(),
            });
        }
    }

    fn parse(bytes: &[u8]) -> Result<Saved, String> {
        let saved = match serde_json::from_slice::<Saved>(bytes) {
            Ok(s) if s.version == VERSION => s,
            Ok(s) => return Err(format!("format version {} is not {VERSION}", s.version)),
            Err(e) => match serde_json::from_slice::<SavedV1>(bytes) {
                Ok(v1) => Saved::from_v1(v1)?,
                Err(_) => return Err(e.to_string()),
            },
        };
        saved.sysctls.iter().try_for_each(SavedSysctl::check)?;
        Ok(saved)
    }

    fn from_v1(v1: SavedV1) -> Result<Saved, String> {
        let mut saved = Saved::default();
        for (path, value) in v1.values {
            let key = crate::model::SysctlKey::parse(&path)
                .ok_or_else(|| format!("{:?} is not a sysctl eniroute manages", short(&path)))?;
            let link = key.iface.map(|name| LinkKey {
                mac: None,
                index: 0,
                name,
            });
            saved.remember(key.family, key.knob, link, &value);
        }
        Ok(saved)
    }
}

impl State {
    fn saved_path(&self) -> PathBuf {
        self.dir.join(SAVED)
    }

    /// The saved sysctls; a missing file is an empty set. A file that cannot be used is an
    /// error, and is left where it is.
    pub fn saved(&self) -> Result<Saved, HostError> {
        let path = self.saved_path();
        let corrupt = |reason: String| HostError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        let bytes = match fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
            Err(e) => return Err(corrupt(e.to_string())),
            Ok(m) if !m.is_file() => return Err(corrupt("not a regular file".into())),
            Ok(m) if m.len() > MAX_BYTES => return Err(corrupt("larger than 1 MiB".into())),
            Ok(_) => fs::read(&path).map_err(|e| corrupt(e.to_string()))?,
        };
        Saved::parse(&bytes).map_err(corrupt)
    }

    /// Save durably and atomically; an empty set removes the file.
    pub fn store(&self, saved: &Saved) -> Result<(), HostError> {
        let path = self.saved_path();
        let err = |source| HostError::State {
            path: path.display().to_string(),
            source,
        };
        if saved.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
                _ => Ok(()),
            };
        }
        let mut doc = saved.clone();
        doc.version = VERSION;
        let body = serde_json::to_vec_pretty(&doc).map_err(|e| err(e.into()))?;
        self.write_durable(SAVED, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> State {
        let d = std::env::temp_dir().join(format!("eniroute-saved-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        State::at(d)
    }

    fn link(mac: &str) -> Option<LinkKey> {
        Some(LinkKey {
            mac: Some(mac.into()),
            index: 3,
            name: "eth1".into(),
        })
    }

    #[test]
    fn saved_sysctls_round_trip_never_overwrite_and_empty_removes_the_file() {
        let st = dir("rt");
        assert_eq!(st.saved().unwrap(), Saved::default());
        let mut s = Saved::default();
        s.remember(Family::V4, Knob::RpFilter, link("02:00:00:00:00:01"), "1");
        s.remember(Family::V4, Knob::RpFilter, link("02:00:00:00:00:01"), "2");
        s.remember(Family::V4, Knob::FibMultipathHashPolicy, None, "0");
        st.store(&s).unwrap();
        let back = st.saved().unwrap();
        assert_eq!(back.sysctls, s.sysctls);
        assert_eq!(back.sysctls[0].value, "1");
        st.store(&Saved::default()).unwrap();
        assert!(!st.saved_path().exists());
        st.remove();
    }

    #[test]
    fn a_corrupt_or_hostile_file_is_refused_and_kept() {
        let st = dir("bad");
        st.ensure_dir().unwrap();
        for body in [
            "{not json",
            r#"{"values": {"net/../../../../tmp/x": "1"}}"#,
            r#"{"version": 2, "sysctls": [{"family": "v4", "knob": "rp_filter", "link": null, "value": "1"}]}"#,
            r#"{"version": 2, "sysctls": [{"family": "v4", "knob": "core_pattern", "link": null, "value": "1"}]}"#,
            r#"{"version": 2, "sysctls": [{"family": "v4", "knob": "fib_multipath_hash_policy", "link": null, "value": "|sh"}]}"#,
            r#"{"version": 9, "sysctls": []}"#,
        ] {
            fs::write(st.saved_path(), body).unwrap();
            let e = st.saved().unwrap_err();
            assert!(matches!(e, HostError::Corrupt { .. }), "{body}: {e}");
            assert!(st.saved_path().exists(), "kept for inspection");
        }
        st.remove();
    }

    #[test]
    fn the_first_format_is_read_by_interface_name() {
        let st = dir("v1");
        st.ensure_dir().unwrap();
        fs::write(
            st.saved_path(),
            r#"{"values": {"net/ipv4/conf/eth1/rp_filter": "1", "net/ipv4/fib_multipath_hash_policy": "0"}}"#,
        )
        .unwrap();
        let s = st.saved().unwrap();
        assert_eq!(s.sysctls.len(), 2);
        let l = s.sysctls.iter().find_map(|x| x.link.clone()).unwrap();
        assert_eq!((l.mac, l.index, l.name.as_str()), (None, 0, "eth1"));
        st.remove();
    }
}
