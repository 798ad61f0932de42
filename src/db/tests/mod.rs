//! Unit and property tests of the db layer on real repositories in temp directories.
//!
//! This file holds the helpers every topic uses; each topic is a file of its own.

mod commits;
mod followers;
mod full_disk;
mod model;
mod persistence;
mod staged_refs;
mod values;

use super::*;
use crate::store::{Signature, StoreError, TreeEdit};
use proptest::prelude::*;

fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn open(dir: &Path) -> GitDb {
    // Other tests in this process spawn programs; a child forked between our drop of the lock
    // file and its exec briefly shares the lock, so a reopen waits for that, with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match GitDb::open(dir.join("repo.git"), node("n1"), Options::default()) {
            Err(DbError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            other => return other.unwrap(),
        }
    }
}

fn get(db: &GitDb, key: &str) -> Option<Vec<u8>> {
    db.get(key).unwrap().map(|b| b.to_vec())
}

/// The listing of `prefix` (directories end in `/`), checking on the way that `subdirs`
/// agrees with it (so every listing in these tests, the model-based ones included, checks it).
fn names(db: &GitDb, prefix: &str) -> Vec<String> {
    let listed = db.list(prefix).unwrap();
    let dirs: Vec<String> = listed
        .iter()
        .filter(|e| e.kind == NodeKind::Dir)
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(db.subdirs(prefix).unwrap(), dirs, "subdirs of {prefix:?}");
    listed
        .into_iter()
        .map(|e| match e.kind {
            NodeKind::Dir => format!("{}/", e.name),
            NodeKind::Value(_) => e.name,
        })
        .collect()
}

/// A commit made without this db (like stock git would): `path` = `value` on top of `parent`,
/// written to the store but moving no ref.
fn outside_commit(db: &GitDb, parent: ObjectId, path: &str, value: &[u8]) -> ObjectId {
    let blob = db.store().write_blob(value).unwrap();
    let base = db.store().commit_info(parent).unwrap().tree;
    let edit = TreeEdit::Upsert {
        path,
        mode: ValueMode::Regular,
        id: blob,
    };
    let tree = db.store().write_tree(base, [edit]).unwrap();
    let sig = Signature {
        name: "git".into(),
        email: "git@x".into(),
        seconds: 2,
    };
    db.store()
        .write_commit(tree, &[parent], &sig, "outside\n")
        .unwrap()
}

fn dirty_keys(db: &GitDb) -> Vec<String> {
    db.status().dirty.into_iter().map(|d| d.key).collect()
}
fn open_at(repo: &Path) -> GitDb {
    GitDb::open(repo, node("n1"), Options::default()).unwrap()
}
/// A value larger than what the journal carries inline: written as a blob when set.
fn large(seed: u8) -> Vec<u8> {
    (0..100_000u32)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}
