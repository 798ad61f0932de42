//! Mounting, and the threads that keep the mount honest while HEAD moves under it.
//!
//! - `gitdb-refresh` calls [`GitDb::refresh`] every `refresh_interval` to adopt commits made
//!   behind the mount's back (stock git today, gossip merges later).
//! - `gitdb-inval` owns the fuser `Notifier` and serves `KernelTask`s in order. The db's news
//!   ([`GitDb::subscribe_with`]) is queued there by the thread that made the change, before
//!   that change returns: for a head *adopted* from elsewhere or a rollback it drops the
//!   kernel's caches of exactly the changed paths (a local commit changes no visible value, so
//!   it costs only the `history` listing), and a `ctl` command's reply is queued behind the
//!   invalidation its change caused, so the command returns only once the kernel agrees. It drops the
//!   kernel's entry cache for names that may have appeared or disappeared (`inval_entry`) and
//!   the attribute/page cache of values that changed (`inval_inode`), and puts small values
//!   just written in the page cache (`prefill`, `notify_store`). It runs outside every FUSE
//!   callback and takes leaf locks only to compute the targets, never while notifying: a
//!   notification waits for the kernel, which may be waiting for a callback that needs a lock.
//! - `gitdb-autocommit` (with `--autocommit DUR`) commits the working layer after DUR of quiet.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{Config, INodeNo, MountOption, Notifier, SessionACL};

use super::{FsConfig, GitDbFs, KernelTask, Shared};
use crate::db::{GitDb, HeadEvent, HeadOrigin};

/// Errors of mounting and unmounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mountpoint {path}: {source}")]
    Mountpoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mountpoint {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("listening for SIGINT/SIGTERM: {0}")]
    Signals(std::io::Error),
    #[error("mounting on {path}: {source}")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("preparing the value cache in {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting a thread: {0}")]
    Thread(std::io::Error),
    #[error("unmounting {path}: {source}")]
    Unmount {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} already has a live {fstype} mount ({fsname}): not mounting over it; unmount it \
         first (`umount {path:?}`) or choose another mountpoint"
    )]
    AlreadyMounted {
        path: PathBuf,
        fstype: String,
        fsname: String,
    },
    #[error(
        "{path} has a {fstype} mount ({fsname}) whose daemon did not answer within {waited:?} \
         (hung or very busy): not mounting over it; if it is hung, abort it \
         (`echo 1 > /sys/fs/fuse/connections/{connection}/abort`, with fusectl mounted there) \
         or detach it (`umount -l {path:?}`), then start again"
    )]
    Unresponsive {
        path: PathBuf,
        fstype: String,
        fsname: String,
        connection: u32,
        waited: Duration,
    },
    #[error("syncing the journal: {0}")]
    Sync(#[from] crate::db::DbError),
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub fs: FsConfig,
    /// Commit after this much quiet (None: never on its own).
    pub autocommit: Option<Duration>,
    /// How often HEAD is re-read for commits made behind the mount's back.
    pub refresh_interval: Duration,
    /// Kernel mount options (ro, allow_other, fsname, ...).
    pub mount_options: Vec<MountOption>,
    pub acl: SessionACL,
    /// FUSE worker threads.
    pub threads: usize,
    /// Busy-poll the FUSE device while requests come less than this apart (see
    /// [`super::busy`]); None: the worker always sleeps between requests.
    pub busy_poll: Option<Duration>,
    /// At shutdown, how long to wait for files still open on the mount to be closed before
    /// detaching it anyway (see [`Mounted::shutdown`]).
    pub stop_timeout: Duration,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            fs: FsConfig::default(),
            autocommit: None,
            refresh_interval: Duration::from_millis(500),
            mount_options: Vec::new(),
            acl: SessionACL::Owner,
            // One worker: most requests take microseconds, and on small machines a second
            // thread costs more in wake-ups than it gains (measured: ~30% fewer ops/s with 2).
            threads: 1,
            // Requests of one busy application come 5–50 µs apart; 100 µs keeps polling on
            // through them, and ends it within 100–250 µs of the last.
            busy_poll: Some(Duration::from_micros(100)),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// A live mount and its threads. [`Mounted::shutdown`] ends it cleanly.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    mountpoint: PathBuf,
    stop_timeout: Duration,
}

/// How long a mount at the mountpoint may take to answer `statfs` before it counts as hung. A
/// live daemon answers in microseconds; one that is hung (or stuck in a long callback with a
/// single worker) may never answer, and the start must not wait for it forever.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many dead mounts are detached from one mountpoint: more means that detaching
/// is not taking effect, and looping on would never end. (Before this check existed, a 60-round
/// crash run stacked 51.)
const MAX_DETACH: usize = 1024;

/// Makes `path` free to mount on: detaches every dead FUSE mount there (a killed daemon leaves
/// "Transport endpoint is not connected"), topmost first, and refuses a FUSE mount that is
/// alive. Returns whether it detached any.
///
/// A dead mount is told by its entry in `/proc/self/mountinfo` and by asking its connection,
/// never by `stat`: the kernel answers `stat` of the root from its attribute cache (60 s TTL)
/// without asking the daemon, so right after a crash the dead mount looks alive and the new
/// one would be stacked on it (or fail later with ENOTCONN). `statfs(2)` always sends
/// FUSE_STATFS to the daemon: ENOTCONN (or ECONNABORTED after an abort) means nobody is behind
/// the mount any more.
///
/// - A live FUSE mount (it answers) is [`MountError::AlreadyMounted`]: stacking on it would
///   hide it and its daemon would keep running unseen.
/// - A FUSE mount that does not answer within [`PROBE_TIMEOUT`] is
///   [`MountError::Unresponsive`]: its daemon is alive but hung (or very busy). It is not
///   aborted here: that would fail every request of the processes using it, and it may yet
///   recover. Its `/sys/fs/fuse/connections/N/waiting` count is logged, and the error says how
///   to abort it (`echo 1 > .../N/abort`, needs fusectl mounted there) or detach it. The probe
///   thread stays blocked until the daemon answers or the process exits.
/// - Something other than FUSE on top (a bind mount, a tmpfs volume) is mounted over as
///   before: that is a normal setup, and it cannot be a dead daemon.
/// - Root probing another user's mount without `allow_other` gets a made-up answer from the
///   kernel (it never asks such a daemon), so that mount counts as live and is refused: safe,
///   never stacked on.
///
/// If `/proc/self/mountinfo` cannot be read (no /proc in a chroot), nothing is checked and the
/// mount goes ahead as it always did, with a warning.
pub fn clean_stale_mount(path: &Path) -> Result<bool, MountError> {
    let path = absolute(path);
    let mut detached = 0usize;
    loop {
        let entries = match mounts_at(&path) {
            Ok(entries) => entries,
            Err(e) => {
                log::warn!(
                    "reading {MOUNTINFO}: {e}; not checking {} for a stale or live mount",
                    path.display()
                );
                return Ok(detached > 0);
            }
        };
        let Some(top) = topmost(&entries) else {
            return Ok(detached > 0);
        };
        if !top.is_fuse() {
            log::debug!(
                "{} is a {} mount ({}): mounting over it",
                path.display(),
                top.fstype,
                top.fsname
            );
            return Ok(detached > 0);
        }
        if detached >= MAX_DETACH {
            return Err(MountError::Unmount {
                path,
                source: std::io::Error::other(format!(
                    "still a dead mount after detaching {detached}"
                )),
            });
        }
        match probe(&path, PROBE_TIMEOUT)? {
            Some(Ok(())) => {
                return Err(MountError::AlreadyMounted {
                    path,
                    fstype: top.fstype.clone(),
                    fsname: top.fsname.clone(),
                });
            }
            Some(Err(e))
                if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) =>
            {
                log::warn!(
                    "{} is a stale FUSE mount ({} {}, its daemon died: {e}): detaching it \
                     (umount -l)",
                    path.display(),
                    top.fstype,
                    top.fsname
                );
                lazy_unmount(&path).map_err(|source| MountError::Unmount {
                    path: path.clone(),
                    source,
                })?;
                detached += 1;
            }
            // The daemon answered with an error, or the path cannot be reached: either way it is
            // nothing to detach, and nothing to mount over blindly.
            Some(Err(source)) => return Err(MountError::Mountpoint { path, source }),
            None => {
                let connection = top.connection();
                let waiting = std::fs::read_to_string(format!(
                    "/sys/fs/fuse/connections/{connection}/waiting"
                ))
                .map_or_else(
                    |_| "unknown (fusectl not mounted)".to_owned(),
                    |w| w.trim().to_owned(),
                );
                log::warn!(
                    "{} ({} {}) did not answer statfs within {PROBE_TIMEOUT:?}; FUSE connection \
                     {connection}, requests waiting: {waiting}",
                    path.display(),
                    top.fstype,
                    top.fsname
                );
                return Err(MountError::Unresponsive {
                    path,
                    fstype: top.fstype.clone(),
                    fsname: top.fsname.clone(),
                    connection,
                    waited: PROBE_TIMEOUT,
                });
            }
        }
    }
}

/// `path` made absolute the way the kernel writes mount points: symlinks resolved. A dead
/// mount does not stop this (realpath reads links, and a FUSE directory has none to ask the
/// daemon about); a path that does not exist yet keeps its last component.
fn absolute(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    if let (Some(parent), Some(name)) = (path.parent(), path.file_name())
        && let Ok(parent) = std::fs::canonicalize(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
    {
        return parent.join(name);
    }
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// `statfs(2)` on `path` from a helper thread: the result, or None if it took longer than
/// `timeout` (the thread is left blocked in the kernel; it ends when the daemon answers, the
/// connection is aborted, or this process exits).
fn probe(path: &Path, timeout: Duration) -> Result<Option<std::io::Result<()>>, MountError> {
    let c = cpath(path).map_err(|source| MountError::Mountpoint {
        path: path.to_owned(),
        source,
    })?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("gitdb-probe".into())
        .spawn(move || {
            let mut buf = std::mem::MaybeUninit::<libc::statfs>::uninit();
            // SAFETY: `c` is a valid NUL-terminated path and `buf` is large enough for the
            // statfs struct the kernel writes; it is never read here.
            let r = unsafe { libc::statfs(c.as_ptr(), buf.as_mut_ptr()) };
            let _ = tx.send(if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            });
        })
        .map_err(MountError::Thread)?;
    Ok(rx.recv_timeout(timeout).ok())
}

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of `/proc/self/mountinfo`, the fields used here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    id: u64,
    parent: u64,
    /// `st_dev` of the mount, as (major, minor).
    dev: (u32, u32),
    mount_point: PathBuf,
    /// `fuse`, `fuse.gitdb` (with a subtype), `tmpfs`, ...
    fstype: String,
    /// The source column: `gitdb:<repo>` for ours.
    fsname: String,
}

impl MountEntry {
    /// Parses one line: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE
    /// SOURCE SUPEROPTIONS` (proc(5)). None for a line not in that shape: the kernel writes
    /// it, but a line this code does not understand must not stop a mount.
    fn parse(line: &[u8]) -> Option<MountEntry> {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let text = |f: &[u8]| std::str::from_utf8(f).ok().map(str::to_owned);
        let number = |f: &[u8]| text(f)?.parse::<u64>().ok();
        let (major, minor) = text(fields.get(2)?)?
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))?;
        // Optional fields (shared:N, master:N, ...) end at a lone "-".
        let dash = 6 + fields.get(6..)?.iter().position(|f| *f == b"-")?;
        let lossy = |f: &[u8]| String::from_utf8_lossy(&unescape(f)).into_owned();
        Some(MountEntry {
            id: number(fields.first()?)?,
            parent: number(fields.get(1)?)?,
            dev: (major, minor),
            mount_point: PathBuf::from(std::ffi::OsString::from_vec(unescape(fields.get(4)?))),
            fstype: lossy(fields.get(dash + 1)?),
            fsname: lossy(fields.get(dash + 2)?),
        })
    }

    fn is_fuse(&self) -> bool {
        ["fuse", "fuseblk"].iter().any(|t| {
            self.fstype == *t
                || self
                    .fstype
                    .strip_prefix(t)
                    .is_some_and(|sub| sub.starts_with('.'))
        })
    }

    /// The connection's name under `/sys/fs/fuse/connections/`: the kernel's dev_t of the
    /// mount, `MKDEV(major, minor)` (FUSE mounts have major 0, so it is the minor).
    fn connection(&self) -> u32 {
        (self.dev.0 << 20) | self.dev.1
    }
}

/// Undoes the kernel's escaping of mountinfo fields: space, tab, newline and backslash are
/// written as `\040`, `\011`, `\012`, `\134` (three octal digits). A backslash not followed
/// by three octal digits of a byte is kept as it is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// The mounts whose mount point is exactly `path` (absolute, symlinks resolved), in the
/// kernel's order. Read as bytes: one mount point that is not UTF-8 must not hide the others.
fn mounts_at(path: &Path) -> std::io::Result<Vec<MountEntry>> {
    let info = std::fs::read(MOUNTINFO)?;
    Ok(info
        .split(|&b| b == b'\n')
        .filter_map(MountEntry::parse)
        .filter(|e| e.mount_point == path)
        .collect())
}

/// Of mounts stacked on one mount point, the one on top: the one no other is mounted on.
/// (The kernel lists mounts in the order they were made, so the last such one if several.)
fn topmost(entries: &[MountEntry]) -> Option<&MountEntry> {
    entries
        .iter()
        .rev()
        .find(|e| !entries.iter().any(|o| o.parent == e.id && o.id != e.id))
        .or(entries.last())
}

/// Whether `path` is a mountpoint (per /proc/self/mountinfo, escapes decoded: a mountpoint
/// with a space in its name is written `\040` there).
fn is_mounted(path: &Path) -> bool {
    mounts_at(path).is_ok_and(|m| !m.is_empty())
}

fn cpath(path: &Path) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// `umount`: fails with EBUSY while something on the mount is open.
fn unmount(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `umount -l`: detach now, let the kernel finish when the last user leaves.
fn lazy_unmount(path: &Path) -> std::io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The kernel mount options: the caller's, a `gitdb:<repo>` fsname and the `gitdb` subtype
/// unless given, and `default_permissions` whenever users other than the owner may enter:
/// the daemon checks no permissions itself, so the kernel must check the modes it shows
/// (values 644/755 owned by the mounting user), or any local user could change any key.
fn kernel_options(options: &MountOptions, git_dir: &Path) -> Vec<MountOption> {
    let mut opts = options.mount_options.clone();
    if !opts.iter().any(|o| matches!(o, MountOption::FSName(_))) {
        opts.push(MountOption::FSName(format!("gitdb:{}", git_dir.display())));
    }
    if !opts.iter().any(|o| matches!(o, MountOption::Subtype(_))) {
        opts.push(MountOption::Subtype("gitdb".into()));
    }
    if options.acl != SessionACL::Owner && !opts.contains(&MountOption::DefaultPermissions) {
        opts.push(MountOption::DefaultPermissions);
    }
    opts
}

/// Makes `path` ready to mount on: dead FUSE mounts there detached, a live one refused (see
/// [`clean_stale_mount`]), the directory created if absent. A daemon calls it before it opens
/// (or creates) the repository, so a wrong mountpoint costs nothing.
pub fn prepare_mountpoint(path: &Path) -> Result<(), MountError> {
    clean_stale_mount(path)?;
    let io = |source| MountError::Mountpoint {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(MountError::NotADirectory {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

/// SIGINT and SIGTERM, delivered to a plain thread (signal-hook) rather than handled in an
/// async-signal context: registered before mounting, so a stop that comes early is not lost.
pub struct StopSignals {
    rx: mpsc::Receiver<i32>,
    handle: signal_hook::iterator::Handle,
}

impl StopSignals {
    pub fn new() -> Result<StopSignals, MountError> {
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .map_err(MountError::Signals)?;
        let handle = signals.handle();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("gitdb-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    let _ = tx.send(sig);
                }
            })
            .map_err(MountError::Thread)?;
        Ok(StopSignals { rx, handle })
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// Mounts `db` at `mountpoint` (created if absent; dead FUSE mounts there are detached first,
/// a live one is an error: see [`clean_stale_mount`]) and starts the background threads.
pub fn mount(
    db: Arc<GitDb>,
    mountpoint: &Path,
    options: MountOptions,
) -> Result<Mounted, MountError> {
    prepare_mountpoint(mountpoint)?;
    let absolute = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_owned());
    let mountpoint = absolute.as_path();
    let (inval_tx, inval_rx) = mpsc::channel::<KernelTask>();
    let shared = Arc::new(
        Shared::new(db.clone(), options.fs.clone(), inval_tx.clone()).map_err(|source| {
            MountError::Cache {
                path: db.git_dir().join("gitdb"),
                source,
            }
        })?,
    );
    let mut config = Config::default();
    config.mount_options = kernel_options(&options, db.git_dir());
    config.acl = options.acl;
    config.n_threads = Some(options.threads.max(1));
    config.clone_fd = options.threads > 1;
    let session = fuser::Session::new(GitDbFs::new(shared.clone()), mountpoint, &config).map_err(
        |source| MountError::Mount {
            path: mountpoint.to_owned(),
            source,
        },
    )?;
    match options.busy_poll.filter(|p| !p.is_zero()) {
        None => {}
        // Polling pays only with a CPU to spare: on one, the polling worker and the
        // application take turns on it and each round trip waits for the other's time slice
        // (measured: half the ops/s with both pinned to one CPU).
        Some(_) if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 => {
            log::info!("busy polling off: this process may use one CPU only")
        }
        Some(period) => {
            use std::os::fd::AsFd;
            match super::busy::BusyPoll::new(session.as_fd(), period) {
                Ok(busy) => {
                    let _ = shared.busy.set(busy);
                }
                Err(e) => log::warn!("busy polling off: duplicating the FUSE descriptor: {e}"),
            }
        }
    }
    let notifier = session.notifier();
    let session = session.spawn().map_err(|source| MountError::Mount {
        path: mountpoint.to_owned(),
        source,
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(f)
            .map_err(MountError::Thread)
    };

    {
        // The db's news reaches the invalidation thread straight from the thread that made
        // the change, before that change returns to its caller: a ctl command queues its
        // reply behind the invalidation its own change queued (see `KernelTask::Reply`).
        let tx = Mutex::new(inval_tx);
        db.subscribe_with(move |ev| {
            tx.lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(KernelTask::News(ev.clone()))
                .is_ok()
        });
    }
    {
        let stop = stop.clone();
        let shared = shared.clone();
        let delay = prefill_test_delay();
        let warmer = match super::warmer::Warmer::start(mountpoint) {
            Ok(w) => {
                shared.warmer_pid.store(w.pid(), Ordering::Relaxed);
                Some(w)
            }
            Err(e) => {
                log::warn!("no attribute warmer (stat after write costs a round trip): {e}");
                None
            }
        };
        threads.push(spawn(
            "gitdb-inval",
            Box::new(move || {
                while !stop.load(Ordering::Relaxed) {
                    match inval_rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(KernelTask::News(ev)) => news(&shared, &notifier, ev),
                        Ok(KernelTask::Reply(reply)) => reply(),
                        Ok(KernelTask::Prefill { ino, token, data }) => {
                            if prefill(&shared, &notifier, ino, token, &data, delay)
                                && let (Some(w), Some(path)) = (&warmer, shared.path_of_ino(ino))
                            {
                                // Harmless if the file was renamed or removed meanwhile:
                                // another file's attributes get fetched, or none.
                                w.warm(&path);
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            }),
        )?);
    }
    if shared.busy.get().is_some() {
        let stop = stop.clone();
        let shared = shared.clone();
        threads.push(spawn(
            "gitdb-poll",
            Box::new(move || {
                if let Some(busy) = shared.busy.get() {
                    busy.run(&stop);
                }
            }),
        )?);
    }
    {
        let stop = stop.clone();
        let db = db.clone();
        let interval = options.refresh_interval;
        threads.push(spawn(
            "gitdb-refresh",
            Box::new(move || {
                while !stop.load(Ordering::Relaxed) {
                    sleep_unless(&stop, interval);
                    match db.refresh() {
                        Ok(Some(m)) => log::info!("adopted head {:?} (was {:?})", m.new, m.old),
                        Ok(None) => {}
                        Err(e) => log::warn!("refresh: {e}"),
                    }
                }
            }),
        )?);
    }
    if let Some(quiet) = options.autocommit {
        let stop = stop.clone();
        let shared = shared.clone();
        threads.push(spawn(
            "gitdb-autocommit",
            Box::new(move || {
                let tick = (quiet / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
                while !stop.load(Ordering::Relaxed) {
                    sleep_unless(&stop, tick);
                    let db = shared.db();
                    let now = crate::defaults::now_ms();
                    if db.is_dirty()
                        && now.saturating_sub(shared.last_change_ms()) >= quiet.as_millis() as u64
                    {
                        match db.commit("autocommit", now) {
                            Ok(outcome) => log::info!("autocommit: {outcome:?}"),
                            Err(e) => shared.set_last_error(format!("autocommit: {e}")),
                        }
                    }
                }
            }),
        )?);
    }
    log::info!(
        "mounted {} on {}",
        db.git_dir().display(),
        mountpoint.display()
    );
    Ok(Mounted {
        session: Some(session),
        stop,
        threads,
        shared,
        mountpoint: mountpoint.to_owned(),
        stop_timeout: options.stop_timeout,
    })
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let deadline = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Brings the kernel's caches in line with a change the db announced.
fn news(shared: &Shared, notifier: &Notifier, ev: HeadEvent) {
    // Every new commit changes the `history` listing.
    if ev.old != ev.new
        && let Some(ino) = shared.history_ino()
        && let Err(e) = notifier.inval_inode(INodeNo(ino), 0, 0)
    {
        log::trace!("inval_inode {ino}: {e}");
    }
    match ev.origin {
        // What readers see did not change.
        HeadOrigin::LocalCommit => {}
        HeadOrigin::Adopted => {
            log::info!(
                "head moved {:?} -> {:?}: {} path(s) changed",
                ev.old,
                ev.new,
                ev.changed.len()
            );
            invalidate(shared, notifier, &ev.changed);
        }
        HeadOrigin::Rollback => invalidate(shared, notifier, &ev.changed),
    }
}

/// Drops the kernel's caches for `paths` and their ancestors' entries. Errors (ENOENT: the
/// kernel never cached that node) are expected and ignored.
fn invalidate(shared: &Shared, notifier: &Notifier, paths: &[String]) {
    shared.all_change();
    shared.forget_nlinks();
    let (entries, dirs) = shared.inval_targets(paths);
    // No lock is held from here on.
    for ino in dirs {
        if let Err(e) = notifier.inval_inode(INodeNo(ino), 0, 0) {
            log::trace!("inval_inode {ino}: {e}");
        }
    }
    for (parent, name) in entries {
        if let Err(e) = notifier.inval_entry(INodeNo(parent), name.as_ref()) {
            log::trace!("inval_entry {parent}/{name}: {e}");
        }
    }
}

/// Puts a value flushed by a handle now released in the kernel's page cache, so the next open
/// and read of the file are served by the kernel (`FOPEN_KEEP_CACHE`) instead of a READ round
/// trip. (Writes go through the page cache but leave a partly written page invalid.)
///
/// Why it is safe: the store happens only while no writable handle is open on the file, so
/// no write (nor a store through a shared mapping) can be under way; `token` was taken before
/// the flush read its bytes, and every callback that can change the file's bytes or size
/// (write, truncate, an opening for writing, create) or values anywhere (rollback, HEAD moved)
/// bumps a counter it covers, so a change since the flush shows; and a truncate or an opening
/// for writing that comes after the check waits while `prefilling` names the file, so none
/// lands between the check and the store. Rollbacks and HEAD moves are served by this same
/// thread, after the prefill.
fn prefill(
    shared: &Shared,
    notifier: &Notifier,
    ino: u64,
    token: super::ChangeToken,
    data: &[u8],
    delay: Option<Duration>,
) -> bool {
    let pause = || delay.map(std::thread::sleep);
    pause();
    shared.set_prefilling(ino);
    let mut stored = false;
    if shared.change_token(ino) == token && !shared.has_writer(ino) {
        pause();
        stored = store(shared, notifier, ino, token, data);
    }
    shared.set_prefilling(0);
    stored
}

/// Debug builds only: `GITDB_TEST_PREFILL_DELAY_US` slows every prefill down (before and
/// after its first check), so tests can make a late prefill race with the changes after it.
fn prefill_test_delay() -> Option<Duration> {
    test_delay("GITDB_TEST_PREFILL_DELAY_US")
}

/// Debug builds only: the duration in µs that the environment variable `var` asks for.
pub(crate) fn test_delay(var: &str) -> Option<Duration> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let us = std::env::var(var).ok()?.parse().ok()?;
    Some(Duration::from_micros(us))
}

/// Whether the value is in the page cache and still the file's.
fn store(
    shared: &Shared,
    notifier: &Notifier,
    ino: u64,
    token: super::ChangeToken,
    data: &[u8],
) -> bool {
    match notifier.store(INodeNo(ino), 0, data) {
        // ENOENT: the kernel has no inode for it any more.
        Err(e) => {
            log::trace!("store {ino}: {e}");
            false
        }
        Ok(()) if shared.change_token(ino) != token => {
            if let Err(e) = notifier.inval_inode(INodeNo(ino), 0, 0) {
                log::trace!("inval_inode {ino}: {e}");
            }
            false
        }
        Ok(()) => {
            shared.stats.prefilled();
            true
        }
    }
}

impl Mounted {
    /// Serves until SIGINT/SIGTERM or an external `umount`, then shuts down (see
    /// [`Mounted::shutdown`]).
    pub fn serve_until_stopped(self, signals: StopSignals) -> Result<(), MountError> {
        loop {
            match signals.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(sig) => {
                    log::info!("signal {sig}: storing open files, unmounting");
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.is_finished() {
                        log::info!("{} was unmounted", self.mountpoint.display());
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        drop(signals);
        self.shutdown()
    }

    /// Whether the kernel ended the session (someone ran `umount`).
    pub fn is_finished(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Ends the mount without losing anything an application wrote, even to a file it still
    /// has open:
    /// 1. what open files hold is stored into the journal and synced, at once;
    /// 2. the mount is unmounted; while files are still open the kernel answers EBUSY (as
    ///    `umount` does), so it waits, saying so in the log, up to `stop_timeout` for them
    ///    to be closed (each close stores its file as usual);
    /// 3. if they are not, open files are stored one last time and writes into them fail
    ///    from then on (EIO), so none is acknowledged and then lost; the mount is detached
    ///    (`umount -l`): it goes away when the last process inside leaves;
    /// 4. the threads stop and the journal is synced.
    pub fn shutdown(mut self) -> Result<(), MountError> {
        let db = self.shared.db().clone();
        let stored = self.shared.flush_open_files(false);
        if stored > 0 {
            log::info!("stored {stored} file(s) still open into the journal");
        }
        db.sync()?;
        if let Some(session) = self.session.take() {
            if session.guard.is_finished() && !is_mounted(&self.mountpoint) {
                // Someone ran `umount`: the kernel side is gone and the FUSE thread ended.
                // Dropping the session would try to unmount again (and warn); its fd closes
                // at exit.
                std::mem::forget(session);
            } else {
                self.unmount_waiting(session);
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        log::info!(
            "unmounted {}; syncing the journal",
            self.mountpoint.display()
        );
        db.sync()?;
        Ok(())
    }

    /// Steps 2 and 3 of [`Mounted::shutdown`].
    fn unmount_waiting(&self, session: fuser::BackgroundSession) {
        let deadline = Instant::now() + self.stop_timeout;
        let mut told = false;
        loop {
            match unmount(&self.mountpoint) {
                Ok(()) => {
                    // The kernel ends the session: let its thread finish, then leave the
                    // session's own (now pointless) unmount undone.
                    let end = Instant::now() + Duration::from_secs(5);
                    while !session.guard.is_finished() && Instant::now() < end {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    std::mem::forget(session);
                    return;
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    if !told {
                        log::info!(
                            "{} is busy ({} file handle(s) open): waiting up to {:?} for them \
                             to be closed",
                            self.mountpoint.display(),
                            self.shared.open_value_handles(),
                            self.stop_timeout
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    let stored = self.shared.flush_open_files(true);
                    log::warn!(
                        "unmount {}: {e}; stored {stored} file(s) still open, writes into \
                         them fail from now on; detaching the mount (umount -l): it goes \
                         away when the last process inside leaves",
                        self.mountpoint.display()
                    );
                    if let Err(e) = self.shared.db().sync() {
                        log::warn!("syncing the journal: {e}");
                    }
                    if let Err(e) = lazy_unmount(&self.mountpoint) {
                        log::warn!("umount -l {}: {e}", self.mountpoint.display());
                    }
                    // The session thread serves the detached mount until the process exits.
                    std::mem::forget(session);
                    return;
                }
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Not shut down (a panic, an early return): still store what open files hold.
        if self.session.is_some() {
            self.shared.flush_open_files(true);
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(session) = self.session.take() {
            drop(session);
        }
        let _ = self.shared.db().sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(br"/tmp/m\040n"), b"/tmp/m n");
        assert_eq!(unescape(br"a\011b\012c\134d"), b"a\tb\nc\\d");
        assert_eq!(unescape(br"\040\040"), b"  ");
        // Not an escape the kernel writes: kept as it is.
        assert_eq!(unescape(br"a\b"), br"a\b");
        assert_eq!(unescape(br"a\04"), br"a\04");
        assert_eq!(unescape(br"a\"), br"a\");
        assert_eq!(unescape(br"a\089"), br"a\089");
        // Three octal digits above a byte (0o777).
        assert_eq!(unescape(br"a\777"), br"a\777");
        // Bytes that are not UTF-8 pass through.
        assert_eq!(unescape(b"\xff\\040"), b"\xff ");
    }

    #[test]
    fn mountinfo_lines_are_parsed() {
        let line = br"45 27 0:40 / /tmp/m\040n rw,nosuid,nodev,relatime shared:12 master:3 - fuse.gitdb gitdb:/tmp/r\040x.git rw,user_id=0,group_id=0";
        let e = MountEntry::parse(line).expect("parsed");
        assert_eq!(
            e,
            MountEntry {
                id: 45,
                parent: 27,
                dev: (0, 40),
                mount_point: PathBuf::from("/tmp/m n"),
                fstype: "fuse.gitdb".into(),
                fsname: "gitdb:/tmp/r x.git".into(),
            }
        );
        assert!(e.is_fuse());
        assert_eq!(e.connection(), 40);
        // No optional fields.
        let e = MountEntry::parse(b"1 0 8:2 / / rw - ext4 /dev/sda2 rw").expect("parsed");
        assert_eq!(
            (e.fstype.as_str(), e.fsname.as_str()),
            ("ext4", "/dev/sda2")
        );
        assert!(!e.is_fuse());
        assert_eq!(e.connection(), (8 << 20) | 2);
        for fstype in ["fuse", "fuseblk", "fuse.sshfs"] {
            let line = format!("2 1 0:5 / /m rw - {fstype} x rw");
            assert!(
                MountEntry::parse(line.as_bytes()).unwrap().is_fuse(),
                "{fstype}"
            );
        }
        for fstype in ["fusectl", "fuseblkx", "tmpfs"] {
            let line = format!("2 1 0:5 / /m rw - {fstype} x rw");
            assert!(
                !MountEntry::parse(line.as_bytes()).unwrap().is_fuse(),
                "{fstype}"
            );
        }
        // Lines not in the documented shape are skipped, not a panic.
        for bad in [
            &b""[..],
            b"garbage",
            b"1 0 8:2 / / rw ext4 /dev/sda2 rw",
            b"x 0 8:2 / / rw - ext4 /dev/sda2 rw",
            b"1 0 82 / / rw - ext4 /dev/sda2 rw",
            b"1 0 8:2 / / rw -",
        ] {
            assert_eq!(
                MountEntry::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_topmost_of_stacked_mounts_is_the_one_nothing_is_mounted_on() {
        let entry = |id, parent| MountEntry {
            id,
            parent,
            dev: (0, id as u32),
            mount_point: "/m".into(),
            fstype: "fuse".into(),
            fsname: "gitdb:/r".into(),
        };
        assert_eq!(topmost(&[]), None);
        // Listed in mount order, and also out of it (a propagated or moved mount).
        let stack = [entry(10, 1), entry(11, 10), entry(12, 11)];
        assert_eq!(topmost(&stack).map(|e| e.id), Some(12));
        let shuffled = [entry(12, 11), entry(10, 1), entry(11, 10)];
        assert_eq!(topmost(&shuffled).map(|e| e.id), Some(12));
    }

    #[test]
    fn no_mount_is_seen_where_there_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("with space");
        std::fs::create_dir(&plain).expect("mkdir");
        assert!(!is_mounted(&plain));
        assert!(!clean_stale_mount(&plain).expect("nothing to clean"));
        // Symlinks are resolved as the kernel's mount table has them, also for a path that
        // does not exist yet.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&plain, &link).expect("symlink");
        let real = std::fs::canonicalize(&plain).expect("canonicalize");
        assert_eq!(absolute(&link), real);
        assert_eq!(absolute(&link.join("new")), real.join("new"));
        // What this very code reads from is a mount.
        assert!(is_mounted(Path::new("/proc")));
    }

    #[test]
    fn other_users_make_the_kernel_check_permissions() {
        let git_dir = Path::new("/r.git");
        let own = kernel_options(&MountOptions::default(), git_dir);
        assert!(!own.contains(&MountOption::DefaultPermissions));
        assert!(own.contains(&MountOption::FSName("gitdb:/r.git".into())));
        assert!(own.contains(&MountOption::Subtype("gitdb".into())));
        for acl in [SessionACL::All, SessionACL::RootAndOwner] {
            let shared = MountOptions {
                acl,
                ..MountOptions::default()
            };
            assert!(kernel_options(&shared, git_dir).contains(&MountOption::DefaultPermissions));
        }
    }
}
