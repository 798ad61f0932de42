//! rename: the db's atomic rename, plus moving what this layer keeps per path (kept empty
//! directories, pending files, inode numbers, times, link counts) and recording the inode a
//! replaced value leaves behind (see [`super::orphans`]).

use std::ffi::OsStr;

use fuser::{Errno, INodeNo, RenameFlags};

use super::control;
use super::errno::{db_err, lookup_err};
use super::fscore::FsCore;
use super::orphans::Orphan;
use super::shared::lock;
use super::times::Times;
use crate::paths::{at_or_below, below, split};

use crate::db::{DbError, Key, Stat, ValueMode};

impl FsCore {
    /// RENAME of `name` in `parent` to `newname` in `newparent` (flags: only
    /// RENAME_NOREPLACE).
    pub(crate) fn rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let from = self.child(parent, name)?;
        let to = self.child(newparent, newname)?;
        // Not EXDEV: `mv` would fall back to copying the whole control tree, history
        // included, into the store as keys.
        if control::is_under(&from) || control::is_under(&to) {
            return Err(Errno::EPERM);
        }
        let bits = flags.bits();
        if bits & !libc::RENAME_NOREPLACE != 0 {
            return Err(Errno::EINVAL);
        }
        self.do_rename(&from, &to, bits & libc::RENAME_NOREPLACE != 0)
    }
}

impl FsCore {
    pub(super) fn do_rename(&self, from: &str, to: &str, noreplace: bool) -> Result<(), Errno> {
        self.check_writable()?;
        if from == to {
            return Ok(());
        }
        // Before and after: a failed rename may have moved part of the way.
        self.s.forget_nlinks_around(from, to);
        let result = self.rename_inner(from, to, noreplace);
        self.s.forget_nlinks_around(from, to);
        result
    }

    pub(super) fn rename_inner(&self, from: &str, to: &str, noreplace: bool) -> Result<(), Errno> {
        if to.starts_with(&format!("{from}/")) {
            return Err(Errno::EINVAL);
        }
        Key::parse_value(to).map_err(|e| db_err(&DbError::Key(e)))?;
        let db = self.db();
        // A file still being written moves as the value it holds so far (empty); its writer's
        // flush then lands at the new name.
        self.materialize(from)?;
        let src = db.stat(from).map_err(|e| lookup_err(&e))?;
        let src_empty = src.is_none() && self.is_empty_dir(from);
        if src.is_none() && !src_empty {
            return Err(Errno::ENOENT);
        }
        // As for any new name (see `new_child`): a target directory gone under the kernel.
        if !self.is_dir(split(to).0)? {
            return Err(Errno::ESTALE);
        }
        // Pending before the db (see `Shared::pending`).
        let to_pending = self.pending_mode(to).is_some();
        let dst = db.stat(to).map_err(|e| lookup_err(&e))?;
        let dst_empty = dst.is_none() && self.is_empty_dir(to);
        let dst_pending = dst.is_none() && to_pending;
        if noreplace && (dst.is_some() || dst_empty || dst_pending) {
            return Err(Errno::EEXIST);
        }
        let src_is_dir = src_empty || matches!(src, Some(Stat::Dir));
        match (&dst, dst_empty) {
            (Some(Stat::Value { .. }), _) if src_is_dir => return Err(Errno::ENOTDIR),
            (None, false) if dst_pending && src_is_dir => return Err(Errno::ENOTDIR),
            (Some(Stat::Dir), _) if src_is_dir => return Err(Errno::ENOTEMPTY),
            (Some(Stat::Dir), _) => return Err(Errno::EISDIR),
            (None, true) if !src_is_dir => return Err(Errno::EISDIR),
            (None, true) if self.has_local_children(to) => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        // The node keeps its times under its new name (a committed value renamed becomes an
        // uncommitted one, which would otherwise show the mount's start time).
        let before = self.getattr_path(from).map(|(a, _)| Times::of(&a)).ok();
        let replaced = match dst {
            Some(Stat::Value {
                mode,
                size,
                id,
                committed,
            }) => lock(&self.s.inodes).get(to).map(|ino| {
                (
                    ino,
                    Orphan {
                        id,
                        mode,
                        size,
                        // The db may forget an uncommitted value once nothing names it.
                        data: (!committed).then(|| db.value(id).ok()).flatten(),
                    },
                )
            }),
            _ => None,
        };
        if !src_empty {
            db.rename(from, to).map_err(|e| db_err(&e))?;
        } else {
            // A directory only this layer knows moves its metadata (and that of the
            // directories below it) itself.
            db.rename_meta(from, to).map_err(|e| db_err(&e))?;
        }
        if let Some((ino, orphan)) = replaced {
            // A reader that looked `to` up just before holds this inode: it stays readable.
            lock(&self.s.orphans).insert(ino, orphan);
        }
        {
            // Empty directories at and below `from` move along; a replaced empty `to` goes.
            let mut dirs = lock(&self.s.empty_dirs);
            dirs.remove(to);
            let moved: Vec<String> = dirs
                .get(from)
                .into_iter()
                .chain(dirs.range::<str, _>(below(from)))
                .cloned()
                .collect();
            for d in moved {
                dirs.remove(&d);
                dirs.insert(format!("{to}{}", &d[from.len()..]));
            }
        }
        {
            // Files being written inside a moved directory move along; a replaced pending
            // `to` is gone (its writer's data goes nowhere, as for any replaced file).
            let mut pending = lock(&self.s.pending);
            pending.remove(to);
            let moved: Vec<(String, ValueMode)> = pending
                .range::<str, _>(below(from))
                .map(|(p, m)| (p.clone(), *m))
                .collect();
            for (p, m) in moved {
                pending.remove(&p);
                pending.insert(format!("{to}{}", &p[from.len()..]), m);
            }
        }
        lock(&self.s.inodes).rename(from, to);
        self.keep_parent_dirs(from);
        if !src_empty {
            self.key_added(to);
        }
        {
            // Times recorded at and below `from` move along; those of a replaced `to` go.
            let mut times = lock(&self.s.times);
            let replaced: Vec<String> = at_or_below(&times, to).map(|(p, _)| p.clone()).collect();
            for p in replaced {
                times.remove(&p);
            }
            let moved: Vec<(String, Times)> = at_or_below(&times, from)
                .map(|(p, t)| (p.clone(), *t))
                .collect();
            for (p, t) in moved {
                times.remove(&p);
                times.insert(format!("{to}{}", &p[from.len()..]), t);
            }
        }
        // Linux changes the renamed node's ctime, and both directories' mtime and ctime.
        if let Some(before) = before {
            self.status_changed(to, before);
        }
        self.entry_changed(from);
        self.entry_changed(to);
        Ok(())
    }
}
