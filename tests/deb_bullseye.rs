//! The Debian package on an older image: `packaging/build-deb` builds it, then it is installed
//! with dpkg into a Debian 11 (bullseye, glibc 2.31) root made by `debootstrap --variant=minbase`
//! and used there: `--version`, `validate` of an installed example, the bash completion, the
//! man pages. Needs root, debootstrap and cargo-deb (.ci/run installs both); the root is cached
//! under target/debootstrap/ (delete it to start over). Slow: a release build and, the first
//! time, a debootstrap (about 30 s from deb.debian.org).

use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(MANIFEST).join("target"))
}

/// Build the package (incremental after the first time) and return its path.
fn build_deb() -> PathBuf {
    run(Command::new(Path::new(MANIFEST).join("packaging/build-deb")).current_dir(MANIFEST));
    let dir = target_dir().join("debian");
    let version = env!("CARGO_PKG_VERSION");
    let deb = dir.join(format!("eniroute_{version}-1_amd64.deb"));
    assert!(deb.is_file(), "build-deb did not produce {}", deb.display());
    deb
}

/// A Debian 11 minbase root, made once (into a temporary name, renamed when complete).
fn bullseye_root() -> PathBuf {
    let root = target_dir().join("debootstrap/bullseye");
    if root.join("usr/bin/dpkg").exists() {
        return root;
    }
    assert!(
        is_root(),
        "this test needs root (debootstrap, chroot): run it with sudo"
    );
    let partial = target_dir().join("debootstrap/bullseye.partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).expect("create the debootstrap directory");
    let mirror = std::env::var("ENIROUTE_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".to_string());
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", "bullseye"])
        .arg(&partial)
        .arg(&mirror)
        .status()
        .unwrap_or_else(|e| panic!("cannot run debootstrap (apt-get install debootstrap): {e}"));
    assert!(
        status.success(),
        "debootstrap bullseye from {mirror} failed"
    );
    std::fs::rename(&partial, &root).expect("rename the finished root");
    root
}

/// The effective user is root (/proc/self belongs to it).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// Run a shell command inside the root.
fn chroot(root: &Path, script: &str) -> String {
    run(Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", script])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C"))
}

/// Whether an ELF file asks for a program interpreter (PT_INTERP): a dynamically linked
/// executable does, a static one does not (ELF-64 little-endian layout, elf(5)).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(elf.get(..4), Some(&b"\x7fELF"[..]), "not an ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().expect("4 bytes")) == 3
    })
}

#[test]
fn package_installs_and_runs_on_debian_11() {
    assert!(
        is_root(),
        "this test needs root (debootstrap, chroot, dpkg)"
    );
    let deb = build_deb();
    let root = bullseye_root();
    let glibc = chroot(&root, "ldd --version | head -n 1");
    assert!(glibc.contains("2.31"), "not a glibc 2.31 root: {glibc}");

    std::fs::copy(&deb, root.join("tmp/eniroute.deb")).expect("copy the package into the root");
    chroot(&root, "dpkg --purge eniroute >/dev/null 2>&1 || true");
    chroot(&root, "dpkg -i /tmp/eniroute.deb");

    let binary = std::fs::read(root.join("usr/bin/eniroute")).expect("installed binary");
    assert!(
        !has_interpreter(&binary),
        "the packaged binary is not static"
    );
    let version = chroot(&root, "eniroute --version");
    assert!(
        version.starts_with(&format!("eniroute {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let valid = chroot(
        &root,
        "eniroute -c /usr/share/doc/eniroute/examples/nat-secondary.toml validate",
    );
    assert!(valid.contains("valid"), "{valid}");

    // The completion loads in a plain bash and completes a verb.
    let completed = chroot(
        &root,
        "bash -c '. /usr/share/bash-completion/completions/eniroute; \
         COMP_WORDS=(eniroute vali); COMP_CWORD=1; COMP_LINE=\"eniroute vali\"; COMP_POINT=13; \
         _eniroute eniroute vali eniroute; echo \"${COMPREPLY[@]}\"'",
    );
    assert_eq!(
        completed.trim(),
        "validate",
        "bash completion of `eniroute vali`"
    );

    let files = chroot(&root, "dpkg -L eniroute");
    for f in [
        "/usr/bin/eniroute",
        "/usr/lib/systemd/system/eniroute.service",
        "/usr/lib/systemd/system/eniroute-watch.service",
        "/usr/lib/systemd/system/eniroute-reapply@.service",
        "/usr/lib/udev/rules.d/81-eniroute.rules",
        "/usr/share/man/man8/eniroute.8.gz",
        "/usr/share/man/man5/eniroute.toml.5.gz",
        "/usr/share/bash-completion/completions/eniroute",
        "/usr/share/zsh/vendor-completions/_eniroute",
        "/usr/share/fish/vendor_completions.d/eniroute.fish",
        "/usr/share/doc/eniroute/copyright",
        "/usr/share/doc/eniroute/examples/demo.toml",
        "/usr/lib/systemd/networkd.conf.d/80-eniroute.conf",
        "/usr/lib/systemd/system/eniroute-watch.service",
        "/usr/share/eniroute/hooks/networkmanager/90-eniroute",
        "/usr/share/eniroute/hooks/ifupdown/eniroute",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "the package lacks {f}:\n{files}"
        );
    }
    assert!(
        files
            .lines()
            .any(|l| l.starts_with("/usr/lib/systemd/networkd.conf.d/")),
        "the package lacks the networkd drop-in:\n{files}"
    );
    let man = chroot(&root, "zcat /usr/share/man/man8/eniroute.8.gz");
    for verb in [
        "validate", "plan", "apply", "confirm", "status", "flush", "render", "sandbox", "watch",
        "doctor",
    ] {
        assert!(
            man.contains(&format!("eniroute {verb}")),
            "eniroute(8) lacks {verb}"
        );
    }
    // Installed, not enabled: the image builder decides.
    let wants = root.join("etc/systemd/system/multi-user.target.wants/eniroute.service");
    assert!(!wants.exists(), "the package enabled eniroute.service");
    chroot(&root, "dpkg --purge eniroute");
}
