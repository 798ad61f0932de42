//! Merge base selection: what the three-way merge compares both heads against.
//!
//! The bases are git's best common ancestors of the two heads (`git merge-base --all`), a
//! property of the commit graph alone, sorted by id — so both nodes of a pair see the same list.
//!
//! * One base (the usual case): a plain three-way merge against it.
//! * Several bases (criss-cross histories, which gossip between three or more nodes produces
//!   easily): instead of picking one arbitrarily, or building git's recursive virtual base, the
//!   per-key merge treats a side as *unchanged* for a key when its value equals that key's value
//!   in **any** base (see [`three_way`](super::three_way)). A key both sides moved away from every
//!   base is a conflict for the strategy. This is symmetric in the two heads and in the order of
//!   the bases, so it converges; it never invents a base value no commit had; and it needs no
//!   temporary commits. The base value shown to resolvers is that of the first base (by id).
//! * No base (unrelated histories, e.g. two nodes that started alone): the empty tree is the
//!   base, so keys present on one side only are simply added and keys added on both sides with
//!   different values are conflicts.

use crate::merge::{MergeError, Result};
use crate::store::{ObjectId, Store};

/// The merge bases of `x` and `y`, sorted by id (empty when the histories are unrelated).
pub fn merge_bases(store: &Store, x: ObjectId, y: ObjectId) -> Result<Vec<ObjectId>> {
    store
        .merge_bases(x, y)
        .map_err(|source| MergeError::Bases { a: x, b: y, source })
}

/// The root trees of the bases (the empty tree when there is no base), in the same order.
pub fn base_trees(store: &Store, bases: &[ObjectId]) -> Result<Vec<ObjectId>> {
    if bases.is_empty() {
        return Ok(vec![store.empty_tree()]);
    }
    bases
        .iter()
        .map(|&id| {
            store
                .commit_info(id)
                .map(|c| c.tree)
                .map_err(|source| MergeError::Commit { commit: id, source })
        })
        .collect()
}
