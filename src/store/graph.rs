//! Commit-graph queries and raw object copies, for the merge layer (and tests that simulate peers).
//!
//! It also has a tree writer for edits whose objects are known to exist (a merge only points
//! at entries of existing trees and blobs it just wrote): gix's tree editor checks that every
//! entry of every rewritten tree exists, one `stat` per entry for loose objects, which made a
//! merge cost follow the size of the rewritten directories rather than the number of edits.
//!
//! Merging needs *all* best common ancestors of two commits (criss-cross histories have several),
//! not just the one `merge_base` picks; and simulating several nodes in one process needs to copy
//! the objects one repository lacks from another, verified by their hash on write.

use std::collections::{BTreeMap, HashSet};

use super::{ObjectId, Result, Store, StoreError, TreeEdit, ValueMode, boxed};

/// The kind of a raw object, as stored.
pub use gix::object::Kind as ObjectKind;

impl Store {
    /// Every best common ancestor of `a` and `b` (git's `merge-base --all`), sorted by id so the
    /// answer does not depend on argument order. Empty for unrelated histories.
    ///
    /// gix 0.90's `merge_bases_many` can return redundant bases (its `remove_redundant` never
    /// follows the second parent of a merge once the first was seen), so a candidate that is an
    /// ancestor of another candidate is dropped here.
    pub fn merge_bases(&self, a: ObjectId, b: ObjectId) -> Result<Vec<ObjectId>> {
        if a == b {
            return Ok(vec![a]);
        }
        let candidates = self.raw_merge_bases(a, b)?;
        let mut bases = Vec::with_capacity(candidates.len());
        for &c in &candidates {
            let mut redundant = false;
            for &d in &candidates {
                if d != c && self.descends_from(d, c)? {
                    redundant = true;
                    break;
                }
            }
            if !redundant {
                bases.push(c);
            }
        }
        bases.sort();
        bases.dedup();
        Ok(bases)
    }

    /// Whether `descendant` has `ancestor` in its history (or is it). Sound even where gix's
    /// `merge_base` picks a redundant base first: an ancestor is always among the candidates.
    pub fn descends_from(&self, descendant: ObjectId, ancestor: ObjectId) -> Result<bool> {
        if descendant == ancestor {
            return Ok(true);
        }
        Ok(self
            .raw_merge_bases(ancestor, descendant)?
            .contains(&ancestor))
    }

    fn raw_merge_bases(&self, a: ObjectId, b: ObjectId) -> Result<Vec<ObjectId>> {
        self.with_repo(|repo| {
            repo.merge_bases_many(a, &[b])
                .map(|ids| ids.into_iter().map(|id| id.detach()).collect())
                .map_err(|e| StoreError::Read {
                    id: a,
                    source: boxed(e),
                })
        })
    }

    /// The kind and bytes of any object.
    pub fn raw_object(&self, id: ObjectId) -> Result<(ObjectKind, Vec<u8>)> {
        self.with_repo(|repo| {
            let object = self.find(repo, id)?;
            Ok((object.kind, object.detach().data))
        })
    }

    /// Writes an object from its kind and bytes; returns its id (computed from the bytes).
    pub fn write_raw(&self, kind: ObjectKind, data: &[u8]) -> Result<ObjectId> {
        use gix::objs::Write;
        let id = self.with_repo(|repo| {
            repo.objects
                .write_buf(kind, data)
                .map_err(|e| StoreError::Write {
                    what: "object",
                    source: boxed(e),
                })
        })?;
        self.note_written([self.loose_path(id)]);
        Ok(id)
    }

    /// Copies every object reachable from `tip` in `from` that this repository lacks, children
    /// before parents, so an object present here always has its whole closure here too (the
    /// walk stops at objects already present). Returns how many objects were written.
    pub fn copy_from(&self, from: &Store, tip: ObjectId) -> Result<usize> {
        let hash = gix::hash::Kind::Sha1;
        let mut written = 0;
        let mut seen = HashSet::new();
        // (id, children already pushed)
        let mut stack = vec![(tip, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                let (kind, data) = from.raw_object(id)?;
                let got = self.write_raw(kind, &data)?;
                if got != id {
                    return Err(StoreError::Read {
                        id,
                        source: format!("object hashed to {got}").into(),
                    });
                }
                written += 1;
                continue;
            }
            if !seen.insert(id) || self.has_object(id) {
                continue;
            }
            stack.push((id, true));
            let (kind, data) = from.raw_object(id)?;
            let bad = |source| StoreError::Read { id, source };
            match kind {
                ObjectKind::Commit => {
                    let c =
                        gix::objs::CommitRef::from_bytes(&data, hash).map_err(|e| bad(boxed(e)))?;
                    stack.push((c.tree(), false));
                    stack.extend(c.parents().map(|p| (p, false)));
                }
                ObjectKind::Tree => {
                    let t =
                        gix::objs::TreeRef::from_bytes(&data, hash).map_err(|e| bad(boxed(e)))?;
                    for e in t.entries {
                        if !e.mode.is_commit() {
                            stack.push((e.oid.to_owned(), false));
                        }
                    }
                }
                ObjectKind::Blob | ObjectKind::Tag => {}
            }
        }
        Ok(written)
    }

    /// Applies `edits` to the tree `base` like [`Store::write_tree`] (in order; empty trees left
    /// behind disappear), rewriting only the trees on edited paths, but without checking that
    /// every entry's object exists — for callers whose entries come from existing trees or
    /// freshly written blobs. A value upserted at a path that later edits write below is an
    /// error (the caller's edits must describe a consistent result).
    pub fn write_tree_trusted<'a>(
        &self,
        base: ObjectId,
        edits: impl IntoIterator<Item = TreeEdit<'a>>,
    ) -> Result<ObjectId> {
        let mut root = EditNode::default();
        for edit in edits {
            let (path, change) = match edit {
                TreeEdit::Upsert { path, mode, id } => (path, Some((mode, id))),
                TreeEdit::Remove { path } => (path, None),
            };
            let upsert = change.is_some();
            let mut node = &mut root;
            for name in path.split('/') {
                // An upsert below a path makes that path a directory, even if later edits
                // leave it empty (then it disappears, as an empty directory does).
                node.replaces_value |= upsert;
                node = node.children.entry(name.to_owned()).or_default();
            }
            node.change = Some(change);
            node.children.clear();
            node.replaces_value = false;
        }
        Ok(self
            .write_edited(Some(base), &root, "")?
            .unwrap_or(self.empty_tree))
    }

    /// Writes the tree `base` (or a new one) with the edits of `node`; `None` if it ends empty.
    fn write_edited(
        &self,
        base: Option<ObjectId>,
        node: &EditNode,
        path: &str,
    ) -> Result<Option<ObjectId>> {
        use gix::objs::tree::{Entry, EntryKind as GitKind};
        let mut entries: Vec<Entry> =
            match base {
                Some(id) if id != self.empty_tree => {
                    let (kind, data) = self.raw_object(id)?;
                    if kind != ObjectKind::Tree {
                        return Err(StoreError::WrongKind {
                            id,
                            expected: "tree",
                        });
                    }
                    let tree = gix::objs::TreeRef::from_bytes(&data, gix::hash::Kind::Sha1)
                        .map_err(|e| StoreError::Read {
                            id,
                            source: boxed(e),
                        })?;
                    gix::objs::Tree::from(tree).entries
                }
                _ => Vec::new(),
            };
        let mut by_name: BTreeMap<Vec<u8>, Entry> = entries
            .drain(..)
            .map(|e| (e.filename.to_vec(), e))
            .collect();
        let tree_entry = |name: &str, oid: ObjectId| Entry {
            mode: GitKind::Tree.into(),
            filename: name.into(),
            oid,
        };
        for (name, child) in &node.children {
            let child_path = super::join(path, name);
            let existing = by_name.remove(name.as_bytes());
            let new_entry = match child.change {
                Some(Some((mode, id))) => {
                    if !child.children.is_empty() {
                        return Err(StoreError::Write {
                            what: "tree",
                            source: format!("{child_path} is edited as a value and a directory")
                                .into(),
                        });
                    }
                    Some(Entry {
                        mode: mode_of(mode),
                        filename: name.as_str().into(),
                        oid: id,
                    })
                }
                // Removed, then maybe rebuilt by the edits below it.
                Some(None) => self
                    .write_edited(None, child, &child_path)?
                    .map(|oid| tree_entry(name, oid)),
                // Only edited below: a directory is rewritten; a value stays unless the edits
                // below create something (then a directory replaces it, as in gix's editor).
                None => match existing {
                    Some(e) if e.mode.is_tree() => self
                        .write_edited(Some(e.oid), child, &child_path)?
                        .map(|oid| tree_entry(name, oid)),
                    other => self
                        .write_edited(None, child, &child_path)?
                        .map(|oid| tree_entry(name, oid))
                        .or(if child.replaces_value { None } else { other }),
                },
            };
            if let Some(e) = new_entry {
                by_name.insert(name.as_bytes().to_vec(), e);
            }
        }
        entries.extend(by_name.into_values());
        if entries.is_empty() {
            return Ok(None);
        }
        entries.sort();
        let tree = gix::objs::Tree { entries };
        let id = self.with_repo(|repo| {
            repo.write_object(&tree)
                .map(|id| id.detach())
                .map_err(|e| StoreError::Write {
                    what: "tree",
                    source: boxed(e),
                })
        })?;
        self.note_written([self.loose_path(id)]);
        Ok(Some(id))
    }
}

/// Edits below one path: the change at the path itself (`Some(None)`: removed, `Some(Some)`:
/// set to a value) applied before the edits below it.
#[derive(Default)]
struct EditNode {
    change: Option<Option<(ValueMode, ObjectId)>>,
    /// Some edit upserted a value below this path.
    replaces_value: bool,
    children: BTreeMap<String, EditNode>,
}

fn mode_of(mode: ValueMode) -> gix::objs::tree::EntryMode {
    mode.git_kind().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CacheConfig;
    use proptest::prelude::*;

    fn path() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof!["a", "b", "c~x"], 1..4).prop_map(|v| v.join("/"))
    }

    fn as_edits(v: &[(String, Option<ObjectId>)]) -> Vec<TreeEdit<'_>> {
        v.iter()
            .map(|(p, b)| match b {
                Some(id) => TreeEdit::Upsert {
                    path: p.as_str(),
                    mode: ValueMode::Regular,
                    id: *id,
                },
                None => TreeEdit::Remove { path: p.as_str() },
            })
            .collect()
    }

    fn edits() -> impl Strategy<Value = Vec<(String, Option<u8>)>> {
        proptest::collection::vec((path(), proptest::option::of(0u8..3)), 0..12)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// The trusted writer gives the tree a simple model says (gix's own editor resurrects
        /// entries when a directory it created in memory is removed and written below again),
        /// and the same id as gix's editor for merge-shaped edits.
        #[test]
        fn trusted_tree_writer_matches_the_checked_one(base in edits(), change in edits()) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_or_create(&dir.path().join("r.git"), CacheConfig::default()).unwrap();
            let blobs: Vec<ObjectId> = (0..3u8).map(|i| store.write_blob(&[i]).unwrap()).collect();
            let to_edits = |v: &[(String, Option<u8>)]| -> Vec<(String, Option<ObjectId>)> {
                v.iter().map(|(p, b)| (p.clone(), b.map(|i| blobs[i as usize]))).collect()
            };
            let base_edits = to_edits(&base);
            let Ok(base_tree) = store.write_tree(store.empty_tree(), as_edits(&base_edits)) else {
                return Ok(());
            };
            let change_edits = to_edits(&change);
            // The model: a map of paths to blobs, with git's rules (a value replaces a directory
            // and the reverse; removing a path removes everything below it).
            let mut model: BTreeMap<String, ObjectId> = BTreeMap::new();
            store.walk_values(base_tree, "", &mut |p, e| { model.insert(p.to_owned(), e.id); Ok(()) }).unwrap();
            let mut consistent = true;
            for (i, (p, v)) in change_edits.iter().enumerate() {
                if change_edits[..i].iter().any(|(q, v)| v.is_some() && p.starts_with(&format!("{q}/"))) {
                    consistent = false;
                }
                model.retain(|k, _| k != p && !k.starts_with(&format!("{p}/")));
                if let Some(id) = v {
                    model.retain(|k, _| !p.starts_with(&format!("{k}/")));
                    model.insert(p.clone(), *id);
                }
            }
            let trusted = store.write_tree_trusted(base_tree, as_edits(&change_edits));
            if !consistent {
                return Ok(());
            }
            let tree = trusted.unwrap();
            let mut got = BTreeMap::new();
            store.walk_values(tree, "", &mut |p, e| { got.insert(p.to_owned(), e.id); Ok(()) }).unwrap();
            prop_assert_eq!(&got, &model, "edits {:?} on {:?}", change_edits, base_edits);
            // In the shape a merge writes (removals, then upserts, each path once) gix's editor
            // agrees to the id.
            let mut shaped: Vec<(String, Option<ObjectId>)> = Vec::new();
            for (p, v) in change_edits.iter().rev() {
                if !shaped.iter().any(|(q, _)| q == p || q.starts_with(&format!("{p}/")) || p.starts_with(&format!("{q}/"))) {
                    shaped.push((p.clone(), *v));
                }
            }
            shaped.sort_by_key(|(p, v)| (v.is_some(), p.clone()));
            let a = store.write_tree(base_tree, as_edits(&shaped)).unwrap();
            let b = store.write_tree_trusted(base_tree, as_edits(&shaped)).unwrap();
            prop_assert_eq!(a, b, "shaped edits {:?} on {:?}", shaped, base_edits);
        }
    }
}
