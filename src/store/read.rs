//! Reading objects through the caches: trees, path lookups, blobs and their sizes, and
//! forgetting what only an old head needed.
//!
//! Everything read here is immutable once written (an object id names its content), so each
//! is kept in a bounded cache and never read from disk twice while it stays hot.

use std::sync::Arc;

use super::{Bytes, EntryKind, ObjectId, Result, Store, StoreError, Tree, TreeEntry, boxed, cache};

/// How many changed paths [`Store::forget_old_head`] follows down the old head (a bulk change
/// leaves the rest to age out).
const FORGET_PATHS: usize = 256;

impl Store {
    /// A decoded tree, cached.
    pub fn tree(&self, id: ObjectId) -> Result<Arc<Tree>> {
        if id == self.empty_tree {
            return Ok(self.caches.empty_tree());
        }
        if let Some(tree) = self.caches.trees.get(&id) {
            return Ok(tree);
        }
        let tree = self.with_repo(|repo| {
            let object = self.find(repo, id)?;
            if object.kind != gix::object::Kind::Tree {
                return Err(StoreError::WrongKind {
                    id,
                    expected: "tree",
                });
            }
            Tree::decode(&object.data, repo.object_hash()).map_err(|e| StoreError::Read {
                id,
                source: boxed(e),
            })
        })?;
        let tree = Arc::new(tree);
        self.caches.trees.insert(id, tree.clone());
        Ok(tree)
    }

    pub(super) fn find<'r>(
        &self,
        repo: &'r gix::Repository,
        id: ObjectId,
    ) -> Result<gix::Object<'r>> {
        // A miss is looked up once more (see `has_object`): a pack deleted by a repack
        // between gix's listing and its index load makes its objects seem absent once.
        let found = match repo.try_find_object(id) {
            Ok(None) => repo.try_find_object(id),
            first => first,
        };
        match found {
            Ok(Some(object)) => Ok(object),
            Ok(None) => Err(StoreError::Missing { id }),
            Err(e) => Err(StoreError::Read {
                id,
                source: boxed(e),
            }),
        }
    }

    /// The entry at `path` (tree path, `""` for the root itself) below the tree `root`.
    /// Cached per (root, path): a warm lookup is one hash probe, not a walk.
    pub fn lookup(&self, root: ObjectId, path: &str) -> Result<Option<TreeEntry>> {
        if path.is_empty() {
            return Ok(Some(TreeEntry {
                name: "".into(),
                kind: EntryKind::Dir,
                id: root,
            }));
        }
        if let Some(hit) = self.caches.entries.get(&cache::EntryKeyRef(root, path)) {
            return Ok(hit);
        }
        let mut tree = self.tree(root)?;
        let mut found = None;
        let mut components = path.split('/').peekable();
        let mut depth = 0;
        while let Some(name) = components.next() {
            depth += 1;
            let Some(entry) = tree.get(name) else {
                // Missing from the root tree: asking again costs one probe of a cached tree,
                // less than an entry in the cache (a new name is asked for a few times while
                // it is made, and each would push a useful entry out).
                if depth == 1 {
                    return Ok(None);
                }
                break;
            };
            if components.peek().is_none() {
                found = Some(entry.clone());
                break;
            }
            if entry.kind != EntryKind::Dir {
                break;
            }
            tree = self.tree(entry.id)?;
        }
        self.caches
            .entries
            .insert(cache::EntryKey(root, path.into()), found.clone());
        Ok(found)
    }

    /// The contents of a blob, cached when small enough.
    pub fn blob(&self, id: ObjectId) -> Result<Bytes> {
        if let Some(b) = self.caches.blobs.get(&id) {
            return Ok(b);
        }
        let data: Bytes = self.with_repo(|repo| {
            let object = self.find(repo, id)?;
            if object.kind != gix::object::Kind::Blob {
                return Err(StoreError::WrongKind {
                    id,
                    expected: "blob",
                });
            }
            Ok(Bytes::from(object.detach().data))
        })?;
        self.caches.sizes.insert(id, data.len() as u64);
        self.caches.insert_blob(id, &data);
        Ok(data)
    }

    /// The size of a blob without reading its contents where the storage allows.
    pub fn blob_size(&self, id: ObjectId) -> Result<u64> {
        if let Some(size) = self.caches.sizes.get(&id) {
            return Ok(size);
        }
        let size = self.with_repo(|repo| {
            repo.find_header(id)
                .or_else(|_| repo.find_header(id))
                .map(|h| h.size())
                .map_err(|e| StoreError::Read {
                    id,
                    source: boxed(e),
                })
        })?;
        self.caches.sizes.insert(id, size);
        Ok(size)
    }

    /// The head moved from the tree `old_root` to `new_root`, changing `changed` (tree paths):
    /// forgets what only the old head needed, so the caches hold the head's working set rather
    /// than every head the node ever had (20,000 single-key commits left 20,000 dead root trees
    /// and as many dead lookups behind). The lookups are all keyed by a root, so they go; of
    /// the trees, the old root and the old trees above the first [`FORGET_PATHS`] changed
    /// paths. Only a hint: anything forgotten that is wanted again is read again.
    pub fn forget_old_head(&self, old_root: ObjectId, new_root: ObjectId, changed: &[String]) {
        if old_root == new_root {
            return;
        }
        self.caches.entries.clear();
        let mut dead = vec![old_root];
        for path in changed.iter().take(FORGET_PATHS) {
            let Some(mut tree) = self.caches.trees.peek(&old_root) else {
                break;
            };
            let dirs = path.rsplit_once('/').map_or("", |(dirs, _)| dirs);
            for name in dirs.split('/').filter(|n| !n.is_empty()) {
                let Some(entry) = tree.get(name).filter(|e| e.kind == EntryKind::Dir) else {
                    break;
                };
                dead.push(entry.id);
                let Some(next) = self.caches.trees.peek(&entry.id) else {
                    break;
                };
                tree = next;
            }
        }
        for id in dead {
            if id != new_root {
                self.caches.trees.remove(&id);
            }
        }
    }

    /// Whether the object database has `id`.
    ///
    /// A miss is asked twice: when a repack (ours or stock git's) deletes a pack between gix
    /// listing `objects/pack` and loading that pack's index, gix gives up on it ("Failed to
    /// load index file - some objects may seem to not exist", gix-odb's `load_index.rs`) and
    /// answers false for objects now in the new pack, which its next look finds. A false miss
    /// here would fail a commit with `MissingValue` or refuse a merge; a true miss costs one
    /// more listing.
    pub fn has_object(&self, id: ObjectId) -> bool {
        id == self.empty_tree
            || self.with_repo(|repo| repo.has_object(id))
            || self.with_repo(|repo| repo.has_object(id))
    }
}
