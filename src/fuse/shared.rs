//! [`Shared`]: the state that the filesystem callbacks and the background threads share, and
//! the order its locks are taken in. Its methods live with the concept they serve (coherence,
//! names, open files); this file holds the struct, its construction and the few accessors the
//! background threads use.
//!
//! Locks (all `std::sync::Mutex`, none held while calling the notifier): `inodes`,
//! `empty_dirs`, `pending`, `times`, `nlinks`, `handles` (the handle and open-file tables),
//! `orphans`, `kernel` (the task sender) and those inside [`DirSnapshots`], [`ValueFiles`] and
//! [`busy::BusyPoll`] are leaves taken briefly. An open file's lock ([`OpenFile`](super::handles::OpenFile), one per
//! open inode) may be held across a db call and while taking a leaf (the `handles` table
//! included), never the other way round, and never two open files' locks at once.
//! Openings for writing and truncates may wait, bounded, for the notifier thread (see
//! `Shared::changing` in [`super::coherence`]), never while holding a lock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use super::coherence::{CHANGE_STRIPES, KernelTask};
use super::config::FsConfig;
use super::control;
use super::dirs::DirSnapshots;
use super::inodes::InodeTable;
use super::open::Handles;
use super::orphans::Orphans;
use super::times::Times;
use super::valuefiles::ValueFiles;
use super::{busy, stats};

use crate::db::{GitDb, ObjectId, ValueMode};

/// State shared by the filesystem callbacks and the background threads.
pub struct Shared {
    pub(super) db: Arc<GitDb>,
    pub(super) cfg: FsConfig,
    pub(super) inodes: Mutex<InodeTable>,
    /// Directories made by mkdir (or left empty by a removal) that have no key below them.
    pub(super) empty_dirs: Mutex<BTreeSet<String>>,
    /// Files created through the mount and not flushed yet: they exist for the kernel (and
    /// are listed) but the store gets them only as whole values when their writer flushes, so
    /// a commit never records the empty middle state of a file being written. A flush sets
    /// the value in the db before it removes the name from here, so whoever asks whether a
    /// name exists asks here first and the db second, and never finds it in neither.
    pub(super) pending: Mutex<BTreeMap<String, ValueMode>>,
    pub(super) handles: Mutex<Handles>,
    /// Inodes whose name a rename gave to another file, for whoever still holds them.
    pub(super) orphans: Mutex<Orphans>,
    /// Set by [`Shared::flush_open_files`] at shutdown: writes into open files after the
    /// last flush would be lost, so they fail instead.
    pub(super) closing: std::sync::atomic::AtomicBool,
    pub(super) next_fh: AtomicU64,
    /// Times of what changed through the mount, per path: a value's last write, a directory's
    /// last added or removed name, any node's last chmod/utimens/rename (ctime). Committed
    /// values and directories without an entry show their head commit's time.
    pub(super) times: Mutex<BTreeMap<String, Times>>,
    /// Link counts of directories given out, so a directory's getattr (one per create in it,
    /// since a new name drops its attributes in the kernel) does not list it again. Adjusted
    /// by mkdir and rmdir, forgotten for both sides of a rename and wholly when values change
    /// outside the mount's view (a file made or removed changes no count). Leaf lock.
    pub(super) nlinks: Mutex<BTreeMap<String, u32>>,
    /// Bumped whenever `nlinks` changes: a count computed across a bump may be stale and is
    /// not kept.
    pub(super) nlinks_gen: AtomicU64,
    pub(super) last_error: Mutex<super::control::LastErrors>,
    /// Whether `last_error` holds anything: read by every flush without taking the lock.
    errors_on_record: AtomicBool,
    /// Work for the thread that owns the kernel notifier (see [`super::background`]).
    pub(super) kernel: Mutex<Sender<KernelTask>>,
    /// Change counters that let that thread tell whether a value it was asked to put in the
    /// page cache is still what the kernel should hold: one per stripe of inode numbers
    /// (bumped by every callback that can change a file's cached bytes or size) and one for
    /// the whole mount (bumped by rollbacks and by moves of HEAD).
    pub(super) changes: [AtomicU64; CHANGE_STRIPES],
    pub(super) epoch: AtomicU64,
    /// The inode whose value the notifier thread is putting in the page cache right now (0:
    /// none), so that an opening for writing waits for that to finish before a shared
    /// mapping can change the pages without telling this process.
    pub(super) prefilling: AtomicU64,
    pub(super) head_time: Mutex<(Option<ObjectId>, SystemTime)>,
    pub(super) start: SystemTime,
    pub(super) files: Arc<ValueFiles>,
    /// Listings handed to READDIR (which comes without a handle).
    pub(super) dirs: DirSnapshots,
    /// Requests served and cache work done, for `status`.
    pub(crate) stats: stats::Stats,
    /// Set once the session exists, when busy polling is on.
    pub(crate) busy: OnceLock<busy::BusyPoll>,
    /// The process id of the attribute warmer (see [`super::warmer`]), 0 until it runs: its
    /// GETATTRs are counted as warmings.
    pub(crate) warmer_pid: std::sync::atomic::AtomicU32,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn new(
        db: Arc<GitDb>,
        cfg: FsConfig,
        kernel: Sender<KernelTask>,
    ) -> std::io::Result<Shared> {
        let files = match ValueFiles::open(
            &db.git_dir().join("gitdb"),
            cfg.value_cache,
            !db.is_read_only(),
        ) {
            Ok(files) => files,
            // A read-only mount of a repository it may not write to: it writes no values,
            // so it only loses the plain copies (a cache of size 0 in a private directory).
            Err(e) if db.is_read_only() => {
                log::warn!("no value cache in {}: {e}", db.git_dir().display());
                let private = std::env::temp_dir().join(format!("gitdb-{}", std::process::id()));
                ValueFiles::open(&private, 0, true)?
            }
            Err(e) => return Err(e),
        };
        let files = Arc::new(files);
        Ok(Shared {
            db,
            cfg,
            inodes: Mutex::new(InodeTable::new()),
            empty_dirs: Mutex::new(BTreeSet::new()),
            pending: Mutex::new(BTreeMap::new()),
            handles: Mutex::new(Handles::default()),
            orphans: Mutex::new(Orphans::default()),
            closing: std::sync::atomic::AtomicBool::new(false),
            next_fh: AtomicU64::new(1),
            times: Mutex::new(BTreeMap::new()),
            nlinks: Mutex::new(BTreeMap::new()),
            nlinks_gen: AtomicU64::new(0),
            last_error: Mutex::new(super::control::LastErrors::default()),
            errors_on_record: AtomicBool::new(false),
            kernel: Mutex::new(kernel),
            changes: std::array::from_fn(|_| AtomicU64::new(0)),
            epoch: AtomicU64::new(0),
            prefilling: AtomicU64::new(0),
            head_time: Mutex::new((None, SystemTime::now())),
            start: SystemTime::now(),
            files,
            dirs: DirSnapshots::default(),
            stats: stats::Stats::default(),
            busy: OnceLock::new(),
            warmer_pid: std::sync::atomic::AtomicU32::new(0),
        })
    }

    pub fn db(&self) -> &Arc<GitDb> {
        &self.db
    }

    /// Every callback starts here, for a request from thread `pid`: counts the request and
    /// keeps the worker polling (or, on a saturated machine, near its requester). The
    /// warmer's requests are not followed: nobody waits for them.
    pub(crate) fn request(&self, op: stats::Op, pid: u32) {
        self.stats.request(op);
        if let Some(busy) = self.busy.get() {
            let warmer = pid == self.warmer_pid.load(Ordering::Relaxed);
            busy.request(if warmer { 0 } else { pid });
        }
    }

    /// The mount-relative path of `ino`, if it still has one.
    pub(crate) fn path_of_ino(&self, ino: u64) -> Option<String> {
        lock(&self.inodes).path(ino).map(str::to_owned)
    }

    /// The inode of `/.gitdb/history` if the kernel may have listed it: its listing changes
    /// with every commit.
    pub(crate) fn history_ino(&self) -> Option<u64> {
        lock(&self.inodes).get(&format!("{}/history", control::DIR))
    }

    /// Records a failure of `op` for `status` (and the log).
    pub fn set_last_error(&self, op: &str, msg: String) {
        log::warn!("{msg}");
        let mut errors = lock(&self.last_error);
        errors.failed(op, msg, crate::defaults::now_ms());
        self.errors_on_record.store(true, Ordering::Release);
    }

    /// A write of `path` was stored: an earlier failure to store it leaves `status`. Every
    /// flush comes here, so with no failure on record it is one atomic load (no lock, no
    /// formatting).
    pub fn clear_write_error(&self, path: &str) {
        if self.errors_on_record.load(Ordering::Acquire) {
            self.clear_last_error(&format!("write /{path}"));
        }
    }

    /// `op` succeeded: its failure, if any, leaves `status`. (A failure recorded after the
    /// flag was read happened after this success, and rightly stays.)
    pub fn clear_last_error(&self, op: &str) {
        if !self.errors_on_record.load(Ordering::Acquire) {
            return;
        }
        let mut errors = lock(&self.last_error);
        errors.succeeded(op);
        self.errors_on_record
            .store(!errors.is_empty(), Ordering::Release);
    }
}
