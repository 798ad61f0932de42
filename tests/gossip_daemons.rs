//! Gossip between real processes: a headless `gitdb serve` and mounted `gitdb-mount` daemons
//! on loopback, driven with `git`, `cat`, `ls` and python. Every wait has a deadline.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::serve::{Serve, stock_git_commit};
use common::{Mount, git, wait_for};

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
