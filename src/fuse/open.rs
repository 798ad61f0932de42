//! The handle table and opening: what a file handle refers to, the one open file per open
//! inode that its handles share, opening (values, orphans, control files) and releasing, and
//! storing what open files hold at shutdown.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{Errno, FileAttr, FileHandle, FopenFlags, INodeNo, OpenAccMode, OpenFlags};

use super::coherence::{KernelTask, PREFILL_MAX};
use super::control::{self, CtlNode};
use super::errno::{db_err, errno, lookup_err};
use super::fscore::{Caller, FsCore};
use super::handles::OpenFile;
use super::shared::{Shared, lock};
use crate::paths::split;

use crate::db::{Bytes, Stat};

impl FsCore {
    /// OPEN of `ino`: a handle and the flags the kernel is to keep it with.
    pub(crate) fn open(
        &self,
        ino: INodeNo,
        flags: OpenFlags,
    ) -> Result<(FileHandle, FopenFlags), Errno> {
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
    }

    /// CREATE of `name` in `parent` by `caller` (`flags`: the open(2) flags): a pending file
    /// (or the existing one, joined), opened for writing.
    pub(crate) fn create(
        &self,
        caller: &Caller,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(FileAttr, Duration, FileHandle, FopenFlags), Errno> {
        let path = self.new_child(parent, name)?;
        // A file still being written by another process exists too: joining it keeps
        // both writers' bytes (the kernel sends CREATE when its dentry is not cached).
        // Pending is asked before the db (see `Shared::pending`): a flush racing this
        // create could otherwise hide the file from both, and the create would truncate it.
        let pending = self.pending_mode(&path).is_some();
        let existing = self.db().stat(&path).map_err(|e| db_err(&e))?;
        let exists = match existing {
            Some(Stat::Dir) if flags & libc::O_EXCL == 0 => return Err(Errno::EISDIR),
            Some(_) => true,
            None => pending,
        };
        if exists && flags & libc::O_EXCL != 0 {
            return Err(Errno::EEXIST);
        }
        let made = if exists {
            self.check_writable()?;
            None
        } else {
            let meta = self.creator_meta(caller, split(&path).0, mode, umask, false);
            Some(self.create_pending(&path, meta)?)
        };
        let (attr, ttl) = self.getattr_path(&path)?;
        let ino = attr.ino.0;
        self.s.changing(ino);
        // A file this create made holds nothing yet: its open file needs no look at the db
        // (a stat per create saved). Whatever a racing opener stored meanwhile is truncated
        // below either way.
        let first = || match made {
            Some(vmode) => Ok(OpenFile::new(ino, None, vmode, self.s.files.clone())),
            None => self.load_file(ino, &path),
        };
        let (fh, file) = self.open_value(ino, true, first)?;
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
        Ok((attr, ttl, fh, FopenFlags::FOPEN_KEEP_CACHE))
    }

    /// RELEASE of handle `fh` (see [`Self::release_handle`]).
    pub(crate) fn release(&self, fh: FileHandle) -> Result<(), Errno> {
        self.release_handle(fh)
    }

    /// FORGET: the kernel will not name `ino` again.
    pub(crate) fn forget(&self, ino: INodeNo) {
        // An inode the kernel forgets is never named again (a replaced one has no name that
        // would hand it out), so what a rename recorded for it can go.
        let mut orphans = lock(&self.s.orphans);
        if !orphans.is_empty() {
            orphans.forget(ino.0);
        }
    }
}

/// What an open file handle refers to.
pub(super) enum Handle {
    /// A key's value: the inode's open file, shared with every other descriptor on it.
    Value {
        ino: u64,
        file: Arc<Mutex<OpenFile>>,
        writable: bool,
    },
    /// `/.gitdb/ctl`: each write is a command.
    Ctl,
    /// A generated control file or a history value: fixed bytes.
    Data(Bytes),
}

/// The open handles, and the one [`OpenFile`] of each open inode.
#[derive(Default)]
pub(super) struct Handles {
    pub(super) map: HashMap<u64, Arc<Handle>>,
    pub(super) files: HashMap<u64, OpenEntry>,
}

/// An open inode's file and how many handles use it (and how many of them may write).
pub(super) struct OpenEntry {
    pub(super) file: Arc<Mutex<OpenFile>>,
    pub(super) handles: usize,
    pub(super) writers: usize,
}

impl Shared {
    /// Whether a handle that can write is open on `ino`.
    pub(crate) fn has_writer(&self, ino: u64) -> bool {
        lock(&self.handles)
            .files
            .get(&ino)
            .is_some_and(|e| e.writers > 0)
    }

    /// The open file of `ino`, if a handle has it open.
    pub(super) fn open_file(&self, ino: u64) -> Option<Arc<Mutex<OpenFile>>> {
        lock(&self.handles).files.get(&ino).map(|e| e.file.clone())
    }

    /// Stores what every open file holds that the db does not have yet (at shutdown, before
    /// unmounting: a clean stop loses nothing an application wrote, even to a file it still
    /// has open). With `last`, writes into open files fail from then on (EIO), so none can
    /// be acknowledged and then lost when the daemon exits. Returns how many were stored.
    pub(crate) fn flush_open_files(self: &Arc<Self>, last: bool) -> usize {
        if last {
            // Before the files are collected: a write that saw the flag unset holds its file's
            // lock until it has landed, and that file is open (so in the list) while it writes.
            self.closing.store(true, Ordering::SeqCst);
        }
        let fs = FsCore::new(self.clone());
        let files: Vec<Arc<Mutex<OpenFile>>> = lock(&self.handles)
            .files
            .values()
            .map(|e| e.file.clone())
            .collect();
        let mut stored = 0;
        for file in files {
            let mut f = lock(&file);
            if !f.dirty {
                continue;
            }
            match fs.flush_value(&mut f) {
                Ok(()) => stored += 1,
                Err(e) => log::warn!("storing open file (inode {}): {e:?}", f.ino),
            }
        }
        stored
    }

    /// How many handles are open on values.
    pub(crate) fn open_value_handles(&self) -> usize {
        lock(&self.handles).files.values().map(|e| e.handles).sum()
    }
}

impl FsCore {
    /// A handle on something other than a value (control files, history).
    pub(super) fn new_handle(&self, h: Handle) -> FileHandle {
        let fh = self.s.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.s.handles).map.insert(fh, Arc::new(h));
        FileHandle(fh)
    }

    pub(super) fn handle(&self, fh: FileHandle) -> Result<Arc<Handle>, Errno> {
        lock(&self.s.handles)
            .map
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    /// Opens a handle on `ino`'s open file, joining the one already open or, for the first
    /// opener, the one `first` makes (from what the db holds). `first` runs without locks;
    /// if a release removed the open file meanwhile, it runs again.
    pub(super) fn open_value(
        &self,
        ino: u64,
        writable: bool,
        mut first: impl FnMut() -> Result<OpenFile, Errno>,
    ) -> Result<(FileHandle, Arc<Mutex<OpenFile>>), Errno> {
        loop {
            let made = if lock(&self.s.handles).files.contains_key(&ino) {
                None
            } else {
                Some(first()?)
            };
            let fh = self.s.next_fh.fetch_add(1, Ordering::Relaxed);
            let mut hs = lock(&self.s.handles);
            let file = match (hs.files.get_mut(&ino), made) {
                (Some(entry), _) => {
                    entry.handles += 1;
                    entry.writers += usize::from(writable);
                    entry.file.clone()
                }
                (None, Some(made)) => {
                    let file = Arc::new(Mutex::new(made));
                    hs.files.insert(
                        ino,
                        OpenEntry {
                            file: file.clone(),
                            handles: 1,
                            writers: usize::from(writable),
                        },
                    );
                    file
                }
                // Closed between the check and now: make it afresh.
                (None, None) => continue,
            };
            hs.map.insert(
                fh,
                Arc::new(Handle::Value {
                    ino,
                    file: file.clone(),
                    writable,
                }),
            );
            return Ok((FileHandle(fh), file));
        }
    }

    /// Ends handle `fh`. For a value: a writer's handle stores what the file holds that the
    /// db does not have (a write through a shared mapping can come after the last FLUSH);
    /// once no writer is left the file settles and its value may go to the page cache; the
    /// last handle closes the open file. The file is removed from the table only after it
    /// was flushed, so an opening meanwhile joins it instead of reading the old value.
    pub(super) fn release_handle(&self, fh: FileHandle) -> Result<(), Errno> {
        let (handle, ino, writers_left, handles_left) = {
            let mut hs = lock(&self.s.handles);
            let Some(handle) = hs.map.remove(&fh.0) else {
                return Ok(());
            };
            let Handle::Value { ino, writable, .. } = &*handle else {
                return Ok(());
            };
            let ino = *ino;
            let Some(entry) = hs.files.get_mut(&ino) else {
                return Ok(());
            };
            entry.handles = entry.handles.saturating_sub(1);
            entry.writers = entry.writers.saturating_sub(usize::from(*writable));
            let (w, h) = (entry.writers, entry.handles);
            drop(hs);
            (handle.clone(), ino, w, h)
        };
        let Handle::Value { file, writable, .. } = &*handle else {
            return Ok(());
        };
        let mut f = lock(file);
        let result = if *writable {
            self.flush_value(&mut f)
        } else {
            Ok(())
        };
        if let Err(e) = result {
            log::warn!("storing inode {ino} at release: {e:?}");
        }
        let mut prefill = None;
        if writers_left == 0 {
            f.settle();
            prefill = f.flushed.take();
        }
        let closed = handles_left == 0 && {
            // The file lock is held: taking the table's lock after it is the allowed order.
            let mut hs = lock(&self.s.handles);
            let unused = hs
                .files
                .get(&ino)
                .is_some_and(|e| e.handles == 0 && Arc::ptr_eq(&e.file, file));
            if unused {
                hs.files.remove(&ino);
            }
            unused
        };
        drop(f);
        // Not while the machine is saturated: the prefill wakes the invalidation thread and
        // writes to `/dev/fuse` once per written file, which on a saturated CPU the writers
        // pay for (a fifth of fsbench's creates on one busy CPU); a first read then costs its
        // READ, as on any FUSE mount.
        let saturated = || self.s.busy.get().is_some_and(|b| b.holding_off());
        if let Some((token, data)) = prefill.filter(|_| !saturated()) {
            self.s.tell_kernel(KernelTask::Prefill { ino, token, data });
        }
        if closed {
            // The last handle on a file that never reached the store (its flush failed):
            // the file goes, rather than lingering as a name with nothing behind it.
            let path = lock(&self.s.inodes).path(ino).map(str::to_owned);
            if let Some(path) = path
                && lock(&self.s.pending).remove(&path).is_some()
            {
                lock(&self.s.inodes).detach(&path);
            }
        }
        result
    }

    /// The open file of `ino` (at `path`) for its first opener: what the db holds there now.
    pub(super) fn load_file(&self, ino: u64, path: &str) -> Result<OpenFile, Errno> {
        let files = self.s.files.clone();
        match self.db().stat(path).map_err(|e| lookup_err(&e))? {
            Some(Stat::Value {
                mode,
                id,
                committed,
                size,
            }) => {
                let mut f = OpenFile::new(ino, Some(id), mode, files);
                // A small uncommitted value lives only in the db's memory until its commit;
                // take it now so the open file keeps it even if a rollback drops it.
                if !committed && size <= PREFILL_MAX as u64 {
                    f.len(self.db()).map_err(|e| errno(e.errno()))?;
                }
                Ok(f)
            }
            Some(Stat::Dir) => Err(Errno::EISDIR),
            None => match self.pending_mode(path) {
                Some(mode) => Ok(OpenFile::new(ino, None, mode, files)),
                None if self.is_empty_dir(path) => Err(Errno::EISDIR),
                None => Err(Errno::ENOENT),
            },
        }
    }

    /// The open file of an inode the kernel holds but whose name a rename gave away: what
    /// the rename recorded (see [`super::orphans`]). Writes to it go nowhere, as to an unlinked file.
    pub(super) fn load_orphan(&self, ino: u64) -> Result<OpenFile, Errno> {
        let o = lock(&self.s.orphans)
            .get(ino)
            .cloned()
            .ok_or(Errno::ESTALE)?;
        let files = self.s.files.clone();
        Ok(match o.data {
            Some(bytes) => OpenFile::with_bytes(ino, bytes, o.mode, files),
            None => OpenFile::new(ino, Some(o.id), o.mode, files),
        })
    }
}

pub(super) fn writable(flags: OpenFlags) -> bool {
    !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY) || flags.0 & libc::O_TRUNC != 0
}
