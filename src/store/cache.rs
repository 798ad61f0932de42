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

/// What a cached blob costs besides its bytes: the `Bytes` and its shared header, the
/// allocation's header and rounding, the cache's slot. Counted so that a cache of many small
/// values stays within its budget in memory, not just in value bytes.
const BLOB_BYTES: u64 = 128;

#[derive(Clone)]
pub(super) struct BlobWeigher;
impl Weighter<ObjectId, Bytes> for BlobWeigher {
    fn weight(&self, _: &ObjectId, blob: &Bytes) -> u64 {
        blob.len() as u64 + BLOB_BYTES
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

/// A weighted cache in one shard. quick_cache splits a cache into shards (4 per CPU) of equal
/// weight and refuses an item heavier than its shard: with 32 MiB over 8 shards, the tree of a
/// directory of 100,000 entries (5.5 MB decoded) was never kept, so every lookup below it
/// decoded it again (issue 10: `rm -rf` of such a directory at 60 unlinks/s). One shard keeps
/// anything up to the whole budget; lookups are served by the entry cache first, so the one
/// lock sees little traffic.
fn one_shard<K, V, W>(items: usize, weight: u64, weighter: W) -> Cache<K, V, W>
where
    K: Eq + Hash,
    V: Clone,
    W: Weighter<K, V> + Clone,
{
    let options = quick_cache::OptionsBuilder::new()
        .estimated_items_capacity(items)
        .weight_capacity(weight)
        .shards(1)
        .build()
        .unwrap_or_else(|e| unreachable!("cache options are complete: {e:?}"));
    Cache::with_options(options, weighter, Default::default(), Default::default())
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
            trees: one_shard(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree as git writes it: `n` values named `f000000`, `f000001`, ...
    fn big_tree(n: usize) -> Tree {
        let mut raw = Vec::new();
        for i in 0..n {
            raw.extend_from_slice(format!("100644 f{i:06}\0").as_bytes());
            raw.extend_from_slice(&[7u8; 20]);
        }
        Tree::decode(&raw, gix::hash::Kind::Sha1).expect("tree")
    }

    /// A tree that takes most of the tree budget is kept (quick_cache's default sharding
    /// refused anything over a quarter of it on one CPU, an eighth on two).
    #[test]
    fn a_tree_almost_as_large_as_the_budget_is_kept() {
        let caches = Caches::new(CacheConfig {
            tree_bytes: 4 << 20,
            ..CacheConfig::default()
        });
        let tree = Arc::new(big_tree(50_000));
        assert!(tree.weight() > 2 << 20, "weight {}", tree.weight());
        let id = ObjectId::from_bytes_or_panic(&[1u8; 20]);
        caches.trees.insert(id, tree.clone());
        let kept = caches.trees.get(&id).expect("the big tree is cached");
        assert!(Arc::ptr_eq(&kept, &tree));
    }
}
