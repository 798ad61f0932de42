//! Times: what `stat` shows as atime, mtime and ctime. Git keeps no times, so committed nodes
//! show their head commit's time, and what changed through the mount is recorded here, per
//! path, for the mount's lifetime.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::FileAttr;

use super::fscore::FsCore;
use super::shared::lock;
use crate::paths::split;

/// What `stat` shows as atime, mtime and ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Times {
    pub(super) atime: SystemTime,
    pub(super) mtime: SystemTime,
    pub(super) ctime: SystemTime,
}

impl Times {
    pub(super) fn all(t: SystemTime) -> Times {
        Times {
            atime: t,
            mtime: t,
            ctime: t,
        }
    }

    /// Each time no earlier than `floor`: a commit taken after a change is newer than it.
    pub(super) fn at_least(self, floor: SystemTime) -> Times {
        Times {
            atime: self.atime.max(floor),
            mtime: self.mtime.max(floor),
            ctime: self.ctime.max(floor),
        }
    }

    pub(super) fn of(attr: &FileAttr) -> Times {
        Times {
            atime: attr.atime,
            mtime: attr.mtime,
            ctime: attr.ctime,
        }
    }
}

impl FsCore {
    /// The commit time of the head (mtime of committed values and directories).
    pub(super) fn head_time(&self) -> SystemTime {
        let head = self.db().head();
        let mut cached = lock(&self.s.head_time);
        if cached.0 != head || head.is_none() {
            let t = head
                .and_then(|h| self.db().commit_info(h).ok())
                .map(|c| UNIX_EPOCH + Duration::from_secs(c.seconds.max(0) as u64))
                .unwrap_or(self.s.start);
            *cached = (head, t);
        }
        cached.1
    }

    /// The times of `path`: what changed through the mount, else `base`. For something the
    /// head holds (`committed`), the head's time `base` is a floor.
    pub(super) fn times_of(&self, path: &str, base: SystemTime, committed: bool) -> Times {
        match lock(&self.s.times).get(path) {
            Some(t) if committed => t.at_least(base),
            Some(t) => *t,
            None => Times::all(base),
        }
    }

    /// `t` with the mtime and ctime of a write still in an open handle.
    pub(super) fn written_at(mut t: Times, modified: SystemTime) -> Times {
        t.mtime = modified;
        t.ctime = t.ctime.max(modified);
        t
    }

    /// Something changed through the mount: autocommit's quiet period starts again, even
    /// for a change the db does not hold yet (a file created but not yet flushed).
    pub(super) fn note_change(&self) {
        self.s.db.note_activity();
    }

    /// The contents of `path` changed at `at`: its mtime and ctime (never back: `at` may be
    /// an mtime set by utimens on a writer still open, see `setattr`).
    pub(super) fn content_changed(&self, path: &str, at: SystemTime) {
        self.note_change();
        let mut times = lock(&self.s.times);
        // A path changed before (a directory gaining entries, a file written again) keeps
        // its key: no allocation per change.
        match times.get_mut(path) {
            Some(t) => {
                t.mtime = at;
                t.ctime = t.ctime.max(at);
            }
            None => {
                times.insert(path.to_owned(), Times::all(at));
            }
        }
    }

    /// A name was added to or removed from the directory holding `path`: the directory's
    /// mtime and ctime, as POSIX requires of create, mkdir, unlink, rmdir, rename, symlink.
    pub(super) fn entry_changed(&self, path: &str) {
        self.content_changed(split(path).0, SystemTime::now());
    }

    /// `path` was made now: all its times, and its directory's.
    pub(super) fn created(&self, path: &str) {
        let now = SystemTime::now();
        lock(&self.s.times).insert(path.to_owned(), Times::all(now));
        self.content_changed(split(path).0, now);
    }

    /// `path` (a value or an empty directory) is gone: forget its times, change its
    /// directory's.
    pub(super) fn removed(&self, path: &str) {
        lock(&self.s.times).remove(path);
        self.entry_changed(path);
    }

    /// The attributes of `path` changed (chmod, chown, utimens): its ctime only, the other
    /// times as they were (`before`), even for a committed value that this change stages.
    pub(super) fn status_changed(&self, path: &str, before: Times) {
        self.note_change();
        lock(&self.s.times).insert(
            path.to_owned(),
            Times {
                ctime: SystemTime::now(),
                ..before
            },
        );
    }
}
