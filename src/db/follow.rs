//! Following a branch's committed head from outside the node that writes it: what
//! `gitdb watch` is built on, the job confd and consul-template do for etcd and Consul.
//!
//! A [`Follower`] re-reads the branch ref every interval and, when it moved, diffs the trees of
//! the head it last saw and the new one, keeping the keys under its prefix. The ref is the one
//! thing every writer moves (the daemon's commits, merges from peers, a commit or reset by
//! stock git), so this needs no daemon, takes no lock and works the same on a bare repository
//! and beside a running mount. Reading a ref is a small file read; the diff skips every subtree
//! whose id did not change, so a poll costs nothing and a change costs what it changed.
//!
//! What it follows is the committed state, the state every node converges to: a value being
//! written at a mount, or dropped by `rollback` before it was committed, is no change here.

use std::time::{Duration, Instant};

use crate::db::{DiffEntry, GitDb, Key, Result};
use crate::store::ObjectId;

/// The branch head moved and changed keys under the follower's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadChange {
    pub from: Option<ObjectId>,
    pub to: Option<ObjectId>,
    /// The keys under the prefix that differ between `from` and `to`, in key order.
    pub changes: Vec<DiffEntry>,
}

/// Watches one branch for changes under one prefix.
pub struct Follower<'a> {
    db: &'a GitDb,
    prefix: Key,
    seen: Option<ObjectId>,
}

impl<'a> Follower<'a> {
    /// Starts at the branch's current head: changes are counted from there.
    pub fn new(db: &'a GitDb, prefix: Key) -> Result<Follower<'a>> {
        let seen = db.branch_tip()?;
        Ok(Follower { db, prefix, seen })
    }

    /// The head changes are counted from.
    pub fn seen(&self) -> Option<ObjectId> {
        self.seen
    }

    /// Blocks until the head moves with a change under the prefix (polling every `interval`)
    /// and returns it, or returns None once `until` has passed. A move that changed nothing
    /// under the prefix is taken as seen and waited past.
    pub fn next(
        &mut self,
        interval: Duration,
        until: Option<Instant>,
    ) -> Result<Option<HeadChange>> {
        loop {
            if let Some(change) = self.poll()? {
                return Ok(Some(change));
            }
            let now = Instant::now();
            let nap = match until {
                Some(end) if now >= end => return Ok(None),
                Some(end) => interval.min(end - now),
                None => interval,
            };
            std::thread::sleep(nap);
        }
    }

    /// One look at the ref: the change since the head last seen, if it touched the prefix.
    pub fn poll(&mut self) -> Result<Option<HeadChange>> {
        let tip = self.db.branch_tip()?;
        if tip == self.seen {
            return Ok(None);
        }
        let from = self.seen;
        let changes: Vec<DiffEntry> = self
            .db
            .diff_heads(from, tip)?
            .into_iter()
            .filter(|c| under(&self.prefix, &c.key))
            .collect();
        self.seen = tip;
        Ok((!changes.is_empty()).then_some(HeadChange {
            from,
            to: tip,
            changes,
        }))
    }
}

/// Whether tree path `key` is `prefix` or below it.
fn under(prefix: &Key, key: &str) -> bool {
    let p = prefix.as_str();
    p.is_empty()
        || key
            .strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl GitDb {
    /// The branch's head as the ref says now (not the head this handle works on, which a
    /// read-only handle adopts only on [`GitDb::refresh`]).
    pub fn branch_tip(&self) -> Result<Option<ObjectId>> {
        Ok(self.store.read_ref(&self.branch_ref)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{DiffKind, Options};

    fn db() -> (tempfile::TempDir, GitDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = GitDb::open(
            dir.path().join("r.git"),
            crate::NodeId::new("n1").unwrap(),
            Options::default(),
        )
        .unwrap();
        (dir, db)
    }

    #[test]
    fn prefixes_hold_their_own_keys_only() {
        let app = Key::parse("/app").unwrap();
        assert!(under(&app, "app"));
        assert!(under(&app, "app/port"));
        assert!(!under(&app, "apple"));
        assert!(!under(&app, "other/app"));
        assert!(under(&Key::root(), "anything/at/all"));
    }

    #[test]
    fn a_commit_under_the_prefix_is_one_change_and_others_are_passed_over() {
        let (_dir, db) = db();
        let mut f = Follower::new(&db, Key::parse("/app").unwrap()).unwrap();
        assert_eq!(f.seen(), None);
        assert_eq!(f.poll().unwrap(), None);
        db.set("/other/x", b"1").unwrap();
        db.commit("other", 1).unwrap();
        assert_eq!(f.poll().unwrap(), None, "nothing under /app changed");
        assert_eq!(f.seen(), db.head());
        let before = db.head();
        db.set("/app/port", b"8080").unwrap();
        db.set("/apple", b"not app").unwrap();
        db.commit("app", 2).unwrap();
        let change = f.poll().unwrap().expect("a change");
        assert_eq!(change.from, before);
        assert_eq!(change.to, db.head());
        assert_eq!(
            change.changes,
            vec![DiffEntry {
                key: "app/port".into(),
                change: DiffKind::Added
            }]
        );
        assert_eq!(f.poll().unwrap(), None, "seen once");
        db.delete("/app/port").unwrap();
        db.commit("gone", 3).unwrap();
        let gone = f
            .next(Duration::from_millis(1), Some(Instant::now()))
            .unwrap()
            .expect("the delete");
        assert_eq!(gone.changes[0].change, DiffKind::Deleted);
    }

    #[test]
    fn next_gives_up_at_its_deadline() {
        let (_dir, db) = db();
        let mut f = Follower::new(&db, Key::root()).unwrap();
        let start = Instant::now();
        let got = f
            .next(
                Duration::from_millis(5),
                Some(start + Duration::from_millis(30)),
            )
            .unwrap();
        assert_eq!(got, None);
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}
