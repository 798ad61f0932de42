//! The per-key three-way merge of two trees.
//!
//! Only keys that differ are visited: the candidate keys are the union of the tree diffs from
//! the (first) base to each head, and to the other bases; the diff skips subtrees with equal ids
//! without reading them, so the cost follows the number of changed keys, not the store size.
//!
//! For each candidate key, with `x` and `y` the heads in canonical (id) order:
//! 1. both heads have the same value (or both lack it) → that;
//! 2. one head still has a base value (from any base — see [`base`](super::base)) and the other
//!    does not → the other head's value (a one-sided change, including deletes);
//! 3. otherwise both changed it differently (modify/modify, add/add, delete/modify) → the
//!    [`Strategy`].
//!
//! Then **value vs directory**: a key whose merged result is a value while values also remain
//! below it (one side replaced a directory by a value, or a value by a directory, while the other
//! kept writing there) keeps the directory; the value moves to the sibling key
//! `<name>~conflict-<label>` (label: the node that wrote the value, or `merge` for a value the
//! merge itself made) and that sibling is listed as a conflict. This is the same under every
//! strategy: neither side's subtree is dropped silently.
//!
//! The result is written as edits on `x`'s tree (removals first, then upserts in path order) with
//! `Store::write_tree`, which rewrites only the trees on edited paths; since a git tree
//! id is a function of its contents, starting from `x` or `y` gives the same id.

use std::collections::{BTreeMap, BTreeSet};

use crate::db::conflicts::conflicts_at;
use crate::merge::base::base_trees;
use crate::merge::strategy::{
    ConflictCase, Content, Decision, Outcome, Side, Strategy, keep_both, run_custom,
};
use crate::merge::writer::{Value, last_writer, value_at};
use crate::merge::{MergeError, Result};
use crate::paths::{below, join};
use crate::store::{EntryKind, ObjectId, Store, TreeEdit};

/// The merged tree and its conflicts.
#[derive(Debug, Clone)]
pub struct MergedTree {
    pub tree: ObjectId,
    /// All keys in conflict in the result (inherited from either head and still holding the
    /// conflicted value, plus new ones), sorted.
    pub conflicts: Vec<String>,
    /// Keys this merge put in conflict, sorted.
    pub new_conflicts: Vec<String>,
}

/// Merges the trees of commits `x` and `y` (x < y) against `bases`.
pub fn merge_trees(
    store: &Store,
    x: ObjectId,
    y: ObjectId,
    bases: &[ObjectId],
    strategy: &Strategy,
) -> Result<MergedTree> {
    let tree_of = |id: ObjectId| {
        store
            .commit_info(id)
            .map(|c| c.tree)
            .map_err(|source| MergeError::Commit { commit: id, source })
    };
    let (xt, yt) = (tree_of(x)?, tree_of(y)?);
    let btrees = base_trees(store, bases)?;
    let b0 = btrees[0];
    let b0_commit = bases.first().copied().unwrap_or(x);

    let mut keys = BTreeSet::new();
    let mut targets = vec![(xt, x), (yt, y)];
    targets.extend(btrees.iter().copied().zip(bases.iter().copied()).skip(1));
    for (tree, commit) in targets {
        let changes = store
            .diff_trees(b0, tree)
            .map_err(|source| MergeError::Commit { commit, source })?;
        keys.extend(changes.into_iter().map(|c| c.path));
    }

    let mut finals: BTreeMap<String, Value> = BTreeMap::new();
    let mut new_conflicts = BTreeSet::new();
    for key in keys {
        let vx = value_at(store, xt, &key, x)?;
        let vy = value_at(store, yt, &key, y)?;
        if vx == vy {
            finals.insert(key, vx);
            continue;
        }
        let mut bvals = Vec::with_capacity(btrees.len());
        for (i, &bt) in btrees.iter().enumerate() {
            let commit = bases.get(i).copied().unwrap_or(b0_commit);
            bvals.push(value_at(store, bt, &key, commit)?);
        }
        let (x_unchanged, y_unchanged) = (bvals.contains(&vx), bvals.contains(&vy));
        let value = if x_unchanged && !y_unchanged {
            vy
        } else if y_unchanged && !x_unchanged {
            vx
        } else {
            let decision = resolve(store, strategy, (x, vx), (y, vy), &key, bvals[0])?;
            if decision.conflict {
                new_conflicts.insert(key.clone());
            }
            match decision.outcome {
                Outcome::Existing(v) => v,
                Outcome::New(mode, data) => {
                    let id = store
                        .write_blob(&data)
                        .map_err(|source| MergeError::Write { a: x, b: y, source })?;
                    Some((mode, id))
                }
            }
        };
        finals.insert(key, value);
    }

    // Value vs directory: keep the directory, move the value to a sibling.
    let values: Vec<String> = finals
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    for key in values {
        let Some(Some(v)) = finals.get(&key).copied() else {
            continue;
        };
        if !has_values_below(store, &finals, xt, &key)? {
            continue;
        }
        let label = if value_at(store, xt, &key, x)? == Some(v) {
            last_writer(store, x, &key, Some(v))?.label()
        } else if value_at(store, yt, &key, y)? == Some(v) {
            last_writer(store, y, &key, Some(v))?.label()
        } else {
            "merge".to_owned()
        };
        let sibling = format!("{key}~conflict-{label}");
        log::info!(
            "{key} is a value on one side and a directory on the other: value moved to {sibling}"
        );
        finals.insert(key.clone(), None);
        finals.insert(sibling.clone(), Some(v));
        new_conflicts.remove(&key);
        new_conflicts.insert(sibling);
    }

    // Conflicts inherited from either head stay while the conflicted value survives.
    let final_at = |key: &str, tree: ObjectId, commit: ObjectId| -> Result<Value> {
        match finals.get(key) {
            Some(v) => Ok(*v),
            None => value_at(store, tree, key, commit),
        }
    };
    let mut conflicts: BTreeSet<String> = new_conflicts.clone();
    for (head, tree) in [(x, xt), (y, yt)] {
        let at_head = conflicts_at(store, head).map_err(|source| MergeError::Commit {
            commit: head,
            source,
        })?;
        for key in at_head {
            let here = value_at(store, tree, &key, head)?;
            if here.is_some() && final_at(&key, xt, x)? == here {
                conflicts.insert(key);
            }
        }
    }

    // Edits on x's tree: removals, then upserts.
    let mut removes = Vec::new();
    let mut upserts = Vec::new();
    for (key, v) in &finals {
        if value_at(store, xt, key, x)? == *v {
            continue;
        }
        match v {
            None => removes.push(TreeEdit::Remove { path: key }),
            Some((mode, id)) => upserts.push(TreeEdit::Upsert {
                path: key,
                mode: *mode,
                id: *id,
            }),
        }
    }
    removes.reverse();
    let tree = store
        .write_tree(xt, removes.into_iter().chain(upserts))
        .map_err(|source| MergeError::Write { a: x, b: y, source })?;
    Ok(MergedTree {
        tree,
        conflicts: conflicts.into_iter().collect(),
        new_conflicts: new_conflicts.into_iter().collect(),
    })
}

/// Whether the merged result has any value strictly below `key`: a merged key, or an untouched
/// value of `x`'s tree (untouched keys are the same in both heads).
fn has_values_below(
    store: &Store,
    finals: &BTreeMap<String, Value>,
    xt: ObjectId,
    key: &str,
) -> Result<bool> {
    if finals.range::<str, _>(below(key)).any(|(_, v)| v.is_some()) {
        return Ok(true);
    }
    let entry = store.lookup(xt, key).map_err(|source| MergeError::Key {
        commit: xt,
        key: key.to_owned(),
        source,
    })?;
    match entry {
        Some(e) if e.kind == EntryKind::Dir => untouched_value_below(store, finals, e.id, key),
        _ => Ok(false),
    }
}

fn untouched_value_below(
    store: &Store,
    finals: &BTreeMap<String, Value>,
    dir: ObjectId,
    prefix: &str,
) -> Result<bool> {
    let tree = store.tree(dir).map_err(|source| MergeError::Key {
        commit: dir,
        key: prefix.to_owned(),
        source,
    })?;
    for e in tree.entries() {
        let path = join(prefix, &e.name);
        match e.kind {
            EntryKind::Value(_) if !finals.contains_key(&path) => return Ok(true),
            EntryKind::Dir if untouched_value_below(store, finals, e.id, &path)? => {
                return Ok(true);
            }
            _ => {}
        }
    }
    Ok(false)
}

/// Resolves a key both heads changed differently.
fn resolve(
    store: &Store,
    strategy: &Strategy,
    (x, vx): (ObjectId, Value),
    (y, vy): (ObjectId, Value),
    key: &str,
    base: Value,
) -> Result<Decision> {
    let wx = last_writer(store, x, key, vx)?;
    let wy = last_writer(store, y, key, vy)?;
    if let Strategy::LastWriteWins = strategy {
        let winner = match wx.cmp_later(&wy) {
            std::cmp::Ordering::Greater => vx,
            std::cmp::Ordering::Less => vy,
            std::cmp::Ordering::Equal if vx.map(|v| v.1) >= vy.map(|v| v.1) => vx,
            std::cmp::Ordering::Equal => vy,
        };
        return Ok(Decision {
            outcome: Outcome::Existing(winner),
            conflict: false,
        });
    }
    let content = |v: Value, commit: ObjectId| -> Result<Option<Content>> {
        v.map(|(mode, id)| {
            store
                .blob(id)
                .map(|data| Content { mode, id, data })
                .map_err(|source| MergeError::Key {
                    commit,
                    key: key.to_owned(),
                    source,
                })
        })
        .transpose()
    };
    let mut sides = [
        Side {
            node: wx.label(),
            writer: wx.commit,
            value: content(vx, x)?,
        },
        Side {
            node: wy.label(),
            writer: wy.commit,
            value: content(vy, y)?,
        },
    ];
    sides.sort_by(|a, b| {
        (&a.node, a.writer, a.value.as_ref().map(|c| c.id)).cmp(&(
            &b.node,
            b.writer,
            b.value.as_ref().map(|c| c.id),
        ))
    });
    let case = ConflictCase {
        key: key.to_owned(),
        base: content(base, x)?,
        sides,
    };
    Ok(match strategy {
        Strategy::Custom(resolver) => run_custom(resolver, &case),
        _ => keep_both(&case),
    })
}
