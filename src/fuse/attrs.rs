//! Attributes: the `FileAttr` of every node (keys, pending files, kept directories, control
//! files, history, orphaned inodes), and how git modes and node-local metadata become kinds,
//! permission bits and owners.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use fuser::{AccessFlags, Errno, FileAttr, FileType, INodeNo};

use super::control::{self, CtlNode};
use super::errno::{db_err, errno, lookup_err};
use super::fscore::{Caller, FsCore};
use super::handles::OpenFile;
use super::inodes::ROOT_INO;
use super::shared::lock;
use super::times::Times;

use crate::db::meta::{MODE_BITS, is_executable};
use crate::db::{Meta, MetaDefaults, NodeKind, NodeType, Stat, ValueMode};

impl FsCore {
    /// LOOKUP: the attributes of `name` in `parent`.
    pub(crate) fn lookup(
        &self,
        parent: INodeNo,
        name: &OsStr,
    ) -> Result<(FileAttr, Duration), Errno> {
        self.child(parent, name).and_then(|p| self.getattr_path(&p))
    }

    /// GETATTR of `ino`.
    pub(crate) fn getattr(&self, ino: INodeNo) -> Result<(FileAttr, Duration), Errno> {
        // An inode whose name is gone (or holds something else now) answers for itself.
        match self.path_of(ino).and_then(|p| self.getattr_path(&p)) {
            Err(Errno::ENOENT | Errno::ESTALE) => self.orphan_attr(ino),
            other => other,
        }
    }

    /// ACCESS: whether `ino` exists and, for W_OK, may be changed.
    pub(crate) fn access(&self, ino: INodeNo, mask: AccessFlags) -> Result<(), Errno> {
        self.path_of(ino).and_then(|path| {
            self.getattr_path(&path)?;
            if mask.contains(AccessFlags::W_OK) {
                match control::parse(&path) {
                    Some(CtlNode::Ctl) => {}
                    Some(_) => return Err(Errno::EROFS),
                    None => self.check_writable()?,
                }
            }
            Ok(())
        })
    }
}

pub(super) fn kind_of(mode: ValueMode) -> (FileType, u16) {
    match mode {
        ValueMode::Regular => (FileType::RegularFile, 0o644),
        ValueMode::Executable => (FileType::RegularFile, 0o755),
        ValueMode::Symlink => (FileType::Symlink, 0o777),
    }
}

pub(super) const ZERO_TTL: Duration = Duration::ZERO;

impl FsCore {
    /// What a path without node-local metadata shows (`-o uid=,gid=,umask=`).
    pub(super) fn meta_defaults(&self) -> MetaDefaults {
        MetaDefaults {
            uid: self.s.cfg.uid,
            gid: self.s.cfg.gid,
            umask: self.s.cfg.umask,
        }
    }

    /// `attr` with the mode bits, owner and group of `path` (its node-local metadata, else the
    /// defaults): one map lookup, no I/O.
    pub(super) fn dress(&self, path: &str, t: NodeType, mut attr: FileAttr) -> FileAttr {
        let m = self.meta_defaults().resolve(t, self.db().meta(path));
        attr.perm = (m.mode & MODE_BITS) as u16;
        attr.uid = m.uid;
        attr.gid = m.gid;
        attr
    }

    /// Records `meta` as `path`'s metadata (nothing when it is what `path` would show
    /// without: the map keeps only what differs from the defaults).
    pub(super) fn record_meta(&self, path: &str, t: NodeType, meta: Meta) -> Result<(), Errno> {
        let entry = self.meta_defaults().entry(t, meta);
        self.db().set_meta(path, entry).map_err(|e| db_err(&e))
    }

    /// The metadata a node made by `caller` in `parent` gets, as on a local filesystem: the
    /// caller's uid, its gid (or the directory's when the directory is setgid, and then a new
    /// directory is setgid too), and the requested mode less the umask (the kernel has
    /// usually applied it already).
    pub(super) fn creator_meta(
        &self,
        caller: &Caller,
        parent: &str,
        mode: u32,
        umask: u32,
        dir: bool,
    ) -> Meta {
        let mut meta = Meta {
            mode: mode & !umask & MODE_BITS,
            uid: caller.uid,
            gid: caller.gid,
        };
        let p = self
            .meta_defaults()
            .resolve(NodeType::Dir, self.db().meta(parent));
        if p.mode & libc::S_ISGID != 0 {
            meta.gid = p.gid;
            if dir {
                meta.mode |= libc::S_ISGID;
            }
        }
        meta
    }

    pub(super) fn attr(
        &self,
        ino: u64,
        kind: FileType,
        perm: u16,
        size: u64,
        mtime: SystemTime,
    ) -> FileAttr {
        self.attr_at(ino, kind, perm, size, Times::all(mtime))
    }

    pub(super) fn attr_at(
        &self,
        ino: u64,
        kind: FileType,
        perm: u16,
        size: u64,
        t: Times,
    ) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t.atime,
            mtime: t.mtime,
            ctime: t.ctime,
            crtime: t.mtime,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.s.cfg.uid,
            gid: self.s.cfg.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Length and last write time of open file `f`, if it holds bytes the db does not have
    /// yet (it then speaks for the file's size).
    fn dirty_len(&self, f: &mut OpenFile) -> Option<(u64, SystemTime)> {
        if !f.dirty {
            return None;
        }
        let modified = f.modified.unwrap_or_else(SystemTime::now);
        f.len(self.db()).ok().map(|len| (len, modified))
    }

    /// Attributes and TTL of the node at `path`.
    pub(super) fn getattr_path(&self, path: &str) -> Result<(FileAttr, Duration), Errno> {
        if let Some(node) = control::parse(path) {
            return self.ctl_attr(path, &node);
        }
        let ttl = self.s.cfg.ttl;
        if path.is_empty() {
            let t = self.times_of(path, self.head_time(), true);
            let mut attr = self.attr_at(ROOT_INO, FileType::Directory, 0o755, 0, t);
            attr.nlink = self.dir_nlink(path);
            return Ok((self.dress(path, NodeType::Dir, attr), ttl));
        }
        // The open file's lock is held across the db's stat. A flush moves the file's bytes
        // into the db and clears `dirty` under that lock, so the two are seen in one state:
        // a stat from before a flush with `dirty` read after it answered the old size, the
        // kernel took it as the file's size, and the next O_APPEND write (placed at the
        // kernel's size) landed on top of the line just flushed.
        let known = lock(&self.s.inodes).get(path);
        let open = known.and_then(|ino| self.s.open_file(ino));
        let mut open = open.as_deref().map(lock);
        // Pending before the db, as everywhere (see `Shared::pending`).
        let pending = self.pending_mode(path);
        let stat = self.db().stat(path).map_err(|e| lookup_err(&e))?;
        let dirty = open.as_deref_mut().and_then(|f| self.dirty_len(f));
        if stat.is_none() {
            if let Some(mode) = pending {
                let ino = self.ino_of(path);
                let (kind, perm) = kind_of(mode);
                let t = self.times_of(path, self.s.start, false);
                let (size, t) = match dirty {
                    Some((len, modified)) => (len, Self::written_at(t, modified)),
                    None => (0, t),
                };
                let attr = self.attr_at(ino, kind, perm, size, t);
                return Ok((self.dress(path, node_type(mode), attr), ttl));
            }
            if !self.is_empty_dir(path) {
                // Checked before a number is given out: probing missing names costs no memory.
                return Err(Errno::ENOENT);
            }
        }
        let ino = self.ino_of(path);
        match stat {
            Some(Stat::Value {
                mode,
                size,
                committed,
                ..
            }) => {
                let (kind, perm) = kind_of(mode);
                let base = if committed {
                    self.head_time()
                } else {
                    self.s.start
                };
                let t = self.times_of(path, base, committed);
                let (size, t) = match dirty {
                    Some((len, modified)) => (len, Self::written_at(t, modified)),
                    None => (size, t),
                };
                let attr = self.attr_at(ino, kind, perm, size, t);
                Ok((self.dress(path, node_type(mode), attr), ttl))
            }
            Some(Stat::Dir) => {
                let t = self.times_of(path, self.head_time(), true);
                let mut attr = self.attr_at(ino, FileType::Directory, 0o755, 0, t);
                attr.nlink = self.dir_nlink(path);
                Ok((self.dress(path, NodeType::Dir, attr), ttl))
            }
            None => {
                let t = self.times_of(path, self.s.start, false);
                let mut attr = self.attr_at(ino, FileType::Directory, 0o755, 0, t);
                attr.nlink = self.dir_nlink(path);
                Ok((self.dress(path, NodeType::Dir, attr), ttl))
            }
        }
    }

    /// Attributes of a file whose name is gone (unlinked, replaced by a rename, rolled back,
    /// removed from outside) while the kernel still holds it: its open file, if a descriptor
    /// has it open (`fstat` works and reports no links, as on a disk), else what a rename
    /// that replaced it recorded (see [`super::orphans`]); ESTALE otherwise, so the kernel looks
    /// the name up again. The kernel's `fstat` sends no file handle (only some setattr paths
    /// do), so the inode's open file speaks for it.
    pub(super) fn orphan_attr(&self, ino: INodeNo) -> Result<(FileAttr, Duration), Errno> {
        let (kind_mode, size) = match self.s.open_file(ino.0) {
            Some(file) => {
                let mut f = lock(&file);
                let size = f.len(self.db()).map_err(|e| errno(e.errno()))?;
                (f.mode, size)
            }
            None => {
                let orphans = lock(&self.s.orphans);
                let o = orphans.get(ino.0).ok_or(Errno::ESTALE)?;
                (o.mode, o.size)
            }
        };
        let (kind, perm) = kind_of(kind_mode);
        let mut attr = self.attr(ino.0, kind, perm, size, SystemTime::now());
        attr.nlink = 0;
        Ok((attr, ZERO_TTL))
    }
}

/// The kind of node a value of git mode `mode` is, for its metadata.
pub(super) fn node_type(mode: ValueMode) -> NodeType {
    match mode {
        ValueMode::Regular => NodeType::File { executable: false },
        ValueMode::Executable => NodeType::File { executable: true },
        ValueMode::Symlink => NodeType::Symlink,
    }
}

/// The kind of node `attr` shows, for its metadata (a value shows x bits exactly when git
/// holds its executable bit, see `MetaDefaults::resolve`).
pub(super) fn attr_type(attr: &FileAttr) -> NodeType {
    match attr.kind {
        FileType::Directory => NodeType::Dir,
        FileType::Symlink => NodeType::Symlink,
        _ => NodeType::File {
            executable: is_executable(u32::from(attr.perm)),
        },
    }
}

pub(super) fn node_kind(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::Dir => FileType::Directory,
        NodeKind::Value(m) => kind_of(m).0,
    }
}

/// The git mode a file with permission bits `mode` gets: git keeps only the executable bit.
pub(super) fn value_mode(mode: u32) -> ValueMode {
    if is_executable(mode) {
        ValueMode::Executable
    } else {
        ValueMode::Regular
    }
}
