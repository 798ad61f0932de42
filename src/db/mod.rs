//! db (GitDb): the key-value store over the git repository.
//!
//! Keys are tree paths on one branch (`refs/heads/main` by default), values are blobs. Writes go
//! to the *working layer*, an overlay of uncommitted sets and deletes on top of the branch head;
//! reads and listings see the overlay first. `commit` turns the overlay into rewritten trees and
//! one commit, stamped with this node's vector clock and hybrid timestamp (see [`clock`]), and
//! moves the branch by compare-and-swap. `rollback` drops the overlay. The overlay is journaled
//! (see [`journal`]) so a crash loses nothing `sync` returned for.
//!
//! # Working-layer model
//! The overlay maps tree paths to a [`Change`]: `Set(value)` or `Delete`. A `Delete` at a path
//! hides the committed value *or the whole committed directory* there, so a recursive delete is
//! one entry. A `Set` at a path hides any committed directory there. A path is a directory when
//! some value is visible below it — a prefix exists exactly while it has keys, as in git.
//!
//! # Threads and lock order
//! `GitDb` is `Send + Sync`, shared by FUSE workers and the gossip task. Four locks, always taken
//! in this order (never the reverse, and none held while calling out of this module):
//! 1. `commit_lock` — one commit, merge, head adoption or rollback at a time; held while trees
//!    and the commit are written, without blocking readers or writers. (A delete holding the
//!    journal lock only ever `try_lock`s it, to learn that no commit is under way.)
//! 2. `journal` — serializes every change of the state (set, delete, rollback, the end of a
//!    commit, adopting a moved head), so journal order is overlay order.
//! 3. `state` (RwLock) — readers take it shared for a map lookup; writers take it exclusively
//!    only to swap in a change. No I/O is done under the write lock, so a read never waits
//!    behind a commit for longer than the switch of the head.
//! 4. `subscribers` — taken alone, after the others are released, to send [`HeadEvent`]s.
//!
//! `meta` (the node-local modes and owners, see [`meta`]) is a leaf: taken alone by `stat`-time
//! lookups and chmod/chown, or under `journal` by a delete or rename that must move or drop
//! metadata in the same serialized order — never while `state` is held, never the reverse.
//! `witnesses` (see [`witness`]) is a leaf lock taken while `state` is held shared.
//!
//! Only one process writes a repository: opening for writing takes an exclusive `flock` on
//! `<git-dir>/gitdb/lock`; a second writer gets [`DbError::Locked`] with the holder's pid.

pub mod clock;
pub mod conflicts;
pub mod follow;
pub mod history;
pub mod journal;
pub mod key;
pub mod memory;
pub mod meta;
pub mod metrics;
pub mod replication;
#[cfg(test)]
mod testfs;
pub mod transfer;
mod witness;
mod working;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use crate::db::clock::{ClockError, ClockOrdering, CommitStamp, Hlc, NodeId, VectorClock};
pub use crate::db::history::CommitInfo;
use crate::db::journal::{Journal, JournalError, Record};
pub use crate::db::key::{Key, KeyError};
pub use crate::db::meta::{Defaults as MetaDefaults, Meta, MetaError, NodeType};
use crate::db::meta::{MetaRecord, MetaStore};
pub use crate::db::replication::{PeerStatus, ReplicationCounters, Replicator};
pub use crate::db::transfer::{ExportStats, Receiver};
use crate::store::{
    Bytes, CacheConfig, EntryKind, ObjectId, Signature, Store, StoreError, TreeEdit, ValueMode,
};
pub use crate::store::{EditBlob, EntryEdit, Item};

/// Errors of the db layer. Each names the key (or path) it concerns.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Clock(#[from] ClockError),
    #[error("no such key: {key}")]
    NotFound { key: Key },
    /// A value was expected where a directory is.
    #[error("{key} is a directory")]
    IsDirectory { key: Key },
    /// A directory was expected where a value is.
    #[error("{key} is a value, not a directory")]
    NotADirectory { key: Key },
    /// Setting `key` would need `parent`, which is a value, to be a directory.
    #[error("cannot set {key}: {parent} is a value, not a directory")]
    ParentIsValue { key: Key, parent: Key },
    #[error("{key} is a directory that is not empty")]
    NotEmpty { key: Key },
    #[error("cannot rename {from} to {to}: {reason}")]
    InvalidRename {
        from: Key,
        to: Key,
        reason: &'static str,
    },
    #[error("repository {path} is locked by pid {pid} (another gitdb process writes it)")]
    Locked { path: PathBuf, pid: String },
    #[error("repository {path} was opened read-only")]
    ReadOnly { path: PathBuf },
    #[error("journal {path}: {source}")]
    Journal { path: PathBuf, source: JournalError },
    /// A staged value's blob is not in the repository (something deleted it behind gitdb's
    /// back): committing would write a tree naming a missing object.
    #[error("the value of /{key} is missing: blob {id} is not in the repository")]
    MissingValue { key: String, id: ObjectId },
    #[error("commit on {branch} failed: the branch kept moving under us ({attempts} attempts)")]
    CommitRace { branch: String, attempts: u32 },
    #[error("cannot write out the value in blob {id}: {source}")]
    CopyOut {
        id: ObjectId,
        source: std::io::Error,
    },
    /// The node-local metadata (modes, owners) could not be read or changed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("this node has no peers to sync with (start it with --listen/--peer)")]
    NoReplication,
    #[error("sync failed: {reason}")]
    Replication { reason: String },
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

impl DbError {
    /// The I/O error underneath, if there is one (a full disk, a quota, a read-only
    /// filesystem), through the layers' chains of sources: what the mount passes on to
    /// applications (see `fuse/errno.rs`).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            DbError::Journal { source, .. } => source.io(),
            DbError::Store(e) => e.io_error(),
            DbError::Meta(e) => e.io(),
            DbError::CopyOut { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A `DbError::Journal` for an I/O error on `path`.
fn journal_io(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Journal {
        path: path.to_owned(),
        source: source.into(),
    }
}

/// How to open a [`GitDb`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Branch holding the keys (`main`).
    pub branch: String,
    /// Read-cache sizes.
    pub caches: CacheConfig,
    /// Open without the writer lock: reads (including the journaled working layer) only.
    pub read_only: bool,
    /// Create the repository if it does not exist.
    pub create: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            branch: "main".into(),
            caches: CacheConfig::default(),
            read_only: false,
            create: true,
        }
    }
}

/// A value in the working layer: already a blob in the object database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedValue {
    pub id: ObjectId,
    pub mode: ValueMode,
    pub size: u64,
}

/// One uncommitted change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Set(StagedValue),
    /// Hides the committed value or directory at this path.
    Delete,
}

/// What [`GitDb::commit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// A new commit is the branch head.
    Committed { id: ObjectId, changed: usize },
    /// The working layer was empty, or changed nothing relative to the head.
    NothingToCommit,
}

/// A child in a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListEntry {
    pub name: String,
    pub kind: NodeKind,
}

/// Whether a name is a value (with its mode) or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum NodeKind {
    Value(#[serde(skip)] ValueMode),
    Dir,
}

/// What is known about a key without reading its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Value {
        mode: ValueMode,
        size: u64,
        id: ObjectId,
        /// False while the value is only in the working layer.
        committed: bool,
    },
    Dir,
}

/// One key that differs between two commits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffEntry {
    pub key: String,
    pub change: DiffKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DiffKind {
    Added,
    Modified,
    Deleted,
}

/// One commit as `log` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogEntry {
    pub id: String,
    pub parents: Vec<String>,
    pub author: String,
    pub seconds: i64,
    pub summary: String,
    pub clock: String,
    pub hlc: Option<String>,
}

/// A snapshot of the node for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub node: String,
    pub branch: String,
    pub head: Option<String>,
    pub clock: String,
    pub hlc: String,
    /// The uncommitted changes, in key order (the first `max` of them, see
    /// [`GitDb::status_summary`]).
    pub dirty: Vec<DirtyKey>,
    /// How many uncommitted changes there are in all.
    pub dirty_count: usize,
    /// Tree entries scanned, over the node's life, to decide whether committed directories
    /// with tombstones below them are still visible (see [`GitDb::visibility_scans`]).
    pub visibility_scans: u64,
    /// The replication service's peers (empty for a single node).
    pub peers: Vec<PeerStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DirtyKey {
    pub key: String,
    pub change: &'static str,
}

/// The branch head moved from `old` to `new` (reported by [`GitDb::refresh`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadMove {
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
}

/// Why what readers see changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadOrigin {
    /// A commit of this node's working layer: what readers see did not change.
    LocalCommit,
    /// A head made elsewhere was adopted (a merge, stock git, `refresh`): visible keys changed.
    Adopted,
    /// The working layer was dropped (`rollback`): the head stayed, the dropped keys changed.
    Rollback,
}

/// Sent to subscribers whenever the branch head moves or a rollback drops changes: the one
/// news channel through which the mount (cache invalidation) and gossip learn of changes.
#[derive(Debug, Clone)]
pub struct HeadEvent {
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
    pub origin: HeadOrigin,
    /// Keys (tree paths) whose visible value may differ: between the old and the new head,
    /// or, for a rollback, the uncommitted changes it dropped.
    pub changed: Vec<String>,
}

/// A receiver of [`HeadEvent`]s.
enum Subscriber {
    Channel(std::sync::mpsc::Sender<HeadEvent>),
    /// Called on the thread that made the change, before that call (commit, rollback, ...)
    /// returns: whoever must act before the change is acknowledged (the mount's kernel-cache
    /// invalidation) queues its work here, in order. Must not block, take locks of its own
    /// callers or call back into the db. Returns false once it wants no more news.
    Callback(Box<dyn Fn(&HeadEvent) -> bool + Send>),
}

use crate::db::witness::{Witness, Witnesses};
use crate::db::working::Working;

/// Small values set but not yet in the object database (see the journal docs), by blob id.
#[derive(Default, Clone)]
struct Pending {
    blobs: std::collections::HashMap<ObjectId, Bytes>,
    bytes: usize,
}

impl Pending {
    fn insert(&mut self, id: ObjectId, data: Bytes) {
        let len = data.len();
        if self.blobs.insert(id, data).is_none() {
            self.bytes += len;
        }
    }

    /// Keeps only the blobs `keep` says yes to.
    fn retain(&mut self, mut keep: impl FnMut(&ObjectId) -> bool) {
        self.blobs.retain(|id, _| keep(id));
        self.bytes = self.blobs.values().map(|b| b.len()).sum();
    }
}

/// Values up to this size are carried in the journal and written at commit (as one pack when
/// there are many); larger ones are written as blobs when set.
const INLINE_MAX: usize = 64 << 10;
/// Past this many bytes of pending small values, new ones are written as blobs when set.
const PENDING_MAX: usize = 256 << 20;
/// From this many new blobs on, a commit writes them as one pack rather than loose files.
const PACK_MIN: usize = 32;

struct State {
    head: Option<ObjectId>,
    head_tree: ObjectId,
    working: Working,
    pending: Pending,
    clock: VectorClock,
    hlc: Hlc,
}

struct JournalState {
    journal: Option<Journal>,
    /// Blobs written since the last `sync`, fsynced by it.
    unsynced: Vec<ObjectId>,
    /// Records appended since the journal was last rewritten, to decide when to compact it.
    appended: usize,
    /// The file still holds changes a commit has since put in the head (rewriting it after the
    /// commit failed, e.g. on a full disk). It is rewritten from the working layer before
    /// anything is appended to it or the head moves again (see `settle_journal`).
    stale: bool,
    /// Blobs that a ref `refs/gitdb/staged/<id>` keeps reachable (see `protect`).
    protected: std::collections::HashSet<ObjectId>,
    /// Staged refs created since the last `sync`, fsynced by it before the journal.
    unsynced_refs: Vec<String>,
    /// A read-only handle's view of the writer's journal.
    followed: Option<Followed>,
}

/// What a read-only handle has read of the writer's journal (see [`GitDb::refresh`]).
struct Followed {
    follower: journal::Follower,
    /// Every record read so far, applied in order (tombstones not yet pruned).
    working: Working,
    pending: Pending,
    /// The head named by the last `Base` record (`None`: no `Base` record).
    base: Option<Option<ObjectId>>,
}

/// Where staged blobs' refs live: `refs/gitdb/staged/<hex id>`.
const STAGED_REFS: &str = "refs/gitdb/staged/";

fn staged_ref(id: ObjectId) -> String {
    format!("{STAGED_REFS}{id}")
}

/// Temp files of gix writers older than this are left over from a killed process.
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// The journal is compacted once it holds this many records more than the working layer has
/// entries, so a key rewritten all day without a commit costs neither disk nor memory.
const COMPACT_SLACK: usize = 4096;

#[cfg(test)]
type TestHook = Box<dyn FnOnce(&GitDb) + Send>;

/// The key-value store. See the module docs for the model and the lock order.
pub struct GitDb {
    store: Store,
    node: NodeId,
    branch: String,
    branch_ref: String,
    read_only: bool,
    commit_lock: Mutex<()>,
    journal: Mutex<JournalState>,
    state: RwLock<State>,
    /// Taken last, only to send: subscribers are never called under another lock.
    subscribers: Mutex<Vec<Subscriber>>,
    /// Modes and owners of paths, node-local (see [`meta`]). Leaf lock.
    meta: Mutex<MetaStore>,
    /// Where the last search for a visible value below a directory succeeded (a leaf lock,
    /// taken under `state` shared; see [`witness`]).
    witnesses: Witnesses,
    /// The replication service's hook (see [`replication`]). Leaf lock.
    replicator: RwLock<Option<std::sync::Weak<dyn Replicator>>>,
    /// Commit counts and latency, and the metrics of the layers above (see [`metrics`]).
    metrics: metrics::DbMetrics,
    _writer_lock: Option<File>,
    /// Tests: run once right after a commit has moved the ref (to fill the disk there).
    #[cfg(test)]
    after_ref_moved: Mutex<Option<TestHook>>,
}

/// Where the visible state puts a path.
enum Visible {
    Value(StagedValue, bool),
    Dir,
    Absent,
}

impl GitDb {
    /// Opens the repository at `path` (creating a bare one if absent and `options.create`),
    /// takes the writer lock unless read-only, and replays the journal. Needs no free space
    /// when the repository and journal exist (a full disk must not keep the daemon down).
    pub fn open(path: impl AsRef<Path>, node: NodeId, options: Options) -> Result<GitDb> {
        let path = path.as_ref();
        let store = if options.create && !options.read_only {
            Store::open_or_create(path, options.caches)?
        } else {
            Store::open(path, options.caches)?
        };
        let branch_ref = format!("refs/heads/{}", options.branch);
        if gix::refs::FullName::try_from(branch_ref.as_str()).is_err() {
            return Err(DbError::Store(StoreError::Ref {
                name: branch_ref,
                source: "invalid branch name".into(),
            }));
        }
        let meta_dir = store.git_dir().join("gitdb");
        let writer_lock = if options.read_only {
            None
        } else {
            std::fs::create_dir_all(&meta_dir).map_err(journal_io(&meta_dir))?;
            let lock = take_writer_lock(&meta_dir.join("lock"), store.git_dir())?;
            if store.read_ref(&branch_ref)?.is_none() {
                store.point_head_at(&branch_ref)?;
            }
            // We hold the writer lock: no gix writer of ours is running, and the age spares
            // one of another tool.
            store.remove_stale_temp_files(STALE_TEMP_AGE);
            Some(lock)
        };
        let head = store.read_ref(&branch_ref)?;
        let head_tree = match head {
            Some(id) => store.commit_info(id)?.tree,
            None => store.empty_tree(),
        };
        let stamp = match head {
            Some(id) => nearest_stamp(&store, id)?,
            None => CommitStamp::default(),
        };
        let journal_path = meta_dir.join("journal");
        let meta = MetaStore::open(&meta_dir.join("meta"), options.read_only)?;
        let (journal, records, followed) = if options.read_only {
            let followed = Followed {
                follower: journal::Follower::new(&journal_path),
                working: Working::new(),
                pending: Pending::default(),
                base: None,
            };
            (None, Vec::new(), Some(followed))
        } else {
            let (j, records) = Journal::open(&journal_path).map_err(|source| DbError::Journal {
                path: journal_path.clone(),
                source,
            })?;
            (Some(j), records, None)
        };
        let db = GitDb {
            store,
            node,
            branch: options.branch.clone(),
            branch_ref,
            read_only: options.read_only,
            commit_lock: Mutex::new(()),
            journal: Mutex::new(JournalState {
                journal,
                unsynced: Vec::new(),
                appended: 0,
                stale: false,
                protected: std::collections::HashSet::new(),
                unsynced_refs: Vec::new(),
                followed,
            }),
            state: RwLock::new(State {
                head,
                head_tree,
                working: Working::new(),
                pending: Pending::default(),
                clock: stamp.clock,
                hlc: stamp.hlc.unwrap_or_default(),
            }),
            subscribers: Mutex::new(Vec::new()),
            meta: Mutex::new(meta),
            witnesses: Witnesses::default(),
            replicator: RwLock::new(None),
            metrics: metrics::DbMetrics::new(),
            _writer_lock: writer_lock,
            #[cfg(test)]
            after_ref_moved: Mutex::new(None),
        };
        if options.read_only {
            db.follow_journal(false)?;
        } else {
            db.replay(records)?;
            // A commit or rollback that died before its metadata settled: with nothing left
            // uncommitted there is nothing to undo.
            if db.read_state().working.is_empty() {
                let mark = db.lock_meta().undo_len();
                db.settle_meta(mark);
            }
        }
        Ok(db)
    }

    /// Rebuilds the working layer from journal records. If the journal was made on an older
    /// head and that head plus the journal is exactly the current head, the process died after
    /// committing but before emptying the journal: the changes are committed, drop them.
    ///
    /// The file is left as it is wherever replaying it again gives the same working layer, so
    /// opening writes nothing that needs space: a journal on an older head gets a `Base`
    /// record for the current one appended (owed if the disk is full), a committed one is
    /// reset in place, and the count of its records lets compaction shrink it later.
    fn replay(&self, records: Vec<Record>) -> Result<()> {
        let count = records.len();
        let mut working = Working::new();
        let mut pending = Pending::default();
        let mut base: Option<Option<ObjectId>> = None;
        apply_records(&self.store, &mut working, &mut pending, &mut base, records)?;
        let (head, head_tree) = {
            let st = self.read_state();
            (st.head, st.head_tree)
        };
        let mut committed = false;
        if let Some(base) = base
            && base != head
            && !working.is_empty()
            && self.journal_committed(base, head_tree, &working)
        {
            log::info!("journal already committed as {head:?}; dropping it");
            working.clear();
            pending = Pending::default();
            committed = true;
        }
        self.prune_tombstones(&mut working, head_tree);
        let referenced = staged_ids(&working);
        pending.retain(|id| referenced.contains(id));
        {
            let mut st = self.write_state();
            st.working = working;
            st.pending = pending;
        }
        let mut js = self.lock_journal();
        if let Some(j) = js.journal.as_mut() {
            if committed {
                if let Err(e) = j.reset(Record::base(head)) {
                    // Replaying the old file again finds it committed again.
                    log::warn!("journal {}: cannot empty it: {e}", j.path().display());
                    js.stale = true;
                }
            } else if base != Some(head) {
                j.append_base(Record::base(head));
            }
        }
        js.appended = count;
        self.reconcile_staged_refs(&mut js);
        Ok(())
    }

    /// Whether `working` on top of commit `base` gives exactly `head_tree` (computed without
    /// writing: opening needs no free space). The blobs need not be written for that: if the
    /// journal was committed, that commit wrote them.
    fn journal_committed(
        &self,
        base: Option<ObjectId>,
        head_tree: ObjectId,
        working: &Working,
    ) -> bool {
        let base_tree = match base {
            Some(id) => match self.store.commit_info(id) {
                Ok(c) => c.tree,
                Err(_) => return false,
            },
            None => self.store.empty_tree(),
        };
        self.working_tree(base_tree, working, false).ok() == Some(head_tree)
    }

    /// Drops the tombstones over what `head_tree` does not hold. As at every delete (see
    /// `drop_needless_tombstone`): the journal records each delete, but only tombstones over
    /// what the head holds matter.
    fn prune_tombstones(&self, working: &mut Working, head_tree: ObjectId) {
        let absent: Vec<String> = working
            .iter()
            .filter(|(_, c)| **c == Change::Delete)
            .map(|(path, _)| path.clone())
            .filter(|path| matches!(self.hides_nothing(head_tree, path), Ok(true)))
            .collect();
        for path in absent {
            working.remove(&path);
        }
    }

    /// Makes the refs under `refs/gitdb/staged/` match the staged blobs after a replay: one for
    /// each staged blob (unless the blob is gone: then the next commit refuses with
    /// `MissingValue`), none for anything else. Failures only log: the refs are a safety net
    /// against `git gc`, and the next commit or rollback tries again.
    fn reconcile_staged_refs(&self, js: &mut JournalState) {
        let on_disk = match self.store.refs_under(STAGED_REFS) {
            Ok(refs) => refs,
            Err(e) => {
                log::warn!("cannot list {STAGED_REFS}: {e}");
                return;
            }
        };
        let wanted = self.wanted_staged_refs();
        let mut have = std::collections::HashSet::new();
        let mut delete = Vec::new();
        for (name, target) in on_disk {
            let id = name
                .strip_prefix(STAGED_REFS)
                .and_then(|hex| ObjectId::from_hex(hex.as_bytes()).ok());
            match id {
                Some(id) if wanted.contains(&id) => {
                    if target == Some(id) {
                        have.insert(id);
                    }
                }
                _ => delete.push(name),
            }
        }
        let mut set = Vec::new();
        for &id in wanted.difference(&have) {
            if self.store.has_object(id) {
                set.push((staged_ref(id), id));
            } else {
                log::warn!("staged blob {id} is missing from the repository");
            }
        }
        match self
            .store
            .force_refs(&set, &delete, "gitdb: staged values after replay")
        {
            Ok(()) => {
                have.extend(set.iter().map(|(_, id)| *id));
                js.unsynced_refs
                    .extend(set.into_iter().map(|(name, _)| name));
            }
            Err(e) => log::warn!("cannot update {STAGED_REFS}: {e}"),
        }
        js.protected = have;
    }

    /// The staged blobs that need a ref: those already in the object database (a pending small
    /// value is only in the journal and memory until its commit writes it).
    fn wanted_staged_refs(&self) -> std::collections::HashSet<ObjectId> {
        let st = self.read_state();
        let mut ids = staged_ids(&st.working);
        ids.retain(|id| !st.pending.blobs.contains_key(id));
        ids
    }

    /// Gives each of `ids` that has none a ref `refs/gitdb/staged/<id>`, so that `git gc` and
    /// `git prune` keep the blob while only the working layer names it. Called before the set
    /// is journaled; `sync` makes the refs durable before the journal.
    fn protect(&self, js: &mut JournalState, ids: &[ObjectId]) -> Result<()> {
        let mut new: Vec<ObjectId> = ids
            .iter()
            .copied()
            .filter(|id| !js.protected.contains(id))
            .collect();
        new.sort();
        new.dedup();
        if new.is_empty() {
            return Ok(());
        }
        let set: Vec<(String, ObjectId)> = new.iter().map(|&id| (staged_ref(id), id)).collect();
        self.store.force_refs(&set, &[], "gitdb: staged value")?;
        js.protected.extend(new);
        js.unsynced_refs
            .extend(set.into_iter().map(|(name, _)| name));
        Ok(())
    }

    /// Deletes the refs of blobs no longer staged (committed, overwritten, rolled back). Lazy
    /// and forgiving: a ref left behind only keeps a blob a little longer, and is tried again
    /// at the next commit, rollback or compaction, or dropped at the next open.
    fn drop_unstaged_refs(&self, js: &mut JournalState) {
        if js.protected.is_empty() {
            return;
        }
        let wanted = self.wanted_staged_refs();
        let gone: Vec<ObjectId> = js
            .protected
            .iter()
            .copied()
            .filter(|id| !wanted.contains(id))
            .collect();
        if gone.is_empty() {
            return;
        }
        let names: Vec<String> = gone.iter().map(|&id| staged_ref(id)).collect();
        match self
            .store
            .force_refs(&[], &names, "gitdb: value no longer staged")
        {
            Ok(()) => {
                for id in gone {
                    js.protected.remove(&id);
                }
                let names: std::collections::HashSet<&String> = names.iter().collect();
                js.unsynced_refs.retain(|n| !names.contains(n));
            }
            Err(e) => log::warn!("cannot delete {} staged ref(s): {e}", names.len()),
        }
    }

    // ----- accessors --------------------------------------------------------------------------

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The store underneath, for the layers above (merge, gossip).
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn git_dir(&self) -> &Path {
        self.store.git_dir()
    }

    /// The git directory of the repository at `path` (as [`GitDb::git_dir`] of a handle opened
    /// there would be), without opening it as a db: where a client looks for a daemon's door.
    pub fn git_dir_of(path: &Path) -> Result<PathBuf> {
        Ok(Store::git_dir_of(path)?)
    }

    /// The committed head of the branch (`None` before the first commit).
    pub fn head(&self) -> Option<ObjectId> {
        self.read_state().head
    }

    /// This node's vector clock: the head's clock, plus local commits.
    pub fn clock(&self) -> VectorClock {
        self.read_state().clock.clone()
    }

    /// The last hybrid timestamp this node issued or saw.
    pub fn hlc(&self) -> Hlc {
        self.read_state().hlc
    }

    /// Whether there are uncommitted changes.
    pub fn is_dirty(&self) -> bool {
        !self.read_state().working.is_empty()
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_journal(&self) -> MutexGuard<'_, JournalState> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this handle was opened read-only (it then holds no writer lock).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(DbError::ReadOnly {
                path: self.git_dir().to_owned(),
            });
        }
        Ok(())
    }

    // ----- reading ----------------------------------------------------------------------------

    /// The value of `key`, or `None` if there is none (a directory is an error).
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let key = Key::parse_value(key)?;
        match self.resolve(&key)? {
            Visible::Value(v, committed) => Ok(Some(self.read_value(v.id, committed)?)),
            Visible::Dir => Err(DbError::IsDirectory { key }),
            Visible::Absent => Ok(None),
        }
    }

    /// The contents of a visible value: a pending small value from memory, else the blob.
    fn read_value(&self, id: ObjectId, committed: bool) -> Result<Bytes> {
        if !committed && let Some(data) = self.read_state().pending.blobs.get(&id) {
            return Ok(data.clone());
        }
        Ok(self.store.blob(id)?)
    }

    /// The contents of the blob `id` named by a [`Stat`]: from memory while it is a small value
    /// waiting for its commit, else from the object database.
    pub fn value(&self, id: ObjectId) -> Result<Bytes> {
        self.read_value(id, false)
    }

    /// Writes the contents of the blob `id` named by a [`Stat`] to `out`, returning its size:
    /// for a value too large to hold, as the mount's plain copies are (a loose blob is
    /// inflated piece by piece, see `store/copy_out.rs`).
    pub fn copy_value(&self, id: ObjectId, out: &mut impl std::io::Write) -> Result<u64> {
        let pending = self.read_state().pending.blobs.get(&id).cloned();
        if let Some(data) = pending {
            out.write_all(&data)
                .map_err(|source| DbError::CopyOut { id, source })?;
            return Ok(data.len() as u64);
        }
        Ok(self.store.copy_blob(id, out)?)
    }

    /// Size, mode and id of a value, or that `key` is a directory; `None` if nothing is there.
    pub fn stat(&self, key: &str) -> Result<Option<Stat>> {
        let key = Key::parse(key)?;
        if key.is_root() {
            return Ok(Some(Stat::Dir));
        }
        Ok(match self.resolve(&key)? {
            Visible::Value(v, committed) => Some(Stat::Value {
                mode: v.mode,
                size: v.size,
                id: v.id,
                committed,
            }),
            Visible::Dir => Some(Stat::Dir),
            Visible::Absent => None,
        })
    }

    /// Where `key` stands in the visible state (overlay over head).
    fn resolve(&self, key: &Key) -> Result<Visible> {
        let path = key.as_str();
        let (head_tree, deletes_below) = {
            let st = self.read_state();
            if !st.working.is_empty() {
                match st.working.get(path) {
                    Some(Change::Set(v)) => return Ok(Visible::Value(*v, false)),
                    Some(Change::Delete) => {
                        return Ok(if has_set_under(&st.working, path) {
                            Visible::Dir
                        } else {
                            Visible::Absent
                        });
                    }
                    None => {}
                }
                if has_set_under(&st.working, path) {
                    return Ok(Visible::Dir);
                }
                if hidden_by_ancestor(&st.working, key) {
                    return Ok(Visible::Absent);
                }
            }
            (st.head_tree, has_delete_under(&st.working, path))
        };
        // The committed side is read without holding the state lock.
        let Some(entry) = self.store.lookup(head_tree, path)? else {
            return Ok(Visible::Absent);
        };
        Ok(match entry.kind {
            EntryKind::Value(mode) => {
                let size = self.store.blob_size(entry.id)?;
                Visible::Value(
                    StagedValue {
                        id: entry.id,
                        mode,
                        size,
                    },
                    true,
                )
            }
            EntryKind::Dir if deletes_below => {
                let st = self.read_state();
                if self.any_visible_value(&st.working, entry.id, path)? {
                    Visible::Dir
                } else {
                    Visible::Absent
                }
            }
            EntryKind::Dir => Visible::Dir,
            EntryKind::Submodule => Visible::Absent,
        })
    }

    /// Whether the committed directory `tree` at `prefix` still has a value the overlay does
    /// not delete. Only asked when the overlay has deletes (and no sets) below `prefix`.
    fn any_visible_value(&self, working: &Working, tree: ObjectId, prefix: &str) -> Result<bool> {
        Ok(self.visible_witness(working, tree, prefix)?.is_some())
    }

    /// The path of a committed value below `prefix` (the directory `tree`) that the overlay
    /// does not delete, if there is one. Starts from the witness found last time (see
    /// [`witness`]), so the tombstones of a growing `rm -rf` are not walked again at every
    /// unlink.
    fn visible_witness(
        &self,
        working: &Working,
        tree: ObjectId,
        prefix: &str,
    ) -> Result<Option<String>> {
        let start = match self.witnesses.get(prefix, tree) {
            Some(w) if !deleted_below(working, prefix, &w.path) => return Ok(Some(w.path)),
            Some(w) => w.index,
            None => 0,
        };
        let tree_obj = self.store.tree(tree)?;
        let entries = tree_obj.entries();
        let start = start.min(entries.len());
        for index in (start..entries.len()).chain(0..start) {
            let entry = &entries[index];
            self.witnesses.count_scanned();
            let path = crate::store::join(prefix, &entry.name);
            if working.get(&path) == Some(&Change::Delete) {
                continue;
            }
            let found = match entry.kind {
                EntryKind::Value(_) => Some(path),
                EntryKind::Dir => self.visible_witness(working, entry.id, &path)?,
                EntryKind::Submodule => None,
            };
            if let Some(found) = found {
                let witness = Witness {
                    tree,
                    index,
                    path: found.clone(),
                };
                self.witnesses.remember(prefix, witness);
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Tree entries scanned so far to decide whether directories with tombstones below them
    /// are still visible. A diagnostic counter: it grows about once per delete, not with the
    /// square of the deletes in one directory.
    pub fn visibility_scans(&self) -> u64 {
        self.witnesses.scanned()
    }

    /// `prefix` parsed, if it is a visible directory (the root always is).
    fn visible_dir(&self, prefix: &str) -> Result<Key> {
        let key = Key::parse(prefix)?;
        if !key.is_root() {
            match self.resolve(&key)? {
                Visible::Dir => {}
                Visible::Value(..) => return Err(DbError::NotADirectory { key }),
                Visible::Absent => return Err(DbError::NotFound { key }),
            }
        }
        Ok(key)
    }

    /// The committed tree at `key`, unless the working layer hides it (a change at `key` or
    /// at one of its ancestors) or there is none.
    fn committed_dir(&self, st: &State, key: &Key) -> Result<Option<ObjectId>> {
        if st.working.contains_key(key.as_str()) || hidden_by_ancestor(&st.working, key) {
            return Ok(None);
        }
        Ok(self
            .store
            .lookup(st.head_tree, key.as_str())?
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| e.id))
    }

    /// The immediate children of `prefix`, sorted by name, each a value or a directory.
    pub fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        Ok(self
            .children(prefix, false)?
            .into_iter()
            .map(|(name, kind)| ListEntry { name, kind })
            .collect())
    }

    /// The names of the directories directly below `prefix`, sorted (a directory's link
    /// count at the mount). Values are skipped without being copied, so a directory of many
    /// values costs a scan, not a listing.
    pub fn subdirs(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self.children(prefix, true)?.into_keys().collect())
    }

    /// The visible children of `prefix` (only the directories if `dirs_only`).
    fn children(&self, prefix: &str, dirs_only: bool) -> Result<BTreeMap<String, NodeKind>> {
        let key = self.visible_dir(prefix)?;
        let path = key.as_str();
        // The committed directory is read before the state lock is taken, so a listing that
        // misses the tree cache never holds up writers (nor, behind them, other readers).
        let (st, committed) = loop {
            let head_tree = self.read_state().head_tree;
            let committed = match self.store.lookup(head_tree, path)? {
                Some(e) if e.kind == EntryKind::Dir => Some(self.store.tree(e.id)?),
                _ => None,
            };
            let st = self.read_state();
            if st.head_tree == head_tree {
                break (st, committed);
            }
        };
        let mut children: BTreeMap<String, NodeKind> = BTreeMap::new();
        let hidden = st.working.contains_key(path) || hidden_by_ancestor(&st.working, &key);
        let start = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        // Nothing staged below: the committed entries are the listing as they are.
        let staged_below = st
            .working
            .range::<String, _>(start.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&start));
        if let Some(tree) = committed.filter(|_| !hidden) {
            for entry in tree.entries() {
                if dirs_only && entry.kind != EntryKind::Dir {
                    continue;
                }
                if !staged_below {
                    match entry.kind {
                        EntryKind::Value(mode) => {
                            children.insert(entry.name.to_string(), NodeKind::Value(mode))
                        }
                        EntryKind::Dir => children.insert(entry.name.to_string(), NodeKind::Dir),
                        EntryKind::Submodule => None,
                    };
                    continue;
                }
                let child = crate::store::join(path, &entry.name);
                let kind = match (st.working.get(&child), entry.kind) {
                    (Some(_), _) | (None, EntryKind::Submodule) => continue,
                    (None, EntryKind::Value(mode)) => NodeKind::Value(mode),
                    (None, EntryKind::Dir) => {
                        if has_delete_under(&st.working, &child)
                            && !has_set_under(&st.working, &child)
                            && !self.any_visible_value(&st.working, entry.id, &child)?
                        {
                            continue;
                        }
                        NodeKind::Dir
                    }
                };
                children.insert(entry.name.to_string(), kind);
            }
        }
        // Overlay children: a Set at `path/name` is a value, a Set deeper is a directory. One
        // pass over the staged entries below `path`; a child's subtree is stepped over entry
        // by entry while it is small, and jumped over by a new search once it is not.
        const STEPS_BEFORE_SEEK: usize = 16;
        if !staged_below {
            return Ok(children);
        }
        let mut iter = st.working.range::<String, _>(start.clone()..).peekable();
        while let Some((child_path, change)) = iter.next() {
            let Some(rest) = child_path.strip_prefix(start.as_str()) else {
                break;
            };
            if rest.is_empty() {
                continue;
            }
            let Some((name, _)) = rest.split_once('/') else {
                if let Change::Set(v) = change
                    && !dirs_only
                {
                    children.insert(rest.to_owned(), NodeKind::Value(v.mode));
                }
                continue;
            };
            // A directory if anything below it is set.
            let sub = &child_path[..start.len() + name.len() + 1];
            let mut is_dir = matches!(change, Change::Set(_));
            let mut steps = 0;
            while let Some((next, next_change)) = iter.peek() {
                if !next.starts_with(sub) {
                    break;
                }
                if steps == STEPS_BEFORE_SEEK {
                    let dir_path = &sub[..sub.len() - 1];
                    is_dir = is_dir || has_set_under(&st.working, dir_path);
                    // '0' sorts right after '/'.
                    let past = format!("{dir_path}0");
                    iter = st.working.range::<String, _>(past..).peekable();
                    break;
                }
                is_dir = is_dir || matches!(next_change, Change::Set(_));
                iter.next();
                steps += 1;
            }
            if is_dir {
                children.insert(name.to_owned(), NodeKind::Dir);
            }
        }
        Ok(children)
    }

    /// Every value below `prefix` (all depths), as full keys without the leading `/`, sorted.
    pub fn list_recursive(&self, prefix: &str) -> Result<Vec<(String, ValueMode)>> {
        let key = self.visible_dir(prefix)?;
        let st = self.read_state();
        let path = key.as_str();
        let mut out: BTreeMap<String, ValueMode> = BTreeMap::new();
        if let Some(dir) = self.committed_dir(&st, &key)? {
            self.store.walk_values(dir, path, &mut |p, entry| {
                if let EntryKind::Value(mode) = entry.kind
                    && !hidden_below(&st.working, path, p)
                {
                    out.insert(p.to_owned(), mode);
                }
                Ok(())
            })?;
        }
        let start = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        for (p, change) in st
            .working
            .range::<String, _>((Bound::Included(start.clone()), Bound::Unbounded))
        {
            if !p.starts_with(start.as_str()) {
                break;
            }
            if let Change::Set(v) = change {
                out.insert(p.clone(), v.mode);
            }
        }
        Ok(out.into_iter().collect())
    }

    // ----- writing ----------------------------------------------------------------------------

    /// Sets `key` to `value` (mode 100644).
    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.set_with_mode(key, value, ValueMode::Regular)
    }

    /// Sets `key` to `value` with a git mode (regular, executable, symlink).
    pub fn set_with_mode(&self, key: &str, value: &[u8], mode: ValueMode) -> Result<()> {
        self.check_writable()?;
        let key = Key::parse_value(key)?;
        let size = value.len() as u64;
        if value.len() <= INLINE_MAX && self.read_state().pending.bytes < PENDING_MAX {
            let id = self.store.hash_blob(value)?;
            let mut js = self.lock_journal();
            self.check_can_hold_value(&key)?;
            self.append(
                &mut js,
                &Record::SetInline {
                    key: key.as_str().to_owned(),
                    mode,
                    data: value.to_vec(),
                },
            )?;
            {
                let mut st = self.write_state();
                st.pending.insert(id, Bytes::from(value));
                apply_set(
                    &mut st.working,
                    key.as_str().to_owned(),
                    StagedValue { id, mode, size },
                );
            }
            return self.maybe_compact(&mut js);
        }
        // Checked again under the journal lock; this early check only avoids writing a blob
        // for a set that cannot succeed.
        self.check_can_hold_value(&key)?;
        let id = self.store.write_blob(value)?;
        self.stage(key, StagedValue { id, mode, size })
    }

    /// Sets `key` to a blob already written to the store (e.g. streamed by the mount).
    pub fn set_blob(&self, key: &str, id: ObjectId, mode: ValueMode) -> Result<()> {
        self.check_writable()?;
        // A small value still waiting for its commit (e.g. re-staged by a chmod) is not in the
        // object database yet: stage its bytes again, so the journal holds them.
        let waiting = self.read_state().pending.blobs.get(&id).cloned();
        if let Some(data) = waiting {
            return self.set_with_mode(key, &data, mode);
        }
        let key = Key::parse_value(key)?;
        let size = self.store.blob_size(id)?;
        self.stage(key, StagedValue { id, mode, size })
    }

    fn stage(&self, key: Key, value: StagedValue) -> Result<()> {
        let mut js = self.lock_journal();
        self.check_can_hold_value(&key)?;
        self.protect(&mut js, &[value.id])?;
        self.append(&mut js, &set_record(key.as_str(), value))?;
        js.unsynced.push(value.id);
        apply_set(
            &mut self.write_state().working,
            key.as_str().to_owned(),
            value,
        );
        self.maybe_compact(&mut js)?;
        Ok(())
    }

    /// A value may go at `key` if no ancestor is a value and `key` is not a directory.
    fn check_can_hold_value(&self, key: &Key) -> Result<()> {
        self.check_parents_are_dirs(key)?;
        if let Visible::Dir = self.resolve(key)? {
            return Err(DbError::IsDirectory { key: key.clone() });
        }
        Ok(())
    }

    /// Deletes the value at `key`. A directory is an error: use [`GitDb::delete_prefix`].
    pub fn delete(&self, key: &str) -> Result<()> {
        self.check_writable()?;
        let key = Key::parse_value(key)?;
        let mut js = self.lock_journal();
        let in_head = match self.resolve(&key)? {
            Visible::Value(_, committed) => committed,
            Visible::Dir => return Err(DbError::IsDirectory { key }),
            Visible::Absent => return Err(DbError::NotFound { key }),
        };
        self.journal_delete(&mut js, &key, in_head)
    }

    /// Deletes everything below and at `prefix` (the root: every key). Returns an error if
    /// nothing is there.
    pub fn delete_prefix(&self, prefix: &str) -> Result<()> {
        self.check_writable()?;
        let key = Key::parse(prefix)?;
        let mut js = self.lock_journal();
        if !key.is_root() && matches!(self.resolve(&key)?, Visible::Absent) {
            return Err(DbError::NotFound { key });
        }
        self.journal_delete(&mut js, &key, false)
    }

    /// Stages the delete of `key`; `in_head`: the head is known to hold the value deleted, so
    /// its tombstone is needed without looking.
    fn journal_delete(&self, js: &mut JournalState, key: &Key, in_head: bool) -> Result<()> {
        self.append(
            js,
            &Record::Delete {
                key: key.as_str().to_owned(),
            },
        )?;
        apply_delete(&mut self.write_state().working, key.as_str());
        if !in_head {
            self.drop_needless_tombstone(js, key.as_str())?;
        }
        // After the journal: a crash between the two leaves metadata for a name that is gone
        // (harmless: a new file there gets its own), never a value without its metadata.
        self.follow_meta(MetaRecord::Staged(Box::new(MetaRecord::Drop {
            path: key.as_str().to_owned(),
        })));
        self.maybe_compact(js)
    }

    /// Applies a metadata change that follows a change of names already made (a delete, a
    /// rename): that change stands, so a failure here is logged, not returned.
    fn follow_meta(&self, record: MetaRecord) {
        if let Err(e) = self.lock_meta().apply(record.clone()) {
            log::error!("metadata not updated after {record:?}: {e}");
        }
    }

    /// A commit of the changes staged before `mark` is done (see [`MetaStore::settle`]).
    fn settle_meta(&self, mark: usize) {
        if let Err(e) = self.lock_meta().settle(mark) {
            log::warn!("metadata: committed renames and deletes not settled: {e}");
        }
    }

    fn lock_meta(&self) -> MutexGuard<'_, MetaStore> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node-local metadata (mode bits, owner, group) of `path` (`""`: the root), if it
    /// differs from the mount's defaults. A map lookup in memory: no I/O.
    pub fn meta(&self, path: &str) -> Option<Meta> {
        self.lock_meta().get(path)
    }

    /// How many paths carry metadata that differs from the defaults.
    pub fn meta_len(&self) -> usize {
        self.lock_meta().len()
    }

    /// Sets (`Some`) or clears (`None`: back to the defaults) the metadata of `path`, which
    /// need not name a key (a directory made by mkdir, a file still being written). Logged
    /// before it is applied; durable after [`GitDb::sync`].
    pub fn set_meta(&self, path: &str, meta: Option<Meta>) -> Result<()> {
        self.check_writable()?;
        let key = Key::parse(path)?;
        let record = MetaRecord::Set {
            path: key.as_str().to_owned(),
            meta,
        };
        Ok(self.lock_meta().apply(record)?)
    }

    /// Drops the metadata at and below `path`: for names that the mount removes without the
    /// db (a directory made by mkdir, a file never flushed). [`GitDb::delete`] does it itself.
    pub fn drop_meta(&self, path: &str) -> Result<()> {
        self.check_writable()?;
        let key = Key::parse(path)?;
        let _js = self.lock_journal();
        let record = MetaRecord::Drop {
            path: key.as_str().to_owned(),
        };
        Ok(self.lock_meta().apply(record)?)
    }

    /// Moves the metadata at and below `from` to `to` (replacing `to`'s): for names that the
    /// mount renames without the db (directories made by mkdir). [`GitDb::rename`] does it
    /// itself.
    pub fn rename_meta(&self, from: &str, to: &str) -> Result<()> {
        self.check_writable()?;
        let from = Key::parse_value(from)?;
        let to = Key::parse_value(to)?;
        let _js = self.lock_journal();
        let record = MetaRecord::Move {
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
        };
        Ok(self.lock_meta().apply(record)?)
    }

    /// A tombstone only hides what the head holds. One for a path the head lacks (a file
    /// created and removed before any commit, a temp file renamed away) is dropped, so the
    /// working layer, `status` and the next commit do not grow with names no commit ever had.
    /// Kept while a commit is under way (the commit may be adding that path to the head) and
    /// for the root. The caller holds the journal lock, so the head cannot be adopted
    /// meanwhile.
    fn drop_needless_tombstone(&self, _js: &mut JournalState, path: &str) -> Result<()> {
        let Ok(_no_commit) = self.commit_lock.try_lock() else {
            return Ok(());
        };
        let head_tree = self.read_state().head_tree;
        if self.hides_nothing(head_tree, path)? {
            // The caller's journal lock serializes every change of the working layer: the
            // tombstone just staged is still there.
            self.write_state().working.remove(path);
        }
        Ok(())
    }

    /// Whether a tombstone at `path` hides nothing of the tree `head_tree` (the root's always
    /// matters: it hides everything).
    fn hides_nothing(&self, head_tree: ObjectId, path: &str) -> Result<bool> {
        Ok(!path.is_empty() && self.store.lookup(head_tree, path)?.is_none())
    }

    /// Rewrites the journal from the working layer once overwritten and deleted entries make
    /// up most of it, forgets pending values nothing refers to any more, and drops the refs of
    /// overwritten large values. A compaction that fails (a full disk) is only logged and
    /// tried again after as many appends again: the change that triggered it is journaled.
    fn maybe_compact(&self, js: &mut JournalState) -> Result<()> {
        let live = self.read_state().working.len();
        if js.appended <= live + COMPACT_SLACK {
            return Ok(());
        }
        let (head, working, pending) = {
            let st = self.read_state();
            let referenced = staged_ids(&st.working);
            let mut pending = st.pending.clone();
            pending.retain(|id| referenced.contains(id));
            (st.head, st.working.clone(), pending)
        };
        if let Err(e) = self.rewrite_journal(js, head, &working, &pending) {
            log::warn!("journal compaction failed, retried later: {e}");
            js.appended = live;
            return Ok(());
        }
        self.write_state().pending = pending;
        self.drop_unstaged_refs(js);
        Ok(())
    }

    /// Appends `record` to the journal. A journal left stale by a commit is first rewritten
    /// from the working layer, so the record never follows changes already committed.
    fn append(&self, js: &mut JournalState, record: &Record) -> Result<()> {
        if js.journal.is_none() {
            return Err(DbError::ReadOnly {
                path: self.git_dir().to_owned(),
            });
        }
        if js.stale {
            self.rewrite_from_state(js)?;
        }
        let Some(j) = js.journal.as_mut() else {
            return Err(DbError::ReadOnly {
                path: self.git_dir().to_owned(),
            });
        };
        j.append(record).map_err(|source| DbError::Journal {
            path: j.path().to_owned(),
            source,
        })?;
        js.appended += 1;
        Ok(())
    }

    /// Renames a value or a whole directory atomically (one journal record): `from` disappears
    /// and `to` holds what it held. Like rename(2): a value replaces a value at `to`, a directory
    /// may only go where nothing is (directories are never empty here), and nothing may move
    /// below itself.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.check_writable()?;
        let from = Key::parse_value(from)?;
        let to = Key::parse_value(to)?;
        if from.is_ancestor_of(&to) {
            return Err(DbError::InvalidRename {
                from,
                to,
                reason: "the target is inside the source",
            });
        }
        let mut js = self.lock_journal();
        let source = self.resolve(&from)?;
        if let Visible::Absent = source {
            return Err(DbError::NotFound { key: from });
        }
        let from_in_head = matches!(source, Visible::Value(_, true));
        if from == to {
            return Ok(());
        }
        let mut batch = vec![Record::Delete {
            key: from.as_str().to_owned(),
        }];
        match (source, self.resolve(&to)?) {
            (_, Visible::Dir) if to.is_ancestor_of(&from) => {
                return Err(DbError::NotEmpty { key: to });
            }
            (Visible::Value(..), Visible::Dir) => return Err(DbError::IsDirectory { key: to }),
            (Visible::Dir, Visible::Value(..)) => return Err(DbError::NotADirectory { key: to }),
            (Visible::Dir, Visible::Dir) => return Err(DbError::NotEmpty { key: to }),
            (Visible::Value(v, _), _) => {
                self.check_parents_are_dirs(&to)?;
                batch.push(set_record(to.as_str(), v));
            }
            (Visible::Dir, _) => {
                self.check_parents_are_dirs(&to)?;
                for (path, v) in self.visible_values(&from)? {
                    let rel = &path[from.as_str().len() + 1..];
                    batch.push(set_record(&crate::store::join(to.as_str(), rel), v));
                }
            }
            (Visible::Absent, _) => unreachable!("checked above"),
        }
        // Values moved to a new name keep their blobs: those in the object database need a
        // staged ref like any other set (committed ones too: the head may move on without them).
        let stored: Vec<ObjectId> = {
            let st = self.read_state();
            batch
                .iter()
                .filter_map(|r| match r {
                    Record::Set { id, .. } => Some(journal::from_raw(id)),
                    _ => None,
                })
                .filter(|id| !st.pending.blobs.contains_key(id))
                .collect()
        };
        self.protect(&mut js, &stored)?;
        let record = Record::Batch(batch);
        self.append(&mut js, &record)?;
        let mut st = self.write_state();
        let State {
            working, pending, ..
        } = &mut *st;
        apply_record(&self.store, working, pending, record)?;
        drop(st);
        if !from_in_head {
            self.drop_needless_tombstone(&mut js, from.as_str())?;
        }
        // After the journal, as for a delete: a crash between the two leaves the replaced
        // name's metadata on the new value, never the moved value with none.
        self.follow_meta(MetaRecord::Staged(Box::new(MetaRecord::Move {
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
        })));
        self.maybe_compact(&mut js)
    }

    fn check_parents_are_dirs(&self, key: &Key) -> Result<()> {
        // Nearest first: a visible directory's ancestors are all directories (a value hides
        // everything below it), so the first ancestor that exists settles it — usually the
        // parent, in one lookup.
        let mut cur = key.parent();
        while let Some(ancestor) = cur {
            if ancestor.is_root() {
                return Ok(());
            }
            match self.resolve(&ancestor)? {
                Visible::Dir => return Ok(()),
                Visible::Value(..) => {
                    return Err(DbError::ParentIsValue {
                        key: key.clone(),
                        parent: ancestor,
                    });
                }
                Visible::Absent => cur = ancestor.parent(),
            }
        }
        Ok(())
    }

    /// Every visible value below the directory `prefix`, with what it holds.
    fn visible_values(&self, prefix: &Key) -> Result<Vec<(String, StagedValue)>> {
        let mut out = Vec::new();
        for (path, _) in self.list_recursive(prefix.as_str())? {
            if let Visible::Value(v, _) = self.resolve(&Key::parse_value(&path)?)? {
                out.push((path, v));
            }
        }
        Ok(out)
    }

    /// Makes every change made so far durable: the blobs, the refs that keep them from `git
    /// gc`, then the journal (so a journal naming a blob is never on disk before either).
    pub fn sync(&self) -> Result<()> {
        let mut js = self.lock_journal();
        let ids = std::mem::take(&mut js.unsynced);
        if let Err(e) = self.store.sync_objects(ids.iter().copied()) {
            js.unsynced.extend(ids);
            return Err(e.into());
        }
        let refs = std::mem::take(&mut js.unsynced_refs);
        if let Err(e) = self.store.sync_refs(&refs) {
            js.unsynced_refs.extend(refs);
            return Err(e.into());
        }
        if js.stale {
            self.rewrite_from_state(&mut js)?;
        }
        if let Some(j) = js.journal.as_mut() {
            j.sync().map_err(|source| DbError::Journal {
                path: j.path().to_owned(),
                source,
            })?;
        }
        // After the journal: metadata of a rename is logged after its journal record.
        self.lock_meta().sync()?;
        Ok(())
    }

    /// Drops every uncommitted change. Returns how many were dropped. Needs no free space: the
    /// journal is emptied in place.
    pub fn rollback(&self) -> Result<usize> {
        self.check_writable()?;
        // After any commit in progress: it has taken its snapshot, and a rollback must not
        // discard changes that then land in that commit anyway.
        let _one_commit = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut js = self.lock_journal();
        let head = self.read_state().head;
        if let Some(j) = js.journal.as_mut()
            && let Err(source) = j.reset(Record::base(head))
        {
            // The working layer stays; whatever the file holds now, the next append or sync
            // rewrites it from memory first.
            let path = j.path().to_owned();
            js.stale = true;
            return Err(DbError::Journal { path, source });
        }
        js.stale = false;
        js.appended = 0;
        js.unsynced.clear();
        let dropped: Vec<String> = {
            let mut st = self.write_state();
            st.pending = Pending::default();
            std::mem::take(&mut st.working).into_keys().collect()
        };
        // Only now that the journal names none of them durably.
        self.drop_unstaged_refs(&mut js);
        // The names the dropped deletes and renames took away are back: their metadata too.
        if let Err(e) = self.lock_meta().rollback() {
            log::error!("rollback: metadata of the restored names not restored: {e}");
        }
        drop(js);
        let n = dropped.len();
        if n > 0 {
            let head = self.head();
            self.send(HeadEvent {
                old: head,
                new: head,
                origin: HeadOrigin::Rollback,
                changed: dropped,
            });
        }
        Ok(n)
    }

    fn rewrite_journal(
        &self,
        js: &mut JournalState,
        head: Option<ObjectId>,
        working: &Working,
        pending: &Pending,
    ) -> Result<()> {
        let Some(j) = js.journal.as_mut() else {
            return Ok(());
        };
        let mut records = vec![Record::base(head)];
        records.extend(working_records(working, pending));
        j.rewrite(&records).map_err(|source| DbError::Journal {
            path: j.path().to_owned(),
            source,
        })?;
        js.appended = 0;
        js.stale = false;
        Ok(())
    }

    /// Rewrites a stale journal from the in-memory working layer and head.
    fn rewrite_from_state(&self, js: &mut JournalState) -> Result<()> {
        let (head, working, pending) = {
            let st = self.read_state();
            (st.head, st.working.clone(), st.pending.clone())
        };
        self.rewrite_journal(js, head, &working, &pending)
    }

    /// Makes the journal hold `remaining` on top of `head` once a commit has moved the ref (or
    /// found nothing to commit): a reset in place when nothing remains (the usual case, which
    /// needs no free space), else a rewrite. Never fails the commit, which has happened. If
    /// this fails the old file stays — every change it holds is either in the head now or
    /// still in the working layer, so nothing is lost — and it is marked stale: rewritten from
    /// memory before the next append, sync or merge, so no record ever follows it and no merge
    /// lands on top of it. Until then a restart replays it over the new head: when nothing
    /// remained (a reset that failed) replay recognises it as committed and drops it; otherwise
    /// the committed changes are staged again over a head that already holds them, which
    /// changes no visible value and commits to nothing (only a stock-git commit of the same
    /// keys in that window would be overridden by them).
    fn settle_journal(
        &self,
        js: &mut JournalState,
        head: Option<ObjectId>,
        remaining: &Working,
        pending: &Pending,
    ) {
        let result = if remaining.is_empty() {
            match js.journal.as_mut() {
                None => Ok(()),
                Some(j) => j
                    .reset(Record::base(head))
                    .map_err(|source| DbError::Journal {
                        path: j.path().to_owned(),
                        source,
                    }),
            }
        } else {
            self.rewrite_journal(js, head, remaining, pending)
        };
        match result {
            Ok(()) => {
                js.appended = 0;
                js.stale = false;
            }
            Err(e) => {
                log::warn!(
                    "after the commit the journal could not be rewritten (retried before the next change): {e}"
                );
                js.stale = true;
            }
        }
    }

    /// Commits the working layer with `message` at physical time `now_ms` (Unix milliseconds;
    /// the hybrid clock never goes backwards whatever is passed).
    pub fn commit(&self, message: &str, now_ms: u64) -> Result<CommitOutcome> {
        let started = std::time::Instant::now();
        let outcome = self.commit_working(message, now_ms);
        if let Ok(CommitOutcome::Committed { .. }) = &outcome {
            self.metrics.committed(started.elapsed());
        }
        outcome
    }

    fn commit_working(&self, message: &str, now_ms: u64) -> Result<CommitOutcome> {
        self.check_writable()?;
        let _one_commit = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (mut head, mut head_tree, snapshot, pending, mut clock, hlc) = {
            let st = self.read_state();
            (
                st.head,
                st.head_tree,
                st.working.clone(),
                st.pending.clone(),
                st.clock.clone(),
                st.hlc,
            )
        };
        if snapshot.is_empty() {
            return Ok(CommitOutcome::NothingToCommit);
        }
        // Metadata moved by the deletes and renames in the snapshot stays moved once it is
        // committed; what is staged after this belongs to the next commit or rollback.
        let meta_mark = self.lock_meta().undo_len();
        // Never a tree naming a blob the repository lacks (deleted behind our back, e.g. by a
        // `git prune` of a blob without its staged ref): such a commit breaks fsck, clone and
        // gc. Pending small values are written just below.
        for (path, change) in &snapshot {
            if let Change::Set(v) = change
                && !pending.blobs.contains_key(&v.id)
                && !self.store.has_object(v.id)
            {
                return Err(DbError::MissingValue {
                    key: path.clone(),
                    id: v.id,
                });
            }
        }
        let written = self.materialize(&snapshot, &pending)?;
        const ATTEMPTS: u32 = 8;
        let mut committed = None;
        for _ in 0..ATTEMPTS {
            let tree = self.build_tree(head_tree, &snapshot)?;
            if tree == head_tree {
                break;
            }
            let mut new_clock = clock.clone();
            new_clock.increment(&self.node);
            let new_hlc = hlc.tick(now_ms);
            let stamp = CommitStamp {
                node: Some(self.node.clone()),
                clock: new_clock.clone(),
                hlc: Some(new_hlc),
            };
            let message = commit_message(message, &stamp);
            let sig = self.signature(new_hlc);
            let parents: Vec<ObjectId> = head.into_iter().collect();
            let id = self.store.write_commit(tree, &parents, &sig, &message)?;
            // The objects reach the disk before the ref names them, and the ref before the
            // journal forgets the changes: a machine crash loses no acknowledged commit.
            self.store.sync_written()?;
            match self.store.update_ref(
                &self.branch_ref,
                head,
                id,
                &format!("gitdb commit: {}", first_line(&message)),
            ) {
                Ok(()) => {
                    self.store.sync_ref(&self.branch_ref)?;
                    // The branch names the new pack's objects now: `git gc` may repack it.
                    self.store.release_packs();
                    #[cfg(test)]
                    if let Some(hook) = self
                        .after_ref_moved
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take()
                    {
                        hook(self);
                    }
                    committed = Some((id, tree, new_clock, new_hlc));
                    break;
                }
                Err(StoreError::RefMoved { actual, .. }) => {
                    // Someone else (stock git, another tool) moved the branch: keep their commit
                    // as our parent and apply the same changes on top of it.
                    log::info!(
                        "{} moved to {actual:?} during commit; retrying on top",
                        self.branch_ref
                    );
                    head = actual;
                    head_tree = match actual {
                        Some(id) => self.store.commit_info(id)?.tree,
                        None => self.store.empty_tree(),
                    };
                    if let Some(id) = actual {
                        clock.merge(&nearest_stamp(&self.store, id)?.clock);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if committed.is_none() && self.build_tree(head_tree, &snapshot)? != head_tree {
            return Err(DbError::CommitRace {
                branch: self.branch.clone(),
                attempts: ATTEMPTS,
            });
        }
        // What is left: changes made while we committed. Pending values the commit wrote are
        // in the object database now; the others stay in memory only if still referenced.
        let mut js = self.lock_journal();
        let (remaining, still_pending) = {
            let st = self.read_state();
            let mut remaining = st.working.clone();
            remaining.retain(|k, v| snapshot.get(k) != Some(v));
            let referenced = staged_ids(&remaining);
            let mut still_pending = st.pending.clone();
            still_pending.retain(|id| referenced.contains(id) && !written.contains(id));
            (remaining, still_pending)
        };
        match committed {
            None => {
                // Nothing changed relative to the head (which may have moved under us).
                self.settle_journal(&mut js, head, &remaining, &still_pending);
                let moved = {
                    let mut st = self.write_state();
                    st.working = remaining;
                    st.pending = still_pending;
                    st.head != head
                };
                self.drop_unstaged_refs(&mut js);
                self.settle_meta(meta_mark);
                drop(js);
                if moved {
                    self.adopt_head(head)?;
                }
                Ok(CommitOutcome::NothingToCommit)
            }
            Some((id, tree, new_clock, new_hlc)) => {
                // The commit has happened: from here nothing fails it.
                self.settle_journal(&mut js, Some(id), &remaining, &still_pending);
                let old_tree = {
                    let mut st = self.write_state();
                    let old_tree = st.head_tree;
                    st.working = remaining;
                    st.pending = still_pending;
                    st.head = Some(id);
                    st.head_tree = tree;
                    st.clock = new_clock;
                    st.hlc = new_hlc;
                    old_tree
                };
                // The branch keeps the committed blobs now.
                self.drop_unstaged_refs(&mut js);
                self.settle_meta(meta_mark);
                drop(js);
                self.publish(head, Some(id), old_tree, tree, HeadOrigin::LocalCommit);
                Ok(CommitOutcome::Committed {
                    id,
                    changed: snapshot.len(),
                })
            }
        }
    }

    /// Writes the pending small values `working` refers to into the object database: as one
    /// pack when there are many, as loose objects otherwise. Returns the ids now stored.
    fn materialize(
        &self,
        working: &Working,
        pending: &Pending,
    ) -> Result<std::collections::HashSet<ObjectId>> {
        let mut ids = std::collections::HashSet::new();
        let mut blobs = Vec::new();
        for change in working.values() {
            if let Change::Set(v) = change
                && let Some(data) = pending.blobs.get(&v.id)
                && ids.insert(v.id)
            {
                blobs.push(data.clone());
            }
        }
        if blobs.len() >= PACK_MIN {
            self.store
                .write_blobs_packed(blobs.iter().map(|b| &b[..]))?;
        } else {
            for data in &blobs {
                self.store.write_blob(data)?;
            }
        }
        Ok(ids)
    }

    fn signature(&self, hlc: Hlc) -> Signature {
        Signature {
            name: self.node.to_string(),
            email: format!("{}@gitdb", self.node),
            seconds: hlc.seconds(),
        }
    }

    /// The tree `base` with the working layer applied, written.
    fn build_tree(&self, base: ObjectId, working: &Working) -> Result<ObjectId> {
        self.working_tree(base, working, true)
    }

    /// The tree `base` with the working layer applied, written if `write` (else only its id).
    /// Entries are visited in path order, so a delete of a prefix comes before sets below it.
    fn working_tree(&self, base: ObjectId, working: &Working, write: bool) -> Result<ObjectId> {
        let (base, skip_root) = match working.get("") {
            Some(Change::Delete) => (self.store.empty_tree(), true),
            _ => (base, false),
        };
        // Nothing is staged below a value (see `apply_set`), so no edit goes below one.
        let edits = working
            .iter()
            .filter(|(path, _)| !(skip_root && path.is_empty()))
            .map(|(path, change)| match change {
                Change::Set(v) => TreeEdit::Upsert {
                    path,
                    mode: v.mode,
                    id: v.id,
                },
                Change::Delete => TreeEdit::Remove { path },
            });
        Ok(if write {
            self.store.write_tree(base, edits)?
        } else {
            self.store.hash_tree(base, edits)?
        })
    }

    /// Re-reads the branch ref; if something else moved it (stock git, a merge), adopts the new
    /// head, keeping the working layer on top. Returns the move, if any. A read-only handle
    /// also follows the writer's journal (see [`GitDb::follow_journal`]).
    pub fn refresh(&self) -> Result<Option<HeadMove>> {
        if self.read_only {
            return self.follow_journal(true);
        }
        // The usual answer, "not moved", without the commit lock: a periodic check then never
        // holds up a commit, nor makes a delete keep a needless tombstone.
        if self.store.read_ref(&self.branch_ref)? == self.read_state().head {
            return Ok(None);
        }
        let _one_commit = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let new = self.store.read_ref(&self.branch_ref)?;
        let old = self.read_state().head;
        if new == old {
            return Ok(None);
        }
        self.adopt_head(new)?;
        Ok(Some(HeadMove { old, new }))
    }

    /// Makes `new` the head this node works on (the ref already points there). The journal
    /// gets a `Base` record for it (owed if the disk is full: the ref has moved, so this must
    /// not fail).
    fn adopt_head(&self, new: Option<ObjectId>) -> Result<()> {
        let (tree, stamp) = match new {
            Some(id) => (
                self.store.commit_info(id)?.tree,
                nearest_stamp(&self.store, id)?,
            ),
            None => (self.store.empty_tree(), CommitStamp::default()),
        };
        let mut js = self.lock_journal();
        let (old, old_tree) = {
            let mut st = self.write_state();
            let old = (st.head, st.head_tree);
            st.head = new;
            st.head_tree = tree;
            st.clock.merge(&stamp.clock);
            if let Some(h) = stamp.hlc {
                st.hlc = st.hlc.max(h);
            }
            old
        };
        if js.stale {
            if let Err(e) = self.rewrite_from_state(&mut js) {
                log::warn!("journal still stale after adopting {new:?}: {e}");
            }
        } else if let Some(j) = js.journal.as_mut() {
            j.append_base(Record::base(new));
        }
        drop(js);
        self.publish(old, new, old_tree, tree, HeadOrigin::Adopted);
        Ok(())
    }

    /// Moves the branch from `expected` to `new` (a commit already in the store, e.g. a merge
    /// result or a fast-forward target) by compare-and-swap, and adopts it; the working layer
    /// stays on top. Fails with `StoreError::RefMoved` if the branch is no longer at `expected`,
    /// and without moving it if `new` or its tree is not in the repository.
    pub fn move_head(&self, expected: Option<ObjectId>, new: ObjectId, reason: &str) -> Result<()> {
        self.check_writable()?;
        let _one_commit = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let tree = self.store.commit_info(new)?.tree;
        if tree == self.store.empty_tree() {
            self.store.ensure_empty_tree()?;
        } else if !self.store.has_object(tree) {
            return Err(StoreError::Missing { id: tree }.into());
        }
        {
            // A stale journal (see `settle_journal`) must not outlive a head it was not made
            // for: replayed over the merge it could bring back what the merge replaced.
            let mut js = self.lock_journal();
            if js.stale {
                self.rewrite_from_state(&mut js)?;
            }
        }
        self.store.sync_written()?;
        self.store
            .update_ref(&self.branch_ref, expected, new, reason)?;
        self.store.sync_ref(&self.branch_ref)?;
        // Packs a transfer wrote are named by the branch now: `git gc` may repack them.
        self.store.release_packs();
        self.adopt_head(Some(new))
    }

    /// For a read-only handle: reads what the writer appended to its journal since the last
    /// look (all of it when the writer replaced or reset the file), re-reads the branch ref,
    /// and rebuilds the working layer; subscribers hear of every key whose visible value
    /// changed (as `HeadOrigin::Adopted`). The working layer is shown only while the journal's
    /// last `Base` names the ref's head: otherwise the writer is between moving the ref and
    /// rewriting the journal (or owes the `Base`), and the committed state alone is shown, so
    /// a reader never shows a draft older than its head.
    fn follow_journal(&self, announce: bool) -> Result<Option<HeadMove>> {
        let _one_commit = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut js = self.lock_journal();
        let Some(f) = js.followed.as_mut() else {
            return Ok(None);
        };
        let change = f.follower.poll().map_err(|source| DbError::Journal {
            path: f.follower.path().to_owned(),
            source,
        })?;
        let replaced = matches!(change, journal::Change::Replaced(_));
        let journal_changed = match change {
            journal::Change::Unchanged => false,
            journal::Change::Appended(records) | journal::Change::Replaced(records) => {
                // A rewritten journal is the whole state again: start from nothing.
                if replaced {
                    f.working.clear();
                    f.pending = Pending::default();
                    f.base = None;
                }
                apply_records(
                    &self.store,
                    &mut f.working,
                    &mut f.pending,
                    &mut f.base,
                    records,
                )?;
                true
            }
        };
        if journal_changed {
            let referenced = staged_ids(&f.working);
            f.pending.retain(|id| referenced.contains(id));
        }
        let new = self.store.read_ref(&self.branch_ref)?;
        let (old, old_tree) = {
            let st = self.read_state();
            (st.head, st.head_tree)
        };
        if !journal_changed && new == old {
            return Ok(None);
        }
        let (new_tree, stamp) = if new == old {
            (old_tree, None)
        } else {
            match new {
                Some(id) => (
                    self.store.commit_info(id)?.tree,
                    Some(nearest_stamp(&self.store, id)?),
                ),
                None => (self.store.empty_tree(), Some(CommitStamp::default())),
            }
        };
        let (mut working, pending) = if !f.working.is_empty() && f.base == Some(new) {
            (f.working.clone(), f.pending.clone())
        } else {
            (Working::new(), Pending::default())
        };
        self.prune_tombstones(&mut working, new_tree);
        let old_working = {
            let mut st = self.write_state();
            st.head = new;
            st.head_tree = new_tree;
            if let Some(stamp) = stamp {
                st.clock.merge(&stamp.clock);
                if let Some(h) = stamp.hlc {
                    st.hlc = st.hlc.max(h);
                }
            }
            st.pending = pending;
            std::mem::replace(&mut st.working, working)
        };
        drop(js);
        if announce {
            let mut changed: std::collections::BTreeSet<String> =
                match self.store.diff_trees(old_tree, new_tree) {
                    Ok(changes) => changes.into_iter().map(|c| c.path).collect(),
                    Err(e) => {
                        log::warn!("cannot diff {old_tree}..{new_tree} for subscribers: {e}");
                        Default::default()
                    }
                };
            let st = self.read_state();
            changed.extend(working_diff(&old_working, &st.working));
            drop(st);
            self.announce(HeadEvent {
                old,
                new,
                origin: HeadOrigin::Adopted,
                changed: changed.into_iter().collect(),
            });
        }
        Ok((new != old).then_some(HeadMove { old, new }))
    }

    /// Sends `event` to every subscriber, unless nothing changed.
    fn announce(&self, event: HeadEvent) {
        if event.old == event.new && event.changed.is_empty() {
            return;
        }
        self.send(event);
    }

    /// Tells subscribers that the working layer's `keys` (tree paths) changed through another
    /// client of this handle than the subscriber itself (the daemon's door, see
    /// [`crate::door`]): the head stays, as for the changes a read-only handle follows, so the
    /// event is `HeadOrigin::Adopted` with `old == new` and the mount drops its kernel caches
    /// of exactly those keys.
    pub fn announce_changed(&self, keys: Vec<String>) {
        let head = self.head();
        self.announce(HeadEvent {
            old: head,
            new: head,
            origin: HeadOrigin::Adopted,
            changed: keys,
        });
    }

    /// Receives a [`HeadEvent`] each time the head moves or a rollback drops changes.
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<HeadEvent> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.lock_subscribers().push(Subscriber::Channel(tx));
        rx
    }

    /// Calls `f` with every [`HeadEvent`], on the thread that made the change and before the
    /// call that made it returns (see [`Subscriber::Callback`]).
    pub fn subscribe_with(&self, f: impl Fn(&HeadEvent) -> bool + Send + 'static) {
        self.lock_subscribers()
            .push(Subscriber::Callback(Box::new(f)));
    }

    fn lock_subscribers(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, event: HeadEvent) {
        self.lock_subscribers().retain(|sub| match sub {
            Subscriber::Channel(tx) => tx.send(event.clone()).is_ok(),
            Subscriber::Callback(f) => f(&event),
        });
    }

    fn publish(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        old_tree: ObjectId,
        new_tree: ObjectId,
        origin: HeadOrigin,
    ) {
        if old == new {
            return;
        }
        let subscribed = !self.lock_subscribers().is_empty();
        let changed: Vec<String> = if subscribed {
            match self.store.diff_trees(old_tree, new_tree) {
                Ok(changes) => changes.into_iter().map(|c| c.path).collect(),
                Err(e) => {
                    log::warn!("cannot diff {old_tree}..{new_tree} for subscribers: {e}");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        // What only the old head needed leaves the caches, and the memory it and the commit's
        // temporaries took goes back to the system (see [`memory`]).
        self.store.forget_old_head(old_tree, new_tree, &changed);
        memory::release_freed_memory();
        if !subscribed {
            return;
        }
        self.send(HeadEvent {
            old,
            new,
            origin,
            changed,
        });
    }

    // ----- history ----------------------------------------------------------------------------

    /// Up to `n` commits from the head, newest first.
    pub fn log(&self, n: usize) -> Result<Vec<LogEntry>> {
        let Some(head) = self.head() else {
            return Ok(Vec::new());
        };
        self.log_from(head, n)
    }

    /// Up to `n` commits from `tip`, newest first.
    pub fn log_from(&self, tip: ObjectId, n: usize) -> Result<Vec<LogEntry>> {
        Ok(self
            .store
            .log(tip, n)?
            .into_iter()
            .map(|c| {
                let stamp = CommitStamp::from_message(&c.message);
                LogEntry {
                    id: c.id.to_string(),
                    parents: c.parents.iter().map(|p| p.to_string()).collect(),
                    author: c.author.clone(),
                    seconds: c.seconds,
                    summary: c.summary().to_owned(),
                    clock: stamp.clock.to_string(),
                    hlc: stamp.hlc.map(|h| h.to_string()),
                }
            })
            .collect())
    }

    /// Resolves a revision (`main~1`, an id or prefix, any ref) to a commit id.
    pub fn resolve_rev(&self, rev: &str) -> Result<ObjectId> {
        Ok(self.store.resolve_commit(rev)?)
    }

    /// The committed value of `key` at commit `rev`.
    pub fn get_at(&self, rev: &str, key: &str) -> Result<Option<Bytes>> {
        let key = Key::parse_value(key)?;
        let tree = self.store.commit_info(self.resolve_rev(rev)?)?.tree;
        match self.store.lookup(tree, key.as_str())? {
            None => Ok(None),
            Some(e) => match e.kind {
                EntryKind::Value(_) => Ok(Some(self.store.blob(e.id)?)),
                EntryKind::Dir => Err(DbError::IsDirectory { key }),
                EntryKind::Submodule => Ok(None),
            },
        }
    }

    /// The children of `prefix` at commit `rev`.
    pub fn list_at(&self, rev: &str, prefix: &str) -> Result<Vec<ListEntry>> {
        let key = Key::parse(prefix)?;
        let tree = self.store.commit_info(self.resolve_rev(rev)?)?.tree;
        let dir = match self.store.lookup(tree, key.as_str())? {
            None => return Err(DbError::NotFound { key }),
            Some(e) if e.kind != EntryKind::Dir => return Err(DbError::NotADirectory { key }),
            Some(e) => e,
        };
        Ok(self
            .store
            .tree(dir.id)?
            .entries()
            .iter()
            .filter_map(|e| {
                let kind = match e.kind {
                    EntryKind::Value(m) => NodeKind::Value(m),
                    EntryKind::Dir => NodeKind::Dir,
                    EntryKind::Submodule => return None,
                };
                Some(ListEntry {
                    name: e.name.to_string(),
                    kind,
                })
            })
            .collect())
    }

    /// Every key committed at `rev`, sorted.
    pub fn list_recursive_at(&self, rev: &str) -> Result<Vec<String>> {
        let tree = self.store.commit_info(self.resolve_rev(rev)?)?.tree;
        let mut out = Vec::new();
        self.store.walk_values(tree, "", &mut |path, _| {
            out.push(path.to_owned());
            Ok(())
        })?;
        Ok(out)
    }

    /// The keys that differ between commits `a` and `b` (as seen going from `a` to `b`).
    pub fn diff(&self, a: &str, b: &str) -> Result<Vec<DiffEntry>> {
        let ta = self.store.commit_info(self.resolve_rev(a)?)?.tree;
        let tb = self.store.commit_info(self.resolve_rev(b)?)?.tree;
        Ok(self
            .store
            .diff_trees(ta, tb)?
            .into_iter()
            .map(|c| DiffEntry {
                key: c.path,
                change: match (c.old, c.new) {
                    (None, _) => DiffKind::Added,
                    (_, None) => DiffKind::Deleted,
                    _ => DiffKind::Modified,
                },
            })
            .collect())
    }

    /// Node, head, clocks and the uncommitted keys.
    pub fn status(&self) -> Status {
        self.status_summary(usize::MAX)
    }

    /// [`GitDb::status`] listing at most `max` uncommitted changes (`dirty_count` still counts
    /// them all): what a monitor polls, which should not grow with a bulk load.
    pub fn status_summary(&self, max: usize) -> Status {
        let st = self.read_state();
        Status {
            node: self.node.to_string(),
            branch: self.branch.clone(),
            head: st.head.map(|h| h.to_string()),
            clock: st.clock.to_string(),
            hlc: st.hlc.to_string(),
            dirty_count: st.working.len(),
            dirty: st
                .working
                .iter()
                .take(max)
                .map(|(k, c)| DirtyKey {
                    key: format!("/{k}"),
                    change: match c {
                        Change::Set(_) => "set",
                        Change::Delete => "delete",
                    },
                })
                .collect(),
            visibility_scans: self.visibility_scans(),
            peers: self.peers(),
        }
    }
}

/// The message of a gitdb commit: the user's text, a blank line, the stamp trailers.
fn commit_message(user: &str, stamp: &CommitStamp) -> String {
    let user = user.trim();
    let user = if user.is_empty() {
        "gitdb commit"
    } else {
        user
    };
    format!("{user}\n\n{}", stamp.trailers())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The stamp of `id`, or, for a commit made by stock git, of its nearest stamped first-parent
/// ancestor (so a plain `git commit` does not reset the clock). Bounded: a long stock-git
/// history without stamps yields an empty stamp rather than a long walk.
fn nearest_stamp(store: &Store, mut id: ObjectId) -> Result<CommitStamp> {
    for _ in 0..64 {
        let info = store.commit_info(id)?;
        let stamp = CommitStamp::from_message(&info.message);
        if stamp.node.is_some() || !stamp.clock.is_empty() {
            return Ok(stamp);
        }
        match info.parents.first() {
            Some(p) => id = *p,
            None => break,
        }
    }
    Ok(CommitStamp::default())
}

fn take_writer_lock(path: &Path, git_dir: &Path) -> Result<File> {
    let io_err = |source: std::io::Error| journal_io(path)(source);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(DbError::Locked {
                path: git_dir.to_owned(),
                pid: if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid.to_owned()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    // The pid is only for the message a second writer gets: on a full disk it may not fit,
    // which must not keep the writer from opening.
    let pid = file
        .set_len(0)
        .and_then(|()| file.seek(std::io::SeekFrom::Start(0)))
        .and_then(|_| write!(file, "{}", std::process::id()));
    if let Err(e) = pid {
        log::warn!("cannot write the pid into {}: {e}", path.display());
    }
    Ok(file)
}

/// Records a delete of `path` (value or prefix): everything staged below it is dropped and one
/// tombstone hides what is committed there.
fn apply_delete(working: &mut Working, path: &str) {
    if path.is_empty() {
        working.clear();
    } else {
        clear_below(working, path);
    }
    working.insert(path.to_owned(), Change::Delete);
}

/// Records a set of `path`. A value can only go where no directory is visible, so what is
/// staged below it can only be tombstones of a directory it replaces: the value hides that
/// directory itself, and they go (a commit then has no edits below a value).
fn apply_set(working: &mut Working, path: String, value: StagedValue) {
    clear_below(working, &path);
    working.insert(path, Change::Set(value));
}

/// Drops everything staged strictly below `path` (not the root).
fn clear_below(working: &mut Working, path: &str) {
    // `0` follows `/` in byte order: the range is exactly the keys under `path/`.
    let below: Vec<String> = working
        .range(format!("{path}/")..format!("{path}0"))
        .map(|(k, _)| k.clone())
        .collect();
    for k in below {
        working.remove(&k);
    }
}

/// Applies one journal record (other than `Base`) to the working layer.
fn apply_record(
    store: &Store,
    working: &mut Working,
    pending: &mut Pending,
    record: Record,
) -> Result<()> {
    match record {
        Record::Base { .. } | Record::Generation(_) => {}
        Record::SetInline { key, mode, data } => {
            let id = store.hash_blob(&data)?;
            let size = data.len() as u64;
            pending.insert(id, Bytes::from(data));
            apply_set(working, key, StagedValue { id, mode, size });
        }
        Record::Set {
            key,
            mode,
            id,
            size,
        } => {
            let value = StagedValue {
                id: journal::from_raw(&id),
                mode,
                size,
            };
            apply_set(working, key, value);
        }
        Record::Delete { key } => apply_delete(working, &key),
        Record::Batch(records) => {
            for r in records {
                apply_record(store, working, pending, r)?;
            }
        }
    }
    Ok(())
}

/// Applies journal records in order; `base` ends as the head the last `Base` record names.
fn apply_records(
    store: &Store,
    working: &mut Working,
    pending: &mut Pending,
    base: &mut Option<Option<ObjectId>>,
    records: Vec<Record>,
) -> Result<()> {
    for record in records {
        if let Record::Base { head } = record {
            *base = Some(head.as_ref().map(journal::from_raw));
        } else {
            apply_record(store, working, pending, record)?;
        }
    }
    Ok(())
}

/// The paths whose change differs between two working layers.
fn working_diff(old: &Working, new: &Working) -> Vec<String> {
    let mut out: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(old.keys().filter(|k| !new.contains_key(k)).cloned());
    out
}

fn set_record(key: &str, v: StagedValue) -> Record {
    Record::Set {
        key: key.to_owned(),
        mode: v.mode,
        id: journal::raw_id(v.id),
        size: v.size,
    }
}

fn working_records<'a>(
    working: &'a Working,
    pending: &'a Pending,
) -> impl Iterator<Item = Record> + 'a {
    working.iter().map(|(key, change)| match change {
        Change::Set(v) => match pending.blobs.get(&v.id) {
            Some(data) => Record::SetInline {
                key: key.clone(),
                mode: v.mode,
                data: data.to_vec(),
            },
            None => set_record(key, *v),
        },
        Change::Delete => Record::Delete { key: key.clone() },
    })
}

/// The half-open range of overlay paths strictly below `path`.
fn below<'a>(working: &'a Working, path: &str) -> impl Iterator<Item = &'a Change> + use<'a> {
    working
        .range::<String, _>(working::below_bounds(path))
        .map(|(_, c)| c)
}

/// The blobs the staged sets refer to.
fn staged_ids(working: &Working) -> std::collections::HashSet<ObjectId> {
    working
        .values()
        .filter_map(|c| match c {
            Change::Set(v) => Some(v.id),
            Change::Delete => None,
        })
        .collect()
}

fn has_set_under(working: &Working, path: &str) -> bool {
    working.has_set_under(path)
}

fn has_delete_under(working: &Working, path: &str) -> bool {
    below(working, path).any(|c| matches!(c, Change::Delete))
}

/// Whether a change staged at a proper ancestor of `key` hides the committed entry at `key`
/// (a delete of the ancestor, or a value set where a directory was).
fn hidden_by_ancestor(working: &Working, key: &Key) -> bool {
    key.ancestors().any(|a| working.contains_key(a))
}

/// Whether a tombstone lies at `path` or at a directory between `prefix` and it: what the
/// search for a visible value below `prefix` skips on its way to `path`.
fn deleted_below(working: &Working, prefix: &str, path: &str) -> bool {
    let deleted = |p: &str| working.get(p) == Some(&Change::Delete);
    let rest_start = if prefix.is_empty() {
        0
    } else {
        prefix.len() + 1
    };
    deleted(path)
        || path[rest_start..]
            .match_indices('/')
            .any(|(i, _)| deleted(&path[..rest_start + i]))
}

/// Whether the committed value at `path` (below the visible directory `prefix`) is hidden by a
/// change at it or at a directory between `prefix` and it.
fn hidden_below(working: &Working, prefix: &str, path: &str) -> bool {
    if working.is_empty() {
        return false;
    }
    if working.contains_key(path) {
        return true;
    }
    let rest_start = if prefix.is_empty() {
        0
    } else {
        prefix.len() + 1
    };
    path[rest_start..]
        .match_indices('/')
        .any(|(i, _)| working.contains_key(&path[..rest_start + i]))
}

#[cfg(test)]
mod tests;
