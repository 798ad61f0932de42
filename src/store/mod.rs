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

mod cache;
mod copy_out;
mod edit;
mod graph;
pub mod names;
mod transfer;
mod tree;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gix::refs::Target;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

pub use crate::store::cache::CacheConfig;
use crate::store::cache::Caches;
pub use crate::store::graph::ObjectKind;
pub use crate::store::transfer::{EditBlob, EntryEdit, Importer, Item, Sent};
pub use crate::store::tree::{EntryKind, Tree, TreeEntry, ValueMode};

pub use gix::ObjectId;

/// Contents of a blob, shared between the cache and readers without copying.
pub type Bytes = Arc<[u8]>;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in the store. Every variant names the object, ref or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the repository at {path}: {source}")]
    Open { path: PathBuf, source: BoxError },
    #[error("cannot create a repository at {path}: {source}")]
    Create { path: PathBuf, source: BoxError },
    #[error("object {id} is missing from the repository")]
    Missing { id: ObjectId },
    #[error("cannot read object {id}: {source}")]
    Read { id: ObjectId, source: BoxError },
    /// Writing a blob's contents out (to a plain copy) failed.
    #[error("cannot write out blob {id}: {source}")]
    CopyOut {
        id: ObjectId,
        source: std::io::Error,
    },
    #[error("object {id} is not a {expected}")]
    WrongKind {
        id: ObjectId,
        expected: &'static str,
    },
    #[error("cannot write {what}: {source}")]
    Write {
        what: &'static str,
        source: BoxError,
    },
    #[error("cannot read ref {name}: {source}")]
    Ref { name: String, source: BoxError },
    #[error("ref {name} moved: expected {expected:?}, found {actual:?}")]
    RefMoved {
        name: String,
        expected: Option<ObjectId>,
        actual: Option<ObjectId>,
    },
    #[error("cannot update ref {name}: {source}")]
    RefUpdate { name: String, source: BoxError },
    #[error("unknown revision {spec:?}")]
    UnknownRevision { spec: String },
    /// Objects from another repository that failed a check (see [`transfer`]).
    #[error("refused {what}: {reason}")]
    Refused { what: String, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The I/O error underneath, if there is one (a full disk, a read-only filesystem), found
    /// through the chain of sources, gix's error trees included.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            StoreError::Io { source, .. } | StoreError::CopyOut { source, .. } => Some(source),
            StoreError::Open { source, .. }
            | StoreError::Create { source, .. }
            | StoreError::Read { source, .. }
            | StoreError::Write { source, .. }
            | StoreError::Ref { source, .. }
            | StoreError::RefUpdate { source, .. } => io_error_in(source.as_ref()),
            StoreError::Missing { .. }
            | StoreError::WrongKind { .. }
            | StoreError::RefMoved { .. }
            | StoreError::UnknownRevision { .. }
            | StoreError::Refused { .. } => None,
        }
    }
}

/// The first [`std::io::Error`] in `error`'s chain of sources. gix errors are trees whose
/// `source()` follows one path; their own search covers every branch.
pub fn io_error_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        if let Some(io) = e
            .downcast_ref::<gix::Error>()
            .and_then(|g| g.downcast_any_ref::<std::io::Error>())
        {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// Above this many objects, [`Store::sync_objects`] syncs the filesystem once instead of
/// fsyncing each object.
pub const SYNCFS_THRESHOLD: usize = 256;

fn boxed(e: impl Into<BoxError>) -> BoxError {
    e.into()
}

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

/// The identity and time written into a commit.
#[derive(Debug, Clone)]
pub struct Signature {
    pub name: String,
    pub email: String,
    /// Seconds since the Unix epoch, UTC.
    pub seconds: i64,
}

/// What a commit says, decoded once and cached.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub id: ObjectId,
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    pub author: String,
    pub seconds: i64,
    pub message: String,
}

impl CommitInfo {
    /// The first line of the message.
    pub fn summary(&self) -> &str {
        self.message.lines().next().unwrap_or("")
    }
}

/// One difference between two trees, as a path and the entries on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeChange {
    pub path: String,
    pub old: Option<(EntryKind, ObjectId)>,
    pub new: Option<(EntryKind, ObjectId)>,
}

/// Blobs shorter than this go into packs as zlib *stored* blocks: deflating a 20-byte config
/// value saves nothing, and setting up a deflate stream per object cost 15 µs (100,000 small
/// blobs took 1.5 s to compress; stored, 0.1 s). git reads stored blocks like any other.
const STORE_BELOW: usize = 512;

/// `data` as a zlib stream of stored (uncompressed) deflate blocks (RFC 1950/1951).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 11 + data.len() / 65_535 * 5);
    // CMF: deflate, 32K window; FLG: fastest, with FCHECK making the pair a multiple of 31.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&adler2::adler32_slice(data).to_be_bytes());
    out
}

/// How many changed paths [`Store::forget_old_head`] follows down the old head (a bulk change
/// leaves the rest to age out).
const FORGET_PATHS: usize = 256;

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
            })?
        } else {
            gix::open(path).map_err(|e| StoreError::Open {
                path: path.to_owned(),
                source: boxed(e),
            })?
        };
        Ok(Store::from_repo(repo, caches))
    }

    /// Opens an existing repository; never creates one.
    pub fn open(path: &Path, caches: CacheConfig) -> Result<Store> {
        let repo = gix::open(path).map_err(|e| StoreError::Open {
            path: path.to_owned(),
            source: boxed(e),
        })?;
        Ok(Store::from_repo(repo, caches))
    }

    /// The git directory of the repository at `path`, as [`Store::git_dir`] of a store opened
    /// there would be.
    pub fn git_dir_of(path: &Path) -> Result<PathBuf> {
        let repo = gix::open(path).map_err(|e| StoreError::Open {
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

    // ----- refs -------------------------------------------------------------------------------

    /// The commit a ref points to, or `None` if the ref does not exist yet.
    pub fn read_ref(&self, name: &str) -> Result<Option<ObjectId>> {
        self.with_repo(|repo| {
            let err = |e: BoxError| StoreError::Ref {
                name: name.to_owned(),
                source: e,
            };
            match repo.try_find_reference(name).map_err(|e| err(boxed(e)))? {
                None => Ok(None),
                Some(mut r) => Ok(Some(r.peel_to_id().map_err(|e| err(boxed(e)))?.detach())),
            }
        })
    }

    /// Points `name` at `new` if and only if it currently points at `expected` (`None`: the ref
    /// must not exist). Fails with [`StoreError::RefMoved`] when someone else moved it first.
    pub fn update_ref(
        &self,
        name: &str,
        expected: Option<ObjectId>,
        new: ObjectId,
        log_message: &str,
    ) -> Result<()> {
        let edit = RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: log_message.into(),
                },
                expected: match expected {
                    Some(id) => PreviousValue::MustExistAndMatch(Target::Object(id)),
                    None => PreviousValue::MustNotExist,
                },
                new: Target::Object(new),
            },
            name: name.try_into().map_err(|e| StoreError::RefUpdate {
                name: name.to_owned(),
                source: boxed(e),
            })?,
            deref: false,
        };
        crate::fault::check("ref update").map_err(|e| StoreError::RefUpdate {
            name: name.to_owned(),
            source: boxed(e),
        })?;
        let result = self.with_repo(|repo| repo.edit_reference(edit).map(|_| ()));
        if let Err(e) = result {
            let actual = self.read_ref(name)?;
            if actual != expected {
                return Err(StoreError::RefMoved {
                    name: name.to_owned(),
                    expected,
                    actual,
                });
            }
            return Err(StoreError::RefUpdate {
                name: name.to_owned(),
                source: boxed(e),
            });
        }
        Ok(())
    }

    /// Makes `HEAD` a symbolic ref to `branch_ref` unless it names another existing branch, so
    /// that stock git (`git log`, `git show`) looks at the branch gitdb writes.
    pub fn point_head_at(&self, branch_ref: &str) -> Result<()> {
        let path = self.git_dir.join("HEAD");
        let want = format!("ref: {branch_ref}\n");
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        // HEAD naming a branch that exists is the user's choice (a work tree on another
        // branch, a second gitdb branch): only an unborn or detached HEAD is repointed.
        if let Some(target) = current.trim().strip_prefix("ref: ")
            && target != branch_ref
            && self.read_ref(target)?.is_some()
        {
            return Ok(());
        }
        if current != want {
            std::fs::write(&path, want).map_err(|source| StoreError::Io { path, source })?;
        }
        Ok(())
    }

    /// Every ref whose name starts with `prefix` (loose or packed), with the object it points
    /// at (`None` for a symbolic ref).
    pub fn refs_under(&self, prefix: &str) -> Result<Vec<(String, Option<ObjectId>)>> {
        self.with_repo(|repo| {
            let err = |e: BoxError| StoreError::Ref {
                name: prefix.to_owned(),
                source: e,
            };
            let platform = repo.references().map_err(|e| err(boxed(e)))?;
            let mut out = Vec::new();
            for r in platform.prefixed(prefix).map_err(|e| err(boxed(e)))? {
                let r = r.map_err(|e| err(boxed(e)))?;
                out.push((
                    r.name().as_bstr().to_string(),
                    r.try_id().map(|id| id.detach()),
                ));
            }
            Ok(out)
        })
    }

    /// In one transaction, points each ref of `set` at its object and deletes each ref of
    /// `delete`, whatever they held before and wherever they are (a ref `git pack-refs` moved
    /// into `packed-refs` is deleted there). A deleted ref that does not exist is fine.
    pub fn force_refs(
        &self,
        set: &[(String, ObjectId)],
        delete: &[String],
        log_message: &str,
    ) -> Result<()> {
        if set.is_empty() && delete.is_empty() {
            return Ok(());
        }
        let full_name = |name: &str| -> Result<gix::refs::FullName> {
            name.try_into().map_err(|e| StoreError::RefUpdate {
                name: name.to_owned(),
                source: boxed(e),
            })
        };
        let mut edits = Vec::with_capacity(set.len() + delete.len());
        for (name, id) in set {
            edits.push(RefEdit {
                change: Change::Update {
                    log: LogChange {
                        mode: RefLog::AndReference,
                        force_create_reflog: false,
                        message: log_message.into(),
                    },
                    expected: PreviousValue::Any,
                    new: Target::Object(*id),
                },
                name: full_name(name)?,
                deref: false,
            });
        }
        for name in delete {
            edits.push(RefEdit {
                change: Change::Delete {
                    expected: PreviousValue::Any,
                    log: RefLog::AndReference,
                },
                name: full_name(name)?,
                deref: false,
            });
        }
        self.with_repo(|repo| repo.edit_references(edits).map(|_| ()))
            .map_err(|e| StoreError::RefUpdate {
                name: set
                    .first()
                    .map(|(n, _)| n.clone())
                    .or_else(|| delete.first().cloned())
                    .unwrap_or_default(),
                source: boxed(e),
            })
    }

    /// Resolves a revision (`main`, `main~2`, an id or a unique prefix) to a commit id.
    pub fn resolve_commit(&self, spec: &str) -> Result<ObjectId> {
        self.with_repo(|repo| {
            let id = repo
                .rev_parse_single(spec)
                .map_err(|_| StoreError::UnknownRevision {
                    spec: spec.to_owned(),
                })?;
            let object = id.object().map_err(|e| StoreError::Read {
                id: id.detach(),
                source: boxed(e),
            })?;
            let commit = object
                .peel_to_commit()
                .map_err(|_| StoreError::UnknownRevision {
                    spec: spec.to_owned(),
                })?;
            Ok(commit.id)
        })
    }

    // ----- reading ----------------------------------------------------------------------------

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

    fn find<'r>(&self, repo: &'r gix::Repository, id: ObjectId) -> Result<gix::Object<'r>> {
        match repo.try_find_object(id) {
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
        while let Some(name) = components.next() {
            let Some(entry) = tree.get(name) else {
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
    pub fn has_object(&self, id: ObjectId) -> bool {
        id == self.empty_tree || self.with_repo(|repo| repo.has_object(id))
    }

    /// A commit's metadata, cached.
    pub fn commit_info(&self, id: ObjectId) -> Result<Arc<CommitInfo>> {
        if let Some(c) = self.caches.commits.get(&id) {
            return Ok(c);
        }
        let info = self.with_repo(|repo| {
            let object = self.find(repo, id)?;
            if object.kind != gix::object::Kind::Commit {
                return Err(StoreError::WrongKind {
                    id,
                    expected: "commit",
                });
            }
            let read_err = |e: BoxError| StoreError::Read { id, source: e };
            let commit = gix::objs::CommitRef::from_bytes(&object.data, repo.object_hash())
                .map_err(|e| read_err(boxed(e)))?;
            let author = commit.author().map_err(|e| read_err(boxed(e)))?;
            let time = commit.time().map_err(|e| read_err(boxed(e)))?;
            Ok(CommitInfo {
                id,
                tree: commit.tree(),
                parents: commit.parents().collect(),
                author: author.name.to_string(),
                seconds: time.seconds,
                message: commit.message.to_string(),
            })
        })?;
        let info = Arc::new(info);
        self.caches.commits.insert(id, info.clone());
        Ok(info)
    }

    /// Up to `limit` commits reachable from `tip`, newest first (by commit time).
    pub fn log(&self, tip: ObjectId, limit: usize) -> Result<Vec<Arc<CommitInfo>>> {
        let ids: Vec<ObjectId> = self.with_repo(|repo| {
            let walk = repo
                .rev_walk([tip])
                .sorting(gix::revision::walk::Sorting::ByCommitTime(
                    Default::default(),
                ))
                .all()
                .map_err(|e| StoreError::Read {
                    id: tip,
                    source: boxed(e),
                })?;
            let mut ids = Vec::new();
            for info in walk.take(limit) {
                let info = info.map_err(|e| StoreError::Read {
                    id: tip,
                    source: boxed(e),
                })?;
                ids.push(info.id);
            }
            Ok::<_, StoreError>(ids)
        })?;
        ids.into_iter().map(|id| self.commit_info(id)).collect()
    }

    /// Whether `ancestor` is reachable from `descendant` (or equal to it). Not through gix's
    /// `merge_base`, which can answer with a redundant base (see `graph.rs`).
    pub fn is_ancestor(&self, ancestor: ObjectId, descendant: ObjectId) -> Result<bool> {
        self.descends_from(descendant, ancestor)
    }

    /// Visits every value below the tree `root` (depth first, in name order), with its full
    /// path under `prefix`.
    pub fn walk_values(
        &self,
        root: ObjectId,
        prefix: &str,
        visit: &mut dyn FnMut(&str, &TreeEntry) -> Result<()>,
    ) -> Result<()> {
        let tree = self.tree(root)?;
        for entry in tree.entries() {
            let path = join(prefix, &entry.name);
            match entry.kind {
                EntryKind::Dir => self.walk_values(entry.id, &path, visit)?,
                EntryKind::Value(_) => visit(&path, entry)?,
                EntryKind::Submodule => {}
            }
        }
        Ok(())
    }

    /// The values that differ between two trees. Subtrees with the same id are skipped without
    /// being read, so the cost follows the size of the change, not of the trees.
    pub fn diff_trees(&self, old: ObjectId, new: ObjectId) -> Result<Vec<TreeChange>> {
        let mut out = Vec::new();
        self.diff_into(Some(old), Some(new), "", &mut out)?;
        Ok(out)
    }

    fn diff_into(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        prefix: &str,
        out: &mut Vec<TreeChange>,
    ) -> Result<()> {
        if old == new {
            return Ok(());
        }
        let old_tree = old.map(|id| self.tree(id)).transpose()?;
        let new_tree = new.map(|id| self.tree(id)).transpose()?;
        let empty: &[TreeEntry] = &[];
        let a = old_tree.as_deref().map_or(empty, |t| t.entries());
        let b = new_tree.as_deref().map_or(empty, |t| t.entries());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let ord = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.name.as_bytes().cmp(y.name.as_bytes()),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let (x, y) = match ord {
                std::cmp::Ordering::Less => {
                    i += 1;
                    (a.get(i - 1), None)
                }
                std::cmp::Ordering::Greater => {
                    j += 1;
                    (None, b.get(j - 1))
                }
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                    (a.get(i - 1), b.get(j - 1))
                }
            };
            let name = x.or(y).map(|e| &*e.name).unwrap_or("");
            let path = join(prefix, name);
            let dir = |e: Option<&TreeEntry>| e.filter(|e| e.kind == EntryKind::Dir).map(|e| e.id);
            let val = |e: Option<&TreeEntry>| {
                e.filter(|e| matches!(e.kind, EntryKind::Value(_)))
                    .map(|e| (e.kind, e.id))
            };
            // A name that is a directory on either side is compared below; a value that is
            // replaced by a directory (or the reverse) shows up as a value change plus the
            // directory's contents.
            if dir(x).is_some() || dir(y).is_some() {
                self.diff_into(dir(x), dir(y), &path, out)?;
            }
            let (vx, vy) = (val(x), val(y));
            if vx != vy {
                out.push(TreeChange {
                    path,
                    old: vx,
                    new: vy,
                });
            }
        }
        Ok(())
    }

    // ----- writing ----------------------------------------------------------------------------

    /// Writes a blob (a no-op if it exists) and returns its id.
    pub fn write_blob(&self, data: &[u8]) -> Result<ObjectId> {
        let id = self.write_loose("blob", |repo| repo.write_blob(data).map(|id| id.detach()))?;
        self.caches.sizes.insert(id, data.len() as u64);
        Ok(id)
    }

    /// The id a blob with `data` has, without writing it.
    pub fn hash_blob(&self, data: &[u8]) -> Result<ObjectId> {
        gix::objs::compute_hash(self.object_hash(), gix::object::Kind::Blob, data).map_err(|e| {
            StoreError::Write {
                what: "blob hash",
                source: boxed(e),
            }
        })
    }

    fn object_hash(&self) -> gix::hash::Kind {
        self.empty_tree.kind()
    }

    /// Writes many blobs at once as one pack (with its index) in `objects/pack`, instead of one
    /// loose file each: one file pair for any number of objects. Returns how many were written.
    pub fn write_blobs_packed<'a>(
        &self,
        blobs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<usize> {
        use gix_pack::data::output;
        let hash = self.object_hash();
        let pack_err = |e: BoxError| StoreError::Write {
            what: "pack",
            source: e,
        };
        let mut seen = std::collections::HashSet::new();
        let mut entries = Vec::new();
        let mut deflater = flate2::Compress::new(flate2::Compression::fast(), true);
        let t0 = std::time::Instant::now();
        for data in blobs {
            let id = self.hash_blob(data)?;
            // No existence check per object: each miss makes gix rescan the pack directory,
            // which for 100,000 new blobs costs more than writing them. An object that is
            // already stored elsewhere is harmless in a new pack.
            if !seen.insert(id) {
                continue;
            }
            let compressed = if data.len() < STORE_BELOW {
                zlib_stored(data)
            } else {
                // One compressor, reset per object, instead of gix-pack's `Entry::from_data`,
                // which sets up a new deflate state (hundreds of KB) for each.
                deflater.reset();
                let mut out = Vec::with_capacity(data.len() / 2 + 64);
                loop {
                    let done = deflater.total_in() as usize;
                    let status = deflater
                        .compress_vec(&data[done..], &mut out, flate2::FlushCompress::Finish)
                        .map_err(|e| pack_err(boxed(e)))?;
                    if status == flate2::Status::StreamEnd {
                        break;
                    }
                    out.reserve(out.capacity().max(64));
                }
                out
            };
            entries.push(output::Entry {
                id,
                kind: output::entry::Kind::Base(gix::object::Kind::Blob),
                decompressed_size: data.len(),
                compressed_data: compressed,
            });
            self.caches.sizes.insert(id, data.len() as u64);
        }
        let n = entries.len();
        if n == 0 {
            return Ok(0);
        }
        crate::fault::check("pack").map_err(|e| pack_err(boxed(e)))?;
        let t1 = std::time::Instant::now();
        let mut pack = Vec::new();
        for step in output::bytes::FromEntriesIter::new(
            std::iter::once(Ok(entries)),
            &mut pack,
            n as u32,
            gix_pack::data::Version::V2,
            hash,
        ) {
            step.map_err(|e| pack_err(boxed(e)))?;
        }
        let pack_dir = self.git_dir.join("objects").join("pack");
        std::fs::create_dir_all(&pack_dir).map_err(|source| StoreError::Io {
            path: pack_dir.clone(),
            source,
        })?;
        let outcome = gix_pack::Bundle::write_to_directory(
            &mut &pack[..],
            Some(&pack_dir),
            &mut gix::progress::Discard,
            &std::sync::atomic::AtomicBool::new(false),
            None::<gix::objs::find::Never>,
            hash,
            gix_pack::bundle::write::Options {
                thread_limit: Some(1),
                ..Default::default()
            },
        )
        .map_err(|e| pack_err(boxed(e)))?;
        log::debug!(
            "packed {n} blobs: compressed in {:?}, pack and index written in {:?}",
            t1 - t0,
            t1.elapsed()
        );
        self.note_written(outcome.data_path.into_iter().chain(outcome.index_path));
        if let Some(keep) = outcome.keep_path {
            self.keeps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(keep);
        }
        Ok(n)
    }

    /// Writes a blob of exactly `size` bytes from `reader`, hashing and compressing as it
    /// reads: memory stays flat whatever the size (gix's own `write_blob_stream` reads the
    /// whole value into a buffer first, and keeps that buffer for reuse).
    pub fn write_blob_stream(&self, size: u64, reader: impl std::io::Read) -> Result<ObjectId> {
        use gix::objs::Write as _;
        // The header promises `size` bytes: a reader that ends early must fail the write
        // rather than leave a malformed object.
        let mut reader = Exact {
            inner: reader,
            left: size,
        };
        let id = self.write_loose("blob", |repo| {
            repo.objects
                .write_stream(gix::object::Kind::Blob, size, &mut reader)
        })?;
        self.caches.sizes.insert(id, size);
        Ok(id)
    }

    /// Forces the loose files of the given objects to disk. Objects already in a pack (or not
    /// present) are skipped.
    pub fn sync_objects(&self, ids: impl IntoIterator<Item = ObjectId>) -> Result<()> {
        self.sync_files(ids.into_iter().map(|id| self.loose_path(id)).collect())
    }

    fn loose_path(&self, id: ObjectId) -> PathBuf {
        let hex = id.to_string();
        self.git_dir.join("objects").join(&hex[..2]).join(&hex[2..])
    }

    /// Notes files this store wrote, for [`Store::sync_written`].
    /// Runs one object write with a pooled repository and records its loose file for the next
    /// sync: every write goes through here.
    fn write_loose<E>(
        &self,
        what: &'static str,
        write: impl FnOnce(&gix::Repository) -> std::result::Result<ObjectId, E>,
    ) -> Result<ObjectId>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        crate::fault::check(what).map_err(|e| StoreError::Write {
            what,
            source: boxed(e),
        })?;
        let id = self.with_repo(write).map_err(|e| StoreError::Write {
            what,
            source: boxed(e),
        })?;
        self.note_written([self.loose_path(id)]);
        Ok(id)
    }

    fn note_written(&self, files: impl IntoIterator<Item = PathBuf>) {
        self.unsynced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(files);
    }

    /// Forces every object file written through this store since the last call (loose trees,
    /// commits and blobs, packs and their indexes) to disk. Called before a ref is pointed at
    /// new objects, so that a crash of the machine can never leave a ref naming lost objects.
    pub fn sync_written(&self) -> Result<()> {
        let files = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(|p| p.into_inner()));
        self.sync_files(files)
    }

    /// Forces the file of a loose ref (and its directory entry) to disk after it moved.
    pub fn sync_ref(&self, name: &str) -> Result<()> {
        self.sync_files(vec![self.git_dir.join(name)])
    }

    /// Forces loose refs to disk with their directories, and the entries of those directories
    /// in theirs up to `refs/` whenever a directory is new since this store last synced it
    /// (ref directories come and go with their refs): a ref that `sync` returned for is there
    /// after a machine crash, for the price of one fsync of the file and one of its directory.
    pub fn sync_refs(&self, names: &[String]) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        if names.is_empty() {
            return Ok(());
        }
        let files: Vec<PathBuf> = names.iter().map(|n| self.git_dir.join(n)).collect();
        let refs = self.git_dir.join("refs");
        let mut dirs = std::collections::BTreeSet::new();
        for f in &files {
            if let Some(d) = f.parent() {
                dirs.insert(d.to_owned());
            }
        }
        let many = files.len() > SYNCFS_THRESHOLD;
        self.sync_files(files)?;
        let mut synced = self
            .synced_ref_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for dir in dirs {
            let mut child = dir;
            while child != refs && child.starts_with(&refs) {
                let Some(parent) = child.parent().map(Path::to_owned) else {
                    break;
                };
                let Ok(ino) = std::fs::metadata(&child).map(|m| m.ino()) else {
                    break;
                };
                if synced.get(&child) != Some(&ino) {
                    // After a syncfs only the bookkeeping is left to do.
                    if !many && let Ok(d) = std::fs::File::open(&parent) {
                        d.sync_all().map_err(|source| StoreError::Io {
                            path: parent.clone(),
                            source,
                        })?;
                    }
                    synced.insert(child.clone(), ino);
                }
                child = parent;
            }
        }
        Ok(())
    }

    /// fsyncs `files` and their directories (missing files are skipped); beyond
    /// [`SYNCFS_THRESHOLD`] files, one syncfs(2) of the filesystem instead.
    fn sync_files(&self, files: Vec<PathBuf>) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        crate::fault::check("object fsync").map_err(|source| StoreError::Io {
            path: self.git_dir.clone(),
            source,
        })?;
        if files.len() > SYNCFS_THRESHOLD {
            // One syncfs(2) instead of thousands of fsync(2)s: each fsync forces its own
            // filesystem journal commit (~5 ms here), so 3,000 objects took 17 s; syncfs
            // writes the same data back in one pass.
            let objects = self.git_dir.join("objects");
            let dir = std::fs::File::open(&objects).map_err(|source| StoreError::Io {
                path: objects.clone(),
                source,
            })?;
            return nix::unistd::syncfs(&dir).map_err(|e| StoreError::Io {
                path: objects,
                source: e.into(),
            });
        }
        let mut dirs = std::collections::BTreeSet::new();
        for path in files {
            match std::fs::File::open(&path) {
                Ok(f) => f.sync_all().map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StoreError::Io { path, source }),
            }
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_owned());
            }
        }
        for dir in dirs {
            if let Ok(d) = std::fs::File::open(&dir) {
                d.sync_all()
                    .map_err(|source| StoreError::Io { path: dir, source })?;
            }
        }
        Ok(())
    }

    /// Removes the `.keep` files gix-pack left beside the packs this store wrote. Call once a
    /// ref names their objects (a commit moved the branch): from then on `git gc` may repack
    /// them like any other pack, while before it a `git repack -a -d` would have dropped them
    /// as unreachable.
    pub fn release_packs(&self) {
        let keeps = std::mem::take(&mut *self.keeps.lock().unwrap_or_else(|p| p.into_inner()));
        for keep in keeps {
            match std::fs::remove_file(&keep) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove {}: {e}", keep.display()),
            }
        }
    }

    /// Writes the empty tree unless it is known to be stored. git's fsck wants every tree a
    /// commit names to exist, the empty one included, while gix (and `has_object`) treat it as
    /// always there: a commit of an empty store must write it.
    pub fn ensure_empty_tree(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.empty_tree_stored.load(Ordering::Relaxed) {
            return Ok(());
        }
        let id = self.empty_tree;
        let stored = self.with_repo(|repo| {
            use gix::objs::Exists as _;
            repo.objects.exists(&id)
        });
        if !stored {
            let tree = gix::objs::Tree::empty();
            self.write_loose("tree", |repo| {
                repo.write_object(&tree).map(|id| id.detach())
            })?;
        }
        self.empty_tree_stored.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Removes temp files a killed gix writer left in `objects/` and `objects/pack/` (loose
    /// objects and packs being written), if older than `min_age`. Only gix's names are
    /// touched — tempfile's `.tmp` and six letters or digits — never stock git's
    /// (`tmp_obj_*`, `tmp_pack_*`, `tmp_idx_*`, `.tmp-<pid>-pack*` from repack), and the age
    /// spares a file another gix process is writing right now. Returns how many went.
    pub fn remove_stale_temp_files(&self, min_age: std::time::Duration) -> usize {
        let objects = self.git_dir.join("objects");
        let mut removed = 0;
        for dir in [objects.join("pack"), objects] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !is_gix_temp_name(&entry.file_name()) {
                    continue;
                }
                let old = entry
                    .metadata()
                    .ok()
                    .filter(|m| m.is_file())
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= min_age);
                if !old {
                    continue;
                }
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
                }
            }
        }
        if removed > 0 {
            log::info!(
                "removed {removed} stale temp file(s) under {}",
                self.git_dir.display()
            );
        }
        removed
    }

    /// Writes a commit object (moving no ref) and returns its id.
    pub fn write_commit(
        &self,
        tree: ObjectId,
        parents: &[ObjectId],
        author: &Signature,
        message: &str,
    ) -> Result<ObjectId> {
        if tree == self.empty_tree {
            self.ensure_empty_tree()?;
        }
        let time = gix::date::Time::new(author.seconds, 0);
        let sig = gix::actor::Signature {
            name: author.name.as_str().into(),
            email: author.email.as_str().into(),
            time,
        };
        let commit = gix::objs::Commit {
            tree,
            parents: parents.iter().copied().collect(),
            author: sig.clone(),
            committer: sig,
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        self.write_loose("commit", |repo| {
            repo.write_object(&commit).map(|id| id.detach())
        })
    }

    /// Cache statistics for `status` and benchmarks.
    pub fn cache_stats(&self) -> cache::CacheStats {
        self.caches.stats()
    }
}

/// `prefix/name`, or `name` at the root.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        let mut s = String::with_capacity(prefix.len() + 1 + name.len());
        s.push_str(prefix);
        s.push('/');
        s.push_str(name);
        s
    }
}

/// Whether `name` is what the `tempfile` crate (gix's loose-object and pack writers) names a
/// temp file by default: `.tmp` and six ASCII letters or digits, nothing else.
fn is_gix_temp_name(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.len() == 10
        && name.starts_with(b".tmp")
        && name[4..].iter().all(|b| b.is_ascii_alphanumeric())
}

/// A reader of exactly `left` more bytes: an early end is an error, extra bytes are not read.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("value ended {} bytes early", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_blobs_match_written_ones_and_short_streams_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open_or_create(&dir.path().join("r.git"), Default::default()).expect("store");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let streamed = store
            .write_blob_stream(data.len() as u64, &data[..])
            .expect("stream");
        assert_eq!(streamed, store.hash_blob(&data).expect("hash"));
        assert_eq!(&store.blob(streamed).expect("read")[..], &data[..]);
        // A reader that ends before the promised size writes nothing: no loose object is
        // left behind, whatever id a short write would have had.
        let loose = || walkdir_count(&dir.path().join("r.git").join("objects"));
        let before = loose();
        let short = store.write_blob_stream(data.len() as u64 + 1, &data[..]);
        assert!(short.is_err());
        assert_eq!(loose(), before);
    }

    /// Files below `dir`, at any depth.
    fn walkdir_count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        let path = e.path();
                        if path.is_dir() {
                            walkdir_count(&path)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod zlib_tests {
    use super::zlib_stored;
    use std::io::Read;

    #[test]
    fn stored_zlib_streams_inflate_to_their_data() {
        for len in [0usize, 1, 20, 511, 65_535, 65_536, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let z = zlib_stored(&data);
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&z[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "length {len}");
        }
    }
}
