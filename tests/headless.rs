//! Integration: a headless node (`gitdb serve`, no mount, no gossip) runs the db's background
//! tasks itself: what the `gitdb` client sets through its door is committed by `--autocommit`
//! with no commit command, and a commit pushed by stock git into its repository is adopted by
//! the refresh watcher (a door `get` returns it). Real daemon, real git, a temp dir each.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::stock_git_commit;
use common::{git, gitdb_ok, wait_for};

const NODE: &str = "h1";

/// A `gitdb serve` without gossip flags, stopped with SIGTERM (killed, if it must be) on drop.
struct Headless {
    child: Option<Child>,
    repo: PathBuf,
    log: PathBuf,
}

impl Headless {
    fn start(dir: &Path, args: &[&str]) -> Headless {
        let repo = dir.join("r.git");
        let log = dir.join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .arg("--repo")
            .arg(&repo)
            .args(["--node-id", NODE, "serve"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn gitdb serve");
        let mut node = Headless {
            child: Some(child),
            repo,
            log,
        };
        let door = node.repo.join("gitdb").join("door.sock");
        wait_for("the daemon's door", || {
            if let Some(c) = node.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("gitdb serve exited ({status}): {}", node.log_text());
            }
            door.exists()
        });
        node
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn client(&self, args: &[&str]) -> String {
        let mut all = vec!["--node-id", NODE];
        all.extend_from_slice(args);
        gitdb_ok(&self.repo, &all)
    }

    /// The client's stdout if it succeeded (a `get` of a key not there yet fails).
    fn try_client(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .arg("--repo")
            .arg(&self.repo)
            .args(["--node-id", NODE])
            .args(args)
            .output()
            .expect("run gitdb");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The branch as git sees it, if it exists.
    fn branch(&self) -> Option<String> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&self.repo)
            .args(["rev-parse", "--verify", "-q", "refs/heads/main"])
            .output()
            .expect("git is installed");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < end, "gitdb serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Headless {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_headless_node_autocommits_and_adopts_stock_git_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Headless::start(dir.path(), &["--autocommit", "200ms"]);
    assert_eq!(node.branch(), None, "nothing committed yet");

    // Set through the door; no commit command follows.
    node.client(&["set", "/conf/port", "5432"]);
    wait_for("the autocommit to move the branch", || {
        node.branch().is_some()
    });
    assert_eq!(git(&node.repo, &["show", "main:conf/port"], None), "5432");
    assert_eq!(
        git(&node.repo, &["log", "-1", "--format=%s", "main"], None).trim(),
        "autocommit"
    );
    let status: serde_json::Value =
        serde_json::from_str(&node.client(&["status"])).expect("status is JSON");
    assert_eq!(status["dirty_count"], 0, "{status}");
    assert!(status["last_error"].is_null(), "{status}");

    // Stock git pushes a commit into the node's repository: the refresh watcher adopts it,
    // with no gossip flag that would also refresh.
    stock_git_commit(&node.repo, &dir.path().join("work"), "from/git", "hello");
    wait_for("the door to serve the stock-git commit", || {
        node.try_client(&["get", "/from/git"]).as_deref() == Some("hello")
    });
    // The node's own later writes build on it.
    node.client(&["set", "/conf/port", "6543"]);
    wait_for("the second autocommit", || {
        git(&node.repo, &["show", "main:conf/port"], None) == "6543"
    });
    assert_eq!(git(&node.repo, &["show", "main:from/git"], None), "hello");

    let status = node.stop();
    assert!(status.success(), "{status}: {}", node.log_text());
}

#[test]
fn without_autocommit_a_headless_node_leaves_changes_uncommitted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Headless::start(dir.path(), &[]);
    node.client(&["set", "/k", "v"]);
    // What autocommit would have done by now, many times over.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(node.branch(), None);
    let status: serde_json::Value =
        serde_json::from_str(&node.client(&["status"])).expect("status is JSON");
    assert_eq!(status["dirty_count"], 1, "{status}");
    let status = node.stop();
    assert!(status.success(), "{status}: {}", node.log_text());
}

#[test]
fn bad_task_flags_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        ["--autocommit", "soon"],
        ["--autocommit", "2y"],
        ["--refresh-interval", "never"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .arg("--repo")
            .arg(dir.path().join("r.git"))
            .arg("serve")
            .args(args)
            .output()
            .expect("run gitdb");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("invalid duration"), "{args:?}: {err}");
    }
    assert!(!dir.path().join("r.git").exists(), "nothing was created");
}
