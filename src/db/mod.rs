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
//! 4. `subscribers` — taken alone, after the others are released, to send [`HeadEvent`]s
//!    (and, beside it, the head watch, which is no lock of ours: see [`events`]).
//!
//! `meta` (the node-local modes and owners, see [`meta`]) is a leaf: taken alone by `stat`-time
//! lookups and chmod/chown, or under `journal` by a delete or rename that must move or drop
//! metadata in the same serialized order — never while `state` is held, never the reverse.
//! `witnesses` (see [`witness`]) is a leaf lock taken while `state` is held shared.
//!
//! Only one process writes a repository: opening for writing takes an exclusive `flock` on
//! `<git-dir>/gitdb/lock`; a second writer gets [`DbError::Locked`] with the holder's pid.
//!
//! # Files
//! - `error.rs`: [`DbError`] and [`Result`].
//! - `open.rs`: [`GitDb::open`], the writer lock, replaying the journal.
//! - `read.rs`: the visible state (`get`, `stat`, listings), overlay over head.
//! - `write.rs`: set, delete and rename, staged in the working layer.
//! - `journaling.rs`: the working layer to and from its journal: append, compaction, `sync`.
//! - `staged.rs`: the refs that keep staged blobs from `git gc`.
//! - `commit.rs`: commit and rollback.
//! - `head.rs`: adopting a moved head; a read-only handle following the writer's journal.
//! - `events.rs`: [`HeadEvent`]s and their subscribers; the head and clock as a tokio `watch`.
//! - `tasks.rs`: the background tasks every node runs (refresh, autocommit) and their guard.
//! - `failures.rs`: the last failure of each background operation, for `status`.
//! - `metadata.rs`: the verbs on the node-local modes and owners.
//! - `status.rs`: [`Status`].
//! - `history.rs`: commits, log, diff and reads at a revision.
//! - `clock.rs`: node ids, vector clocks and hybrid timestamps, and how they live in commits.
//! - `conflicts.rs`: the conflicted keys a merge commit records.
//! - `stamp.rs`: the one rule for the stamp that orders a commit (its own, or inherited by a
//!   stock-git commit), read by db and merge alike.
//! - `follow.rs`: following a branch's committed head from outside (`gitdb watch`).
//! - `journal/`: the journal file: records, replay, reset in place; its framing (`frame.rs`,
//!   shared with `meta/`) and readers following it (`follower.rs`).
//! - `key.rs`: keys, the validated and normalized names of values.
//! - (`crate::memory`, outside db: giving freed memory back to the system after the head moves.)
//! - `meta/`: the node-local metadata (permission bits, owners): the map, its log file
//!   (`log_file.rs`), both under one lock (`meta_store.rs`).
//! - `metrics.rs`: the node's metrics in the Prometheus exposition format.
//! - `replication.rs`: the hook through which gossip answers `sync` and reports its peers.
//! - `transfer.rs`: the transfer verbs: what gossip moves between nodes.
//! - `witness.rs`: where a committed directory was last found still visible.
//! - `working.rs`: the working layer's map, with an index of the paths that are set.
//! - `testfs.rs`: a small tmpfs of its own for the tests that fill the disk.
//! - `tests/`: unit and property tests on real repositories, a file per topic.

pub mod clock;
mod commit;
pub mod conflicts;
mod error;
mod events;
mod failures;
pub mod follow;
mod head;
pub mod history;
pub mod journal;
mod journaling;
pub mod key;
pub mod meta;
mod metadata;
pub mod metrics;
mod open;
mod read;
pub mod replication;
mod staged;
pub(crate) mod stamp;
mod status;
pub mod tasks;
#[cfg(test)]
mod testfs;
pub mod transfer;
mod witness;
mod working;
mod write;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use crate::db::clock::{ClockError, ClockOrdering, CommitStamp, Hlc, NodeId, VectorClock};
pub use crate::db::commit::CommitOutcome;
pub use crate::db::error::{DbError, Result};
use crate::db::events::Subscriber;
pub use crate::db::events::{HeadEvent, HeadMove, HeadOrigin, HeadState};
pub use crate::db::failures::{FailedOp, LastErrors};
pub use crate::db::history::{CommitInfo, DiffEntry, DiffKind, LogEntry};
use crate::db::journal::Journal;
pub use crate::db::key::{Key, KeyError};
use crate::db::meta::MetaStore;
pub use crate::db::meta::{Defaults as MetaDefaults, Meta, MetaError, NodeType};
pub use crate::db::replication::{PeerStatus, ReplicationCounters, Replicator};
pub use crate::db::status::{DirtyKey, Status};
pub use crate::db::tasks::{DbTasks, TaskOptions};
pub use crate::db::transfer::{ExportStats, Receiver};
use crate::db::witness::Witnesses;
use crate::db::working::Working;
use crate::store::{CacheConfig, Store};
pub use crate::store::{EditBlob, EntryEdit, Item};
// The data model's nouns, re-exported because they are the db's vocabulary: its verbs take and
// return them (a value's bytes, a blob or commit id, a value's mode, what a tree entry at a
// revision is), so the layers above name them through the db, their only door, and never the
// store (docs/design.md).
pub use crate::store::{Bytes, EntryKind, ObjectId, TreeEntry, ValueMode};

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
    /// The head and clock for tokio tasks (see [`events`]), made on the first
    /// [`GitDb::watch_head`].
    head_watch: std::sync::OnceLock<tokio::sync::watch::Sender<HeadState>>,
    /// The background tasks' shared state: last activity, last failures (see [`tasks`]).
    tasks: tasks::TaskState,
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
    // ----- accessors --------------------------------------------------------------------------

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The store underneath, for merge (plumbing that reads and writes trees) and the crate's
    /// own unit tests. Not public: fuse, gossip, door, the binaries and the integration tests
    /// go through the db's verbs (see the layer rules in docs/design.md), which the compiler
    /// now checks instead of review.
    pub(crate) fn store(&self) -> &Store {
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
}

#[cfg(test)]
mod tests;
