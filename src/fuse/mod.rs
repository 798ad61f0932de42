//! fuse: the key tree as a filesystem (fuser 0.18), the layer users touch.
//!
//! Directory tree = key tree. `read` = `get`; a written file becomes one `set` when it is flushed
//! (closed), so the db never holds half a value — a file made by `create` stays *pending* in
//! this layer (listed, stat-able) until then; `unlink` = `delete`; `rename` = the db's atomic
//! `rename`; `mkdir` makes an empty directory that this layer keeps in memory (git cannot store
//! one) until it is removed — a commit does not record it, and it is forgotten at unmount.
//!
//! Pieces, one file each:
//! - [`inodes`]: stable path <-> inode numbers;
//! - [`handles`]: open-file buffers (copy on write, spill to a temp file when large);
//! - [`control`]: the `/.gitdb/` control directory;
//! - [`background`]: mounting, and the threads that refresh HEAD, autocommit, and invalidate
//!   kernel caches when HEAD moves under the mount;
//! - [`busy`]: busy polling of the FUSE device while requests keep coming, so that a round
//!   trip costs one wake-up instead of two;
//! - [`dirs`], [`valuefiles`], [`stats`]: listing snapshots for READDIR, plain copies of large
//!   values, request counters;
//! - [`orphans`]: what inodes replaced by a rename held, for readers that still hold them;
//! - [`warmer`]: the child process that fetches attributes back into the kernel's cache;
//! - [`mountpoint`]: what is mounted at the mountpoint before we mount (dead mounts detached,
//!   live ones refused), and unmounting;
//! - [`options`]: `gitdb-mount`'s flags and `-o` options;
//! - [`errno`]: what the errors of the layers below become at the kernel.
//!
//! Speed comes from the kernel: entries and attributes get a long TTL, values are opened with
//! `FOPEN_KEEP_CACHE` and key directories with `FOPEN_CACHE_DIR`, so repeated `stat`/`read`/
//! `readdir` never reach this process; a small value is put in the page cache when the handle
//! that wrote it is released, so even the first read after a write needs no READ (the kernel
//! leaves a partly written page invalid); correctness comes from invalidating exactly the changed
//! paths when HEAD moves or a rollback drops changes (see [`background`]), never from inside a
//! callback. A value changed that way gets a new inode number on its next lookup, so a process
//! that had it open keeps reading (from the page cache or its handle) the value it opened.
//! Control files are served with direct I/O and a zero TTL instead.
//!
//! Locks (all `std::sync::Mutex`, none held while calling the notifier): `inodes`,
//! `empty_dirs`, `pending`, `times`, `nlinks`, `handles` (the handle and open-file tables),
//! `orphans`, `kernel` (the task sender) and those inside [`DirSnapshots`], [`ValueFiles`] and
//! [`busy::BusyPoll`] are leaves taken briefly. An open file's lock ([`OpenFile`], one per
//! open inode) may be held across a db call and while taking a leaf (the `handles` table
//! included), never the other way round, and never two open files' locks at once.
//! Openings for writing and truncates may wait, bounded, for the notifier thread (see
//! `Shared::changing`), never while holding a lock.

pub mod background;
pub mod busy;
pub mod control;
pub mod dirs;
pub mod errno;
pub mod handles;
pub mod inodes;
pub mod mountpoint;
pub mod options;
pub mod orphans;
pub mod stats;
pub mod valuefiles;
pub mod warmer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

pub use background::{MountError, MountOptions, Mounted, StopSignals, mount};
use control::CtlNode;
use dirs::DirSnapshots;
use errno::ToErrno;
use handles::{FlushData, OpenFile};
use inodes::{InodeTable, ROOT_INO, at_or_below, join, split};
pub use mountpoint::{clean_stale_mount, prepare_mountpoint};
use orphans::{Orphan, Orphans};
use valuefiles::ValueFiles;

use crate::db::meta::MODE_BITS;
use crate::db::{DbError, GitDb, Key, KeyError, Meta, MetaDefaults, NodeKind, NodeType, Stat};
use crate::store::{Bytes, EntryKind, ObjectId, ValueMode};

/// How the filesystem presents itself.
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// Owner and group of every path without node-local metadata (the mounting user unless
    /// `-o uid=,gid=`): a value from a peer, or anything made before metadata was kept.
    pub uid: u32,
    pub gid: u32,
    /// The mode bits such a path lacks (`-o umask=`, default 022: 644/755 files, 755
    /// directories).
    pub umask: u32,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Entry and attribute TTL for keys (control files always get zero).
    pub ttl: Duration,
    /// Bound on the plain copies of large values kept for fast reads (see [`valuefiles`]).
    pub value_cache: u64,
    /// Offer READDIRPLUS (listings with attributes, which the kernel asks for when it
    /// expects a `stat` of each entry, as in `ls -l`). Off by default: see [`FsConfig::default`].
    pub readdirplus: bool,
}

impl Default for FsConfig {
    fn default() -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FsConfig {
            uid,
            gid,
            umask: 0o022,
            read_only: false,
            ttl: Duration::from_secs(60),
            value_cache: valuefiles::DEFAULT_BUDGET,
            // The kernel's auto mode asks for attributes with the first part of every
            // listing, and filling them in costs both sides per entry whether or not the
            // caller stats them. Measured with busy polling, 5,000 entries in 50 directories:
            // fsbench's list phase ran at 0.7-0.9x bindfs with READDIRPLUS and 1.2-1.8x
            // without; a cold listing + stat of every entry took 142-146 ms with it and
            // 254-272 ms without (bindfs: 242-262 ms). Plain listings by default;
            // `-o readdirplus` for trees that are mostly walked with `ls -l`, `du` or rsync.
            readdirplus: false,
        }
    }
}

/// What an open file handle refers to.
enum Handle {
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
struct Handles {
    map: HashMap<u64, Arc<Handle>>,
    files: HashMap<u64, OpenEntry>,
}

/// An open inode's file and how many handles use it (and how many of them may write).
struct OpenEntry {
    file: Arc<Mutex<OpenFile>>,
    handles: usize,
    writers: usize,
}

/// State shared by the filesystem callbacks and the background threads.
pub struct Shared {
    db: Arc<GitDb>,
    cfg: FsConfig,
    inodes: Mutex<InodeTable>,
    /// Directories made by mkdir (or left empty by a removal) that have no key below them.
    empty_dirs: Mutex<BTreeSet<String>>,
    /// Files created through the mount and not flushed yet: they exist for the kernel (and
    /// are listed) but the store gets them only as whole values when their writer flushes, so
    /// a commit never records the empty middle state of a file being written.
    pending: Mutex<BTreeMap<String, ValueMode>>,
    handles: Mutex<Handles>,
    /// Inodes whose name a rename gave to another file, for whoever still holds them.
    orphans: Mutex<Orphans>,
    /// Set by [`Shared::flush_open_files`] at shutdown: writes into open files after the
    /// last flush would be lost, so they fail instead.
    closing: std::sync::atomic::AtomicBool,
    next_fh: AtomicU64,
    /// Times of what changed through the mount, per path: a value's last write, a directory's
    /// last added or removed name, any node's last chmod/utimens/rename (ctime). Committed
    /// values and directories without an entry show their head commit's time.
    times: Mutex<BTreeMap<String, Times>>,
    /// Link counts of directories given out, so a directory's getattr (one per create in it,
    /// since a new name drops its attributes in the kernel) does not list it again. Adjusted
    /// by mkdir and rmdir, forgotten for both sides of a rename and wholly when values change
    /// outside the mount's view (a file made or removed changes no count). Leaf lock.
    nlinks: Mutex<BTreeMap<String, u32>>,
    /// Bumped whenever `nlinks` changes: a count computed across a bump may be stale and is
    /// not kept.
    nlinks_gen: AtomicU64,
    /// Unix ms of the last change through the mount (for autocommit).
    last_change_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Work for the thread that owns the kernel notifier (see [`background`]).
    kernel: Mutex<Sender<KernelTask>>,
    /// Change counters that let that thread tell whether a value it was asked to put in the
    /// page cache is still what the kernel should hold: one per stripe of inode numbers
    /// (bumped by every callback that can change a file's cached bytes or size) and one for
    /// the whole mount (bumped by rollbacks and by moves of HEAD).
    changes: [AtomicU64; CHANGE_STRIPES],
    epoch: AtomicU64,
    /// The inode whose value the notifier thread is putting in the page cache right now (0:
    /// none), so that an opening for writing waits for that to finish before a shared
    /// mapping can change the pages without telling this process.
    prefilling: AtomicU64,
    head_time: Mutex<(Option<ObjectId>, SystemTime)>,
    start: SystemTime,
    files: Arc<ValueFiles>,
    /// Listings handed to READDIR (which comes without a handle).
    dirs: DirSnapshots,
    /// Requests served and cache work done, for `status`.
    pub(crate) stats: stats::Stats,
    /// Set once the session exists, when busy polling is on.
    pub(crate) busy: OnceLock<busy::BusyPoll>,
    /// The process id of the attribute warmer (see [`warmer`]), 0 until it runs: its
    /// GETATTRs are counted as warmings.
    pub(crate) warmer_pid: std::sync::atomic::AtomicU32,
}

const CHANGE_STRIPES: usize = 64;

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
            last_change_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
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

    /// Every callback starts here: counts the request and keeps the worker polling.
    pub(crate) fn request(&self, op: stats::Op) {
        self.stats.request(op);
        if let Some(busy) = self.busy.get() {
            busy.request();
        }
    }

    /// Unix ms of the last change made through the mount.
    pub fn last_change_ms(&self) -> u64 {
        self.last_change_ms.load(Ordering::Relaxed)
    }

    /// The change counters that concern `ino`, as of now.
    pub(crate) fn change_token(&self, ino: u64) -> ChangeToken {
        ChangeToken {
            stripe: self.changes[ino as usize % CHANGE_STRIPES].load(Ordering::SeqCst),
            epoch: self.epoch.load(Ordering::SeqCst),
        }
    }

    /// `ino`'s bytes or size may change: a prefill taken before this must not land.
    fn file_changes(&self, ino: u64) {
        self.changes[ino as usize % CHANGE_STRIPES].fetch_add(1, Ordering::SeqCst);
    }

    /// `ino` is being opened for writing or truncated: bumps its counter, then waits for a
    /// prefill of it that is already past its check, so that prefill cannot land after this
    /// change. A prefill runs only while no writable handle is open on the file, so no WRITE
    /// holds a page it needs (WRITE only bumps); a READ of a concurrent reader can, and that
    /// READ may wait behind this very callback: hence the bound, after which the change goes
    /// on and the prefill's second check drops what it stored.
    fn changing(&self, ino: u64) {
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

    /// The mount-relative path of `ino`, if it still has one.
    pub(crate) fn path_of_ino(&self, ino: u64) -> Option<String> {
        lock(&self.inodes).path(ino).map(str::to_owned)
    }

    /// The inode of `/.gitdb/history` if the kernel may have listed it: its listing changes
    /// with every commit.
    pub(crate) fn history_ino(&self) -> Option<u64> {
        lock(&self.inodes).get(&format!("{}/history", control::DIR))
    }

    /// Whether a handle that can write is open on `ino`.
    pub(crate) fn has_writer(&self, ino: u64) -> bool {
        lock(&self.handles)
            .files
            .get(&ino)
            .is_some_and(|e| e.writers > 0)
    }

    /// The open file of `ino`, if a handle has it open.
    fn open_file(&self, ino: u64) -> Option<Arc<Mutex<OpenFile>>> {
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
        let fs = GitDbFs::new(self.clone());
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

    /// Queues work for the notifier thread (never called with a lock a callback needs held
    /// by the notifier, since that thread only takes leaf locks).
    fn tell_kernel(&self, task: KernelTask) {
        let _ = lock(&self.kernel).send(task);
    }

    /// Directories may have gained or lost subdirectories anywhere (HEAD moved, rollback).
    pub(crate) fn forget_nlinks(&self) {
        let mut nlinks = lock(&self.nlinks);
        self.nlinks_gen.fetch_add(1, Ordering::SeqCst);
        nlinks.clear();
    }

    /// `dir` gained (`delta` 1, mkdir) or lost (-1, rmdir) a subdirectory. A count given out
    /// is adjusted rather than forgotten: creating many directories in one would otherwise
    /// count its subdirectories again at every creation.
    fn subdir_added(&self, dir: &str, delta: i32) {
        let mut nlinks = lock(&self.nlinks);
        self.nlinks_gen.fetch_add(1, Ordering::SeqCst);
        if let Some(n) = nlinks.get_mut(dir) {
            *n = n.saturating_add_signed(delta);
        }
    }

    /// mkdir made `dir`: one more in its parent, and its own count (`.` and its name in the
    /// parent) is known without counting.
    fn dir_made(&self, dir: &str) {
        self.subdir_added(split(dir).0, 1);
        lock(&self.nlinks).insert(dir.to_owned(), 2);
    }

    /// A rename moved `from` to `to`: every count at or below either name, and their
    /// parents', may be wrong now.
    fn forget_nlinks_around(&self, from: &str, to: &str) {
        let mut nlinks = lock(&self.nlinks);
        self.nlinks_gen.fetch_add(1, Ordering::SeqCst);
        for path in [from, to] {
            let stale: Vec<String> = at_or_below(&nlinks, path).map(|(p, _)| p.clone()).collect();
            for p in stale {
                nlinks.remove(&p);
            }
            nlinks.remove(split(path).0);
        }
    }

    /// Records an error for `status`.
    pub fn set_last_error(&self, msg: String) {
        log::warn!("{msg}");
        *lock(&self.last_error) = Some(msg);
    }

    /// What to tell the kernel after the values at `paths` changed outside its view (HEAD
    /// moved, or a rollback): the names to drop (parent ino, name) for each path and its
    /// ancestors, and the directories whose listing and attributes to drop. A path that is (now)
    /// a value or nothing gets a new inode number on its next lookup (see
    /// [`InodeTable::replace`]), so open handles keep the old inode and the value they opened.
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

/// What `stat` shows as atime, mtime and ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Times {
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
}

impl Times {
    fn all(t: SystemTime) -> Times {
        Times {
            atime: t,
            mtime: t,
            ctime: t,
        }
    }

    /// Each time no earlier than `floor`: a commit taken after a change is newer than it.
    fn at_least(self, floor: SystemTime) -> Times {
        Times {
            atime: self.atime.max(floor),
            mtime: self.mtime.max(floor),
            ctime: self.ctime.max(floor),
        }
    }

    fn of(attr: &FileAttr) -> Times {
        Times {
            atime: attr.atime,
            mtime: attr.mtime,
            ctime: attr.ctime,
        }
    }
}

/// The filesystem given to fuser.
pub struct GitDbFs {
    s: Arc<Shared>,
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn db_err(e: &DbError) -> Errno {
    errno(e.errno())
}

/// A lookup of a name that cannot be a key finds nothing (except a name that is too long).
fn lookup_err(e: &DbError) -> Errno {
    match e {
        DbError::Key(KeyError::TooLong { .. }) => Errno::ENAMETOOLONG,
        DbError::Key(_) => Errno::ENOENT,
        other => db_err(other),
    }
}

fn kind_of(mode: ValueMode) -> (FileType, u16) {
    match mode {
        ValueMode::Regular => (FileType::RegularFile, 0o644),
        ValueMode::Executable => (FileType::RegularFile, 0o755),
        ValueMode::Symlink => (FileType::Symlink, 0o777),
    }
}

fn now_ms() -> u64 {
    crate::defaults::now_ms()
}

const ZERO_TTL: Duration = Duration::ZERO;

impl GitDbFs {
    pub fn new(shared: Arc<Shared>) -> GitDbFs {
        GitDbFs { s: shared }
    }

    fn db(&self) -> &GitDb {
        &self.s.db
    }

    /// What a path without node-local metadata shows (`-o uid=,gid=,umask=`).
    fn meta_defaults(&self) -> MetaDefaults {
        MetaDefaults {
            uid: self.s.cfg.uid,
            gid: self.s.cfg.gid,
            umask: self.s.cfg.umask,
        }
    }

    /// `attr` with the mode bits, owner and group of `path` (its node-local metadata, else the
    /// defaults): one map lookup, no I/O.
    fn dress(&self, path: &str, t: NodeType, mut attr: FileAttr) -> FileAttr {
        let m = self.meta_defaults().resolve(t, self.db().meta(path));
        attr.perm = (m.mode & MODE_BITS) as u16;
        attr.uid = m.uid;
        attr.gid = m.gid;
        attr
    }

    /// Records `meta` as `path`'s metadata (nothing when it is what `path` would show
    /// without: the map keeps only what differs from the defaults).
    fn record_meta(&self, path: &str, t: NodeType, meta: Meta) -> Result<(), Errno> {
        let entry = self.meta_defaults().entry(t, meta);
        self.db().set_meta(path, entry).map_err(|e| db_err(&e))
    }

    /// The metadata a node made by `req` in `parent` gets, as on a local filesystem: the
    /// caller's uid, its gid (or the directory's when the directory is setgid, and then a new
    /// directory is setgid too), and the requested mode less the umask (the kernel has
    /// usually applied it already).
    fn creator_meta(&self, req: &Request, parent: &str, mode: u32, umask: u32, dir: bool) -> Meta {
        let mut meta = Meta {
            mode: mode & !umask & MODE_BITS,
            uid: req.uid(),
            gid: req.gid(),
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

    fn attr(&self, ino: u64, kind: FileType, perm: u16, size: u64, mtime: SystemTime) -> FileAttr {
        self.attr_at(ino, kind, perm, size, Times::all(mtime))
    }

    fn attr_at(&self, ino: u64, kind: FileType, perm: u16, size: u64, t: Times) -> FileAttr {
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

    /// The path of `ino`. ESTALE for an inode whose name went away under the kernel
    /// (unlinked, replaced by a rename): the kernel then looks the name up again, which
    /// finds what is there now, instead of failing (a create in a directory that was just
    /// replaced, say) with an ENOENT for a name that exists.
    fn path_of(&self, ino: INodeNo) -> Result<String, Errno> {
        lock(&self.s.inodes)
            .path(ino.0)
            .map(str::to_owned)
            .ok_or(Errno::ESTALE)
    }

    fn ino_of(&self, path: &str) -> u64 {
        lock(&self.s.inodes).ino(path)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        let parent = self.path_of(parent)?;
        Ok(join(&parent, name))
    }

    /// The path of `name` in `parent`, for an operation that changes it: EPERM inside the
    /// control directory (its names are not the user's to make or remove) and EROFS on a
    /// read-only mount.
    fn writable_child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let path = self.child(parent, name)?;
        if control::is_under(&path) {
            return Err(Errno::EPERM);
        }
        self.check_writable()?;
        Ok(path)
    }

    /// The path of a name to make in `parent` (create, mknod, mkdir, symlink, a rename's
    /// target), as [`Self::writable_child`]. The kernel only makes names in what it knows as
    /// a directory; if that is no longer one here (a rollback or a head move took it away
    /// and the kernel has not dropped it yet), ESTALE makes the kernel look the directory
    /// up again, so `mkdir -p d && echo > d/f` ends well instead of failing on a stale `d`.
    fn new_child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let path = self.writable_child(parent, name)?;
        match self.is_dir(split(&path).0) {
            Ok(true) => Ok(path),
            Ok(false) | Err(Errno::ENOENT) => Err(Errno::ESTALE),
            Err(e) => Err(e),
        }
    }

    /// The commit time of the head (mtime of committed values and directories).
    fn head_time(&self) -> SystemTime {
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

    fn pending_mode(&self, path: &str) -> Option<ValueMode> {
        lock(&self.s.pending).get(path).copied()
    }

    /// Whether a kept directory or a pending file lies below `path`.
    fn has_local_children(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        let below = |first: Option<&String>| first.is_some_and(|d| d.starts_with(&prefix));
        below(lock(&self.s.empty_dirs).range(prefix.clone()..).next())
            || below(
                lock(&self.s.pending)
                    .range(prefix.clone()..)
                    .next()
                    .map(|(k, _)| k),
            )
    }

    /// Number of links of the directory `path`: `.`, its name in its parent, and each
    /// subdirectory's `..` — what `find` and pjdfstest expect. Costs a listing of the
    /// directory's subdirectories; the kernel caches the answer with the other attributes.
    fn dir_nlink(&self, path: &str) -> u32 {
        if let Some(&n) = lock(&self.s.nlinks).get(path) {
            return n;
        }
        let before = self.s.nlinks_gen.load(Ordering::SeqCst);
        let n = self.count_dir_links(path);
        let mut nlinks = lock(&self.s.nlinks);
        if self.s.nlinks_gen.load(Ordering::SeqCst) != before {
            return n;
        }
        if nlinks.len() >= 1 << 16 {
            nlinks.clear();
        }
        nlinks.insert(path.to_owned(), n);
        n
    }

    fn count_dir_links(&self, path: &str) -> u32 {
        let mut subdirs: BTreeSet<String> = match self.db().subdirs(path) {
            Ok(names) => names.into_iter().collect(),
            // A directory kept by mkdir is not in the store.
            Err(DbError::NotFound { .. }) => BTreeSet::new(),
            Err(e) => {
                log::warn!("counting the subdirectories of /{path}: {e}");
                BTreeSet::new()
            }
        };
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        subdirs.extend(
            lock(&self.s.empty_dirs)
                .range(prefix.clone()..)
                .take_while(|d| d.starts_with(&prefix))
                .map(|d| &d[prefix.len()..])
                .filter(|rest| !rest.contains('/'))
                .map(str::to_owned),
        );
        // The root also holds the control directory.
        let control = u32::from(path.is_empty());
        2u32.saturating_add(u32::try_from(subdirs.len()).unwrap_or(u32::MAX))
            .saturating_add(control)
    }

    /// Turns a pending file into an empty value in the store (before an operation that needs
    /// the store to hold it, such as a rename while it is still being written).
    fn materialize(&self, path: &str) -> Result<(), Errno> {
        let Some(mode) = self.pending_mode(path) else {
            return Ok(());
        };
        self.db()
            .set_with_mode(path, b"", mode)
            .map_err(|e| db_err(&e))?;
        lock(&self.s.pending).remove(path);
        self.key_added(path);
        Ok(())
    }

    fn is_empty_dir(&self, path: &str) -> bool {
        lock(&self.s.empty_dirs).contains(path)
    }

    /// Whether `path` is a directory (in the db or kept by mkdir).
    fn is_dir(&self, path: &str) -> Result<bool, Errno> {
        if path.is_empty() {
            return Ok(true);
        }
        match self.db().stat(path) {
            Ok(Some(Stat::Dir)) => Ok(true),
            Ok(Some(Stat::Value { .. })) => Ok(false),
            Ok(None) => Ok(self.is_empty_dir(path)),
            Err(e) => Err(lookup_err(&e)),
        }
    }

    /// Length and last write time of the open file of `ino`, if it holds bytes the db does
    /// not have yet (it then speaks for the file's size).
    fn dirty_len(&self, ino: u64) -> Option<(u64, SystemTime)> {
        let file = self.s.open_file(ino)?;
        let mut f = lock(&file);
        if !f.dirty {
            return None;
        }
        let modified = f.modified.unwrap_or_else(SystemTime::now);
        f.len(self.db()).ok().map(|len| (len, modified))
    }

    /// Replies to a READ from `f`, lending the bytes to the reply instead of copying them out.
    fn reply_read(&self, f: &mut OpenFile, offset: u64, size: u32, reply: ReplyData) {
        let mut reply = Some(reply);
        let result = f.read_with(self.db(), offset, size, |bytes| {
            if let Some(r) = reply.take() {
                r.data(bytes);
            }
        });
        if let (Err(e), Some(r)) = (result, reply.take()) {
            r.error(errno(e.errno()));
        }
    }

    /// The times of `path`: what changed through the mount, else `base`. For something the
    /// head holds (`committed`), the head's time `base` is a floor.
    fn times_of(&self, path: &str, base: SystemTime, committed: bool) -> Times {
        match lock(&self.s.times).get(path) {
            Some(t) if committed => t.at_least(base),
            Some(t) => *t,
            None => Times::all(base),
        }
    }

    /// `t` with the mtime and ctime of a write still in an open handle.
    fn written_at(mut t: Times, modified: SystemTime) -> Times {
        t.mtime = modified;
        t.ctime = t.ctime.max(modified);
        t
    }

    /// Attributes and TTL of the node at `path`.
    fn getattr_path(&self, path: &str) -> Result<(FileAttr, Duration), Errno> {
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
        let stat = self.db().stat(path).map_err(|e| lookup_err(&e))?;
        if stat.is_none() {
            if let Some(mode) = self.pending_mode(path) {
                let ino = self.ino_of(path);
                let (kind, perm) = kind_of(mode);
                let t = self.times_of(path, self.s.start, false);
                let (size, t) = match self.dirty_len(ino) {
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
                let (size, t) = match self.dirty_len(ino) {
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
    /// that replaced it recorded (see [`orphans`]); ESTALE otherwise, so the kernel looks
    /// the name up again. The kernel's `fstat` sends no file handle (only some setattr paths
    /// do), so the inode's open file speaks for it.
    fn orphan_attr(&self, ino: INodeNo) -> Result<(FileAttr, Duration), Errno> {
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

    /// `ftruncate`/`fchmod` on a descriptor whose name is gone (see [`Self::orphan_attr`]):
    /// applied to the open file, which is all that is left of it.
    fn orphan_setattr(
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

    fn ctl_attr(&self, path: &str, node: &CtlNode) -> Result<(FileAttr, Duration), Errno> {
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
            CtlNode::Status | CtlNode::Head | CtlNode::Log | CtlNode::Conflicts => {
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

    fn render(&self, node: &CtlNode) -> Vec<u8> {
        let err = lock(&self.s.last_error).clone();
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
            err.as_deref(),
            empty,
            stats::Snapshot {
                busy_poll: self.s.busy.get().map(|b| b.snapshot()).unwrap_or_default(),
                ..self.s.stats.snapshot()
            },
        )
    }

    /// Something changed through the mount (for autocommit).
    fn note_change(&self) {
        self.s.last_change_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The contents of `path` changed at `at`: its mtime and ctime (never back: `at` may be
    /// an mtime set by utimens on a writer still open, see `setattr`).
    fn content_changed(&self, path: &str, at: SystemTime) {
        self.note_change();
        let mut times = lock(&self.s.times);
        let old = times.get(path).copied();
        times.insert(
            path.to_owned(),
            Times {
                atime: old.map_or(at, |t| t.atime),
                mtime: at,
                ctime: old.map_or(at, |t| t.ctime.max(at)),
            },
        );
    }

    /// A name was added to or removed from the directory holding `path`: the directory's
    /// mtime and ctime, as POSIX requires of create, mkdir, unlink, rmdir, rename, symlink.
    fn entry_changed(&self, path: &str) {
        self.content_changed(split(path).0, SystemTime::now());
    }

    /// `path` was made now: all its times, and its directory's.
    fn created(&self, path: &str) {
        lock(&self.s.times).insert(path.to_owned(), Times::all(SystemTime::now()));
        self.entry_changed(path);
    }

    /// `path` (a value or an empty directory) is gone: forget its times, change its
    /// directory's.
    fn removed(&self, path: &str) {
        lock(&self.s.times).remove(path);
        self.entry_changed(path);
    }

    /// The attributes of `path` changed (chmod, chown, utimens): its ctime only, the other
    /// times as they were (`before`), even for a committed value that this change stages.
    fn status_changed(&self, path: &str, before: Times) {
        self.note_change();
        lock(&self.s.times).insert(
            path.to_owned(),
            Times {
                ctime: SystemTime::now(),
                ..before
            },
        );
    }

    /// A key now exists at (or below) `path`: its ancestors are directories of the store, so
    /// the mount no longer needs to keep them (a later removal keeps them again, see
    /// [`Self::keep_parent_dirs`]). Keeps the set of kept directories small.
    fn key_added(&self, path: &str) {
        let mut dirs = lock(&self.s.empty_dirs);
        if dirs.is_empty() {
            return;
        }
        let mut cur = split(path).0;
        while !cur.is_empty() {
            dirs.remove(cur);
            cur = split(cur).0;
        }
    }

    /// After a removal at `path`: keep its ancestors as (empty) directories, as a disk
    /// filesystem would, instead of letting them vanish with their last key.
    fn keep_parent_dirs(&self, path: &str) {
        let mut cur = split(path).0;
        let mut keep = Vec::new();
        while !cur.is_empty() {
            match self.db().stat(cur) {
                Ok(Some(Stat::Dir)) => break,
                _ => keep.push(cur.to_owned()),
            }
            cur = split(cur).0;
        }
        if !keep.is_empty() {
            lock(&self.s.empty_dirs).extend(keep);
        }
    }

    fn check_writable(&self) -> Result<(), Errno> {
        if self.s.cfg.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// A handle on something other than a value (control files, history).
    fn new_handle(&self, h: Handle) -> FileHandle {
        let fh = self.s.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.s.handles).map.insert(fh, Arc::new(h));
        FileHandle(fh)
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<Handle>, Errno> {
        lock(&self.s.handles)
            .map
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    /// Opens a handle on `ino`'s open file, joining the one already open or, for the first
    /// opener, the one `first` makes (from what the db holds). `first` runs without locks;
    /// if a release removed the open file meanwhile, it runs again.
    fn open_value(
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
    fn release_handle(&self, fh: FileHandle) -> Result<(), Errno> {
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
        if let Some((token, data)) = prefill {
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

    /// Runs one control command written to `/.gitdb/ctl`. The reply goes out from the
    /// invalidation thread, after whatever the command's change queued there (a rollback's
    /// or an adopted head's invalidations): once `echo rollback > ctl` returns, the kernel no
    /// longer shows what was dropped.
    fn ctl(&self, data: &[u8], reply: ReplyWrite) {
        let len = data.len() as u32;
        let result = control::execute(self.db(), data, now_ms()).map_err(|e| {
            self.s.set_last_error(format!("ctl: {e}"));
            errno(e.errno())
        });
        self.s
            .tell_kernel(KernelTask::Reply(Box::new(move || match result {
                Ok(_) => reply.written(len),
                Err(e) => reply.error(e),
            })));
    }

    /// The open file of `ino` (at `path`) for its first opener: what the db holds there now.
    fn load_file(&self, ino: u64, path: &str) -> Result<OpenFile, Errno> {
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
    /// the rename recorded (see [`orphans`]). Writes to it go nowhere, as to an unlinked file.
    fn load_orphan(&self, ino: u64) -> Result<OpenFile, Errno> {
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

    /// Truncates `ino`'s value: the descriptor's open file (`ftruncate`), or, by path
    /// (`truncate(2)`; O_TRUNC on a kernel without atomic O_TRUNC), the inode's open file,
    /// which every descriptor shares. Writers still open store it when they close, so the
    /// store never holds the empty middle state of `echo new > file`; with no writer open it
    /// is stored now.
    fn truncate_file(
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

    /// Stores what an open file holds in the db, as one set, if the db does not have it yet.
    fn flush_value(&self, v: &mut OpenFile) -> Result<(), Errno> {
        if !v.dirty {
            return Ok(());
        }
        let path = match lock(&self.s.inodes).path(v.ino) {
            Some(p) => p.to_owned(),
            None => {
                // Unlinked (or replaced by a rename) while open: the data goes nowhere, as on
                // a disk filesystem.
                v.dirty = false;
                return Ok(());
            }
        };
        // Taken before the bytes are read, so any change racing with this flush shows.
        let token = self.s.change_token(v.ino);
        let db = &self.s.db;
        let mode = v.mode;
        let mut prefill = None;
        let result = match v.flush_data(&**db).map_err(|e| errno(e.errno()))? {
            FlushData::Mem(bytes) => {
                if mode != ValueMode::Symlink && !bytes.is_empty() && bytes.len() <= PREFILL_MAX {
                    prefill = Some(bytes.to_vec());
                }
                db.set_with_mode(&path, bytes, mode).map(|()| None)
            }
            FlushData::Stream(reader) => stream_set(db, &path, reader, mode).map(Some),
        };
        let stored = result.map_err(|e| {
            self.s.set_last_error(format!("writing /{path}: {e}"));
            db_err(&e)
        })?;
        if let Some(id) = stored {
            v.stored(id);
        }
        v.dirty = false;
        lock(&self.s.pending).remove(&path);
        self.content_changed(&path, v.modified.unwrap_or_else(SystemTime::now));
        self.key_added(&path);
        // Put in the page cache once the last handle is released (see `release`).
        v.flushed = prefill.map(|data| (token, data));
        Ok(())
    }

    /// Creates an empty value at `path` (mknod) with `meta` as its creator asked.
    fn create_value(&self, path: &str, meta: Meta) -> Result<ValueMode, Errno> {
        self.check_writable()?;
        let vmode = value_mode(meta.mode);
        if self.is_empty_dir(path) {
            return Err(Errno::EEXIST);
        }
        // Before the name appears, so it never shows someone else's (or no) metadata.
        self.record_meta(path, node_type(vmode), meta)?;
        self.db()
            .set_with_mode(path, b"", vmode)
            .map_err(|e| db_err(&e))?;
        self.created(path);
        self.key_added(path);
        Ok(vmode)
    }

    /// Registers a file made by `create`: the store gets it when its writer flushes.
    fn create_pending(&self, path: &str, meta: Meta) -> Result<ValueMode, Errno> {
        self.check_writable()?;
        let vmode = value_mode(meta.mode);
        Key::parse_value(path).map_err(|e| db_err(&DbError::Key(e)))?;
        if self.is_empty_dir(path) {
            return Err(Errno::EEXIST);
        }
        self.record_meta(path, node_type(vmode), meta)?;
        lock(&self.s.pending).insert(path.to_owned(), vmode);
        self.created(path);
        Ok(vmode)
    }

    fn list_dir(&self, path: &str) -> Result<Vec<(u64, FileType, String)>, Errno> {
        let mut out: Vec<(FileType, String)> = Vec::new();
        if let Some(node) = control::parse(path) {
            match node {
                CtlNode::Dir => {
                    for (name, is_dir) in control::ENTRIES {
                        let kind = if is_dir {
                            FileType::Directory
                        } else {
                            FileType::RegularFile
                        };
                        out.push((kind, name.to_owned()));
                    }
                }
                CtlNode::HistoryDir => {
                    for e in self.db().log(control::LOG_LEN).map_err(|e| db_err(&e))? {
                        out.push((FileType::Directory, e.id));
                    }
                }
                CtlNode::History { commit, path: p } => {
                    let entries = self
                        .db()
                        .list_at(&commit.to_string(), &p)
                        .map_err(|e| db_err(&e))?;
                    for e in entries {
                        out.push((node_kind(e.kind), e.name));
                    }
                }
                _ => return Err(Errno::ENOTDIR),
            }
        } else {
            match self.db().list(path) {
                Ok(entries) => {
                    for e in entries {
                        out.push((node_kind(e.kind), e.name));
                    }
                }
                Err(DbError::NotFound { .. }) if self.is_empty_dir(path) => {}
                Err(e) => return Err(db_err(&e)),
            }
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            {
                let dirs = lock(&self.s.empty_dirs);
                let mut kept = dirs
                    .range(prefix.clone()..)
                    .take_while(|d| d.starts_with(&prefix))
                    .map(|d| &d[prefix.len()..])
                    .filter(|rest| !rest.contains('/'))
                    .peekable();
                if kept.peek().is_some() {
                    let listed: std::collections::HashSet<String> =
                        out.iter().map(|(_, n)| n.clone()).collect();
                    let extra: Vec<String> = kept
                        .filter(|rest| !listed.contains(*rest))
                        .map(str::to_owned)
                        .collect();
                    out.extend(extra.into_iter().map(|n| (FileType::Directory, n)));
                }
            }
            {
                let pending = lock(&self.s.pending);
                let files: Vec<(FileType, String)> = pending
                    .range(prefix.clone()..)
                    .take_while(|(p, _)| p.starts_with(&prefix))
                    .map(|(p, m)| (kind_of(*m).0, &p[prefix.len()..]))
                    .filter(|(_, rest)| !rest.contains('/'))
                    .map(|(k, rest)| (k, rest.to_owned()))
                    .collect();
                drop(pending);
                if !files.is_empty() {
                    let listed: std::collections::HashSet<String> =
                        out.iter().map(|(_, n)| n.clone()).collect();
                    out.extend(files.into_iter().filter(|(_, n)| !listed.contains(n)));
                }
            }
            if path.is_empty() {
                out.push((FileType::Directory, control::DIR.to_owned()));
            }
        }
        let mut table = lock(&self.s.inodes);
        let self_ino = table.ino(path);
        let parent_ino = table.ino(split(path).0);
        let mut listing = vec![
            (self_ino, FileType::Directory, ".".to_owned()),
            (parent_ino, FileType::Directory, "..".to_owned()),
        ];
        let mut child = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let base = child.len();
        listing.reserve(out.len());
        for (kind, name) in out {
            child.truncate(base);
            child.push_str(&name);
            let ino = table.ino(&child);
            listing.push((ino, kind, name));
        }
        Ok(listing)
    }

    /// The listing READDIR(PLUS) at `offset` of directory `ino` reads from, and the index to
    /// go on from (see [`DirSnapshots`]).
    fn listing(&self, ino: INodeNo, offset: u64) -> Result<(Arc<dirs::Listing>, usize), Errno> {
        if let Some(found) = self.s.dirs.find(ino.0, offset) {
            return Ok(found);
        }
        // `list_dir` itself answers ENOTDIR/ENOENT for what is not a directory: no separate
        // lookup of the directory first.
        let entries = self.list_dir(&self.path_of(ino)?)?;
        // A cookie from a snapshot that is gone: go on from the same position in a fresh
        // listing (only entries changed meanwhile can be missed or repeated).
        let start = if offset == 0 {
            0
        } else {
            DirSnapshots::index(offset)
        };
        Ok((self.s.dirs.insert(ino.0, entries), start))
    }

    fn do_rename(&self, from: &str, to: &str, noreplace: bool) -> Result<(), Errno> {
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

    fn rename_inner(&self, from: &str, to: &str, noreplace: bool) -> Result<(), Errno> {
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
        let dst = db.stat(to).map_err(|e| lookup_err(&e))?;
        let dst_empty = dst.is_none() && self.is_empty_dir(to);
        let dst_pending = dst.is_none() && self.pending_mode(to).is_some();
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
            let prefix = format!("{from}/");
            let moved: Vec<String> = dirs
                .iter()
                .filter(|d| d.as_str() == from || d.starts_with(&prefix))
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
            let prefix = format!("{from}/");
            let moved: Vec<(String, ValueMode)> = pending
                .range(prefix.clone()..)
                .take_while(|(p, _)| p.starts_with(&prefix))
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

fn stream_set(
    db: &GitDb,
    path: &str,
    reader: std::io::Take<&mut std::fs::File>,
    mode: ValueMode,
) -> crate::db::Result<ObjectId> {
    db.set_stream(path, reader.limit(), reader, mode)
}

/// The kind of node a value of git mode `mode` is, for its metadata.
fn node_type(mode: ValueMode) -> NodeType {
    match mode {
        ValueMode::Regular => NodeType::File { executable: false },
        ValueMode::Executable => NodeType::File { executable: true },
        ValueMode::Symlink => NodeType::Symlink,
    }
}

/// The kind of node `attr` shows, for its metadata (a value shows x bits exactly when git
/// holds its executable bit, see `MetaDefaults::resolve`).
fn attr_type(attr: &FileAttr) -> NodeType {
    match attr.kind {
        FileType::Directory => NodeType::Dir,
        FileType::Symlink => NodeType::Symlink,
        _ => NodeType::File {
            executable: attr.perm & 0o111 != 0,
        },
    }
}

/// Whether the process behind `req` belongs to group `gid`: its gid, or one of the
/// supplementary groups the kernel lists for it (FUSE requests carry only the first).
fn caller_in_group(req: &Request, gid: u32) -> bool {
    if req.gid() == gid {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", req.pid())) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|n| n.parse() == Ok(gid)))
}

fn node_kind(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::Dir => FileType::Directory,
        NodeKind::Value(m) => kind_of(m).0,
    }
}

/// The git mode a file with permission bits `mode` gets: git keeps only the executable bit.
fn value_mode(mode: u32) -> ValueMode {
    if mode & 0o111 != 0 {
        ValueMode::Executable
    } else {
        ValueMode::Regular
    }
}

fn writable(flags: OpenFlags) -> bool {
    !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY) || flags.0 & libc::O_TRUNC != 0
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

/// Block and inode figures of the filesystem holding the repository.
fn statvfs(path: &Path) -> Option<(u64, u64, u64, u64, u64, u32)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some((
        st.f_blocks,
        st.f_bfree,
        st.f_bavail,
        st.f_files,
        st.f_ffree,
        st.f_bsize as u32,
    ))
}
