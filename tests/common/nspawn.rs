//! A throw-away systemd container for the manager tests: `systemd-nspawn --volatile=yes
//! --private-network --boot` on the host's /usr, booted into one driver service, each in a
//! cgroup of its own (the reasons are in tests/boot_files.rs, `ContainerCgroup`, which can use
//! this one). Included with `#[path]` by boot_files.rs and managers.rs, not from common/mod.rs.
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

/// An executable by absolute path or in the usual directories.
pub fn tool(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// systemd-nspawn when it and iproute2 are installed and we are root; else a loud skip.
pub fn require_root_nspawn(test: &str) -> Option<PathBuf> {
    let (Some(nspawn), Some(_)) = (tool("systemd-nspawn"), tool("ip")) else {
        skipped(
            test,
            "systemd-nspawn (systemd-container) or ip (iproute2) is not installed",
        );
        return None;
    };
    let root = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
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
        use std::os::unix::fs::PermissionsExt;
        let name = format!(
            "eniroute-mgr-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(format!("{name}-{tag}"));
        for sub in ["probe", "out", "system"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for (rel, content) in files {
            let p = dir.join("probe").join(rel);
            fs::write(&p, content).unwrap();
            let mode = if rel.ends_with(".sh") || *rel == "driver" {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }
        fs::write(
            dir.join("system/probe-driver.service"),
            "[Unit]\nDescription=eniroute manager test driver\n\
             SuccessAction=exit-force\nFailureAction=exit-force\n\
             [Service]\nType=oneshot\nExecStart=/eniroute-probe/driver\nTimeoutStartSec=240\n",
        )
        .unwrap();
        Boot { dir, name }
    }

    /// A file the driver wrote under /out ("" when none).
    pub fn out(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join("out").join(name)).unwrap_or_default()
    }

    /// Boot into the driver; (nspawn succeeded and the driver wrote something, report).
    pub fn run(&self, nspawn: &Path) -> (bool, String) {
        let cgroup = ContainerCgroup::new(&self.name);
        let d = &self.dir;
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=10s", "300s"]).arg(nspawn).args([
            "--quiet",
            "--register=no",
            "--keep-unit",
            "--console=pipe",
            "--directory=/",
            "--volatile=yes",
            "--private-network",
        ]);
        cmd.arg(format!("--machine={}", self.name))
            .arg(format!("--bind={}:/out", d.join("out").display()))
            .arg(format!(
                "--bind-ro={}:/run/systemd/system",
                d.join("system").display()
            ))
            .arg(format!(
                "--bind-ro={}:/eniroute-probe",
                d.join("probe").display()
            ))
            .arg(format!(
                "--bind-ro={}:/eniroute-real",
                env!("CARGO_BIN_EXE_eniroute")
            ))
            .args([
                "--boot",
                "--",
                "systemd.unit=probe-driver.service",
                "systemd.firstboot=off",
                "systemd.mask=systemd-networkd-wait-online.service",
                "systemd.mask=NetworkManager-wait-online.service",
            ]);
        let out = cgroup.wrap(&cmd).stdin(Stdio::null()).output().unwrap();
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
