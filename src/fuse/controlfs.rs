//! The control directory `/.gitdb/` as the filesystem serves it: its attributes, the bytes of
//! its generated files, and `ctl` commands with their deferred reply. What the files say and
//! what the commands do is [`super::control`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType};

use super::attrs::{ZERO_TTL, kind_of};
use super::coherence::KernelTask;
use super::control::{self, CtlNode};
use super::errno::errno;
use super::fscore::{FsCore, now_ms};
use super::shared::lock;
use super::stats;

use crate::db::{EntryKind, Stat};

impl FsCore {
    pub(super) fn ctl_attr(
        &self,
        path: &str,
        node: &CtlNode,
    ) -> Result<(FileAttr, Duration), Errno> {
        if let CtlNode::History { commit, path: p } = node {
            // Existence first, so probing missing history paths costs no inode number.
            let db = self.db();
            db.commit_info(*commit).map_err(|_| Errno::ENOENT)?;
            if !p.is_empty() && !matches!(db.entry_at_commit(*commit, p), Ok(Some(_))) {
                return Err(Errno::ENOENT);
            }
        }
        let ino = self.ino_of(path);
        let now = SystemTime::now();
        let dir = |perm| Ok((self.attr(ino, FileType::Directory, perm, 0, now), ZERO_TTL));
        match node {
            CtlNode::Dir | CtlNode::HistoryDir => dir(0o555),
            CtlNode::Ctl => Ok((
                self.attr(ino, FileType::RegularFile, 0o200, 0, now),
                ZERO_TTL,
            )),
            CtlNode::Status
            | CtlNode::Head
            | CtlNode::Log
            | CtlNode::Conflicts
            | CtlNode::Metrics => {
                let size = self.render(node).len() as u64;
                Ok((
                    self.attr(ino, FileType::RegularFile, 0o444, size, now),
                    ZERO_TTL,
                ))
            }
            CtlNode::History { commit, path: p } => {
                let db = self.db();
                let info = db.commit_info(*commit).map_err(|_| Errno::ENOENT)?;
                let mtime = UNIX_EPOCH + Duration::from_secs(info.seconds.max(0) as u64);
                // A commit never changes: its view can be cached for as long as keys are.
                let ttl = self.s.cfg.ttl;
                if p.is_empty() {
                    return Ok((self.attr(ino, FileType::Directory, 0o555, 0, mtime), ttl));
                }
                let entry = db
                    .entry_at_commit(*commit, p)
                    .map_err(|_| Errno::EIO)?
                    .ok_or(Errno::ENOENT)?;
                Ok(match entry.kind {
                    EntryKind::Value(mode) => {
                        let (kind, perm) = kind_of(mode);
                        let size = db.value_size(entry.id).map_err(|_| Errno::EIO)?;
                        (self.attr(ino, kind, perm & 0o555, size, mtime), ttl)
                    }
                    EntryKind::Dir => (self.attr(ino, FileType::Directory, 0o555, 0, mtime), ttl),
                    EntryKind::Submodule => return Err(Errno::ENOENT),
                })
            }
        }
    }

    pub(super) fn render(&self, node: &CtlNode) -> Vec<u8> {
        let err = lock(&self.s.last_error).latest().cloned();
        let kept: Vec<String> = lock(&self.s.empty_dirs).iter().cloned().collect();
        // Only those still without a key below them are really empty.
        let empty = kept
            .into_iter()
            .filter(|d| !matches!(self.db().stat(d), Ok(Some(Stat::Dir))))
            .map(|d| format!("/{d}"))
            .collect();
        control::render(
            node,
            self.db(),
            err.as_ref(),
            empty,
            stats::Snapshot {
                busy_poll: self.s.busy.get().map(|b| b.snapshot()).unwrap_or_default(),
                ..self.s.stats.snapshot()
            },
        )
    }

    /// Runs one control command written to `/.gitdb/ctl`; the bytes written, or the errno
    /// the write fails with (the reason goes to `status`). Its reply must go out through
    /// [`Self::after_kernel`], after whatever the command's change queued there (a
    /// rollback's or an adopted head's invalidations): once `echo rollback > ctl` returns, the
    /// kernel no longer shows what was dropped.
    pub(super) fn ctl(&self, data: &[u8]) -> Result<u32, Errno> {
        let len = data.len() as u32;
        control::execute(self.db(), data, now_ms())
            .map(|_| {
                self.s.clear_last_error("ctl");
                len
            })
            .map_err(|e| {
                // In the log too: `status` keeps only the last error, and a daemon killed
                // right after has no status left to read.
                log::warn!("ctl: {e}");
                self.s.set_last_error("ctl", format!("ctl: {e}"));
                errno(e.errno())
            })
    }

    /// Runs `reply` on the invalidation thread once every task queued there before it is
    /// done.
    pub(crate) fn after_kernel(&self, reply: impl FnOnce() + Send + 'static) {
        self.s.tell_kernel(KernelTask::Reply(Box::new(reply)));
    }
}
