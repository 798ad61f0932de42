//! fuse: the key tree as a filesystem (fuser 0.18), the layer users touch.
//!
//! Directory tree = key tree. `read` = `get`; a written file becomes one `set` when it is flushed
//! (closed), so the db never holds half a value — a file made by `create` stays *pending* in
//! this layer (listed, stat-able) until then; `unlink` = `delete`; `rename` = the db's atomic
//! `rename`; `mkdir` makes an empty directory that this layer keeps in memory (git cannot store
//! one) until it is removed — a commit does not record it, and it is forgotten at unmount.
//!
//! Speed comes from the kernel: entries and attributes get a long TTL, values are opened with
//! `FOPEN_KEEP_CACHE` and key directories with `FOPEN_CACHE_DIR`, so repeated `stat`/`read`/
//! `readdir` never reach this process; a small value is put in the page cache when the handle
//! that wrote it is released, so even the first read after a write needs no READ (the kernel
//! leaves a partly written page invalid); correctness comes from invalidating exactly the changed
//! paths when HEAD moves or a rollback drops changes (see [`background`] and `coherence.rs`),
//! never from inside a callback. A value changed that way gets a new inode number on its next
//! lookup, so a process that had it open keeps reading (from the page cache or its handle) the
//! value it opened. Control files are served with direct I/O and a zero TTL instead.
//!
//! The files, one concept each. The filesystem proper:
//! - `adapter.rs`: `impl fuser::Filesystem` — turns each fuser callback into a call on
//!   `FsCore` and replies;
//! - `fscore.rs`: `FsCore`, the filesystem without fuser's request and reply types; its
//!   operations live in the files below, as `impl FsCore` blocks;
//! - `shared.rs`: [`Shared`], the state of the callbacks and the background threads, and the
//!   lock order;
//! - `attrs.rs`: attributes (`getattr`), modes and owners; `times.rs`: atime/mtime/ctime
//!   bookkeeping;
//! - `names.rs`: the mount-local namespace — path resolution, empty directories, pending files,
//!   directory link counts; `entries.rs`: what adds or removes a name (mknod, mkdir, symlink,
//!   unlink, rmdir);
//! - `open.rs`: the handle table, open, create, release; `io.rs`: read, write, flush, fsync,
//!   readlink;
//!   `setattr.rs`: truncate, chmod, chown, utimens; `rename.rs`; `listing.rs`: READDIR(PLUS);
//! - `controlfs.rs`: the `/.gitdb/` directory as the filesystem serves it; `statfs.rs`;
//! - `coherence.rs`: what keeps the kernel's caches right — change tokens, page-cache prefill,
//!   the targets of an invalidation, the notifier thread's tasks;
//! - [`errno`]: what the errors of the layers below become at the kernel;
//! - `tests.rs`: unit tests of `FsCore`'s operations over a temp repository, no `/dev/fuse`;
//!   `bench.rs`: the same callbacks timed for `benches/callbacks.rs`.
//!
//! Pieces used by those:
//! - [`inodes`]: stable path <-> inode numbers;
//! - [`handles`]: open-file buffers (copy on write, spill to a temp file when large);
//! - [`control`]: what the `/.gitdb/` control files hold and the `ctl` commands;
//! - [`background`]: mounting, and the threads that refresh HEAD, autocommit, and invalidate
//!   kernel caches when HEAD moves under the mount;
//! - [`busy`]: busy polling of the FUSE device while requests keep coming, so that a round
//!   trip costs one wake-up instead of two; `placement.rs`: on a saturated machine, the
//!   worker moves to the CPU of the application it serves;
//! - [`dirs`], [`valuefiles`], [`stats`]: listing snapshots for READDIR, plain copies of large
//!   values, request counters;
//! - [`orphans`]: what inodes replaced by a rename held, for readers that still hold them;
//! - [`warmer`]: the child process that fetches attributes back into the kernel's cache;
//! - [`mountpoint`]: what is mounted at the mountpoint before we mount (dead mounts detached,
//!   live ones refused), and unmounting;
//! - [`helper`]: `gitdb-mount` as mount(8)'s helper (`mount -t fuse.gitdb`, fstab), which
//!   starts the daemon and returns once the mount answers;
//! - [`options`]: `gitdb-mount`'s flags and `-o` options; `config.rs`: [`FsConfig`], how the
//!   filesystem presents itself.

pub mod background;
#[doc(hidden)]
pub mod bench;
pub mod busy;
pub mod control;
pub mod dirs;
pub mod errno;
pub mod handles;
pub mod helper;
pub mod inodes;
pub mod mountpoint;
pub mod options;
pub mod orphans;
pub mod stats;
pub mod valuefiles;
pub mod warmer;

mod adapter;
mod attrs;
mod coherence;
mod config;
mod controlfs;
mod entries;
mod fscore;
mod io;
mod listing;
mod names;
mod open;
mod placement;
mod rename;
mod setattr;
mod shared;
mod statfs;
mod times;

#[cfg(test)]
mod tests;

pub use adapter::GitDbFs;
pub use background::{MountError, MountOptions, Mounted, StopSignals, mount};
pub use coherence::PREFILL_MAX;
pub(crate) use coherence::{ChangeToken, KernelTask};
pub use config::FsConfig;
pub use mountpoint::{clean_stale_mount, prepare_mountpoint};
pub use shared::Shared;
