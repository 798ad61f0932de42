//! `--remote URL`: nodes that never talk to each other converge through a plain git remote
//! (a `file://` bare repository, and `git daemon` over `git://`), to the head gossip would give
//! them; a rejected push is fetched, merged and pushed again; a remote that hangs never holds
//! up a commit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::serve::{Serve, stock_git_push};
use common::{Mount, git, gitdb_ok, wait_for};

fn bare(path: &Path) {
    let st = Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(path)
        .status()
        .expect("git init");
    assert!(st.success());
}

fn head(repo: &Path) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["rev-parse", "--verify", "-q", "refs/heads/main"])
        .output()
        .expect("git rev-parse");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn set_and_commit(repo: &Path, key: &str, value: &str) -> String {
    gitdb_ok(repo, &["set", key, value]);
    gitdb_ok(repo, &["commit", "-m", key]).trim().to_owned()
}

/// A node syncing with `url` only: it listens (no one knows its address) and has no peers.
fn hub_node(dir: &Path, name: &str, url: &str) -> Serve {
    Serve::start(dir, name, &["--remote", url, "--remote-interval", "200ms"])
}

#[test]
fn nodes_that_never_talk_converge_through_a_file_remote_to_the_head_gossip_gives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = dir.path().join("hub.git");
    bare(&hub);
    let url = format!("file://{}", hub.display());
    let a = hub_node(dir.path(), "a", &url);
    let b = hub_node(dir.path(), "b", &url);
    let ca = set_and_commit(&a.repo, "/from/a", "1");
    let cb = set_and_commit(&b.repo, "/from/b", "2");
    wait_for("a, b and the hub to hold one head", || {
        let h = head(&hub);
        h.is_some() && a.head() == h && b.head() == h
    });
    let converged = head(&hub).expect("hub head");
    assert_eq!(git(&a.repo, &["show", "main:from/b"], None), "2");
    assert_eq!(git(&b.repo, &["show", "main:from/a"], None), "1");

    // The same two commits, met over gossip by two other nodes, merge to the same commit.
    let c = dir.path().join("c.git");
    let d = dir.path().join("d.git");
    for (repo, commit) in [(&c, &ca), (&d, &cb)] {
        bare(repo);
        git(
            repo,
            &["fetch", "-q", hub.to_str().expect("utf8"), "main"],
            None,
        );
        git(repo, &["update-ref", "refs/heads/main", commit], None);
    }
    let gc = Serve::start(dir.path(), "c", &[]);
    let gd = Serve::start(dir.path(), "d", &["--peer", &gc.addr]);
    wait_for("the gossip pair to converge", || {
        gc.head().is_some() && gc.head() == gd.head() && gc.head().as_deref() != Some(ca.as_str())
    });
    assert_eq!(gc.head(), Some(converged), "gossip and the hub disagree");
    assert_eq!(git(&hub, &["fsck", "--strict"], None), "");
}

/// `git daemon` serving the hub over git://, with a mount on one side and a headless node on
/// the other; `-o remote=` as an fstab line says it.
#[test]
fn a_mount_and_a_headless_node_sync_through_git_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("served");
    std::fs::create_dir(&base).expect("dir");
    bare(&base.join("hub.git"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let daemon = Daemon(
        Command::new("git")
            .arg("daemon")
            .args(["--export-all", "--enable=receive-pack", "--reuseaddr"])
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(&base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon"),
    );
    let url = format!("git://127.0.0.1:{port}/hub.git");
    wait_for("git daemon to answer", || {
        Command::new("git")
            .args(["ls-remote", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let m = Mount::start(&[
        "-o",
        &format!("node_id=m,remote={url},remote_interval=200ms"),
    ]);
    let s = hub_node(dir.path(), "s", &url);
    m.sh_ok("mkdir -p app && echo 8080 > app/port && echo commit > .gitdb/ctl");
    wait_for("the headless node to get the mount's commit", || {
        Command::new("git")
            .arg("--git-dir")
            .arg(&s.repo)
            .args(["show", "main:app/port"])
            .output()
            .is_ok_and(|o| o.stdout == b"8080\n")
    });
    set_and_commit(&s.repo, "/app/host", "db1");
    wait_for("the mount to show the headless node's commit", || {
        std::fs::read_to_string(m.path("app/host")).is_ok_and(|v| v == "db1")
    });
    let hub_head = head(&base.join("hub.git"));
    assert_eq!(s.head(), hub_head);
    assert_eq!(
        std::fs::read_to_string(m.path(".gitdb/head"))
            .expect("head")
            .trim(),
        hub_head.expect("hub head")
    );
    drop(daemon);
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The hub's pre-receive hook moves its branch once, between the node's fetch and its push
/// (as another pusher would): that push is rejected; the node fetches, merges and pushes
/// again, and the hub ends up with both changes.
#[test]
fn a_rejected_push_is_fetched_merged_and_pushed_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = dir.path().join("hub.git");
    bare(&hub);
    // A commit by stock git, kept aside in the hub for the hook to move main to.
    stock_git_push(
        &hub,
        &dir.path().join("work"),
        "other",
        "pushed meanwhile\n",
        "refs/aside/main",
    );
    let hook = hub.join("hooks/pre-receive");
    let marker: PathBuf = dir.path().join("moved-once");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat >/dev/null\nif [ ! -e '{m}' ]; then\n  touch '{m}'\n  \
             env -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY \
             -u GIT_ALTERNATE_OBJECT_DIRECTORIES git update-ref refs/heads/main refs/aside/main\n\
             fi\nexit 0\n",
            m = marker.display()
        ),
    )
    .expect("hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");

    let a = hub_node(dir.path(), "a", &format!("file://{}", hub.display()));
    set_and_commit(&a.repo, "/mine", "1");
    wait_for("the hub to hold both changes", || {
        Command::new("git")
            .arg("--git-dir")
            .arg(&hub)
            .args(["show", "main:mine"])
            .output()
            .is_ok_and(|o| o.status.success())
            && head(&hub) == a.head()
    });
    assert!(marker.exists(), "the hook never moved the branch");
    assert_eq!(git(&hub, &["show", "main:other"], None), "pushed meanwhile");
    let log = std::fs::read_to_string(&a.log).unwrap_or_default();
    assert!(log.contains("push rejected"), "{log}");
}

/// A remote that accepts connections and never answers: commits go on, and each sync is cut
/// off at `--remote-timeout` and counted as failed.
#[test]
fn a_hanging_remote_never_holds_up_a_commit() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || {
        // Accept and keep every connection open, saying nothing.
        let mut open = Vec::new();
        for conn in silent.incoming().take(64) {
            match conn {
                Ok(c) => open.push(c),
                Err(_) => break,
            }
        }
    });
    let m = Mount::start(&[
        "--remote",
        &format!("git://127.0.0.1:{port}/x.git"),
        "--remote-interval",
        "100ms",
        "--remote-timeout",
        "300ms",
    ]);
    for i in 0..5 {
        m.sh_ok(&format!("echo {i} > k && echo commit > .gitdb/ctl"));
    }
    assert_eq!(m.sh_ok("cat k"), "4\n");
    assert_eq!(
        m.git(&["rev-list", "--count", "main"]).trim(),
        "5",
        "every commit was made"
    );
    wait_for("a timed-out sync to be counted", || {
        m.sh_ok("cat .gitdb/metrics")
            .lines()
            .find_map(|l| l.strip_prefix("gitdb_remote_failures_total "))
            .is_some_and(|n| n.trim() != "0")
    });
    assert!(
        m.log_text().contains("no answer within"),
        "{}",
        m.log_text()
    );
    drop(m);
    drop(held);
}

/// A commit made while the hub cannot be reached is pushed by the first sync after the next
/// start; `git gc --prune=now` beside the running node (the fetched heads are kept by their
/// tracking refs) leaves the node and the hub sound, and syncing going on.
#[test]
fn what_was_not_pushed_before_a_stop_goes_at_the_next_start_and_gc_beside_the_node_is_harmless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = dir.path().join("hub.git");
    let url = format!("file://{}", hub.display());
    let mut a = hub_node(dir.path(), "a", &url);
    let first = set_and_commit(&a.repo, "/k1", "1");
    wait_for("a failed sync with the missing hub", || {
        gitdb_ok(&a.repo, &["metrics"])
            .lines()
            .find_map(|l| l.strip_prefix("gitdb_remote_failures_total "))
            .is_some_and(|n| n.trim() != "0")
    });
    assert!(a.stop().success());
    bare(&hub);
    let a = hub_node(dir.path(), "a", &url);
    wait_for("the restarted node to push what it had", || {
        head(&hub).as_deref() == Some(first.as_str())
    });

    let gc = Command::new("git")
        .arg("--git-dir")
        .arg(&a.repo)
        .args(["gc", "-q", "--prune=now"])
        .status()
        .expect("git gc");
    assert!(gc.success());
    let second = set_and_commit(&a.repo, "/k2", "2");
    wait_for("the commit after gc to reach the hub", || {
        head(&hub).as_deref() == Some(second.as_str())
    });
    assert_eq!(git(&a.repo, &["fsck", "--strict"], None), "");
    assert_eq!(git(&hub, &["fsck", "--strict"], None), "");
    assert_eq!(git(&hub, &["show", "main:k1"], None), "1");
}
