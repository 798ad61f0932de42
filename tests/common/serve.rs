//! `gitdb serve` daemons and commits by stock git, for the tests that need a peer or an
//! operator beside a mount.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `gitdb serve`, stopped with SIGTERM on drop.
pub struct Serve {
    child: Option<Child>,
    pub addr: String,
    pub repo: PathBuf,
    pub log: PathBuf,
}

impl Serve {
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Serve {
        let repo = dir.join(format!("{name}.git"));
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitdb"));
        cmd.args(["--repo", repo.to_str().unwrap(), "--node-id", name, "serve"])
            .args(["--listen", "127.0.0.1:0", "--interval", "200ms"])
            .args(args);
        Serve::launch(cmd, repo, log)
    }

    /// Spawns `cmd`, a `gitdb serve` on `repo` however it is wrapped (in a network namespace,
    /// say: `ip netns exec` execs it, so the child is the daemon), its stderr to `log`, and
    /// waits for the `listening ADDR` line.
    pub fn launch(mut cmd: Command, repo: PathBuf, log: PathBuf) -> Serve {
        // Appended: a restarted node keeps the log of the one before.
        let logfile = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = cmd
            .env("RUST_LOG", "info,gitdb::gossip=debug")
            .stdout(Stdio::piped())
            .stderr(logfile)
            .spawn()
            .expect("spawn gitdb serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gitdb serve said {line:?}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .trim()
            .to_owned();
        Serve {
            child: Some(child),
            addr,
            repo,
            log,
        }
    }

    pub fn head(&self) -> Option<String> {
        let out = Command::new("git")
            .args([
                "--git-dir",
                self.repo.to_str().unwrap(),
                "rev-parse",
                "--verify",
                "-q",
            ])
            .arg("refs/heads/main")
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < end, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Commits `key = value` into the bare repository `repo` with stock git, as an operator would
/// from a clone, and pushes it to `main`.
pub fn stock_git_commit(repo: &Path, work: &Path, key: &str, value: &str) {
    stock_git_push(repo, work, key, value, "main");
}

/// [`stock_git_commit`], pushed to `refs/heads/<dest>` or, if `dest` starts with `refs/`, to
/// that ref (a commit kept aside, say).
pub fn stock_git_push(repo: &Path, work: &Path, key: &str, value: &str, dest: &str) {
    if !work.exists() {
        let st = Command::new("git")
            .args([
                "clone",
                "-q",
                repo.to_str().unwrap(),
                work.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(st.success());
    } else {
        let st = Command::new("git")
            .args([
                "-C",
                work.to_str().unwrap(),
                "pull",
                "-q",
                "--no-rebase",
                "origin",
                "main",
            ])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let path = work.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, value).unwrap();
    let w = work.to_str().unwrap();
    let push = format!("HEAD:{dest}");
    for args in [
        vec!["-C", w, "add", "-A"],
        vec![
            "-C",
            w,
            "-c",
            "user.name=op",
            "-c",
            "user.email=op@x",
            "commit",
            "-qm",
            "by stock git",
        ],
        vec!["-C", w, "push", "-q", "origin", &push],
    ] {
        let st = Command::new("git").args(&args).status().unwrap();
        assert!(st.success(), "git {args:?}");
    }
}
