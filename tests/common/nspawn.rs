//! A throw-away systemd container for the tests of boot files and network managers:
//! `systemd-nspawn --volatile=yes --boot` on the host's /usr, on a private network or on a test
//! namespace, booted into one driver service, each in a cgroup of its own (`ContainerCgroup`
//! says why). Included with `#[path]` by boot_files.rs and managers.rs, not from common/mod.rs.
#![allow(dead_code)] // each including test uses a part

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Print a message nobody can miss: the test cannot run here.
pub fn skipped(test: &str, why: &str) {
    let line = "*".repeat(78);
    eprintln!("\n{line}\nSKIPPED: {test}: {why}\n{line}\n");
}

/// An executable by absolute path, on PATH or in the usual directories.
pub fn tool(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tool, or a loud skip message when it is not installed.
pub fn require(test: &str, name: &str, package: &str) -> Option<PathBuf> {
    let found = tool(name);
    if found.is_none() {
        skipped(
            test,
            &format!("`{name}` is not installed (Debian package {package})"),
        );
    }
    found
}

pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// systemd-nspawn when it and iproute2 are installed and we are root; else a loud skip.
pub fn require_root_nspawn(test: &str) -> Option<PathBuf> {
    let nspawn = require(test, "systemd-nspawn", "systemd-container")?;
    require(test, "ip", "iproute2")?;
    if !is_root() {
        skipped(test, "booting a systemd container needs root");
        return None;
    }
    Some(nspawn)
}

/// The container's files: probe/ (read-only at /eniroute-probe), out/ (at /out).
pub struct Boot {
    dir: PathBuf,
    name: String,
}

static N: AtomicUsize = AtomicUsize::new(0);

impl Boot {
    pub fn new(tag: &str, files: &[(&str, String)]) -> Boot {
        let name = format!(
            "eniroute-mgr-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(format!("{name}-{tag}"));
        for sub in ["probe", "out", "system", "etc"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let b = Boot { dir, name };
        for (rel, content) in files {
            let exec = rel.ends_with(".sh") || *rel == "driver";
            b.put(&format!("probe/{rel}"), content, exec);
        }
        b.put(
            "system/probe-driver.service",
            "[Unit]\nDescription=eniroute test driver\n\
             SuccessAction=exit-force\nFailureAction=exit-force\n\
             [Service]\nType=oneshot\nExecStart=/eniroute-probe/driver\nTimeoutStartSec=240\n",
            false,
        );
        b
    }

    /// A file below the container's directories: `probe/` (read-only at /eniroute-probe),
    /// `system/` (read-only at /run/systemd/system), `etc/` (at /etc/eniroute).
    pub fn put(&self, rel: &str, content: &str, executable: bool) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The directory at /out.
    pub fn out_dir(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// A file the driver wrote under /out ("" when none).
    pub fn out(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join("out").join(name)).unwrap_or_default()
    }

    /// The boot's systemd-nspawn command, in a cgroup of its own (keep it while the container
    /// runs): on a private network, or on the network namespace `netns` (with CAP_NET_ADMIN,
    /// which nspawn keeps only with a private network) for a manager to configure its links.
    /// `network/` is bound read-only at /run/systemd/network when the boot has one.
    pub fn command(&self, nspawn: &Path, netns: Option<&str>) -> (ContainerCgroup, Command) {
        let d = &self.dir;
        let bind =
            |flag: &str, src: &str, dst: &str| format!("{flag}={}:{dst}", d.join(src).display());
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=10s", "300s"]).arg(nspawn).args([
            "--quiet",
            "--register=no",
            "--keep-unit",
            "--console=pipe",
            "--directory=/",
            "--volatile=yes",
        ]);
        match netns {
            Some(ns) => cmd
                .arg(format!("--network-namespace-path=/run/netns/{ns}"))
                .arg("--capability=CAP_NET_ADMIN"),
            None => cmd.arg("--private-network"),
        };
        cmd.arg(format!("--machine={}", self.name))
            .arg(bind("--bind", "out", "/out"))
            .arg(bind("--bind-ro", "system", "/run/systemd/system"))
            .arg(bind("--bind-ro", "probe", "/eniroute-probe"))
            .arg(bind("--bind", "etc", "/etc/eniroute"))
            .arg(format!(
                "--bind-ro={}:/eniroute-real",
                env!("CARGO_BIN_EXE_eniroute")
            ));
        if d.join("network").is_dir() {
            cmd.arg(bind("--bind-ro", "network", "/run/systemd/network"));
        }
        cmd.args([
            "--boot",
            "--",
            "systemd.unit=probe-driver.service",
            "systemd.firstboot=off",
            // The container has no links to wait for. On an instance these services are
            // what orders eniroute after the network is up.
            "systemd.mask=systemd-networkd-wait-online.service",
            "systemd.mask=NetworkManager-wait-online.service",
            "systemd.mask=ifupdown-wait-online.service",
        ]);
        let cgroup = ContainerCgroup::new(&self.name);
        let wrapped = cgroup.wrap(&cmd);
        (cgroup, wrapped)
    }

    /// Boot into the driver; (nspawn succeeded and the driver wrote something, report).
    pub fn run(&self, nspawn: &Path) -> (bool, String) {
        let d = &self.dir;
        let (cgroup, mut cmd) = self.command(nspawn, None);
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        drop(cgroup);
        let mut report = String::new();
        let mut names: Vec<_> = fs::read_dir(d.join("out"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            report.push_str(&format!(
                "--- {}\n{}",
                p.display(),
                fs::read_to_string(&p).unwrap_or_default()
            ));
        }
        let ok = out.status.success() && !self.out("driver.txt").is_empty();
        if !ok {
            report.push_str(&format!(
                "--- systemd-nspawn ({})\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        (ok, report)
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A cgroup of its own for one container, in each hierarchy that systemd uses for process
/// tracking (cgroup v1 `name=systemd` and/or the cgroup2 tree), under the test's own cgroup.
///
/// With `--keep-unit` (needed: without systemd as PID 1 there is no machined or bus to create a
/// scope with), systemd-nspawn takes the cgroup it was started in as the container's delegated
/// cgroup and splits it into `payload/` (the container's systemd) and `supervisor/` (nspawn). On
/// a systemd host that cgroup is the invoking unit's, one per container; here every nspawn
/// would be started from the same cgroup (the root), so containers running at the same time
/// (the `systemd_sandbox_*` and manager tests in parallel threads, or another test run on the machine)
/// shared one `payload/` and each container's systemd created and removed the other's
/// `system.slice/eniroute.service`: a control process then failed to join it (219/CGROUP).
pub struct ContainerCgroup {
    dirs: Vec<PathBuf>,
}

impl ContainerCgroup {
    pub fn new(name: &str) -> ContainerCgroup {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount_of = |v2: bool| {
            mountinfo.lines().find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let mut r = right.split_whitespace();
                let (fstype, opts) = (r.next()?, r.nth(1).unwrap_or(""));
                let hit = if v2 {
                    fstype == "cgroup2"
                } else {
                    fstype == "cgroup" && opts.split(',').any(|o| o == "name=systemd")
                };
                hit.then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap_or("/")))
            })
        };
        let mut dirs = Vec::new();
        for line in fs::read_to_string("/proc/self/cgroup").unwrap().lines() {
            let mut f = line.splitn(3, ':');
            let (_, controllers, own) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            let mount = match controllers {
                "" => mount_of(true),
                "name=systemd" => mount_of(false),
                _ => None,
            };
            if let Some(mount) = mount {
                let dir = mount.join(own.trim_start_matches('/')).join(name);
                match fs::create_dir(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                        panic!("cannot create cgroup {}: {e}", dir.display())
                    }
                    _ => dirs.push(dir),
                }
            }
        }
        assert!(!dirs.is_empty(), "no cgroup hierarchy for systemd found");
        ContainerCgroup { dirs }
    }

    /// `cmd`, moved into these cgroups before it is exec'd.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut w = Command::new("sh");
        w.arg("-c")
            .arg(r#"while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@""#)
            .arg("sh");
        w.args(self.dirs.iter().map(|d| d.join("cgroup.procs")));
        w.arg("--").arg(cmd.get_program()).args(cmd.get_args());
        w
    }
}

impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        fn remove(dir: &Path) -> std::io::Result<()> {
            for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&e.path())?;
                }
            }
            match fs::remove_dir(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        for dir in &self.dirs {
            for _ in 0..50 {
                if remove(dir).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}
