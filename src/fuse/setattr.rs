//! setattr: truncate (by handle or by path), chmod, chown and utimens, including on a
//! descriptor whose name is gone.

use std::time::{Duration, SystemTime};

use fuser::{Errno, FileAttr, FileHandle, INodeNo, TimeOrNow};

use super::attrs::{attr_type, value_mode};
use super::control::{self, CtlNode};
use super::errno::{db_err, errno};
use super::fscore::{Caller, FsCore};
use super::open::Handle;
use super::shared::lock;
use super::times::Times;

use crate::db::meta::{MODE_BITS, is_executable};
use crate::db::{Meta, NodeType, Stat, ValueMode};

/// What a SETATTR asks to change (`None`: leave it as it is).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    /// The handle the change came through (`ftruncate`), if any.
    pub fh: Option<FileHandle>,
}

impl FsCore {
    /// SETATTR of `ino` by `caller`: truncate, chmod, chown, utimens; the attributes after.
    pub(crate) fn setattr(
        &self,
        caller: &Caller,
        ino: INodeNo,
        set: SetAttr,
    ) -> Result<(FileAttr, Duration), Errno> {
        let SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            fh,
        } = set;
        self.s.changing(ino.0);
        let path = match self.path_of(ino) {
            Err(Errno::ESTALE) => return self.orphan_setattr(ino, size, mode),
            other => other?,
        };
        if let Some(node) = control::parse(&path) {
            // `echo cmd > ctl` truncates first: allow that on ctl, nothing else.
            return match node {
                CtlNode::Ctl if mode.is_none() && uid.is_none() && gid.is_none() => {
                    self.ctl_attr(&path, &node)
                }
                _ => Err(Errno::EPERM),
            };
        }
        if mode.is_some() || size.is_some() || uid.is_some() || gid.is_some() {
            self.check_writable()?;
        }
        // chmod and chown as on a local filesystem (the kernel checks the same with
        // default_permissions; without it these are the checks there are): only root gives
        // a file away; its owner (or root) changes its mode, and its group to one the owner
        // belongs to; a non-member's chmod drops the setgid bit.
        let new_meta = if mode.is_some() || uid.is_some() || gid.is_some() {
            let (cur_attr, _) = self.getattr_path(&path)?;
            let cur = Meta {
                mode: u32::from(cur_attr.perm),
                uid: cur_attr.uid,
                gid: cur_attr.gid,
            };
            let caller_uid = caller.uid;
            let root = caller_uid == 0;
            let owner = root || caller_uid == cur.uid;
            let mut new = cur;
            if let Some(u) = uid {
                if !root && (u != cur.uid || caller_uid != cur.uid) {
                    return Err(Errno::EPERM);
                }
                new.uid = u;
            }
            if let Some(g) = gid {
                if !root && (!owner || (g != cur.gid && !caller_in_group(caller, g))) {
                    return Err(Errno::EPERM);
                }
                new.gid = g;
            }
            if let Some(m) = mode {
                if !owner {
                    return Err(Errno::EPERM);
                }
                new.mode = m & MODE_BITS;
                if !root && new.mode & libc::S_ISGID != 0 && !caller_in_group(caller, new.gid) {
                    new.mode &= !libc::S_ISGID;
                }
            }
            Some((attr_type(&cur_attr), new))
        } else {
            None
        };
        if let Some(size) = size {
            self.truncate_file(ino.0, &path, fh, size)?;
            self.content_changed(&path, SystemTime::now());
        }
        // chmod and chown (to the owner it has: nothing else is allowed) change the ctime
        // only; times from before the change, as a committed value staged by a chmod must
        // not take the mount's start time.
        let status_before = if mode.is_some() || uid.is_some() || gid.is_some() {
            Some(Times::of(&self.getattr_path(&path)?.0))
        } else {
            None
        };
        if let Some(mode) = mode {
            let new = value_mode(mode);
            if let Some(m) = lock(&self.s.pending).get_mut(&path) {
                *m = new;
            }
            let mut file_mode = Some(new);
            if let Ok(Some(Stat::Value { mode: cur, id, .. })) = self.db().stat(&path) {
                if cur == ValueMode::Symlink {
                    file_mode = None;
                } else if new != cur {
                    self.db().set_blob(&path, id, new).map_err(|e| db_err(&e))?;
                }
            }
            if let (Some(m), Some(file)) = (file_mode, self.s.open_file(ino.0)) {
                lock(&file).mode = m;
            }
        }
        if let Some((t, new)) = new_meta {
            // After git's executable bit: the stored bits then agree with it.
            let t = match t {
                NodeType::File { .. } => NodeType::File {
                    executable: is_executable(new.mode),
                },
                other => other,
            };
            self.record_meta(&path, t, new)?;
        }
        if let Some(before) = status_before {
            self.status_changed(&path, before);
        }
        if atime.is_some() || mtime.is_some() {
            // utimensat sets what it is given and the ctime to now. On a committed node the
            // head's time stays a floor (see `times_of`).
            let now = SystemTime::now();
            let pick = |t: Option<TimeOrNow>, old: SystemTime| match t {
                Some(TimeOrNow::SpecificTime(t)) => t,
                Some(TimeOrNow::Now) => now,
                None => old,
            };
            let cur = Times::of(&self.getattr_path(&path)?.0);
            let t = Times {
                atime: pick(atime, cur.atime),
                mtime: pick(mtime, cur.mtime),
                ctime: now,
            };
            self.note_change();
            lock(&self.s.times).insert(path.clone(), t);
            if mtime.is_some()
                && let Some(file) = self.s.open_file(ino.0)
            {
                // A writer still open (`cp -p` sets times before it closes) flushes with
                // this mtime rather than the time of its last write.
                let mut f = lock(&file);
                if f.dirty {
                    f.modified = Some(t.mtime);
                }
            }
        }
        self.getattr_path(&path)
    }
}

impl FsCore {
    /// `ftruncate`/`fchmod` on a descriptor whose name is gone (see [`Self::orphan_attr`]):
    /// applied to the open file, which is all that is left of it.
    pub(super) fn orphan_setattr(
        &self,
        ino: INodeNo,
        size: Option<u64>,
        mode: Option<u32>,
    ) -> Result<(FileAttr, Duration), Errno> {
        if let Some(file) = self.s.open_file(ino.0) {
            let mut f = lock(&file);
            if let Some(mode) = mode
                && f.mode != ValueMode::Symlink
            {
                f.mode = value_mode(mode);
            }
            if let Some(size) = size {
                f.truncate(self.db(), size).map_err(|e| errno(e.errno()))?;
            }
        }
        self.orphan_attr(ino)
    }

    /// Truncates `ino`'s value: the descriptor's open file (`ftruncate`), or, by path
    /// (`truncate(2)`; O_TRUNC on a kernel without atomic O_TRUNC), the inode's open file,
    /// which every descriptor shares. Writers still open store it when they close, so the
    /// store never holds the empty middle state of `echo new > file`; with no writer open it
    /// is stored now.
    pub(super) fn truncate_file(
        &self,
        ino: u64,
        path: &str,
        fh: Option<FileHandle>,
        size: u64,
    ) -> Result<(), Errno> {
        if let Some(fh) = fh {
            return match &*self.handle(fh)? {
                Handle::Value { file, .. } => lock(file)
                    .truncate(self.db(), size)
                    .map_err(|e| errno(e.errno())),
                _ => Err(Errno::EBADF),
            };
        }
        let (pfh, file) = self.open_value(ino, false, || self.load_file(ino, path))?;
        let result = (|| {
            let mut f = lock(&file);
            f.truncate(self.db(), size).map_err(|e| errno(e.errno()))?;
            if !self.s.has_writer(ino) {
                self.flush_value(&mut f)?;
            }
            Ok(())
        })();
        let released = self.release_handle(pfh);
        result.and(released)
    }
}

/// Whether the process behind `caller` belongs to group `gid`: its gid, or one of the
/// supplementary groups the kernel lists for it (FUSE requests carry only the first).
pub(super) fn caller_in_group(caller: &Caller, gid: u32) -> bool {
    if caller.gid == gid {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", caller.pid)) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|n| n.parse() == Ok(gid)))
}
