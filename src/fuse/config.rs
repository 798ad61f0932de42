//! [`FsConfig`]: how the filesystem presents itself (owner, mode bits, TTLs, read-only,
//! READDIRPLUS). Separate from `options.rs`, which parses `gitdb-mount`'s flags into it.

use std::time::Duration;

use super::valuefiles::{self};

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
