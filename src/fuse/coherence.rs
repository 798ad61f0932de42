//! Cache coherence with the kernel: what lets the notifier thread (see [`super::background`])
//! put a value in the page cache only if it is still current, and what it invalidates when
//! values change outside the kernel's view (HEAD moved, a rollback).
//!
//! Change tokens: one counter per stripe of inode numbers, bumped by every callback that can
//! change a file's bytes or size, and one epoch for the whole mount. A prefill carries the
//! token taken before its bytes were read and lands only if the token is unchanged.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::shared::{Shared, lock};
use crate::paths::split;

use crate::db::Stat;

pub(super) const CHANGE_STRIPES: usize = 64;

/// Values up to this size are put in the kernel's page cache when their writer flushes them,
/// so the first read after a write needs no READ round trip.
pub const PREFILL_MAX: usize = 64 << 10;

/// A snapshot of the change counters that concern one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChangeToken {
    stripe: u64,
    epoch: u64,
}

/// Work for the thread that owns the kernel notifier.
pub(crate) enum KernelTask {
    /// The db announced a change (a commit, an adopted head, a rollback).
    News(crate::db::HeadEvent),
    /// Sends a deferred reply once every task queued before it is done: a `ctl` command
    /// returns only after the kernel's caches agree with its result.
    Reply(Box<dyn FnOnce() + Send>),
    /// `data` is the whole value of `ino` as of `token`: put it in the page cache unless the
    /// file changed since.
    Prefill {
        ino: u64,
        token: ChangeToken,
        data: Vec<u8>,
    },
}

impl Shared {
    /// The change counters that concern `ino`, as of now.
    pub(crate) fn change_token(&self, ino: u64) -> ChangeToken {
        ChangeToken {
            stripe: self.changes[ino as usize % CHANGE_STRIPES].load(Ordering::SeqCst),
            epoch: self.epoch.load(Ordering::SeqCst),
        }
    }

    /// `ino`'s bytes or size may change: a prefill taken before this must not land.
    pub(super) fn file_changes(&self, ino: u64) {
        self.changes[ino as usize % CHANGE_STRIPES].fetch_add(1, Ordering::SeqCst);
    }

    /// `ino` is being opened for writing or truncated: bumps its counter, then waits for a
    /// prefill of it that is already past its check, so that prefill cannot land after this
    /// change. A prefill runs only while no writable handle is open on the file, so no WRITE
    /// holds a page it needs (WRITE only bumps); a READ of a concurrent reader can, and that
    /// READ may wait behind this very callback: hence the bound, after which the change goes
    /// on and the prefill's second check drops what it stored.
    pub(super) fn changing(&self, ino: u64) {
        self.file_changes(ino);
        let deadline = std::time::Instant::now() + Duration::from_millis(20);
        while self.prefilling.load(Ordering::SeqCst) == ino && std::time::Instant::now() < deadline
        {
            std::thread::yield_now();
        }
    }

    /// Marks `ino` as being prefilled (see [`Self::changing`]).
    pub(crate) fn set_prefilling(&self, ino: u64) {
        self.prefilling.store(ino, Ordering::SeqCst);
    }

    /// Values may change anywhere (rollback, HEAD moved): no earlier prefill may land.
    pub(crate) fn all_change(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Queues work for the notifier thread (never called with a lock a callback needs held
    /// by the notifier, since that thread only takes leaf locks).
    pub(super) fn tell_kernel(&self, task: KernelTask) {
        let _ = lock(&self.kernel).send(task);
    }

    /// What to tell the kernel after the values at `paths` changed outside its view (HEAD
    /// moved, or a rollback): the names to drop (parent ino, name) for each path and its
    /// ancestors, and the directories whose listing and attributes to drop. A path that is (now)
    /// a value or nothing gets a new inode number on its next lookup (see
    /// [`InodeTable::replace`](super::inodes::InodeTable::replace)), so open handles keep the old inode and the value they opened.
    pub(crate) fn inval_targets(&self, paths: &[String]) -> (Vec<(u64, String)>, Vec<u64>) {
        let replaced: Vec<&String> = paths
            .iter()
            .filter(|p| !matches!(self.db.stat(p), Ok(Some(Stat::Dir))))
            .collect();
        let mut entries = BTreeSet::new();
        let mut dirs = BTreeSet::new();
        let mut table = lock(&self.inodes);
        for path in paths {
            let mut cur = path.as_str();
            while !cur.is_empty() {
                let (parent, name) = split(cur);
                if let Some(pino) = table.get(parent) {
                    entries.insert((pino, name.to_owned()));
                    dirs.insert(pino);
                }
                if cur != path
                    && let Some(ino) = table.get(cur)
                {
                    dirs.insert(ino);
                }
                cur = parent;
            }
        }
        for path in replaced {
            table.replace(path);
        }
        (entries.into_iter().collect(), dirs.into_iter().collect())
    }
}
