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
//! Most exact lookups find nothing: a name being made, or the ancestors of a path checked for
//! a tombstone or a value above it (several per lookup at the mount). Over the ordered map
//! each is a search comparing long common prefixes, most of a lookup's cost once thousands of
//! changes are staged; a count of the paths' hashes answers "not there" with one probe.

use std::borrow::Borrow;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, btree_map};
use std::hash::{Hash, Hasher};
use std::ops::RangeBounds;

use super::Change;
use crate::paths::below;

/// Uncommitted changes by tree path (see the module docs of `db` for the model).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Working {
    changes: BTreeMap<String, Change>,
    /// The paths of `changes` that hold a `Change::Set`.
    sets: BTreeSet<String>,
    /// How many paths of `changes` have each hash (see the module docs): a path whose hash is
    /// absent has no change. Collisions only send a lookup on to the map.
    hashes: HashMap<u64, u32>,
}

/// The hash `hashes` counts: fixed keys, so it is the same in every process (nothing
/// depends on that beyond tests, but a seed would buy nothing: a collision costs a search).
fn path_hash(path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// One path fewer with hash `h`.
fn forget_hash(hashes: &mut HashMap<u64, u32>, h: u64) {
    if let Some(n) = hashes.get_mut(&h) {
        *n -= 1;
        if *n == 0 {
            hashes.remove(&h);
        }
    }
}

impl Working {
    pub fn new() -> Working {
        Working::default()
    }

    pub fn get(&self, path: &str) -> Option<&Change> {
        if !self.hashes.contains_key(&path_hash(path)) {
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
        let h = path_hash(&path);
        let old = self.changes.insert(path, change);
        if old.is_none() {
            *self.hashes.entry(h).or_insert(0) += 1;
        }
        old
    }

    pub fn remove(&mut self, path: &str) -> Option<Change> {
        let old = self.changes.remove(path);
        if matches!(old, Some(Change::Set(_))) {
            self.sets.remove(path);
        }
        if old.is_some() {
            forget_hash(&mut self.hashes, path_hash(path));
        }
        old
    }

    /// Keeps only the changes `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &Change) -> bool) {
        let sets = &mut self.sets;
        let hashes = &mut self.hashes;
        self.changes.retain(|path, change| {
            let kept = keep(path, &*change);
            if !kept {
                if matches!(change, Change::Set(_)) {
                    sets.remove(path);
                }
                forget_hash(hashes, path_hash(path));
            }
            kept
        });
    }

    pub fn clear(&mut self) {
        self.changes.clear();
        self.sets.clear();
        self.hashes.clear();
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
        self.changes
            .range::<str, _>(below(path))
            .next()
            .map(|(_, c)| c)
    }

    /// Whether some path strictly below `path` (the root: any path) is set. One search of the
    /// index, however many tombstones lie below `path`.
    pub fn has_set_under(&self, path: &str) -> bool {
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
        assert_eq!(w.hashes.values().sum::<u32>() as usize, model.len());
        w.clear();
        assert!(w.hashes.is_empty() && w.get(&path(2)).is_none());
    }
}
