//! `mount -t fuse.gitdb` and `/etc/fstab` lines, through the real util-linux `mount`, which
//! runs `/sbin/mount.fuse.gitdb` with `PATH` and `HOME` removed from its environment (and is
//! itself run here under `env -i`, as from a boot script). The helper is installed as the
//! README says (a symlink to `gitdb-mount`) for the length of each test, one test at a time.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use common::{detach_all, mounts_at, wait_for};

const HELPER: &str = "/sbin/mount.fuse.gitdb";

/// Tests that install the helper take turns: it is one path for the whole machine.
static INSTALLED: Mutex<()> = Mutex::new(());

/// `/sbin/mount.fuse.gitdb` pointing at the binary under test while it lives; what was there
/// before is put back.
struct Installed {
    _turn: std::sync::MutexGuard<'static, ()>,
    backup: Option<PathBuf>,
}

impl Installed {
    fn new() -> Installed {
        let turn = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        let backup = std::fs::symlink_metadata(HELPER).is_ok().then(|| {
            let backup = PathBuf::from(format!("{HELPER}.before-gitdb-tests"));
            std::fs::rename(HELPER, &backup).expect("move the installed helper aside");
            backup
        });
        std::os::unix::fs::symlink(common::binary(), HELPER).expect("install the helper");
        Installed {
            _turn: turn,
            backup,
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(HELPER);
        if let Some(backup) = &self.backup {
            let _ = std::fs::rename(backup, HELPER);
        }
    }
}

/// A mountpoint a test mounts through mount(8): detached when the test ends, however it
/// ends, and the daemon's log (the helper's default, under /var/log) removed.
struct Mounted {
    mnt: PathBuf,
}

impl Mounted {
    fn log(&self) -> PathBuf {
        let name = self.mnt.to_string_lossy().replace('/', "_");
        PathBuf::from(format!("/var/log/gitdb-mount.{name}.log"))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        detach_all(&self.mnt);
        let _ = std::fs::remove_file(self.log());
    }
}

/// `mount ARGS` with an empty environment.
fn mount(args: &[&std::ffi::OsStr]) -> Output {
    Command::new("env")
        .arg("-i")
        .arg("/usr/bin/mount")
        .args(args)
        .output()
        .expect("run mount")
}

fn text(out: &Output) -> String {
    format!(
        "{}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn os(p: &Path) -> &std::ffi::OsStr {
    p.as_os_str()
}

#[test]
fn an_fstab_line_mounts_as_written_and_mount_a_leaves_it_alone() {
    let _helper = Installed::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo.git");
    let mnt = Mounted {
        mnt: dir.path().join("mnt"),
    };
    let fstab = dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "{}  {}  fuse.gitdb  autocommit=100ms,node_id=fstab-node,_netdev  0  0\n",
            repo.display(),
            mnt.mnt.display()
        ),
    )
    .expect("fstab");

    let out = mount(&["-T".as_ref(), os(&fstab), os(&mnt.mnt)]);
    assert!(out.status.success(), "{}\n{}", text(&out), mnt.log_text());
    // The helper returns once the mount answers, and the kernel shows the line as written.
    let shown = mounts_at(&mnt.mnt);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0].fstype, "fuse.gitdb");
    assert_eq!(shown[0].source, repo.display().to_string());
    std::fs::create_dir(mnt.mnt.join("app")).expect("mkdir");
    std::fs::write(mnt.mnt.join("app/port"), "8080\n").expect("write");
    wait_for("the autocommit", || {
        std::fs::read_to_string(mnt.mnt.join(".gitdb/head")).is_ok_and(|h| h.trim().len() == 40)
    });
    let author = common::git(&repo, &["log", "-1", "--format=%an"], None);
    assert!(author.contains("fstab-node"), "{author}");

    // `mount -a` again: the line is mounted, so nothing starts (it used to start a second
    // daemon that died on the writer lock while the helper said 0).
    let again = mount(&["-a".as_ref(), "-T".as_ref(), os(&fstab)]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(mounts_at(&mnt.mnt).len(), 1);
    assert_eq!(
        mnt.log_text().matches("Mounting ").count(),
        1,
        "{}",
        mnt.log_text()
    );

    // A second mount of the same repository elsewhere fails, and says why: the daemon's own
    // error, not the helper's.
    let other = Mounted {
        mnt: dir.path().join("other"),
    };
    let second = mount(&[
        "-t".as_ref(),
        "fuse.gitdb".as_ref(),
        os(&repo),
        os(&other.mnt),
    ]);
    assert_eq!(second.status.code(), Some(32), "{}", text(&second));
    assert!(text(&second).contains("locked"), "{}", text(&second));
    assert!(mounts_at(&other.mnt).is_empty());

    let st = Command::new("umount")
        .arg(&mnt.mnt)
        .status()
        .expect("umount");
    assert!(st.success());
    wait_for("the daemon to exit", || {
        mnt.log_text().contains("syncing the journal")
    });
    assert_eq!(
        common::git(&repo, &["show", "main:app/port"], None).trim(),
        "8080"
    );
}

/// mountinfo writes a space as `\040`: the helper used to miss such a mount, wait 14 s and
/// report failure while it was mounted.
#[test]
fn a_mountpoint_with_a_space_mounts() {
    let _helper = Installed::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo.git");
    let mnt = Mounted {
        mnt: dir.path().join("my config"),
    };
    let start = std::time::Instant::now();
    let out = mount(&[
        "-t".as_ref(),
        "fuse.gitdb".as_ref(),
        os(&repo),
        os(&mnt.mnt),
        "-o".as_ref(),
        "node_id=spaced".as_ref(),
    ]);
    assert!(out.status.success(), "{}\n{}", text(&out), mnt.log_text());
    assert!(
        start.elapsed() < common::DEADLINE,
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(mounts_at(&mnt.mnt).len(), 1);
    std::fs::write(mnt.mnt.join("k"), "v").expect("write");
    assert_eq!(std::fs::read_to_string(mnt.mnt.join("k")).unwrap(), "v");
    // Mounting it again is a no-op that succeeds, as `mount -a` expects.
    let again = mount(&[
        "-t".as_ref(),
        "fuse.gitdb".as_ref(),
        os(&repo),
        os(&mnt.mnt),
    ]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(mounts_at(&mnt.mnt).len(), 1);
}

/// The shell helper in `scripts/` finds `gitdb-mount` in its own directory with no `PATH`.
#[test]
fn the_script_helper_finds_gitdb_mount_beside_itself_without_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let script = bin.join("mount.fuse.gitdb");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/mount.fuse.gitdb"),
        &script,
    )
    .expect("copy the script");
    std::os::unix::fs::symlink(common::binary(), bin.join("gitdb-mount")).expect("symlink");
    let repo = dir.path().join("repo.git");
    let mnt = Mounted {
        mnt: dir.path().join("mnt"),
    };
    let out = Command::new("env")
        .arg("-i")
        .arg(&script)
        .arg(&repo)
        .arg(&mnt.mnt)
        .args(["-o", "rw,node_id=script"])
        .output()
        .expect("run the script");
    assert!(out.status.success(), "{}\n{}", text(&out), mnt.log_text());
    assert_eq!(mounts_at(&mnt.mnt)[0].fstype, "fuse.gitdb");
}
