//! Helpers the in-process gossip tests share: a node's repository in a temp dir, the clock,
//! waiting on a condition with a deadline (never sleeping and hoping), and raw git objects as
//! a hostile peer writes them.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gitdb::{GitDb, NodeId};

/// A fresh repository for node `name` (logging initialized once per test binary).
pub fn open(name: &str) -> (tempfile::TempDir, Arc<GitDb>) {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = tempfile::tempdir().unwrap();
    let db = GitDb::open(
        dir.path().join("repo.git"),
        NodeId::new(name).unwrap(),
        Default::default(),
    )
    .unwrap();
    (dir, Arc::new(db))
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after `deadline`.
pub fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn now_ms() -> u64 {
    gitdb::defaults::now_ms()
}

/// The id git gives an object of `kind` holding `data`.
pub fn oid_of(kind: gix::objs::Kind, data: &[u8]) -> gix::ObjectId {
    gix::objs::compute_hash(gix::hash::Kind::Sha1, kind, data).unwrap()
}

/// An object id as it travels.
pub fn wire(id: gix::ObjectId) -> [u8; 20] {
    let mut o = [0u8; 20];
    o.copy_from_slice(id.as_slice());
    o
}

/// A raw tree of `entries` (mode, name, id), in the order given: as a hostile peer writes it.
pub fn raw_tree(entries: &[(&str, &[u8], gix::ObjectId)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (mode, name, id) in entries {
        out.extend_from_slice(mode.as_bytes());
        out.push(b' ');
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(id.as_slice());
    }
    out
}

/// A raw commit of `tree` with `parents`.
pub fn raw_commit(tree: gix::ObjectId, parents: &[gix::ObjectId], msg: &str) -> Vec<u8> {
    let mut s = format!("tree {tree}\n");
    for p in parents {
        s.push_str(&format!("parent {p}\n"));
    }
    s.push_str("author evil <evil@example.com> 1764720000 +0000\n");
    s.push_str("committer evil <evil@example.com> 1764720000 +0000\n\n");
    s.push_str(msg);
    s.push('\n');
    s.into_bytes()
}

/// `git fsck --strict` of `repo` passes.
pub fn fsck_strict(repo: &std::path::Path) {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["fsck", "--strict", "--no-dangling"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck --strict of {}: {}{}",
        repo.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `repo` holds object `id` (stock git's answer).
pub fn has_object(repo: &std::path::Path, id: gix::ObjectId) -> bool {
    std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["cat-file", "-e", &id.to_string()])
        .status()
        .unwrap()
        .success()
}
