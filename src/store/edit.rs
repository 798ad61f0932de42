//! Writing trees: a set of path edits applied to a base tree, rewriting only the trees on the
//! edited paths. Used by commits (the working layer) and merges. Edits name keys; each
//! component is written under its tree name (see [`super::names`]), and an alias of an edited
//! name is taken over (a directory's contents kept) or dropped, so a key has one entry.
//!
//! Written here rather than with gix's tree editor: the porcelain editor checks that every
//! entry of every rewritten tree exists (a `stat` per entry for loose objects, so a one-key
//! change in a 1,000-entry directory cost 1,000 stats), and the plumbing one resurrects removed
//! entries when a directory it built in memory is removed and then written below again. Both
//! behaviours are pinned by the property test below against a model and against gix.

use std::collections::BTreeMap;

use super::{ObjectId, ObjectKind, Result, Store, StoreError, ValueMode, boxed};

/// One edit of a tree, applied in order by [`Store::write_tree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEdit<'a> {
    /// Put a value at `path`, replacing whatever (value or whole directory) was there.
    Upsert {
        path: &'a str,
        mode: ValueMode,
        id: ObjectId,
    },
    /// Remove whatever is at `path` (a value or a whole directory); nothing there is fine.
    Remove { path: &'a str },
}

impl Store {
    /// Applies `edits` to the tree `base` in order and writes the result, rewriting only the
    /// trees on edited paths; trees left empty disappear, as in git. Entries are not checked
    /// for existence: callers point only at existing trees and blobs they wrote. A value
    /// upserted at a path that later edits write below is an error (the edits must describe
    /// a consistent result).
    pub fn write_tree<'a>(
        &self,
        base: ObjectId,
        edits: impl IntoIterator<Item = TreeEdit<'a>>,
    ) -> Result<ObjectId> {
        self.edit_tree(base, edits, true)
    }

    /// The id [`Store::write_tree`] would return, without writing anything (it needs no free
    /// space: replay uses it to recognise a journal that was already committed).
    pub fn hash_tree<'a>(
        &self,
        base: ObjectId,
        edits: impl IntoIterator<Item = TreeEdit<'a>>,
    ) -> Result<ObjectId> {
        self.edit_tree(base, edits, false)
    }

    fn edit_tree<'a>(
        &self,
        base: ObjectId,
        edits: impl IntoIterator<Item = TreeEdit<'a>>,
        write: bool,
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
                let stored = super::names::tree_name(name);
                let alias = super::names::is_alias(name).then(|| name.to_owned());
                node = node
                    .children
                    .entry(stored.into_owned())
                    .or_insert_with(|| EditNode {
                        alias,
                        ..EditNode::default()
                    });
            }
            node.change = Some(change);
            node.children.clear();
            node.replaces_value = false;
        }
        Ok(self
            .write_edited(Some(base), &root, "", write)?
            .unwrap_or(self.empty_tree))
    }

    /// Writes the tree `base` (or a new one) with the edits of `node`; `None` if it ends empty.
    fn write_edited(
        &self,
        base: Option<ObjectId>,
        node: &EditNode,
        path: &str,
        write: bool,
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
            let child_path = crate::paths::join(path, name);
            // The entry under the canonical name, else an alias of it (taken out: the edit
            // writes the canonical name).
            let existing = by_name.remove(name.as_bytes()).or_else(|| {
                child
                    .alias
                    .as_ref()
                    .and_then(|alias| by_name.remove(alias.as_bytes()))
            });
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
                    .write_edited(None, child, &child_path, write)?
                    .map(|oid| tree_entry(name, oid)),
                // Only edited below: a directory is rewritten; a value stays unless the edits
                // below create something (then a directory replaces it, as in gix's editor).
                None => match existing {
                    Some(e) if e.mode.is_tree() => self
                        .write_edited(Some(e.oid), child, &child_path, write)?
                        .map(|oid| tree_entry(name, oid)),
                    other => self
                        .write_edited(None, child, &child_path, write)?
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
        if !write {
            use gix::objs::WriteTo;
            let mut buf = Vec::new();
            tree.write_to(&mut buf).map_err(|e| StoreError::Write {
                what: "tree",
                source: boxed(e),
            })?;
            return gix::objs::compute_hash(self.object_hash(), ObjectKind::Tree, &buf)
                .map(Some)
                .map_err(|e| StoreError::Write {
                    what: "tree hash",
                    source: boxed(e),
                });
        }
        let id = self.write_loose("tree", |repo| {
            repo.write_object(&tree).map(|id| id.detach())
        })?;
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
    /// The raw name that reads as this (escaped) name when the canonical one is absent.
    alias: Option<String>,
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

    /// The reference: gix's (plumbing) tree editor applying the same edits.
    fn gix_editor_tree(
        store: &Store,
        base: ObjectId,
        edits: &[(String, Option<ObjectId>)],
    ) -> ObjectId {
        store.with_repo(|repo| {
            let mut editor = repo.edit_tree(base).unwrap().detach();
            for (p, v) in edits {
                match v {
                    Some(id) => editor
                        .upsert(p.split('/'), ValueMode::Regular.git_kind(), *id)
                        .unwrap(),
                    None => editor.remove(p.split('/')).unwrap(),
                };
            }
            editor
                .write(|t| repo.write_object(t).map(|id| id.detach()))
                .unwrap()
        })
    }

    /// A tree with exactly these raw (name, mode, id) entries, bypassing the name escape.
    fn raw_tree(
        store: &Store,
        entries: &[(&str, gix::objs::tree::EntryKind, ObjectId)],
    ) -> ObjectId {
        let mut entries: Vec<gix::objs::tree::Entry> = entries
            .iter()
            .map(|(name, kind, id)| gix::objs::tree::Entry {
                mode: (*kind).into(),
                filename: (*name).into(),
                oid: *id,
            })
            .collect();
        entries.sort();
        store.with_repo(|repo| {
            repo.write_object(gix::objs::Tree { entries })
                .unwrap()
                .detach()
        })
    }

    fn raw_names(store: &Store, tree: ObjectId) -> Vec<String> {
        let (_, data) = store.raw_object(tree).unwrap();
        let tree = gix::objs::TreeRef::from_bytes(&data, gix::hash::Kind::Sha1).unwrap();
        tree.entries
            .iter()
            .map(|e| e.filename.to_string())
            .collect()
    }

    /// Names fsck refuses are written escaped and read back as keys; a raw name another writer
    /// left (an alias) reads as itself and is replaced by the canonical name when written, a
    /// directory keeping its contents; beside its canonical twin an alias stays unseen.
    #[test]
    fn special_names_are_escaped_and_aliases_taken_over() {
        use gix::objs::tree::EntryKind as K;
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open_or_create(&dir.path().join("r.git"), CacheConfig::default()).unwrap();
        let (b1, b2) = (
            store.write_blob(b"1").unwrap(),
            store.write_blob(b"2").unwrap(),
        );
        let sub = raw_tree(&store, &[("x", K::Blob, b1)]);
        let base = raw_tree(
            &store,
            &[
                (".gitattributes", K::Blob, b1),
                ("%d", K::Tree, sub),
                ("plain", K::Blob, b1),
            ],
        );
        let names = |t: ObjectId| -> Vec<String> {
            store
                .tree(t)
                .unwrap()
                .entries()
                .iter()
                .map(|e| e.name.to_string())
                .collect()
        };
        assert_eq!(names(base), ["%d", ".gitattributes", "plain"]);
        let up = |path, id| TreeEdit::Upsert {
            path,
            mode: ValueMode::Regular,
            id,
        };
        let t = store
            .write_tree(
                base,
                [
                    up(".gitattributes", b2),
                    up("%d/y", b2),
                    up("p/.git/HEAD", b1),
                ],
            )
            .unwrap();
        assert_eq!(
            raw_names(&store, t),
            ["%%25d", "%.gitattributes", "p", "plain"]
        );
        assert_eq!(store.lookup(t, ".gitattributes").unwrap().unwrap().id, b2);
        assert_eq!(store.lookup(t, "%d/x").unwrap().unwrap().id, b1);
        assert_eq!(store.lookup(t, "%d/y").unwrap().unwrap().id, b2);
        assert_eq!(store.lookup(t, "p/.git/HEAD").unwrap().unwrap().id, b1);
        let p = store.lookup(t, "p").unwrap().unwrap().id;
        assert_eq!(raw_names(&store, p), ["%.git"]);
        let mut seen = Vec::new();
        store
            .walk_values(t, "", &mut |path, _| {
                seen.push(path.to_owned());
                Ok(())
            })
            .unwrap();
        assert_eq!(
            seen,
            ["%d/x", "%d/y", ".gitattributes", "p/.git/HEAD", "plain"]
        );
        // Removing a key drops its alias too.
        let gone = store
            .write_tree(
                base,
                [TreeEdit::Remove {
                    path: ".gitattributes",
                }],
            )
            .unwrap();
        assert_eq!(raw_names(&store, gone), ["%d", "plain"]);
        // Twins: the canonical entry is the key.
        let twins = raw_tree(
            &store,
            &[
                (".gitattributes", K::Blob, b1),
                ("%.gitattributes", K::Blob, b2),
            ],
        );
        let tree = store.tree(twins).unwrap();
        assert_eq!(tree.entries().len(), 1);
        assert_eq!(tree.get(".gitattributes").unwrap().id, b2);
    }

    fn edits() -> impl Strategy<Value = Vec<(String, Option<u8>)>> {
        proptest::collection::vec((path(), proptest::option::of(0u8..3)), 0..12)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// The writer gives the tree a simple model says (gix's own editor resurrects entries
        /// when a directory it created in memory is removed and written below again), and the
        /// same id as gix's editor for edits of one path each, removals first.
        #[test]
        fn tree_writer_matches_a_model_and_gix(base in edits(), change in edits()) {
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
            let trusted = store.write_tree(base_tree, as_edits(&change_edits));
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
            let a = gix_editor_tree(&store, base_tree, &shaped);
            let b = store.write_tree(base_tree, as_edits(&shaped)).unwrap();
            prop_assert_eq!(a, b, "shaped edits {:?} on {:?}", shaped, base_edits);
        }
    }
}
