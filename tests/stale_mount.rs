//! Integration: what `gitdb-mount` finds already mounted on its mountpoint. A daemon killed with
//! SIGKILL leaves a dead FUSE mount whose root the kernel still answers `stat` for from its
//! attribute cache (60 s TTL); a restart must detach it (and any stacked below it) rather than
//! fail or mount on top, and must refuse to mount over a live or hung one.
//!
//! Each test uses its own temp dir; every mount is undone by a Drop guard even when the test
//! fails (`umount -l` of everything at the path as the last resort).

mod common;

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{DEADLINE, Mount, binary, detach_all, is_mounted, mounts_at, wait_for};

/// Whether `statfs(2)` on `path` succeeds: the kernel always asks the daemon for it (no
/// cache), so it tells a live mount from a dead one. Only called where no hung mount is.
fn statfs_answers(path: &Path) -> bool {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: valid C string and a buffer of the right type.
    unsafe { libc::statfs(c.as_ptr(), buf.as_mut_ptr()) == 0 }
}

/// Kills the daemon with SIGKILL right after the root's attributes were cached, restarts it on
/// the same mountpoint and repository at once, and checks it mounted exactly once and works.
fn restart_after_sigkill(mnt_name: &str, rounds: usize) {
    let mut m = Mount::prepare(mnt_name, &[]);
    m.spawn(&[]);
    for round in 0..rounds {
        m.sh_ok(&format!("echo {round} > round-{round}"));
        // The root's attributes in the kernel's cache (after the write, which dropped them):
        // what made the old check miss the death.
        std::fs::metadata(&m.mnt).expect("stat the live mount");
        let status = m.signal_and_wait(libc::SIGKILL);
        assert!(!status.success(), "round {round}: {status}");
        assert_eq!(mounts_at(&m.mnt).len(), 1, "round {round}: the dead mount");
        assert!(
            std::fs::metadata(&m.mnt).is_ok(),
            "round {round}: stat of the dead mount's root was not answered from the cache, so \
             this test no longer reproduces the crash it is about"
        );
        assert!(!statfs_answers(&m.mnt), "round {round}: the mount is dead");

        m.spawn(&[]);
        wait_for(
            "the new mount to answer statfs, or the daemon to exit",
            || statfs_answers(&m.mnt) || !m.daemon_running(),
        );
        assert!(
            m.daemon_running(),
            "round {round}: daemon exited: {}",
            m.log_text()
        );
        let mounts = mounts_at(&m.mnt);
        assert_eq!(
            mounts.len(),
            1,
            "round {round}: mounts at {}: {mounts:?}\n{}",
            m.mnt.display(),
            m.log_text()
        );
        // It works, on the same repository: the value written before the kill is there.
        assert_eq!(m.sh_ok(&format!("cat round-{round}")), format!("{round}\n"));
        m.sh_ok(&format!("echo after > after-{round}"));
        assert_eq!(m.sh_ok(&format!("cat after-{round}")), "after\n");
    }
    assert_eq!(
        m.log_text().matches("stale FUSE mount").count(),
        rounds,
        "one detach per kill: {}",
        m.log_text()
    );
}

#[test]
fn restart_right_after_sigkill_detaches_the_dead_mount_and_never_stacks() {
    restart_after_sigkill("mnt", 10);
}

#[test]
fn restart_after_sigkill_works_on_a_mountpoint_with_spaces() {
    restart_after_sigkill("mnt with  spaces", 3);
}

/// A `gitdb-mount` started by a test outside [`Mount`], logging to a file; SIGTERM (then
/// SIGKILL) on drop, so a daemon that wrongly stayed up is stopped even if the test fails.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(mnt: &Path, repo: &Path, log: PathBuf) -> Daemon {
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary())
            .arg(mnt)
            .arg("--repo")
            .arg(repo)
            .args(["--node-id", "second"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("spawn gitdb-mount");
        Daemon { child, log }
    }

    /// Its exit status once it exits; None if `give_up` held first or the deadline passed.
    fn exit_status(&mut self, mut give_up: impl FnMut() -> bool) -> Option<ExitStatus> {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if give_up() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_second_daemon_on_a_live_mount_exits_with_a_clear_error_and_stacks_nothing() {
    let mut m = Mount::prepare("live mnt", &[]);
    m.spawn(&[]);
    m.sh_ok("echo before > k");
    // Cached root attributes, as in the crash case: the live mount must be told by asking it.
    std::fs::metadata(&m.mnt).expect("stat the live mount");
    let other = m.dir.path().join("other.git");
    let mut second = Daemon::start(&m.mnt, &other, m.dir.path().join("second.log"));
    let status = second.exit_status(|| mounts_at(&m.mnt).len() > 1);
    let mounts = mounts_at(&m.mnt);
    assert_eq!(
        mounts.len(),
        1,
        "stacked: {mounts:?}\n{}",
        second.log_text()
    );
    let status = status.unwrap_or_else(|| panic!("still running: {}", second.log_text()));
    assert_eq!(status.code(), Some(1), "{}", second.log_text());
    let text = second.log_text();
    let wanted = format!(
        "{} already has a live {} mount ({})",
        m.mnt.display(),
        mounts[0].fstype,
        m.repo.display()
    );
    assert!(text.contains(&wanted), "wanted {wanted:?} in: {text}");
    // The first mount never noticed.
    assert!(m.daemon_running(), "{}", m.log_text());
    assert_eq!(m.sh_ok("cat k"), "before\n");
    m.sh_ok("echo after > k2");
    assert_eq!(m.sh_ok("cat k2"), "after\n");
}

/// A FUSE mount made by hand on `/dev/fuse` that nobody serves. While the device stays open the
/// daemon is "hung" (requests wait forever); closing it aborts the connection, which is what the
/// kernel does when a daemon is killed. Drop closes it and, if the mount is still there (the
/// test failed), detaches everything at the path.
struct RawFuse {
    path: PathBuf,
    id: u64,
    dev: Option<OwnedFd>,
}

impl RawFuse {
    fn mount(path: &Path) -> RawFuse {
        // std opens with O_CLOEXEC: the daemons the test starts must not hold the device.
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .expect("open /dev/fuse");
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let data = CString::new(format!(
            "fd={},rootmode=40000,user_id={uid},group_id={gid}",
            dev.as_raw_fd()
        ))
        .expect("options");
        let target = CString::new(path.as_os_str().as_bytes()).expect("path");
        // SAFETY: valid C strings; the data is the NUL-terminated option string FUSE parses.
        let r = unsafe {
            libc::mount(
                c"gitdb:/before/the/fix".as_ptr(),
                target.as_ptr(),
                c"fuse.gitdb".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(r, 0, "mount: {}", std::io::Error::last_os_error());
        // Mount ids are never reused while mounted, and a new mount is listed last.
        let id = mounts_at(path).last().expect("the mount just made").id;
        RawFuse {
            path: path.to_owned(),
            id,
            dev: Some(dev.into()),
        }
    }

    /// What SIGKILL of its daemon does: the device closes and the connection is aborted.
    fn kill(&mut self) {
        self.dev.take();
    }
}

impl Drop for RawFuse {
    fn drop(&mut self) {
        self.kill();
        if mounts_at(&self.path).iter().any(|i| i.id == self.id) {
            detach_all(&self.path);
        }
    }
}

#[test]
fn dead_mounts_stacked_before_the_fix_are_all_detached() {
    let mut m = Mount::prepare("mnt", &[]);
    std::fs::create_dir_all(&m.mnt).expect("mountpoint");
    let mut dead: Vec<RawFuse> = (0..3).map(|_| RawFuse::mount(&m.mnt)).collect();
    dead.iter_mut().for_each(RawFuse::kill);
    assert_eq!(mounts_at(&m.mnt).len(), 3);
    m.spawn(&[]);
    wait_for(
        "the new mount to answer statfs, or the daemon to exit",
        || statfs_answers(&m.mnt) || !m.daemon_running(),
    );
    let mounts = mounts_at(&m.mnt);
    assert_eq!(mounts.len(), 1, "{mounts:?}\n{}", m.log_text());
    assert!(m.daemon_running(), "{}", m.log_text());
    assert_eq!(mounts[0].source, m.repo.display().to_string());
    m.sh_ok("echo v > k");
    assert_eq!(m.sh_ok("cat k"), "v\n");
    assert_eq!(
        m.log_text().matches("stale FUSE mount").count(),
        3,
        "{}",
        m.log_text()
    );
}

#[test]
fn a_hung_daemon_is_reported_not_waited_for_nor_mounted_over() {
    let m = Mount::prepare("mnt", &[]);
    std::fs::create_dir_all(&m.mnt).expect("mountpoint");
    // Nothing here may touch the hung mount's path (it would block); mountinfo is safe.
    let hung = RawFuse::mount(&m.mnt);
    let mut second = Daemon::start(&m.mnt, &m.repo, m.dir.path().join("second.log"));
    let status = second.exit_status(|| mounts_at(&m.mnt).len() > 1);
    assert_eq!(mounts_at(&m.mnt).len(), 1, "{}", second.log_text());
    let status = status.unwrap_or_else(|| panic!("still running: {}", second.log_text()));
    assert_eq!(status.code(), Some(1), "{}", second.log_text());
    let text = second.log_text();
    assert!(
        text.contains("(gitdb:/before/the/fix) whose daemon did not answer")
            && text.contains("/sys/fs/fuse/connections/")
            && text.contains("umount -l"),
        "{text}"
    );
    drop(hung);
    assert!(!is_mounted(&m.mnt));
}

#[test]
fn a_mountpoint_that_is_another_kind_of_mount_is_mounted_over_as_before() {
    // A bind mount or a tmpfs volume at the mountpoint is an ordinary setup (containers), and
    // no daemon of it can be dead: only FUSE mounts are checked.
    let mut m = Mount::prepare("mnt", &[]);
    std::fs::create_dir_all(&m.mnt).expect("mountpoint");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "gitdb-test-tmpfs"])
        .arg(&m.mnt)
        .status()
        .expect("run mount");
    // Undone with the daemon's mount by `m`'s Drop, which detaches everything at the path.
    assert!(status.success());
    m.spawn(&[]);
    let mounts = mounts_at(&m.mnt);
    assert_eq!(mounts.len(), 2, "{mounts:?}\n{}", m.log_text());
    assert_eq!(mounts[0].fstype, "tmpfs");
    assert!(mounts[1].fstype.starts_with("fuse"), "{mounts:?}");
    m.sh_ok("echo v > k");
    assert_eq!(m.sh_ok("cat k"), "v\n");
}

/// `kill -9` while a FUSE worker is serving the attribute warmer's GETATTR (held there by a
/// debug-build delay): the daemon still dies and the mount is dead, not hung. When the daemon
/// stat'ed its own mount, this left the stat waiting uninterruptibly for the dead worker, the
/// process never exited and `/dev/fuse` never closed (about one kill in 50 without the delay).
#[test]
fn sigkill_while_a_worker_serves_the_attribute_warmer_ends_the_daemon() {
    // The governor would rest the warmer on a saturated machine (the suite's busy loops).
    let mut m = Mount::prepare(
        "mnt",
        &[
            ("GITDB_TEST_WARM_DELAY_US", "3000000"),
            ("GITDB_TEST_IGNORE_SATURATION", "1"),
        ],
    );
    m.spawn(&[]);
    m.sh_ok("echo v > f");
    wait_for("a worker to hold the warmer's GETATTR", || {
        m.log_text().contains("holding the warmer's GETATTR")
    });
    let status = m.signal_and_wait(libc::SIGKILL);
    assert!(!status.success(), "{status}");
    assert!(!statfs_answers(&m.mnt), "the mount is dead, not hung");
    m.spawn(&[]);
    wait_for("the new mount", || statfs_answers(&m.mnt));
    assert_eq!(mounts_at(&m.mnt).len(), 1);
    assert_eq!(m.sh_ok("cat f"), "v\n");
}
