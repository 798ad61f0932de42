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

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, btree_map};
use std::ops::RangeBounds;

use super::Change;
use crate::paths::below;

/// Uncommitted changes by tree path (see the module docs of `db` for the model).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Working {
    changes: BTreeMap<String, Change>,
    /// The paths of `changes` that hold a `Change::Set`.
    sets: BTreeSet<String>,
}

impl Working {
    pub fn new() -> Working {
        Working::default()
    }

    pub fn get(&self, path: &str) -> Option<&Change> {
        self.changes.get(path)
    }

    pub fn contains_key(&self, path: &str) -> bool {
        self.changes.contains_key(path)
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
        self.changes.insert(path, change)
    }

    pub fn remove(&mut self, path: &str) -> Option<Change> {
        let old = self.changes.remove(path);
        if matches!(old, Some(Change::Set(_))) {
            self.sets.remove(path);
        }
        old
    }

    /// Keeps only the changes `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &Change) -> bool) {
        let sets = &mut self.sets;
        self.changes.retain(|path, change| {
            let kept = keep(path, &*change);
            if !kept && matches!(change, Change::Set(_)) {
                sets.remove(path);
            }
            kept
        });
    }

    pub fn clear(&mut self) {
        self.changes.clear();
        self.sets.clear();
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
            .range::<String, _>(below(path))
            .next()
            .map(|(_, c)| c)
    }

    /// Whether some path strictly below `path` (the root: any path) is set. One search of the
    /// index, however many tombstones lie below `path`.
    pub fn has_set_under(&self, path: &str) -> bool {
        self.sets.range::<String, _>(below(path)).next().is_some()
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
}
