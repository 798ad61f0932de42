//! store (GitFs): the git repository under everything, through gix.
//!
//! This layer knows objects, trees, commits and refs; it knows nothing of keys, working layers
//! or merges. Its job on the read path is to make committed data cheap: trees, path lookups,
//! blob contents, blob sizes and commit metadata are immutable once written (an object id names
//! its content), so each is kept in a bounded cache and never read from disk twice while it
//! stays hot. Its job on the write path is to write only what changed: a commit rewrites the
//! trees on changed paths and nothing else (`edit.rs`), then moves the branch with a
//! compare-and-swap so a concurrent writer (another node's merge, stock git) is never lost.
//!
//! `gix::Repository` is `!Sync`, so the store keeps a small pool of thread-local handles made
//! from one `ThreadSafeRepository`: a FUSE worker borrows one for the duration of a call.
//!
//! Where things are (this file holds the [`Store`] itself: opening, the handle pool):
//!
//! | file | concept |
//! | --- | --- |
//! | `error.rs` | [`StoreError`], the I/O error under gix's error trees |
//! | `cache.rs` | the bounded caches of decoded objects |
//! | `tree.rs` | the decoded tree and its entry kinds and modes |
//! | `names.rs` | keys to tree names and back |
//! | `read.rs` | trees, path lookups, blobs, sizes; forgetting an old head |
//! | `diff.rs` | walking a tree's values, the difference between two trees |
//! | `commits.rs` | commit metadata, logs, ancestry, writing commits |
//! | `graph.rs` | merge bases, reachability, raw object copies (for merge) |
//! | `refs.rs` | reading and moving refs (compare-and-swap), revisions |
//! | `write.rs` | blobs: one, many as a pack, streamed |
//! | `edit.rs` | writing trees from path edits |
//! | `durability.rs` | fsync/syncfs of written objects and moved refs |
//! | `housekeeping.rs` | `.keep` files and stale temp files |
//! | `repack.rs` | keeping the number of packs bounded (geometric repack, room for indices) |
//! | `copy_out.rs` | copying a large blob out piece by piece |
//! | `blob_stream.rs` | writing a large received blob piece by piece, as its parts arrive |
//! | `room.rs` | the free space received objects may take (a reserve stays free) |
//! | `transfer.rs` | objects to and from another repository |
//! | `checked_files.rs` | the `.gitmodules` and `.gitattributes` contents `git fsck` checks, in received trees |

mod blob_stream;
mod cache;
mod checked_files;
mod commits;
mod copy_out;
mod diff;
mod durability;
mod edit;
mod error;
mod graph;
mod housekeeping;
pub mod names;
mod read;
mod refs;
mod repack;
mod room;
mod transfer;
mod tree;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use crate::store::cache::CacheConfig;
use crate::store::cache::Caches;
pub use crate::store::commits::{CommitInfo, Signature};
pub use crate::store::diff::TreeChange;
pub use crate::store::durability::SYNCFS_THRESHOLD;
pub use crate::store::edit::TreeEdit;
use crate::store::error::{BoxError, boxed};
pub use crate::store::error::{Result, StoreError, io_error_in};
pub use crate::store::graph::ObjectKind;
pub use crate::store::repack::{AUTO_PACK_LIMIT, count_packs};
pub use crate::store::transfer::{EditBlob, EntryEdit, Importer, Item, Sent};
pub use crate::store::tree::{EntryKind, Tree, TreeEntry, ValueMode};

pub use gix::ObjectId;

/// Contents of a blob, shared between the cache and readers without copying.
pub type Bytes = Arc<[u8]>;

/// The repository and its caches. `Send + Sync`; see the module docs for the handle pool.
pub struct Store {
    git_dir: PathBuf,
    shared: gix::ThreadSafeRepository,
    pool: Mutex<Vec<gix::Repository>>,
    caches: Caches,
    empty_tree: ObjectId,
    /// Object files written since the last [`Store::sync_written`].
    unsynced: Mutex<Vec<PathBuf>>,
    /// The `.keep` files gix-pack left beside packs this store wrote, removed by
    /// [`Store::release_packs`] once a ref names what they hold.
    keeps: Mutex<Vec<PathBuf>>,
    /// The empty tree is known to be in the object database (see [`Store::write_commit`]).
    empty_tree_stored: std::sync::atomic::AtomicBool,
    /// Ref directories whose entry in their parent [`Store::sync_refs`] has synced, with the
    /// inode they had then (a directory removed and made again is synced again).
    synced_ref_dirs: Mutex<std::collections::HashMap<PathBuf, u64>>,
    /// A repack is running (see [`repack`]); shared with its thread.
    repacking: Arc<std::sync::atomic::AtomicBool>,
    /// The last repack's thread, joined on drop.
    repack_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.wait_repack();
    }
}

/// Opens with room for [`repack::MIN_SLOTS`] pack indices (see [`repack`] for why).
fn open_repo(
    path: &Path,
) -> std::result::Result<gix::Repository, impl std::error::Error + Send + Sync + 'static> {
    let slots = gix::odb::store::init::Slots::AsNeededByDiskState {
        multiplier: 2.0,
        minimum: repack::MIN_SLOTS,
    };
    gix::open_opts(
        path,
        gix::open::Options::default().object_store_slots(slots),
    )
}

impl Store {
    /// Opens the repository at `path` (a bare repository, a `.git` directory, or a work tree),
    /// creating a bare one there first if `path` does not exist or is an empty directory.
    pub fn open_or_create(path: &Path, caches: CacheConfig) -> Result<Store> {
        let empty_dir = path.is_dir()
            && std::fs::read_dir(path)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        let repo = if !path.exists() || empty_dir {
            std::fs::create_dir_all(path).map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
            gix::init_bare(path).map_err(|e| StoreError::Create {
                path: path.to_owned(),
                source: boxed(e),
            })?;
            // Opened again for the pack-index room `open_repo` asks for.
            open_repo(path).map_err(|e| StoreError::Open {
                path: path.to_owned(),
                source: boxed(e),
            })?
        } else {
            open_repo(path).map_err(|e| StoreError::Open {
                path: path.to_owned(),
                source: boxed(e),
            })?
        };
        Ok(Store::from_repo(repo, caches))
    }

    /// Opens an existing repository; never creates one.
    pub fn open(path: &Path, caches: CacheConfig) -> Result<Store> {
        let repo = open_repo(path).map_err(|e| StoreError::Open {
            path: path.to_owned(),
            source: boxed(e),
        })?;
        Ok(Store::from_repo(repo, caches))
    }

    /// The git directory of the repository at `path`, as [`Store::git_dir`] of a store opened
    /// there would be.
    pub fn git_dir_of(path: &Path) -> Result<PathBuf> {
        let repo = open_repo(path).map_err(|e| StoreError::Open {
            path: path.to_owned(),
            source: boxed(e),
        })?;
        Ok(repo.git_dir().to_owned())
    }

    fn from_repo(repo: gix::Repository, caches: CacheConfig) -> Store {
        let git_dir = repo.git_dir().to_owned();
        let empty_tree = ObjectId::empty_tree(repo.object_hash());
        Store {
            git_dir,
            shared: repo.into_sync(),
            pool: Mutex::new(Vec::new()),
            caches: Caches::new(caches),
            empty_tree,
            unsynced: Mutex::new(Vec::new()),
            keeps: Mutex::new(Vec::new()),
            empty_tree_stored: std::sync::atomic::AtomicBool::new(false),
            synced_ref_dirs: Mutex::new(std::collections::HashMap::new()),
            repacking: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            repack_thread: Mutex::new(None),
        }
    }

    /// The git directory (`.git`, or the bare repository itself).
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// The id of the empty tree, the root of a branch that has no commit yet.
    pub fn empty_tree(&self) -> ObjectId {
        self.empty_tree
    }

    /// Runs `f` with a thread-local repository handle borrowed from the pool.
    fn with_repo<R>(&self, f: impl FnOnce(&gix::Repository) -> R) -> R {
        let repo = self
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| {
                let mut repo = self.shared.to_thread_local();
                // Our own caches hold decoded objects; gix's would hold them a second time.
                repo.object_cache_size(0);
                repo
            });
        let out = f(&repo);
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 16 {
            pool.push(repo);
        }
        out
    }

    /// Cache statistics for `status` and benchmarks.
    pub fn cache_stats(&self) -> cache::CacheStats {
        self.caches.stats()
    }
}
