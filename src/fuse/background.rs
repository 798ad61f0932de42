//! Mounting, and the threads that keep the mount honest while HEAD moves under it.
//!
//! - The db's own tasks ([`GitDb::start_tasks`], see [`crate::db::tasks`]), owned by the
//!   mount while it lives: `gitdb-refresh` adopts commits made behind the mount's back every
//!   `refresh_interval`, and `gitdb-autocommit` (with `--autocommit DUR`) commits the working
//!   layer after DUR of quiet; the mount tells the db of activity it has not handed over yet
//!   (a file being created or written), so the quiet waits for that too.
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
//! - `gitdb-poll` (with busy polling) ends polling after a period without requests.
//!
//! Each is a [`Periodic`]: stopped and joined at shutdown.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{Config, INodeNo, MountOption, Notifier, SessionACL};

use super::mountpoint::{is_mounted, lazy_unmount, prepare_mountpoint, unmount};
use super::{FsConfig, GitDbFs, KernelTask, Shared};
use crate::db::{DbTasks, GitDb, HeadEvent, HeadOrigin, TaskOptions};
use crate::periodic::{Periodic, Stop};

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
    #[error("{device}: {source}; {advice}")]
    FuseDevice {
        device: PathBuf,
        source: std::io::Error,
        advice: String,
    },
    #[error(
        "allow_other and allow_root as a user other than root need `user_allow_other` in \
         {conf} (fusermount3 refuses them otherwise); add that line as root, or mount without them"
    )]
    AllowOtherNotPermitted { conf: PathBuf },
    #[error("preparing the value cache in {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting a thread: {0}")]
    Thread(std::io::Error),
    #[error("{path} was mounted but did not answer within {waited:?}: {source}")]
    NotAnswering {
        path: PathBuf,
        waited: Duration,
        source: std::io::Error,
    },
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
    #[error("{0}")]
    Tasks(crate::db::DbError),
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
    /// On a saturated machine, move a worker to the CPU of the application it serves (see
    /// [`super::placement`]).
    pub follow_cpu: bool,
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
            follow_cpu: true,
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// A live mount and its threads. [`Mounted::shutdown`] ends it cleanly.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    /// The mount's own threads (invalidation, busy-poll governor).
    threads: Vec<Periodic>,
    /// The db's refresh and autocommit, for as long as the mount lives.
    tasks: Option<DbTasks>,
    shared: Arc<Shared>,
    mountpoint: PathBuf,
    stop_timeout: Duration,
}

/// The kernel mount options: the caller's, the repository's path as fsname and the `gitdb`
/// subtype unless given (so `/proc/mounts` shows `REPO MOUNTPOINT fuse.gitdb`, the fstab line
/// as written, and `mount -a` knows the line is mounted), and `default_permissions` whenever users other than the owner may enter:
/// the daemon checks no permissions itself, so the kernel must check the modes it shows
/// (values 644/755 owned by the mounting user), or any local user could change any key.
fn kernel_options(options: &MountOptions, git_dir: &Path) -> Vec<MountOption> {
    let mut opts = options.mount_options.clone();
    if !opts.iter().any(|o| matches!(o, MountOption::FSName(_))) {
        let git_dir = std::path::absolute(git_dir).unwrap_or_else(|_| git_dir.to_owned());
        opts.push(MountOption::FSName(git_dir.display().to_string()));
    }
    // fuser's own mount(2) (as root) drops `Subtype` (fstype stays `fuse`), so the subtype
    // goes to the kernel as a plain option, which it has parsed since Linux 5.1; fusermount3
    // (users other than root) understands it too. Either way `/proc/mounts` says `fuse.gitdb`.
    let subtype = opts.iter().find_map(|o| match o {
        MountOption::Subtype(s) => Some(s.clone()),
        _ => None,
    });
    opts.retain(|o| !matches!(o, MountOption::Subtype(_)));
    opts.push(MountOption::CUSTOM(format!(
        "subtype={}",
        subtype.as_deref().unwrap_or("gitdb")
    )));
    if options.acl != SessionACL::Owner && !opts.contains(&MountOption::DefaultPermissions) {
        opts.push(MountOption::DefaultPermissions);
    }
    opts
}

/// The FUSE device, and what fusermount3 needs for a user other than root, checked before
/// mounting so that what is missing is named with its fix: fuser reports a bare "Permission
/// denied" (from opening `/dev/fuse`) or fusermount3's own message, after the fact.
///
/// A user other than root opens `/dev/fuse` itself (mode 0666 on Debian; 0600 in some
/// containers) and then mounts through the setuid `fusermount3`, which allows `allow_other` and
/// `allow_root` only with `user_allow_other` in `/etc/fuse.conf`.
fn check_fuse_access(acl: SessionACL) -> Result<(), MountError> {
    const DEVICE: &str = "/dev/fuse";
    const CONF: &str = "/etc/fuse.conf";
    let root = nix::unistd::geteuid().is_root();
    if let Err(source) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(DEVICE)
    {
        let advice = match source.kind() {
            std::io::ErrorKind::NotFound => "the kernel's FUSE module is not loaded \
                (`modprobe fuse`), or this container was started without the device \
                (`--device /dev/fuse`)"
                .to_owned(),
            std::io::ErrorKind::PermissionDenied if !root => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(DEVICE)
                    .map(|m| format!("{:o}", m.permissions().mode() & 0o777))
                    .unwrap_or_else(|_| "?".into());
                format!(
                    "its mode is {mode} and this user (uid {}) may not open it: run as root, \
                     or let users open it (`chmod 0666 /dev/fuse`, the mode Debian's udev rule \
                     gives it; fusermount3 then does the mounting)",
                    nix::unistd::geteuid()
                )
            }
            _ => "gitdb-mount needs to open it to serve a mount".to_owned(),
        };
        return Err(MountError::FuseDevice {
            device: DEVICE.into(),
            source,
            advice,
        });
    }
    if !root && acl != SessionACL::Owner {
        let allowed = std::fs::read_to_string(CONF).is_ok_and(|conf| {
            conf.lines()
                .any(|l| l.split('#').next().unwrap_or("").trim() == "user_allow_other")
        });
        if !allowed {
            return Err(MountError::AllowOtherNotPermitted { conf: CONF.into() });
        }
    }
    Ok(())
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
/// a live one is an error: see [`super::mountpoint::clean_stale_mount`]) and starts the background threads.
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
    check_fuse_access(options.acl)?;
    {
        // The mount's request counters join every metrics scrape while it lives.
        let weak = Arc::downgrade(&shared);
        db.add_metrics(Box::new(move |registry| {
            if let Some(shared) = weak.upgrade() {
                shared.stats.register_metrics(registry);
            }
        }));
    }
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
    // Polling pays only with a CPU to spare: on one, the polling worker and the application
    // take turns on it and each round trip waits for the other's time slice (measured: half
    // the ops/s with both pinned to one CPU). Without polling the governor still watches
    // whether the machine is saturated, for the speculative work that rests meanwhile.
    let one_cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) < 2;
    let period = match options.busy_poll.filter(|p| !p.is_zero()) {
        Some(_) if one_cpu => {
            log::info!("busy polling off: this process may use one CPU only");
            Duration::ZERO
        }
        Some(period) => period,
        None => Duration::ZERO,
    };
    {
        use std::os::fd::AsFd;
        match super::busy::BusyPoll::new(session.as_fd(), period) {
            Ok(busy) => {
                let _ = shared.busy.set(busy.following(options.follow_cpu));
            }
            Err(e) => log::warn!(
                "no busy polling and no saturation watch: duplicating the FUSE descriptor: {e}"
            ),
        }
    }
    let notifier = session.notifier();
    let session = session.spawn().map_err(|source| MountError::Mount {
        path: mountpoint.to_owned(),
        source,
    })?;
    let mut threads = Vec::new();
    let spawn = |name: &str, f: Box<dyn FnOnce(&Stop) + Send>| {
        Periodic::spawn(name, f).map_err(MountError::Thread)
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
            Box::new(move |stop| {
                while !stop.is_stopped() {
                    match inval_rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(KernelTask::News(ev)) => news(&shared, &notifier, ev),
                        Ok(KernelTask::Reply(reply)) => reply(),
                        Ok(KernelTask::Prefill { ino, token, data }) => {
                            // Not while the machine is saturated (polling held off): the
                            // warmer's stat is one more process and round trip per written
                            // file, taken from the requests applications wait for; the stat
                            // after a write then costs its GETATTR, as on any FUSE mount.
                            let saturated = shared.busy.get().is_some_and(|b| b.holding_off());
                            if prefill(&shared, &notifier, ino, token, &data, delay)
                                && !saturated
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
        let shared = shared.clone();
        threads.push(spawn(
            "gitdb-poll",
            Box::new(move |stop| {
                if let Some(busy) = shared.busy.get() {
                    busy.run(stop.flag());
                }
            }),
        )?);
    }
    // Refresh and autocommit are the db's (a headless node runs them too); the mount only
    // reports the activity the db cannot see yet (see `Times::note_change`).
    let tasks = db
        .start_tasks(TaskOptions {
            refresh_interval: Some(options.refresh_interval),
            autocommit: options.autocommit,
        })
        .map_err(MountError::Tasks)?;
    log::info!(
        "mounted {} on {}",
        db.git_dir().display(),
        mountpoint.display()
    );
    Ok(Mounted {
        session: Some(session),
        threads,
        tasks: Some(tasks),
        shared,
        mountpoint: mountpoint.to_owned(),
        stop_timeout: options.stop_timeout,
    })
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
        HeadOrigin::Rollback | HeadOrigin::OtherClient | HeadOrigin::FollowedWriter => {
            invalidate(shared, notifier, &ev.changed)
        }
        HeadOrigin::Merge
        | HeadOrigin::FastForward
        | HeadOrigin::Superseded
        | HeadOrigin::External => {
            log::info!(
                "head moved {:?} -> {:?} ({:?}): {} path(s) changed",
                ev.old,
                ev.new,
                ev.origin,
                ev.changed.len()
            );
            invalidate(shared, notifier, &ev.changed);
        }
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

/// Debug builds only: whether the environment variable `var` is set to `1`.
pub(crate) fn test_flag(var: &str) -> bool {
    cfg!(debug_assertions) && std::env::var_os(var).is_some_and(|v| v == "1")
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
                    crate::notify::stopping();
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

    /// Blocks until the mount answers a request (a stat of `/.gitdb/head`, served by this
    /// process's own FUSE threads once the kernel's INIT is done) or `within` passes: what a
    /// readiness notice promises to whoever starts reading the mount next.
    pub fn wait_answering(&self, within: Duration) -> Result<(), MountError> {
        let probe = self.mountpoint.join(".gitdb/head");
        let end = std::time::Instant::now() + within;
        loop {
            match std::fs::symlink_metadata(&probe) {
                Ok(_) => return Ok(()),
                Err(source) if std::time::Instant::now() >= end => {
                    return Err(MountError::NotAnswering {
                        path: self.mountpoint.clone(),
                        waited: within,
                        source,
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
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
        self.tasks.take();
        for t in &self.threads {
            t.signal_stop();
        }
        self.threads.clear();
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
        self.tasks.take();
        // Not joined: the invalidation thread may be waiting for a kernel that is going away.
        for t in self.threads.drain(..) {
            t.detach();
        }
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
    fn other_users_make_the_kernel_check_permissions() {
        let git_dir = Path::new("/r.git");
        let own = kernel_options(&MountOptions::default(), git_dir);
        assert!(!own.contains(&MountOption::DefaultPermissions));
        assert!(own.contains(&MountOption::FSName("/r.git".into())));
        assert!(own.contains(&MountOption::CUSTOM("subtype=gitdb".into())));
        for acl in [SessionACL::All, SessionACL::RootAndOwner] {
            let shared = MountOptions {
                acl,
                ..MountOptions::default()
            };
            assert!(kernel_options(&shared, git_dir).contains(&MountOption::DefaultPermissions));
        }
    }
}
