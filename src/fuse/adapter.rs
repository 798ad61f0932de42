//! The adapter: `impl fuser::Filesystem for GitDbFs`. Each callback counts the request,
//! calls [`FsCore`] and replies; the filesystem's behaviour is in the `impl FsCore` files.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::attrs::{attr_type, value_mode};
use super::control::{self, CtlNode};
use super::errno::{db_err, errno, lookup_err};
use super::fscore::FsCore;
use super::inodes::split;
use super::open::{Handle, writable};
use super::setattr::caller_in_group;
use super::shared::{Shared, lock};
use super::statfs::statvfs;
use super::times::Times;
use super::{background, stats};

use crate::db::meta::MODE_BITS;
use crate::db::{DbError, Key, Meta, NodeType, Stat};
use crate::store::{Bytes, ValueMode};

/// The filesystem given to fuser: the [`FsCore`] behind fuser's callbacks.
pub struct GitDbFs {
    core: FsCore,
}

impl GitDbFs {
    pub fn new(shared: Arc<Shared>) -> GitDbFs {
        GitDbFs {
            core: FsCore::new(shared),
        }
    }
}

impl std::ops::Deref for GitDbFs {
    type Target = FsCore;
    fn deref(&self) -> &FsCore {
        &self.core
    }
}

impl Filesystem for GitDbFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC is handled in open(), on that handle only, instead of a separate truncate by
        // path that cannot tell this open's handle from others on the same file.
        if config
            .add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC)
            .is_err()
        {
            log::info!("kernel without atomic O_TRUNC: truncating open writers by path");
        }
        if let Err(nearest) = config.set_max_write(1 << 20) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(1 << 20) {
            let _ = config.set_max_readahead(nearest);
        }
        // In auto mode the kernel asks for attributes with the first part of a listing, and
        // for the rest where it saw lookups follow a listing (`ls -l`): one READDIRPLUS
        // instead of a LOOKUP per entry. Only with `-o readdirplus` (see `FsConfig`).
        if self.s.cfg.readdirplus
            && config
                .add_capabilities(
                    fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
                )
                .is_err()
        {
            log::info!("kernel without READDIRPLUS: plain listings");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.s.request(stats::Op::Lookup);
        match self.child(parent, name).and_then(|p| self.getattr_path(&p)) {
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.s.request(stats::Op::Getattr);
        if req.pid() == self.s.warmer_pid.load(Ordering::Relaxed) {
            self.s.stats.warmed();
            // Debug builds: hold the warmer's request, so a test can kill the daemon while a
            // worker has it (see `warmer`).
            static DELAY: OnceLock<Option<Duration>> = OnceLock::new();
            if let Some(d) =
                *DELAY.get_or_init(|| background::test_delay("GITDB_TEST_WARM_DELAY_US"))
            {
                log::info!("test: holding the warmer's GETATTR for {d:?}");
                std::thread::sleep(d);
            }
        }
        // An inode whose name is gone (or holds something else now) answers for itself.
        let result = match self.path_of(ino).and_then(|p| self.getattr_path(&p)) {
            Err(Errno::ENOENT | Errno::ESTALE) => self.orphan_attr(ino),
            other => other,
        };
        match result {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.s.request(stats::Op::Setattr);
        self.s.changing(ino.0);
        let result = (|| -> Result<(FileAttr, Duration), Errno> {
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
                let caller = req.uid();
                let root = caller == 0;
                let owner = root || caller == cur.uid;
                let mut new = cur;
                if let Some(u) = uid {
                    if !root && (u != cur.uid || caller != cur.uid) {
                        return Err(Errno::EPERM);
                    }
                    new.uid = u;
                }
                if let Some(g) = gid {
                    if !root && (!owner || (g != cur.gid && !caller_in_group(req, g))) {
                        return Err(Errno::EPERM);
                    }
                    new.gid = g;
                }
                if let Some(m) = mode {
                    if !owner {
                        return Err(Errno::EPERM);
                    }
                    new.mode = m & MODE_BITS;
                    if !root && new.mode & libc::S_ISGID != 0 && !caller_in_group(req, new.gid) {
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
                        executable: new.mode & 0o111 != 0,
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
        })();
        match result {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.s.request(stats::Op::Readlink);
        let result = self.path_of(ino).and_then(|path| {
            if let Some(CtlNode::History { commit, path }) = control::parse(&path) {
                return self
                    .db()
                    .get_at(&commit.to_string(), &path)
                    .map_err(|e| db_err(&e))?
                    .ok_or(Errno::ENOENT);
            }
            self.db()
                .get(&path)
                .map_err(|e| db_err(&e))?
                .ok_or(Errno::ENOENT)
        });
        match result {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        self.s.request(stats::Op::Other);
        if mode & libc::S_IFMT != libc::S_IFREG {
            // Device nodes, fifos and sockets have no place in a key-value store.
            reply.error(Errno::EPERM);
            return;
        }
        let result = self.new_child(parent, name).and_then(|path| {
            let meta = self.creator_meta(req, split(&path).0, mode, umask, false);
            self.create_value(&path, meta)?;
            self.getattr_path(&path)
        });
        match result {
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.s.request(stats::Op::Mkdir);
        let result = self.new_child(parent, name).and_then(|path| {
            Key::parse_value(&path).map_err(|e| db_err(&DbError::Key(e)))?;
            if self.db().stat(&path).map_err(|e| db_err(&e))?.is_some() || self.is_empty_dir(&path)
            {
                return Err(Errno::EEXIST);
            }
            let meta = self.creator_meta(req, split(&path).0, mode, umask, true);
            self.record_meta(&path, NodeType::Dir, meta)?;
            lock(&self.s.empty_dirs).insert(path.clone());
            self.s.dir_made(&path);
            self.created(&path);
            self.getattr_path(&path)
        });
        match result {
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.s.request(stats::Op::Unlink);
        let result = self.writable_child(parent, name).and_then(|path| {
            let in_store = matches!(self.db().stat(&path), Ok(Some(_)));
            if self.is_empty_dir(&path) && !in_store {
                return Err(Errno::EISDIR);
            }
            if !in_store && lock(&self.s.pending).remove(&path).is_some() {
                // A file still being written: it never reached the store.
                if let Err(e) = self.db().drop_meta(&path) {
                    // The file is gone; its metadata lingers for a free name (a new file there
                    // gets its own).
                    log::warn!("unlink /{path}: {e}");
                }
            } else {
                self.db().delete(&path).map_err(|e| lookup_err(&e))?;
            }
            // The unlinked file's number no longer has a path: handles still open on it write
            // nowhere, and a new file here gets a new number.
            lock(&self.s.inodes).detach(&path);
            self.keep_parent_dirs(&path);
            self.removed(&path);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.s.request(stats::Op::Rmdir);
        let result = self.writable_child(parent, name).and_then(|path| {
            match self.db().stat(&path).map_err(|e| lookup_err(&e))? {
                Some(Stat::Dir) => return Err(Errno::ENOTEMPTY),
                Some(Stat::Value { .. }) => return Err(Errno::ENOTDIR),
                None => {}
            }
            if self.pending_mode(&path).is_some() {
                return Err(Errno::ENOTDIR);
            }
            if self.has_local_children(&path) {
                return Err(Errno::ENOTEMPTY);
            }
            let mut dirs = lock(&self.s.empty_dirs);
            if !dirs.contains(&path) {
                return Err(Errno::ENOENT);
            }
            let prefix = format!("{path}/");
            if dirs
                .range(prefix.clone()..)
                .next()
                .is_some_and(|d| d.starts_with(&prefix))
            {
                return Err(Errno::ENOTEMPTY);
            }
            dirs.remove(&path);
            drop(dirs);
            if let Err(e) = self.db().drop_meta(&path) {
                // The directory is gone; its metadata lingers for a name that is free (a
                // new directory there gets its own).
                log::warn!("rmdir /{path}: {e}");
            }
            self.s.subdir_added(split(&path).0, -1);
            self.keep_parent_dirs(&path);
            self.removed(&path);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.s.request(stats::Op::Symlink);
        let result = self.new_child(parent, link_name).and_then(|path| {
            if self.db().stat(&path).map_err(|e| db_err(&e))?.is_some() || self.is_empty_dir(&path)
            {
                return Err(Errno::EEXIST);
            }
            use std::os::unix::ffi::OsStrExt;
            let meta = self.creator_meta(req, split(&path).0, 0o777, 0, false);
            self.record_meta(&path, NodeType::Symlink, meta)?;
            self.db()
                .set_with_mode(&path, target.as_os_str().as_bytes(), ValueMode::Symlink)
                .map_err(|e| db_err(&e))?;
            self.created(&path);
            self.key_added(&path);
            self.getattr_path(&path)
        });
        match result {
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.s.request(stats::Op::Rename);
        let result = (|| {
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
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.s.request(stats::Op::Other);
        // A key has one name: git trees have no hard links.
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.s.request(stats::Op::Open);
        let result = (|| {
            let write = writable(flags);
            // A reader has nothing to flush: spare close() that round trip.
            let value_flags = if write {
                FopenFlags::FOPEN_KEEP_CACHE
            } else {
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH
            };
            let path = match self.path_of(ino) {
                Ok(path) => path,
                // Held by the kernel, its name given away by a rename since the lookup.
                Err(Errno::ESTALE) => {
                    let (fh, _) = self.open_value(ino.0, write, || self.load_orphan(ino.0))?;
                    return Ok((fh, value_flags));
                }
                Err(e) => return Err(e),
            };
            if let Some(node) = control::parse(&path) {
                return match node {
                    CtlNode::Ctl => Ok((self.new_handle(Handle::Ctl), FopenFlags::FOPEN_DIRECT_IO)),
                    CtlNode::Dir | CtlNode::HistoryDir => Err(Errno::EISDIR),
                    _ if write => Err(Errno::EROFS),
                    CtlNode::History { commit, path } => {
                        let data = self
                            .db()
                            .get_at(&commit.to_string(), &path)
                            .map_err(|e| db_err(&e))?
                            .ok_or(Errno::ENOENT)?;
                        Ok((
                            self.new_handle(Handle::Data(data)),
                            FopenFlags::FOPEN_KEEP_CACHE,
                        ))
                    }
                    node => {
                        let data: Bytes = self.render(&node).into();
                        Ok((
                            self.new_handle(Handle::Data(data)),
                            FopenFlags::FOPEN_DIRECT_IO,
                        ))
                    }
                };
            }
            if write {
                self.check_writable()?;
                // O_TRUNC empties the kernel's pages once this open returns.
                self.s.changing(ino.0);
            }
            let (fh, file) = self.open_value(ino.0, write, || self.load_file(ino.0, &path))?;
            if write && flags.0 & libc::O_TRUNC != 0 {
                let truncated = lock(&file)
                    .truncate(self.db(), 0)
                    .map_err(|e| errno(e.errno()));
                if let Err(e) = truncated {
                    let _ = self.release_handle(fh);
                    return Err(e);
                }
            }
            Ok((fh, value_flags))
        })();
        match result {
            Ok((fh, flags)) => reply.opened(fh, flags),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.s.request(stats::Op::Create);
        let result = (|| {
            let path = self.new_child(parent, name)?;
            let existing = self.db().stat(&path).map_err(|e| db_err(&e))?;
            // A file still being written by another process exists too: joining it keeps
            // both writers' bytes (the kernel sends CREATE when its dentry is not cached).
            let exists = match existing {
                Some(Stat::Dir) if flags & libc::O_EXCL == 0 => return Err(Errno::EISDIR),
                Some(_) => true,
                None => self.pending_mode(&path).is_some(),
            };
            if exists && flags & libc::O_EXCL != 0 {
                return Err(Errno::EEXIST);
            }
            if exists {
                self.check_writable()?;
            } else {
                let meta = self.creator_meta(req, split(&path).0, mode, umask, false);
                self.create_pending(&path, meta)?;
            }
            let (attr, ttl) = self.getattr_path(&path)?;
            let ino = attr.ino.0;
            self.s.changing(ino);
            let (fh, file) = self.open_value(ino, true, || self.load_file(ino, &path))?;
            if !exists || flags & libc::O_TRUNC != 0 {
                // A new (or truncated) file: its first flush stores it, even if empty, with
                // the times it was created with.
                let mut f = lock(&file);
                let truncated = f.truncate(self.db(), 0).map_err(|e| errno(e.errno()));
                f.modified = Some(attr.mtime);
                drop(f);
                if let Err(e) = truncated {
                    let _ = self.release_handle(fh);
                    return Err(e);
                }
            }
            Ok((attr, ttl, fh))
        })();
        match result {
            Ok((attr, ttl, fh)) => {
                reply.created(&ttl, &attr, Generation(0), fh, FopenFlags::FOPEN_KEEP_CACHE)
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.s.request(stats::Op::Read);
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        match &*h {
            Handle::Value { file, .. } => self.reply_read(&mut lock(file), offset, size, reply),
            Handle::Data(d) => {
                let start = (offset as usize).min(d.len());
                let end = start.saturating_add(size as usize).min(d.len());
                reply.data(&d[start..end])
            }
            Handle::Ctl => reply.data(&[]),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.s.request(stats::Op::Write);
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let result = match &*h {
            Handle::Ctl => {
                // A rollback replaces values without a write to their files.
                self.s.all_change();
                self.s.forget_nlinks();
                return self.ctl(data, reply);
            }
            Handle::Value {
                writable: false, ..
            } => Err(Errno::EBADF),
            Handle::Value { ino, file, .. } => {
                let mut f = lock(file);
                if self.s.closing.load(Ordering::SeqCst) {
                    // The daemon is stopping and has stored open files for the last time.
                    Err(Errno::EIO)
                } else {
                    self.s.file_changes(*ino);
                    f.write(self.db(), offset, data)
                        .map_err(|e| errno(e.errno()))
                }
            }
            Handle::Data(_) => Err(Errno::EROFS),
        };
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.s.request(stats::Op::Flush);
        // FLUSH is sent on close(2) of a writer's descriptor (readers opt out); the RELEASE
        // that follows is asynchronous.
        let result = self.handle(fh).and_then(|h| match &*h {
            Handle::Value {
                file,
                writable: true,
                ..
            } => self.flush_value(&mut lock(file)),
            _ => Ok(()),
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.s.request(stats::Op::Release);
        match self.release_handle(fh) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, _nlookup: u64) {
        // An inode the kernel forgets is never named again (a replaced one has no name that
        // would hand it out), so what a rename recorded for it can go.
        let mut orphans = lock(&self.s.orphans);
        if !orphans.is_empty() {
            orphans.forget(ino.0);
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.s.request(stats::Op::Fsync);
        let result = self
            .handle(fh)
            .and_then(|h| match &*h {
                Handle::Value { file, .. } => self.flush_value(&mut lock(file)),
                _ => Ok(()),
            })
            .and_then(|()| self.db().sync().map_err(|e| db_err(&e)));
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.s.request(stats::Op::Other);
        // ENOSYS once makes the kernel open every directory itself from then on (a round trip
        // saved per `ls`, `find` step or `os.listdir`), with `FOPEN_CACHE_DIR` and
        // `FOPEN_KEEP_CACHE`. That suits key directories: they change only through this mount
        // (the kernel then drops its cached listing itself) or by a head move (we invalidate
        // the directory). Control directories report a new mtime at every lookup, which
        // makes the kernel drop their cached listing, and `history` is also invalidated when
        // HEAD moves. READDIR then comes without a handle: see [`DirSnapshots`].
        reply.error(Errno::ENOSYS);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.s.request(stats::Op::Readdir);
        let (listing, start) = match self.listing(ino, offset) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        for (i, (ino, kind, name)) in listing.entries.iter().enumerate().skip(start) {
            if reply.add(INodeNo(*ino), listing.cookie(i), *kind, name) {
                break;
            }
        }
        reply.ok()
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.s.request(stats::Op::Readdirplus);
        let (listing, start) = match self.listing(ino, offset) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        let Ok(dir) = self.path_of(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let mut child = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let base = child.len();
        for (i, (_, _, name)) in listing.entries.iter().enumerate().skip(start) {
            // `.` and `..` carry no lookup (the kernel skips them): their own attributes.
            let found = if name == "." || name == ".." {
                let path = if name == "." {
                    dir.as_str()
                } else {
                    split(&dir).0
                };
                self.getattr_path(path)
            } else {
                child.truncate(base);
                child.push_str(name);
                self.getattr_path(&child)
            };
            // An entry gone since the listing was taken is left out, as a later listing would.
            let Ok((attr, ttl)) = found else {
                continue;
            };
            if reply.add(
                attr.ino,
                listing.cookie(i),
                name,
                &ttl,
                &attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok()
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.s.request(stats::Op::Other);
        match self.db().sync() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(db_err(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.s.request(stats::Op::Statfs);
        let (blocks, bfree, bavail, files, ffree, bsize) = statvfs(self.db().git_dir())
            .unwrap_or((1 << 20, 1 << 19, 1 << 19, 1 << 20, 1 << 19, 4096));
        reply.statfs(
            blocks,
            bfree,
            bavail,
            files,
            ffree,
            bsize,
            crate::db::key::MAX_COMPONENT_LEN as u32,
            bsize,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.s.request(stats::Op::Access);
        let result = self.path_of(ino).and_then(|path| {
            self.getattr_path(&path)?;
            if mask.contains(AccessFlags::W_OK) {
                match control::parse(&path) {
                    Some(CtlNode::Ctl) => {}
                    Some(_) => return Err(Errno::EROFS),
                    None => self.check_writable()?,
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        self.s.request(stats::Op::Ioctl);
        // Python's open() asks every file whether it is a terminal (TCGETS). The kernel
        // forwards every ioctl (it remembers no ENOSYS for them, unlike xattrs), so answer
        // what a disk file answers.
        reply.error(Errno::ENOTTY);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.s.request(stats::Op::Other);
        // Git trees hold no extended attributes. ENOSYS (here and in the other xattr calls)
        // makes the kernel answer EOPNOTSUPP (= ENOTSUP) itself from then on: without it every
        // first write to a file costs a round trip for `security.capability`.
        reply.error(Errno::ENOSYS);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        self.s.request(stats::Op::Other);
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        self.s.request(stats::Op::Other);
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        self.s.request(stats::Op::Other);
        reply.error(Errno::ENOSYS);
    }
}
