//! The store's bounded caches. All keys are object ids (or a root tree id plus a path), so an
//! entry can never go stale: a new commit has new ids, and old entries age out by weight.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use gix::ObjectId;
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};

use super::{Bytes, CommitInfo, Tree, TreeEntry};

/// How much memory the read caches may hold. The defaults are modest: a node serving config
/// files needs little, a bulk reader can raise them.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Bytes of blob contents.
    pub blob_bytes: u64,
    /// Bytes of decoded trees.
    pub tree_bytes: u64,
    /// Number of (tree, path) → entry lookups remembered.
    pub entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            blob_bytes: 64 << 20,
            tree_bytes: 32 << 20,
            entries: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CacheStats {
    pub blob_bytes: u64,
    pub tree_bytes: u64,
    pub entries: usize,
}

#[derive(Clone)]
pub(super) struct TreeWeigher;
impl Weighter<ObjectId, Arc<Tree>> for TreeWeigher {
    fn weight(&self, _: &ObjectId, tree: &Arc<Tree>) -> u64 {
        tree.weight() as u64
    }
}

#[derive(Clone)]
pub(super) struct BlobWeigher;
impl Weighter<ObjectId, Bytes> for BlobWeigher {
    fn weight(&self, _: &ObjectId, blob: &Bytes) -> u64 {
        blob.len() as u64 + 64
    }
}

/// (root tree, path) → what is there.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct EntryKey(pub ObjectId, pub Box<str>);

/// Borrowed form of [`EntryKey`] for lookups without allocating; hashes exactly like it.
pub(super) struct EntryKeyRef<'a>(pub ObjectId, pub &'a str);

impl Hash for EntryKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<EntryKey> for EntryKeyRef<'_> {
    fn equivalent(&self, key: &EntryKey) -> bool {
        self.0 == key.0 && self.1 == &*key.1
    }
}

pub(super) struct Caches {
    pub trees: Cache<ObjectId, Arc<Tree>, TreeWeigher>,
    pub blobs: Cache<ObjectId, Bytes, BlobWeigher>,
    pub entries: Cache<EntryKey, Option<TreeEntry>>,
    pub sizes: Cache<ObjectId, u64>,
    pub commits: Cache<ObjectId, Arc<CommitInfo>>,
    empty: Arc<Tree>,
    max_cached_blob: usize,
    config: CacheConfig,
}

impl Caches {
    pub fn new(config: CacheConfig) -> Caches {
        Caches {
            trees: Cache::with_weighter(
                (config.tree_bytes / 4096).max(16) as usize,
                config.tree_bytes.max(1),
                TreeWeigher,
            ),
            blobs: Cache::with_weighter(
                (config.blob_bytes / 1024).max(16) as usize,
                config.blob_bytes.max(1),
                BlobWeigher,
            ),
            entries: Cache::new(config.entries.max(16)),
            sizes: Cache::new(config.entries.max(16)),
            commits: Cache::new(4096),
            empty: Arc::new(Tree::default()),
            // One value may take at most an eighth of the blob cache, so a single huge file
            // cannot flush everything else (and is not held in memory a second time).
            max_cached_blob: (config.blob_bytes / 8) as usize,
            config,
        }
    }

    pub fn empty_tree(&self) -> Arc<Tree> {
        self.empty.clone()
    }

    pub fn insert_blob(&self, id: ObjectId, data: &Bytes) {
        if data.len() <= self.max_cached_blob {
            self.blobs.insert(id, data.clone());
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            blob_bytes: self.blobs.weight().min(self.config.blob_bytes),
            tree_bytes: self.trees.weight().min(self.config.tree_bytes),
            entries: self.entries.len(),
        }
    }
}
