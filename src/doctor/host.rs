//! What the host's files say: running processes (/proc), enabled units, installed network
//! helpers, ifupdown stanzas, cloud-init's netplan, the kernel release and modules. Everything
//! is read below a root directory (`/` on a host, a fixture tree in tests).

use std::fs;
use std::path::{Path, PathBuf};

use super::ini;
use super::networkd::{self, NetworkdConf};

/// At most this much of a module list (modules.dep, modules.builtin) is read.
const MAX_MODULE_LIST: u64 = 16 << 20;

/// At most this many /proc entries are looked at.
const MAX_PROCS: usize = 100_000;

/// A network namespace, by the (device, inode) of its nsfs file.
pub type NsId = (u64, u64);

/// The namespace of an nsfs file (`/proc/PID/ns/net`, `/run/netns/NAME`); None when it cannot
/// be read (another user's process without privilege, a fixture tree).
pub fn ns_id(path: &Path) -> Option<NsId> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A process found in /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub comm: String,
    pub args: Vec<String>,
    /// Its network namespace, when readable.
    pub net_ns: Option<NsId>,
}

/// The host facts doctor judges (kernel objects come separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub root: PathBuf,
    pub processes: Vec<Process>,
    pub networkd_conf: NetworkdConf,
    /// `*.wants/` symlinks under etc/systemd/system (unit name -> the link).
    pub enabled: Vec<(String, PathBuf)>,
    /// ifupdown's `iface NAME` stanzas (name, file) when ifupdown is installed.
    pub ifupdown: Vec<(String, PathBuf)>,
    pub kernel_release: Option<String>,
}

/// Read the host's facts below `root`.
pub fn gather(root: &Path) -> HostFacts {
    HostFacts {
        root: root.to_path_buf(),
        processes: processes(root),
        networkd_conf: networkd::conf(root),
        enabled: enabled_units(root),
        ifupdown: ifupdown_ifaces(root),
        kernel_release: ini::read_small(&root.join("proc/sys/kernel/osrelease"))
            .map(|s| s.trim().to_string()),
    }
}

impl HostFacts {
    /// The first process whose comm is `comm` (the kernel keeps 15 characters of it) that
    /// runs in the namespace `ns` (a process or namespace that cannot be told counts).
    pub fn process_in(&self, comm: &str, ns: Option<NsId>) -> Option<&Process> {
        let short: String = comm.chars().take(15).collect();
        (self.processes.iter())
            .find(|p| p.comm == short && (ns.is_none() || p.net_ns.is_none() || p.net_ns == ns))
    }

    /// The symlink that enables `unit`, if any.
    pub fn enabled(&self, unit: &str) -> Option<&Path> {
        self.enabled
            .iter()
            .find(|(u, _)| u == unit)
            .map(|(_, p)| p.as_path())
    }

    /// The first of `paths` (relative to the root) that exists.
    pub fn first_existing(&self, paths: &[&str]) -> Option<PathBuf> {
        paths
            .iter()
            .map(|p| self.root.join(p))
            .find(|p| p.symlink_metadata().is_ok())
    }

    /// A file below the root (None when missing or too large).
    pub fn read(&self, rel: &str) -> Option<String> {
        ini::read_small(&self.root.join(rel))
    }

    /// Whether the running kernel has module `name` the way modprobe would find it: loaded, or
    /// built in with parameters (sys/module/NAME), built in (modules.builtin) or loadable
    /// (modules.dep) for [`HostFacts::kernel_release`]. None: neither sys/module shows it nor
    /// is there a module list to look in (a kernel without /lib/modules, a fixture tree).
    pub fn kernel_module(&self, name: &str) -> Option<bool> {
        if self.root.join("sys/module").join(name).is_dir() {
            return Some(true);
        }
        let dir = self
            .root
            .join("lib/modules")
            .join(self.kernel_release.as_deref()?);
        let mut listed = None;
        for list in ["modules.builtin", "modules.dep"] {
            let Some(text) = read_capped(&dir.join(list)) else {
                continue;
            };
            let found = text
                .lines()
                .any(|l| module_name(l) == Some(name.replace('-', "_")));
            *listed.get_or_insert(false) |= found;
        }
        listed
    }

    /// Running `eniroute watch` processes serving `netns` (None: the host's namespace).
    pub fn watchers(&self, netns: Option<&str>) -> Vec<u32> {
        self.processes
            .iter()
            .filter(|p| {
                let exe = p.args.first().map(|a| a.rsplit('/').next().unwrap_or(a));
                exe == Some("eniroute")
                    && p.args.iter().any(|a| a == "watch")
                    && watch_netns(&p.args).as_deref() == netns
            })
            .map(|p| p.pid)
            .collect()
    }
}

/// A text file of at most [`MAX_MODULE_LIST`] bytes.
fn read_capped(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    fs::File::open(path)
        .ok()?
        .take(MAX_MODULE_LIST)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The module a line of modules.dep or modules.builtin names (`kernel/net/netfilter/
/// nf_conntrack.ko.xz: deps`), with dashes as underscores (kmod's normal form).
fn module_name(line: &str) -> Option<String> {
    let path = line.split(':').next()?.trim();
    let file = path.rsplit('/').next()?;
    let stem = file.split(".ko").next().filter(|s| s.len() < file.len())?;
    Some(stem.replace('-', "_"))
}

/// The `--netns NAME` (or `--netns=NAME`) of a command line.
fn watch_netns(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--netns" {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix("--netns=") {
            return Some(v.to_string());
        }
    }
    None
}

fn processes(root: &Path) -> Vec<Process> {
    let Ok(entries) = fs::read_dir(root.join("proc")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten().take(MAX_PROCS) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Some(comm) = ini::read_small(&e.path().join("comm")) else {
            continue;
        };
        // cmdline is readable by everyone; a kernel thread's is empty
        let args = fs::read(e.path().join("cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|a| !a.is_empty())
                    .take(64)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.push(Process {
            pid,
            comm: comm.trim().to_string(),
            args,
            net_ns: ns_id(&e.path().join("ns/net")),
        });
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Units enabled through `*.wants/` directories of /etc/systemd/system.
fn enabled_units(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(dirs) = fs::read_dir(root.join("etc/systemd/system")) else {
        return out;
    };
    for d in dirs.flatten().take(1000) {
        if !d.file_name().to_string_lossy().ends_with(".wants") {
            continue;
        }
        for u in fs::read_dir(d.path())
            .into_iter()
            .flatten()
            .flatten()
            .take(1000)
        {
            out.push((u.file_name().to_string_lossy().into_owned(), u.path()));
        }
    }
    out.sort();
    out
}

/// `iface NAME ...` stanzas in /etc/network/interfaces and interfaces.d/*, when ifupdown's
/// ifup is installed (the file alone is not ifupdown).
fn ifupdown_ifaces(root: &Path) -> Vec<(String, PathBuf)> {
    if !["sbin/ifup", "usr/sbin/ifup"]
        .iter()
        .any(|p| root.join(p).is_file())
    {
        return Vec::new();
    }
    let mut files = vec![root.join("etc/network/interfaces")];
    if let Ok(d) = fs::read_dir(root.join("etc/network/interfaces.d")) {
        let mut more: Vec<PathBuf> = d.flatten().take(1000).map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    let mut out = Vec::new();
    for f in files {
        let Some(text) = ini::read_small(&f) else {
            continue;
        };
        for line in text.lines() {
            let mut w = line.split_whitespace();
            if let (Some("iface"), Some(name)) = (w.next(), w.next()) {
                if name != "lo" {
                    out.push((name.to_string(), f.clone()));
                }
            }
        }
    }
    out
}
