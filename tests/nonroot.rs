//! `gitdb-mount` run by a user other than root (uid 65534, `nobody`), each test in a mount
//! namespace of its own (`unshare -m`) with its own `/dev/fuse` node bound over the real one,
//! so the device's mode is the test's choice and nothing outside changes. A user other than
//! root opens `/dev/fuse` itself and mounts through the setuid `fusermount3`; what it cannot
//! do gets a message that says what to fix.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::wait_for;

const NOBODY: &str = "65534";

/// A work directory `nobody` may use: the binary (copied: the build tree may be closed to
/// other users), a home with the repository and mountpoint, and FUSE device nodes.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::copy(common::binary(), dir.path().join("gitdb-mount")).expect("copy binary");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("home");
        let st = Command::new("chown")
            .args([&format!("{NOBODY}:{NOBODY}"), home.to_str().expect("utf8")])
            .status()
            .expect("chown");
        assert!(st.success());
        Work { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A character device node for FUSE (10, 229) with `mode`.
    fn device(&self, mode: u32) -> PathBuf {
        let node = self.path(&format!("fuse-{mode:o}"));
        let st = Command::new("mknod")
            .arg(&node)
            .args(["c", "10", "229"])
            .status()
            .expect("mknod");
        assert!(st.success(), "mknod");
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(mode)).expect("chmod");
        node
    }

    /// `gitdb-mount home/mnt ARGS` as nobody, in a new mount namespace where `/dev/fuse` is
    /// `device` and, if given, `/etc/fuse.conf` is `conf`. The returned child's pid is the
    /// daemon's (every step execs).
    fn daemon(&self, device: &Path, conf: Option<&Path>, args: &[&str]) -> Child {
        let mut script = format!("mount --bind '{}' /dev/fuse", device.display());
        if let Some(conf) = conf {
            script += &format!(" && mount --bind '{}' /etc/fuse.conf", conf.display());
        }
        script += &format!(
            " && exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups \
             env HOME='{home}' GITDB_REPO='{home}/repo.git' '{bin}' '{home}/mnt' \"$@\"",
            home = self.path("home").display(),
            bin = self.path("gitdb-mount").display()
        );
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare")
    }

    fn mnt(&self) -> PathBuf {
        self.path("home/mnt")
    }
}

/// Whether the mount namespace of `pid` shows a mount at `path`.
fn mounted_in(pid: u32, path: &Path) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_ref()))
}

/// `sh -c script` as nobody in the mount namespace of `pid`.
fn as_nobody_in(pid: u32, script: &str) -> Output {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "--"])
        .args([
            "setpriv",
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
        ])
        .args(["sh", "-c", script])
        .output()
        .expect("nsenter")
}

fn finished(child: Child) -> (i32, String) {
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The whole life of a mount by a user other than root: mounted through fusermount3, used,
/// and on SIGTERM unmounted (through `fusermount3 -u`: umount2 is refused to such a user,
/// and the stop used to leave the mount behind, dead).
#[test]
fn a_user_other_than_root_mounts_uses_and_unmounts() {
    let work = Work::new();
    let device = work.device(0o666);
    let daemon = work.daemon(&device, None, &[]);
    let pid = daemon.id();
    // A process that keeps the namespace alive after the daemon leaves it, to look inside.
    let mut holder = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("nsenter holder");
    let holder_pid = holder.id();
    wait_for("the mount, in the daemon's namespace", || {
        mounted_in(pid, &work.mnt())
    });
    let mnt = work.mnt();
    let out = as_nobody_in(
        pid,
        &format!(
            "mkdir -p '{m}/app' && echo 8080 > '{m}/app/port' && cat '{m}/app/port' && \
             stat -c '%U %a' '{m}/app/port' && echo commit > '{m}/.gitdb/ctl'",
            m = mnt.display()
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "8080\nnobody 644\n");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let (code, stderr) = finished(daemon);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !mounted_in(holder_pid, &mnt),
        "the mount was left behind: {stderr}"
    );
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert_eq!(
        common::git(
            &work.path("home/repo.git"),
            &["show", "main:app/port"],
            None
        )
        .trim(),
        "8080"
    );
}

/// `/dev/fuse` that the user may not open (mode 0600, as in some containers): the start fails
/// at once and says what to change, not a bare "Permission denied".
#[test]
fn a_closed_fuse_device_is_named_with_its_fix() {
    let work = Work::new();
    let device = work.device(0o600);
    let (code, stderr) = finished(work.daemon(&device, None, &[]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("/dev/fuse"), "{stderr}");
    assert!(stderr.contains("chmod 0666 /dev/fuse"), "{stderr}");
    assert!(!stderr.contains("os error 13)\n"), "{stderr}");
}

/// `allow_other` without `user_allow_other` in /etc/fuse.conf, which fusermount3 demands of a
/// user other than root: refused before mounting, naming the file and the line.
#[test]
fn allow_other_without_user_allow_other_says_so() {
    let work = Work::new();
    let device = work.device(0o666);
    let conf = work.path("fuse.conf");
    std::fs::write(&conf, "# mount_max = 1000\n#user_allow_other\n").expect("conf");
    let (code, stderr) = finished(work.daemon(&device, Some(&conf), &["-o", "allow_other"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("user_allow_other") && stderr.contains("/etc/fuse.conf"),
        "{stderr}"
    );
}
