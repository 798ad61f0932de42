//! The adapter: `impl fuser::Filesystem for GitDbFs`. Each callback counts the request, calls
//! the matching operation of [`FsCore`] with plain arguments, and replies through [`Answer`],
//! one small impl per kind of reply. What the filesystem does is in the `impl FsCore` files;
//! what stays here is what concerns the FUSE protocol only: the INIT capabilities, the
//! operations answered ENOSYS/EPERM/ENOTTY for good, and the warmer's GETATTRs.

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

use super::fscore::{Caller, FsCore};
use super::io::Written;
use super::setattr::SetAttr;
use super::shared::Shared;
use super::{background, stats};

/// The filesystem given to fuser: the `FsCore` behind fuser's callbacks.
pub struct GitDbFs {
    core: FsCore,
}

impl GitDbFs {
    pub fn new(shared: Arc<Shared>) -> GitDbFs {
        GitDbFs {
            core: FsCore::new(shared),
        }
    }

    /// Every callback starts here: counts the request and keeps the worker polling (or near
    /// its requester).
    fn request(&self, op: stats::Op, req: &Request) {
        self.core.s.request(op, req.pid());
    }
}

/// Sends an operation's result as a reply of one kind: the value on success, the errno
/// otherwise.
trait Answer<T> {
    fn answer(self, result: Result<T, Errno>);
}

impl Answer<(FileAttr, Duration)> for ReplyEntry {
    fn answer(self, result: Result<(FileAttr, Duration), Errno>) {
        match result {
            Ok((attr, ttl)) => self.entry(&ttl, &attr, Generation(0)),
            Err(e) => self.error(e),
        }
    }
}

impl Answer<(FileAttr, Duration)> for ReplyAttr {
    fn answer(self, result: Result<(FileAttr, Duration), Errno>) {
        match result {
            Ok((attr, ttl)) => self.attr(&ttl, &attr),
            Err(e) => self.error(e),
        }
    }
}

impl Answer<()> for ReplyEmpty {
    fn answer(self, result: Result<(), Errno>) {
        match result {
            Ok(()) => self.ok(),
            Err(e) => self.error(e),
        }
    }
}

impl<T: AsRef<[u8]>> Answer<T> for ReplyData {
    fn answer(self, result: Result<T, Errno>) {
        match result {
            Ok(data) => self.data(data.as_ref()),
            Err(e) => self.error(e),
        }
    }
}

impl Answer<(FileHandle, FopenFlags)> for ReplyOpen {
    fn answer(self, result: Result<(FileHandle, FopenFlags), Errno>) {
        match result {
            Ok((fh, flags)) => self.opened(fh, flags),
            Err(e) => self.error(e),
        }
    }
}

impl Answer<(FileAttr, Duration, FileHandle, FopenFlags)> for ReplyCreate {
    fn answer(self, result: Result<(FileAttr, Duration, FileHandle, FopenFlags), Errno>) {
        match result {
            Ok((attr, ttl, fh, flags)) => self.created(&ttl, &attr, Generation(0), fh, flags),
            Err(e) => self.error(e),
        }
    }
}

impl Answer<u32> for ReplyWrite {
    fn answer(self, result: Result<u32, Errno>) {
        match result {
            Ok(n) => self.written(n),
            Err(e) => self.error(e),
        }
    }
}

impl Answer<()> for ReplyDirectory {
    fn answer(self, result: Result<(), Errno>) {
        match result {
            Ok(()) => self.ok(),
            Err(e) => self.error(e),
        }
    }
}

impl Answer<()> for ReplyDirectoryPlus {
    fn answer(self, result: Result<(), Errno>) {
        match result {
            Ok(()) => self.ok(),
            Err(e) => self.error(e),
        }
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
        if self.core.s.cfg.readdirplus
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

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.request(stats::Op::Lookup, req);
        reply.answer(self.core.lookup(parent, name));
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.request(stats::Op::Getattr, req);
        if req.pid() == self.core.s.warmer_pid.load(Ordering::Relaxed) {
            self.core.s.stats.warmed();
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
        reply.answer(self.core.getattr(ino));
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
        self.request(stats::Op::Setattr, req);
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            fh,
        };
        reply.answer(self.core.setattr(&Caller::from(req), ino, set));
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        self.request(stats::Op::Readlink, req);
        reply.answer(self.core.readlink(ino));
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
        self.request(stats::Op::Other, req);
        reply.answer(
            self.core
                .mknod(&Caller::from(req), parent, name, mode, umask),
        );
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
        self.request(stats::Op::Mkdir, req);
        reply.answer(
            self.core
                .mkdir(&Caller::from(req), parent, name, mode, umask),
        );
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.request(stats::Op::Unlink, req);
        reply.answer(self.core.unlink(parent, name));
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.request(stats::Op::Rmdir, req);
        reply.answer(self.core.rmdir(parent, name));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.request(stats::Op::Symlink, req);
        reply.answer(
            self.core
                .symlink(&Caller::from(req), parent, link_name, target),
        );
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.request(stats::Op::Rename, req);
        reply.answer(self.core.rename(parent, name, newparent, newname, flags));
    }

    fn link(
        &self,
        req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.request(stats::Op::Other, req);
        // A key has one name: git trees have no hard links.
        reply.error(Errno::EPERM);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.request(stats::Op::Open, req);
        reply.answer(self.core.open(ino, flags));
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
        self.request(stats::Op::Create, req);
        reply.answer(
            self.core
                .create(&Caller::from(req), parent, name, mode, umask, flags),
        );
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.request(stats::Op::Read, req);
        // The bytes are lent to the reply instead of copied out.
        let mut reply = Some(reply);
        let result = self.core.read(fh, offset, size, |bytes| {
            if let Some(r) = reply.take() {
                r.data(bytes);
            }
        });
        if let (Err(e), Some(r)) = (result, reply.take()) {
            r.error(e);
        }
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.request(stats::Op::Write, req);
        match self.core.write(fh, offset, data) {
            Written::Now(result) => reply.answer(result),
            Written::AfterKernel(result) => self.core.after_kernel(move || reply.answer(result)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.request(stats::Op::Flush, req);
        reply.answer(self.core.flush(fh));
    }

    fn release(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.request(stats::Op::Release, req);
        reply.answer(self.core.release(fh));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, _nlookup: u64) {
        self.core.forget(ino);
    }

    fn fsync(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.request(stats::Op::Fsync, req);
        reply.answer(self.core.fsync(fh));
    }

    fn opendir(&self, req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.request(stats::Op::Other, req);
        // ENOSYS once makes the kernel open every directory itself from then on (a round trip
        // saved per `ls`, `find` step or `os.listdir`), with `FOPEN_CACHE_DIR` and
        // `FOPEN_KEEP_CACHE`. That suits key directories: they change only through this mount
        // (the kernel then drops its cached listing itself) or by a head move (we invalidate
        // the directory). Control directories report a new mtime at every lookup, which
        // makes the kernel drop their cached listing, and `history` is also invalidated when
        // HEAD moves. READDIR then comes without a handle: see [`super::dirs::DirSnapshots`].
        reply.error(Errno::ENOSYS);
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.request(stats::Op::Readdir, req);
        let result = self.core.readdir(ino, offset, |ino, cookie, kind, name| {
            reply.add(ino, cookie, kind, name)
        });
        reply.answer(result);
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.request(stats::Op::Readdirplus, req);
        let result = self
            .core
            .readdirplus(ino, offset, |cookie, name, attr, ttl| {
                reply.add(attr.ino, cookie, name, ttl, attr, Generation(0))
            });
        reply.answer(result);
    }

    fn fsyncdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.request(stats::Op::Other, req);
        reply.answer(self.core.fsyncdir());
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.request(stats::Op::Statfs, req);
        let s = self.core.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
        );
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.request(stats::Op::Access, req);
        reply.answer(self.core.access(ino, mask));
    }

    fn ioctl(
        &self,
        req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        self.request(stats::Op::Ioctl, req);
        // Python's open() asks every file whether it is a terminal (TCGETS). The kernel
        // forwards every ioctl (it remembers no ENOSYS for them, unlike xattrs), so answer
        // what a disk file answers.
        reply.error(Errno::ENOTTY);
    }

    fn setxattr(
        &self,
        req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.request(stats::Op::Other, req);
        // Git trees hold no extended attributes. ENOSYS (here and in the other xattr calls)
        // makes the kernel answer EOPNOTSUPP (= ENOTSUP) itself from then on: without it every
        // first write to a file costs a round trip for `security.capability`.
        reply.error(Errno::ENOSYS);
    }

    fn getxattr(&self, req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        self.request(stats::Op::Other, req);
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        self.request(stats::Op::Other, req);
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        self.request(stats::Op::Other, req);
        reply.error(Errno::ENOSYS);
    }
}
