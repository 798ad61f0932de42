//! gitdb: a distributed key-value store kept in a real git repository.
//!
//! Layers, bottom up (see `DESIGN.md` in the shared folder and the README):
//! - [`store`] (GitFs): the git repository through gix — objects, trees, commits, refs, caches.
//! - [`db`] (GitDb): keys, the journaled working layer, commit/rollback, history, clocks.
//! - [`merge`]: deterministic, convergent three-way merge of two heads (LastWriteWins,
//!   KeepBoth, Custom), merge commits every node writes identically.
//! - [`fuse`]: the key tree as a FUSE filesystem, its `/.gitdb/` control directory, and the
//!   threads that keep kernel caches right when HEAD moves (used by `gitdb-mount`).
//! - [`door`]: the daemon's local unix socket, through which the `gitdb` client drives a
//!   daemon that holds the repository's writer lock.
//! - [`memory`]: giving memory the allocator freed back to the system (glibc's malloc_trim),
//!   the one platform call the layers need; kept out of them so db and store name no libc.
//! - [`notify`]: readiness and stopping notices to systemd (`Type=notify` units).
//! - [`remote`]: a plain git remote as hub and backup (`--remote URL`): fetch, merge, push
//!   through the git CLI.
//! - [`watch`]: `gitdb watch`, following committed changes under a prefix and running a
//!   command per change.
//!
//! Each layer only calls the one below it.

pub mod db;
pub mod defaults;
pub mod door;
pub mod fuse;
pub mod gossip;
pub mod memory;
pub mod merge;
pub mod notify;
pub mod remote;
pub mod store;
pub mod watch;

pub use db::{
    ClockOrdering, CommitOutcome, DbError, GitDb, HeadEvent, HeadOrigin, Hlc, Key, KeyError,
    NodeId, Options, VectorClock,
};
pub use store::{Bytes, ObjectId, ValueMode};
