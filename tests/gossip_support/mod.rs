//! Helpers the in-process gossip tests share: a node's repository in a temp dir, the clock,
//! and waiting on a condition with a deadline (never sleeping and hoping).
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
