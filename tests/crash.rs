//! Integration: durability across a real crash (SIGKILL of a writing child process) and the
//! single-writer lock between processes.
//!
//! The child is this same test binary re-run with `GITDB_CRASH_CHILD` set: it opens the store
//! and writes until killed, reporting on stdout each point up to which `sync()` returned.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitdb::db::Options;
use gitdb::{GitDb, NodeId};

fn open(repo: &Path) -> GitDb {
    GitDb::open(repo, NodeId::new("crash").unwrap(), Options::default()).unwrap()
}

fn value(i: u64) -> Vec<u8> {
    format!("value {i} ")
        .repeat((i % 50 + 1) as usize)
        .into_bytes()
}

/// The child's body, run only when a parent test re-executes this binary (ignored otherwise, so
/// it never counts as a passing test).
#[test]
#[ignore = "the body of the crash tests' child process"]
fn child_writer() {
    let Ok(repo) = std::env::var("GITDB_CRASH_CHILD") else {
        return;
    };
    let mode = std::env::var("GITDB_CRASH_MODE").unwrap_or_default();
    let db = open(Path::new(&repo));
    if mode == "hold" {
        println!("ready");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    db.set("committed/base", b"base").unwrap();
    db.commit("base", 1_000).unwrap();
    for i in 0u64.. {
        db.set(&format!("k/{}/{i}", i % 7), &value(i)).unwrap();
        if i % 3 == 0 {
            db.delete(&format!("k/{}/{i}", i % 7)).unwrap();
        }
        if i % 10 == 9 {
            db.sync().unwrap();
            println!("synced {i}");
        }
        if i % 200 == 199 {
            db.commit("periodic", 1_000 + i).unwrap();
            println!("committed {i}");
        }
    }
}

/// Kills the child when dropped, so a failing assertion never leaves a writer behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(repo: &Path, mode: &str) -> Child {
    Child(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("GITDB_CRASH_CHILD", repo)
            .env("GITDB_CRASH_MODE", mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn sigkill_mid_write_loses_nothing_that_sync_returned_for() {
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("db.git");
        let mut child = spawn_child(&repo, "write");
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        // Let it run past a commit and a varying number of syncs, then kill it mid-stream.
        let target = 230 + round * 97;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut synced = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.split("synced ").nth(1) {
                let n: u64 = n.parse().unwrap();
                synced = Some(n);
                if n >= target {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "child made no progress");
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let synced = synced.expect("child reported no sync");

        // The writer lock died with the process; the state is whole.
        let db = open(&repo);
        assert_eq!(db.get("committed/base").unwrap().unwrap().to_vec(), b"base");
        for i in 0..=synced {
            let got = db.get(&format!("k/{}/{i}", i % 7)).unwrap();
            if i % 3 == 0 {
                assert_eq!(got, None, "round {round}: deleted key {i} came back");
            } else {
                assert_eq!(
                    got.map(|v| v.to_vec()),
                    Some(value(i)),
                    "round {round}: key {i} lost"
                );
            }
        }
        // Anything after the last sync is either whole or absent, never half-applied.
        for (key, _) in db.list_recursive("k").unwrap() {
            let i: u64 = key.rsplit('/').next().unwrap().parse().unwrap();
            assert_eq!(
                db.get(&key).unwrap().unwrap().to_vec(),
                value(i),
                "round {round}: {key}"
            );
        }
        db.commit("after crash", 9_999_999).unwrap();
        assert_success(
            &Command::new("git")
                .arg("--git-dir")
                .arg(&repo)
                .args(["fsck", "--strict", "--no-dangling"])
                .output()
                .unwrap(),
        );
    }
}

#[test]
fn a_second_writer_process_is_told_who_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("db.git");
    let mut child = spawn_child(&repo, "hold");
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    // The test harness prints its own lines first.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = lines.next().expect("child exited").unwrap();
        // libtest may print "test child_writer ... " on the same line first.
        if line.ends_with("ready") {
            break;
        }
        assert!(Instant::now() < deadline, "child never became ready");
    }
    let out = gitdb(&repo, &["set", "/a", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains(&format!("locked by pid {}", child.0.id())),
        "{stderr}"
    );
    // Reading beside the writer works.
    assert_success(&gitdb(&repo, &["ls", "/"]));
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // Once the holder is gone, writing works again.
    assert_success(&gitdb(&repo, &["set", "/a", "1"]));
}

fn gitdb(repo: &Path, args: &[&str]) -> std::process::Output {
    support::gitdb(repo, None, args)
}

fn assert_success(out: &std::process::Output) {
    support::stdout_of(out, "command", &[]);
}
