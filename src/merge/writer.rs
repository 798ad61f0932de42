//! The last writer of a key, and the order LastWriteWins (and KeepBoth's labels) use.
//!
//! For each side, the commit that last changed a key is found by walking from the side's head
//! toward the root, stepping to a parent that has the same value for the key (the value came
//! from there) and stopping at the first commit whose value differs from all its parents (it
//! wrote the value) or at a root commit. Only this side's history is read, so the answer is the
//! same on every node. The walk is bounded ([`MAX_WALK`] commits); past the bound the commit
//! reached is taken as the writer, still deterministically.
//!
//! "Later" is a total order on writers: vector-clock dominance (a write that saw the other wins);
//! for equal or concurrent clocks the larger hybrid timestamp; then the larger node id; then the
//! larger commit id. It never asks which side is ours.

use std::cmp::Ordering;

use crate::db::stamp::nearest_stamp;
use crate::db::{ClockOrdering, CommitStamp};
use crate::merge::{MergeError, Result};
use crate::store::{EntryKind, ObjectId, Store, ValueMode};

/// The longest walk looking for a key's last writer.
pub const MAX_WALK: usize = 4096;

/// A committed value: mode and blob id (`None`: absent, or a directory, at that path).
pub type Value = Option<(ValueMode, ObjectId)>;

/// The value at `path` in the tree `root` (directories and submodules count as absent).
pub fn value_at(store: &Store, root: ObjectId, path: &str, commit: ObjectId) -> Result<Value> {
    let entry = store.lookup(root, path).map_err(|source| MergeError::Key {
        commit,
        key: path.to_owned(),
        source,
    })?;
    Ok(entry.and_then(|e| match e.kind {
        EntryKind::Value(mode) => Some((mode, e.id)),
        _ => None,
    }))
}

/// The commit that wrote `path`'s value on the side whose head is `head`, with its stamp.
#[derive(Debug, Clone)]
pub struct Writer {
    pub commit: ObjectId,
    pub stamp: CommitStamp,
}

impl Writer {
    /// The label of this write in conflict markers and sibling names: the writing node's id,
    /// or `commit-<7 hex>` for a commit without a gitdb stamp (stock git, a merge).
    pub fn label(&self) -> String {
        match &self.stamp.node {
            Some(n) => n.to_string(),
            None => format!("commit-{}", &self.commit.to_string()[..7]),
        }
    }

    /// Whether `self` is the later write of the two (a total order; see the module docs).
    pub fn cmp_later(&self, other: &Writer) -> Ordering {
        match self.stamp.clock.compare(&other.stamp.clock) {
            ClockOrdering::After => return Ordering::Greater,
            ClockOrdering::Before => return Ordering::Less,
            ClockOrdering::Equal | ClockOrdering::Concurrent => {}
        }
        self.stamp
            .hlc
            .cmp(&other.stamp.hlc)
            .then_with(|| self.stamp.node.cmp(&other.stamp.node))
            .then_with(|| self.commit.cmp(&other.commit))
    }
}

/// The stamp that orders commit `id`: db's one rule ([`crate::db::stamp`]), so that merge
/// orders writes by the very clocks db gives its heads.
pub fn stamp_of(store: &Store, id: ObjectId) -> Result<CommitStamp> {
    nearest_stamp(store, id).map_err(|source| MergeError::Commit { commit: id, source })
}

/// Finds the last writer of `path` (whose value at `head` is `value`).
pub fn last_writer(store: &Store, head: ObjectId, path: &str, value: Value) -> Result<Writer> {
    let info = |id: ObjectId| {
        store
            .commit_info(id)
            .map_err(|source| MergeError::Commit { commit: id, source })
    };
    let mut at = head;
    'walk: for _ in 0..MAX_WALK {
        let c = info(at)?;
        for &p in &c.parents {
            let ptree = info(p)?.tree;
            if value_at(store, ptree, path, p)? == value {
                at = p;
                continue 'walk;
            }
        }
        break;
    }
    Ok(Writer {
        commit: at,
        stamp: stamp_of(store, at)?,
    })
}
