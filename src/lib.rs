//! gitdb: a distributed key-value store kept in a real git repository.
//!
//! Layers, bottom up (see docs/design.md and the README):
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
//! - [`children`]: the node's child processes (git repack, the git CLI) end when it does.
//! - [`notify`]: readiness and stopping notices to systemd (`Type=notify` units).
//! - [`periodic`]: the one background-thread helper (named, stopped at once, joined on drop).
//! - [`durations`]: command-line durations and `--autocommit`, for both daemons.
//! - [`remote`]: a plain git remote as hub and backup (`--remote URL`): fetch, merge, push
//!   through the git CLI.
//! - `fault`, `fuzzing` (hidden): fault injection on the journal's and store's writes, and the
//!   bodies of the fuzz targets, shared by `fuzz/` and the stable tests.
//! - [`watch`]: `gitdb watch`, following committed changes under a prefix and running a
//!   command per change.
//! - [`cli`]: what the binaries' commands do once their flags are parsed, at the binaries'
//!   level (above every layer), so that `src/bin/` holds only clap structs and calls.
//!
//! Each layer only calls the one below it.
//!
//! # Lock poisoning
//! A panic is a bug, and it unwinds only the thread it happens on (a FUSE worker, a gossip
//! task, a door connection); the other threads keep serving. Every `std` lock in the crate is
//! taken with `unwrap_or_else(PoisonError::into_inner)`, that is, a lock a panicking thread
//! held is used as it was left, never refused. That is safe because of how the locked state is
//! changed everywhere: what a change needs is computed without the lock, or with it held
//! shared, and then put in place by single assignments or map inserts, none of which can
//! leave a half-made value; what must survive a crash is in the journal before the state
//! changes, and the journal's checksummed records make a torn append invisible. So a poisoned
//! lock holds a state the program could also have reached without the panic (at worst,
//! without that one change). Refusing every later request instead would turn one bug in one
//! request into a dead mount whose unsaved work could no longer be stored at unmount. A new
//! lock must keep to that rule, or return an error on poison and say why where it is defined.

// Docs link private items on purpose: they are written for the engineers who read the source
// (`cargo doc --document-private-items` renders every link), not only for the public API.
#![allow(rustdoc::private_intra_doc_links)]

pub mod children;
pub mod cli;
pub mod db;
pub mod defaults;
pub mod door;
pub mod durations;
#[doc(hidden)]
pub mod fault;
pub mod fuse;
#[doc(hidden)]
pub mod fuzzing;
pub mod gossip;
pub mod memory;
pub mod merge;
pub mod notify;
pub mod paths;
pub mod periodic;
pub mod remote;
pub mod store;
pub mod watch;

pub use db::{Bytes, ObjectId, ValueMode};
pub use db::{
    ClockOrdering, CommitOutcome, DbError, GitDb, HeadEvent, HeadOrigin, Hlc, Key, KeyError,
    NodeId, Options, VectorClock,
};
