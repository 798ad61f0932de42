//! Gossip between real processes: a headless `gitdb serve` and mounted `gitdb-mount` daemons
//! on loopback, driven with `git`, `cat`, `ls` and python. Every wait has a deadline.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mount, git, wait_for};

/// A running `gitdb serve`, stopped with SIGTERM on drop.
struct Serve {
    child: Option<Child>,
    addr: String,
    repo: PathBuf,
    log: PathBuf,
}

impl Serve {
    fn start(dir: &Path, name: &str, args: &[&str]) -> Serve {
        let repo = dir.join(format!("{name}.git"));
        let log = dir.join(format!("{name}.log"));
        let logfile = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .args(["--repo", repo.to_str().unwrap(), "--node-id", name, "serve"])
            .args(["--listen", "127.0.0.1:0", "--interval", "200ms"])
            .args(args)
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

    fn head(&self) -> Option<String> {
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

    fn stop(&mut self) -> std::process::ExitStatus {
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

/// Writes `cmd` to the mount's ctl file; the errno name the write failed with, or "ok".
fn ctl(m: &Mount, cmd: &str) -> String {
    m.python(&format!(
        "import os,sys,errno\nfd=os.open(sys.argv[1]+'/.gitdb/ctl',os.O_WRONLY)\n\
         try:\n    os.write(fd,b'{cmd}\\n'); print('ok')\n\
         except OSError as e:\n    print(errno.errorcode[e.errno])"
    ))
    .trim()
    .to_owned()
}

fn mount_head(m: &Mount) -> String {
    std::fs::read_to_string(m.path(".gitdb/head"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Commits `key = value` into the bare repository `repo` with stock git, as an operator would
/// from a clone, and pushes it to `main`.
fn stock_git_commit(repo: &Path, work: &Path, key: &str, value: &str) {
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
        vec!["-C", w, "push", "-q", "origin", "HEAD:main"],
    ] {
        let st = Command::new("git").args(&args).status().unwrap();
        assert!(st.success(), "git {args:?}");
    }
}

#[test]
fn a_mount_and_a_headless_node_replicate_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Serve::start(dir.path(), "a", &[]);
    let mut m = Mount::start(&[
        "-o",
        "node_id=b",
        "--listen",
        "127.0.0.1:0",
        "--peer",
        &a.addr,
        "--interval",
        "200ms",
    ]);

    // A write through the mount, committed there, reaches the headless node.
    m.sh_ok("mkdir -p app && echo 8080 > app/port && echo commit > .gitdb/ctl");
    let head = mount_head(&m);
    wait_for("a has the mount's commit", || {
        a.head().as_deref() == Some(&*head)
    });
    assert_eq!(git(&a.repo, &["show", "main:app/port"], None), "8080");

    // An open file keeps what it opened while a remote change lands.
    let held = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys,time\nf=open(sys.argv[1]+'/app/port')\nprint(f.read().strip(),flush=True)\n\
             sys.stdin.readline()\nf.seek(0)\nprint(f.read().strip(),flush=True)",
        )
        .arg(&m.mnt)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut held = held;
    let mut reader = BufReader::new(held.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "8080");

    // A commit made on the headless node's repository by stock git spreads to the mount,
    // visible with `cat` and `ls` without a remount.
    let work = dir.path().join("work");
    stock_git_commit(&a.repo, &work, "app/port", "9090\n");
    stock_git_commit(&a.repo, &work, "remote/new", "hello\n");
    let a_head = a.head().unwrap();
    wait_for("the mount has a's commits", || mount_head(&m) == a_head);
    wait_for("cat shows the remote value", || {
        std::fs::read_to_string(m.path("app/port")).unwrap_or_default() == "9090\n"
    });
    assert_eq!(m.sh_ok("cat remote/new"), "hello\n");
    assert!(m.sh_ok("ls remote").contains("new"));
    use std::io::Write;
    held.stdin.take().unwrap().write_all(b"\n").unwrap();
    let mut again = String::new();
    reader.read_line(&mut again).unwrap();
    assert_eq!(
        again.trim(),
        "8080",
        "the open file kept the value it opened"
    );
    held.wait().unwrap();

    // The client drives the headless node through its door, and the change spreads.
    for args in [
        vec!["set", "door/key", "via the door"],
        vec!["commit", "-m", "through the door"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .args(["--repo", a.repo.to_str().unwrap(), "--node-id", "a"])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let a_head = a.head().unwrap();
    wait_for("the mount has the door's commit", || {
        mount_head(&m) == a_head
    });
    assert_eq!(m.sh_ok("cat door/key"), "via the door");

    // `sync` runs a round and the status shows the peer.
    m.sh_ok("echo sync > .gitdb/ctl");
    let status: serde_json::Value = serde_json::from_str(&m.sh_ok("cat .gitdb/status")).unwrap();
    let peers = status["peers"].as_array().unwrap();
    assert!(
        peers.iter().any(|p| p["node"] == "a" && p["alive"] == true),
        "{status}"
    );
    let fsck = Command::new("git")
        .args(["--git-dir", m.repo.to_str().unwrap(), "fsck", "--strict"])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );

    assert!(
        a.stop().success(),
        "{}",
        std::fs::read_to_string(&a.log).unwrap()
    );
    // With its only peer gone, sync fails the write with EHOSTUNREACH and says why.
    assert_eq!(ctl(&m, "sync"), "EHOSTUNREACH");
    let status = m.sh_ok("cat .gitdb/status");
    assert!(status.contains("sync failed"), "{status}");
    // Local work goes on while the cluster is unreachable.
    m.sh_ok("echo offline > app/mode && echo commit > .gitdb/ctl");
    assert!(m.signal_and_wait(libc::SIGTERM).success());
}

#[test]
fn sync_without_peers_fails_with_enotconn() {
    let m = Mount::start(&[]);
    assert_eq!(ctl(&m, "sync"), "ENOTCONN");
}

#[test]
fn bad_gossip_flags_fail_at_start_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["--peer", "no-port"], "--peer"),
        (vec!["--listen", "127.0.0.1:0", "--fanout", "0"], "--fanout"),
        (
            vec!["--listen", "127.0.0.1:0", "--interval", "soon"],
            "--interval",
        ),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--cluster-key-file",
                "/nonexistent",
            ],
            "cluster key",
        ),
        (vec!["--listen", "192.0.2.1:0"], "loopback"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .arg("--repo")
            .arg(dir.path().join("r.git"))
            .arg("serve")
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
