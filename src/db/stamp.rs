//! The one rule for the stamp that orders a commit: its own trailers, or, for a commit made
//! by stock git (no trailers), those of its nearest stamped first-parent ancestor.
//!
//! Two readers need the answer and must never disagree: db, which takes a head's clock and
//! hybrid timestamp from it (opening, adopting a moved head, a commit retried on top of one),
//! and merge, which orders the last writers of a key by it (LastWriteWins, KeepBoth's labels)
//! and stamps its merge commits from it. Were the walks two, two nodes could order the same
//! writes differently and never converge; so this function alone decides, next to the stamp
//! format it reads ([`CommitStamp`], in `clock.rs`).
//!
//! The rule, which depends on history alone (so it is the same on every node):
//! - a commit is *stamped* when its trailers name a node or a non-empty clock (every commit
//!   gitdb writes has a clock trailer; a merge commit names no node);
//! - an unstamped commit takes the clock and HLC of its nearest stamped first-parent ancestor,
//!   with the node left empty: the commit's writer is not a gitdb node, and merge labels it by
//!   its commit id instead (so a plain `git commit` neither resets the clock nor borrows the
//!   identity of the node before it);
//! - the walk is bounded ([`STAMP_WALK`] commits): a long stock-git history, or a root commit
//!   without a stamp, gives the empty stamp rather than a long walk.

use crate::db::CommitStamp;
use crate::store::{ObjectId, Store, StoreError};

/// The most commits looked at for a stamp (the commit itself included).
pub const STAMP_WALK: usize = 64;

/// The stamp that orders commit `id` (see the module docs for the rule).
pub fn nearest_stamp(store: &Store, id: ObjectId) -> Result<CommitStamp, StoreError> {
    let mut at = id;
    for _ in 0..STAMP_WALK {
        let info = store.commit_info(at)?;
        let stamp = CommitStamp::from_message(&info.message);
        if stamp.node.is_some() || !stamp.clock.is_empty() {
            return Ok(if at == id {
                stamp
            } else {
                CommitStamp {
                    node: None,
                    ..stamp
                }
            });
        }
        match info.parents.first() {
            Some(p) => at = *p,
            None => break,
        }
    }
    Ok(CommitStamp::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Hlc, NodeId, VectorClock};
    use crate::store::{CacheConfig, Signature, TreeEdit, ValueMode};

    fn commit(store: &Store, parents: &[ObjectId], message: &str) -> ObjectId {
        let blob = store.write_blob(message.as_bytes()).unwrap();
        let base = match parents.first() {
            Some(p) => store.commit_info(*p).unwrap().tree,
            None => store.empty_tree(),
        };
        let edit = TreeEdit::Upsert {
            path: "k",
            mode: ValueMode::Regular,
            id: blob,
        };
        let tree = store.write_tree(base, [edit]).unwrap();
        let sig = Signature {
            name: "git".into(),
            email: "git@x".into(),
            seconds: 1,
        };
        store.write_commit(tree, parents, &sig, message).unwrap()
    }

    fn stamp(node: Option<&str>, clock: &str, millis: u64) -> CommitStamp {
        CommitStamp {
            node: node.map(|n| NodeId::new(n).unwrap()),
            clock: VectorClock::parse(clock).unwrap(),
            hlc: Some(Hlc { millis, counter: 0 }),
        }
    }

    #[test]
    fn stock_commits_inherit_clock_and_hlc_but_not_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open_or_create(&dir.path().join("r.git"), CacheConfig::default()).unwrap();
        let root = commit(&store, &[], "stock root\n");
        assert_eq!(nearest_stamp(&store, root).unwrap(), CommitStamp::default());
        let g = stamp(Some("n1"), "n1=2", 5000);
        let g_id = commit(&store, &[root], &format!("set\n\n{}", g.trailers()));
        assert_eq!(nearest_stamp(&store, g_id).unwrap(), g);
        let s1 = commit(&store, &[g_id], "stock one\n");
        let s2 = commit(&store, &[s1], "stock two\n");
        let inherited = CommitStamp { node: None, ..g };
        assert_eq!(nearest_stamp(&store, s1).unwrap(), inherited);
        assert_eq!(nearest_stamp(&store, s2).unwrap(), inherited);
        // A stock merge follows its first parent only.
        let other = commit(
            &store,
            &[root],
            &format!("x\n\n{}", stamp(Some("n2"), "n2=9", 9000).trailers()),
        );
        let m = commit(&store, &[s2, other], "Merge branch 'x'\n");
        assert_eq!(nearest_stamp(&store, m).unwrap(), inherited);
    }

    #[test]
    fn a_long_unstamped_history_gives_the_empty_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open_or_create(&dir.path().join("r.git"), CacheConfig::default()).unwrap();
        let g = stamp(Some("n1"), "n1=1", 1000);
        let mut at = commit(&store, &[], &format!("set\n\n{}", g.trailers()));
        for i in 0..STAMP_WALK - 1 {
            at = commit(&store, &[at], &format!("stock {i}\n"));
        }
        // The stamped root is the 64th commit looked at: still found.
        assert_eq!(nearest_stamp(&store, at).unwrap().clock, g.clock);
        at = commit(&store, &[at], "one more\n");
        assert_eq!(nearest_stamp(&store, at).unwrap(), CommitStamp::default());
    }
}
