//! The working layer's map: uncommitted changes by tree path, with an index of the paths that
//! are *set*.
//!
//! The overlay is asked "is anything set below this directory?" at every lookup and delete
//! under a directory with tombstones (a set below a deleted or emptied directory keeps it
//! alive). Over the plain map that question walks every tombstone below the directory until a
//! set turns up, so `rm -rf` of a directory of n committed files costs O(n²): each unlink walks
//! the tombstones of the unlinks before it. The index of sets answers it with one search.
//!
//! The type offers the `BTreeMap` methods the db uses, so the overlay logic reads as before;
//! every change goes through `insert`, `remove` or `clear`, which keep the index exact.
//!
//! Most lookups find nothing: a name being made, the ancestors of a path checked for a
//! tombstone or a value above it, a file asked whether anything lies below it (several of
//! each per lookup at the mount). Over the ordered map each is a search comparing long common
//! prefixes, most of a lookup's cost once thousands of changes are staged. [`PathIndex`]
//! counts, by hash, the changes at each path and below each directory, so "nothing there"
//! and "nothing below" are one hash probe.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, btree_map};
use std::hash::BuildHasher;
use std::ops::RangeBounds;

use super::Change;
use crate::paths::below;

/// Uncommitted changes by tree path (see the module docs of `db` for the model).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Working {
    changes: BTreeMap<String, Change>,
    /// The paths of `changes` that hold a `Change::Set`.
    sets: BTreeSet<String>,
    /// The paths of `changes`, counted by hash (see the module docs).
    index: PathIndex,
}

/// How many paths of a map have a change at, and below, each path hash: a hash with no count
/// means none. Paths whose hashes collide only send a lookup on to the map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PathIndex {
    counts: HashMap<u64, Counts, foldhash::fast::RandomState>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    /// Paths with this hash.
    at: u32,
    /// Paths strictly below a directory with this hash.
    below: u32,
}

/// The hash [`PathIndex`] counts by. foldhash rather than std's SipHash: it runs several
/// times per lookup, and SipHash took a third of what the index saved. A fixed seed, so
/// every `Working` agrees (clones, equality); the count map itself is seeded per process.
fn path_hash(path: &str) -> u64 {
    foldhash::fast::FixedState::default().hash_one(path)
}

/// The proper ancestors of `path` other than the root: `a/b/c` gives `a/b`, `a`.
fn dirs_above(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

impl PathIndex {
    fn has(&self, path: &str) -> bool {
        self.counts.get(&path_hash(path)).is_some_and(|c| c.at > 0)
    }

    /// Whether a path strictly below `dir` (not the root) may have a change.
    fn may_have_below(&self, dir: &str) -> bool {
        self.counts
            .get(&path_hash(dir))
            .is_some_and(|c| c.below > 0)
    }

    fn add(&mut self, path: &str) {
        self.counts.entry(path_hash(path)).or_default().at += 1;
        for dir in dirs_above(path) {
            self.counts.entry(path_hash(dir)).or_default().below += 1;
        }
    }

    fn forget(&mut self, path: &str) {
        self.change(path_hash(path), |c| c.at -= 1);
        for dir in dirs_above(path) {
            self.change(path_hash(dir), |c| c.below -= 1);
        }
    }

    fn change(&mut self, h: u64, f: impl FnOnce(&mut Counts)) {
        if let Some(c) = self.counts.get_mut(&h) {
            f(c);
            if *c == Counts::default() {
                self.counts.remove(&h);
            }
        }
    }

    fn clear(&mut self) {
        self.counts.clear();
    }
}

impl Working {
    pub fn new() -> Working {
        Working::default()
    }

    pub fn get(&self, path: &str) -> Option<&Change> {
        if !self.index.has(path) {
            return None;
        }
        self.changes.get(path)
    }

    pub fn contains_key(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn insert(&mut self, path: String, change: Change) -> Option<Change> {
        if matches!(change, Change::Set(_)) {
            self.sets.insert(path.clone());
        } else {
            self.sets.remove(&path);
        }
        match self.changes.entry(path) {
            btree_map::Entry::Vacant(e) => {
                self.index.add(e.key());
                e.insert(change);
                None
            }
            btree_map::Entry::Occupied(mut e) => Some(e.insert(change)),
        }
    }

    pub fn remove(&mut self, path: &str) -> Option<Change> {
        let old = self.changes.remove(path);
        if matches!(old, Some(Change::Set(_))) {
            self.sets.remove(path);
        }
        if old.is_some() {
            self.index.forget(path);
        }
        old
    }

    /// Keeps only the changes `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &Change) -> bool) {
        let sets = &mut self.sets;
        let index = &mut self.index;
        self.changes.retain(|path, change| {
            let kept = keep(path, &*change);
            if !kept {
                if matches!(change, Change::Set(_)) {
                    sets.remove(path);
                }
                index.forget(path);
            }
            kept
        });
    }

    pub fn clear(&mut self) {
        self.changes.clear();
        self.sets.clear();
        self.index.clear();
    }

    pub fn iter(&self) -> btree_map::Iter<'_, String, Change> {
        self.changes.iter()
    }

    pub fn keys(&self) -> btree_map::Keys<'_, String, Change> {
        self.changes.keys()
    }

    pub fn values(&self) -> btree_map::Values<'_, String, Change> {
        self.changes.values()
    }

    pub fn into_keys(self) -> btree_map::IntoKeys<String, Change> {
        self.changes.into_keys()
    }

    pub fn range<T, R>(&self, range: R) -> btree_map::Range<'_, String, Change>
    where
        T: Ord + ?Sized,
        String: Borrow<T>,
        R: RangeBounds<T>,
    {
        self.changes.range(range)
    }

    /// The first change strictly below `path` in path order, if any: one search that answers,
    /// for the common cases, both whether anything is set below and whether anything is
    /// deleted below.
    pub fn first_under(&self, path: &str) -> Option<&Change> {
        self.under(path).next().map(|(_, c)| c)
    }

    /// The changes strictly below `path` (the root: every change), in path order; no search
    /// at all when the index says there are none (most paths a flush or a lookup asks about).
    pub fn under(&self, path: &str) -> btree_map::Range<'_, String, Change> {
        if !path.is_empty() && !self.index.may_have_below(path) {
            return btree_map::Range::default();
        }
        self.changes.range::<str, _>(below(path))
    }

    /// Whether some path strictly below `path` (the root: any path) is set. One search of the
    /// index, however many tombstones lie below `path`.
    pub fn has_set_under(&self, path: &str) -> bool {
        if !path.is_empty() && !self.index.may_have_below(path) {
            return false;
        }
        self.sets.range::<str, _>(below(path)).next().is_some()
    }
}

impl<'a> IntoIterator for &'a Working {
    type Item = (&'a String, &'a Change);
    type IntoIter = btree_map::Iter<'a, String, Change>;

    fn into_iter(self) -> Self::IntoIter {
        self.changes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StagedValue;
    use crate::store::{ObjectId, ValueMode};

    fn set() -> Change {
        Change::Set(StagedValue {
            id: ObjectId::null(gix::hash::Kind::Sha1),
            mode: ValueMode::Regular,
            size: 0,
        })
    }

    #[test]
    fn the_index_follows_every_change() {
        let mut w = Working::new();
        w.insert("a/b".into(), Change::Delete);
        assert!(!w.has_set_under("a"));
        w.insert("a/b".into(), set());
        assert!(w.has_set_under("a") && w.has_set_under(""));
        assert!(!w.has_set_under("a/b") && !w.has_set_under("ab"));
        w.insert("a/b".into(), Change::Delete);
        assert!(!w.has_set_under("a"));
        w.insert("a/c/d".into(), set());
        assert!(w.has_set_under("a/c"));
        w.remove("a/c/d");
        assert!(!w.has_set_under("a"));
        w.insert("a-b".into(), set());
        assert!(!w.has_set_under("a"), "a sibling named a-b is not below a");
        w.clear();
        assert!(!w.has_set_under("") && w.is_empty());
    }

    #[test]
    fn exact_lookups_follow_every_change() {
        let mut w = Working::new();
        let mut model = BTreeMap::new();
        let path = |i: usize| format!("d{}/k{i}", i % 7);
        for i in 0..300 {
            let c = if i % 3 == 0 { Change::Delete } else { set() };
            w.insert(path(i), c);
            model.insert(path(i), c);
        }
        // The same path again: counted once, so one removal forgets it.
        w.insert(path(1), Change::Delete);
        model.insert(path(1), Change::Delete);
        for i in (0..300).step_by(5) {
            assert_eq!(w.remove(&path(i)), model.remove(&path(i)));
        }
        w.retain(|p, _| !p.starts_with("d3/"));
        model.retain(|p, _| !p.starts_with("d3/"));
        for i in 0..400 {
            assert_eq!(w.get(&path(i)), model.get(&path(i)), "{}", path(i));
            assert_eq!(w.contains_key(&path(i)), model.contains_key(&path(i)));
        }
        for d in 0..8 {
            let dir = format!("d{d}");
            let first = model.range::<str, _>(below(&dir)).next().map(|(_, c)| c);
            assert_eq!(w.first_under(&dir), first, "{dir}");
            let all: Vec<_> = model.range::<str, _>(below(&dir)).collect();
            assert_eq!(w.under(&dir).collect::<Vec<_>>(), all, "{dir}");
            assert_eq!(w.first_under(&path(d)), None, "nothing below a file");
        }
        let total: u32 = w.index.counts.values().map(|c| c.at).sum();
        assert_eq!(total as usize, model.len());
        w.clear();
        assert!(w.index.counts.is_empty() && w.get(&path(2)).is_none());
    }
}
