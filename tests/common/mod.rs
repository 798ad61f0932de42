//! Shared helpers for the mount tests: start `gitdb-mount` on a fresh repository in a temp dir,
//! wait (with a deadline) until the kernel shows the mount, and always unmount in `Drop` — even
//! when the test panics — so a failing test never leaves a dead mount behind.
#![allow(dead_code)]

pub mod netns;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running `gitdb-mount` on its own repository and mountpoint.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    pub repo: PathBuf,
    pub log: PathBuf,
    /// `--node-id` of the daemon (`test-node` unless a test sets another before spawning).
    pub node_id: String,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gitdb-mount")
}

/// One mount at a mount point, as `/proc/self/mountinfo` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount's id (unique while it exists).
    pub id: u64,
    pub fstype: String,
    pub source: String,
}

/// The kernel writes space, tab, newline and backslash in mountinfo as `\040`, `\011`,
/// `\012`, `\134`. (A separate decoder from the daemon's, so the tests check it rather than
/// share its mistakes.)
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = field;
    while let Some((&b, tail)) = rest.split_first() {
        let octal = tail
            .get(..3)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.map(|d| d.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'))) {
            Some(v) if b == b'\\' && v < 256 => {
                out.push(v as u8);
                rest = &tail[3..];
            }
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    out
}

/// Every mount whose mount point is `path` now, bottom first (the kernel lists them in the
/// order they were made).
pub fn mounts_at(path: &Path) -> Vec<MountInfo> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let want = path.as_os_str().as_bytes();
    info.split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            let dash = fields.iter().position(|f| *f == b"-")?;
            if unescape(fields.get(4)?) != want {
                return None;
            }
            let text = |f: &[u8]| String::from_utf8_lossy(&unescape(f)).into_owned();
            Some(MountInfo {
                id: std::str::from_utf8(fields.first()?).ok()?.parse().ok()?,
                fstype: text(fields.get(dash + 1)?),
                source: text(fields.get(dash + 2)?),
            })
        })
        .collect()
}

/// Whether `path` is a mountpoint now (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    !mounts_at(path).is_empty()
}

/// Detaches every mount at `path` (`umount -l`, topmost first), however many are stacked: the
/// last resort of every guard, so a failing test leaves nothing behind.
pub fn detach_all(path: &Path) {
    for _ in 0..1000 {
        if !is_mounted(path) {
            return;
        }
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

/// Polls `cond` until it holds or `DEADLINE` passes.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

impl Mount {
    /// Mounts a fresh repository with extra command-line `args`.
    pub fn start(args: &[&str]) -> Mount {
        Mount::start_env(args, &[])
    }

    /// Mounts a fresh repository with extra `args` and environment variables for the daemon.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Mount {
        let mut m = Mount::prepare("mnt", env);
        m.spawn(args);
        m
    }

    /// A fresh temp dir with a repository path and the mountpoint `mnt_name` in it (not created),
    /// and no daemon yet: [`Mount::spawn`] starts one. Dropping it still cleans up.
    pub fn prepare(mnt_name: &str, env: &[(&str, &str)]) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path().join(mnt_name);
        let repo = dir.path().join("repo.git");
        let log = dir.path().join("mount.log");
        Mount {
            dir,
            mnt,
            repo,
            log,
            node_id: "test-node".to_owned(),
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Whether the daemon started last is still running.
    pub fn daemon_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts the daemon on this mount's repository and mountpoint.
    pub fn spawn(&mut self, args: &[&str]) {
        let logfile = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(binary())
            .arg(&self.mnt)
            .arg("--repo")
            .arg(&self.repo)
            .arg("--node-id")
            .arg(&self.node_id)
            .args(args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().expect("log"))
            .stderr(logfile)
            .spawn()
            .expect("spawn gitdb-mount");
        self.child = Some(child);
        let mnt = self.mnt.clone();
        let end = Instant::now() + DEADLINE;
        loop {
            if is_mounted(&mnt) && mnt.join(".gitdb/head").exists() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "gitdb-mount exited early with {status}: {}",
                    self.log_text()
                );
            }
            assert!(Instant::now() < end, "mount timed out: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs `script` with `sh -c` inside the mount.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&self.mnt)
            .output()
            .expect("run sh")
    }

    /// Runs `script` and asserts it succeeds; returns stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed: {}\nstderr: {}\nlog: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `git --git-dir REPO args...` and returns stdout (asserting success).
    /// Runs python3 `script` with the mountpoint as `sys.argv[1]` (and the working
    /// directory), asserting it succeeds; returns its stdout.
    pub fn python(&self, script: &str) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&self.mnt)
            .current_dir(&self.mnt)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "python failed: {}{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.repo, args, None)
    }

    /// Sends `signal` to the daemon and waits for it to exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("running daemon");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        let end = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!(
                    "daemon did not exit after signal {signal}: {}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `gitdb --repo repo args`, asserting success; its stdout.
pub fn gitdb_ok(repo: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gitdb"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .output()
        .expect("run gitdb");
    assert!(
        out.status.success(),
        "gitdb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `git --git-dir repo args` (stdin optional), asserting success.
pub fn git(repo: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    git_env(repo, args, stdin, &[])
}

pub fn git_env(repo: &Path, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &Path)]) -> String {
    use std::io::Write;
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir")
        .arg(repo)
        .args(args)
        .env("GIT_AUTHOR_NAME", "outside")
        .env("GIT_AUTHOR_EMAIL", "outside@example.com")
        .env("GIT_COMMITTER_NAME", "outside")
        .env("GIT_COMMITTER_EMAIL", "outside@example.com")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run git");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("git output");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > end => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        // Several, if a test failed by stacking mounts.
        detach_all(&self.mnt);
    }
}

/// Busy loops on every CPU until dropped: timing-sensitive tests run under it too, since a
/// test that passes on a quiet machine proves little for a filesystem.
pub struct BusyCpus {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyCpus {
    pub fn start() -> BusyCpus {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        BusyCpus { stop, threads }
    }
}

impl Drop for BusyCpus {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A tmpfs of its own (a small disk that fills up), unmounted in `Drop` even when the test
/// fails. Needs root, as the tests run.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount(8)")
            .success();
        assert!(ok, "mount a tmpfs on {}", dir.path().display());
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Gives the filesystem room again: `mount -o remount,size=SIZE`, what an operator does
    /// to a full tmpfs (or growing a volume).
    pub fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("mount(8)")
            .success();
        assert!(ok, "remount {} with size={size}", self.dir.path().display());
    }

    /// Fills the filesystem with one file until a write fails with ENOSPC (less than a page
    /// is left); returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("filler");
        for chunk in [64 << 10, 4096, 512, 1] {
            let buf = vec![0x5a; chunk];
            loop {
                match f.write(&buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
