//! The daemon's own work per FUSE callback, timed without a kernel: the callbacks that
//! fsbench's phases send, driven on an [`FsCore`] over a temp repository, for
//! `benches/callbacks.rs`.
//!
//! On a saturated machine a FUSE daemon's throughput follows the CPU it spends per request,
//! and most of that is the kernel's (reading the request, writing the reply, the wake-ups),
//! the same for every daemon. What is ours is measured here, steadily, apart from the
//! scheduler's noise: a change to the hot path shows in microseconds per file.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use fuser::INodeNo;

use super::config::FsConfig;
use super::fscore::{Caller, FsCore};
use super::inodes::ROOT_INO;
use super::io::Written;
use super::shared::Shared;
use crate::db::{GitDb, NodeId, Options};

/// What one run measured: time per file of each loop.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// fsbench's create: the parent's GETATTR, LOOKUP and MKDIR of the file's directory,
    /// LOOKUP and CREATE of the file, WRITE, FLUSH, RELEASE.
    pub create: Duration,
    /// fsbench's overwrite: OPEN with O_TRUNC, WRITE, FLUSH, RELEASE, GETATTR.
    pub overwrite: Duration,
    /// fsbench's list, per directory: its GETATTR and a READDIR from offset 0 (a fresh
    /// listing each time).
    pub list: Duration,
    /// fsbench's unlink.
    pub unlink: Duration,
}

/// Runs the loops over `n` files in 50 directories, in a repository under `dir`.
pub fn run(dir: &Path, n: usize) -> Timings {
    let db = GitDb::open(
        dir.join("bench.git"),
        NodeId::new("bench").expect("node id"),
        Options::default(),
    )
    .expect("open the repository");
    let (tx, _kernel) = channel();
    let shared = Shared::new(Arc::new(db), FsConfig::default(), tx).expect("shared state");
    let core = FsCore::new(Arc::new(shared));
    let me = Caller::this_process();
    let name = |s: &str| OsStr::new(s).to_owned();
    let mkdir = |parent: INodeNo, n: &str| {
        core.mkdir(&me, parent, &name(n), 0o755, 0o022)
            .expect("mkdir")
            .0
            .ino
    };
    let write = |fh, data: &[u8]| match core.write(fh, 0, data) {
        Written::Now(r) => assert_eq!(r, Ok(data.len() as u32)),
        Written::AfterKernel(_) => panic!("a value's write is answered at once"),
    };
    let base = mkdir(INodeNo(ROOT_INO), "bench");
    let dirs: Vec<INodeNo> = (0..50).map(|g| mkdir(base, &format!("g{g}"))).collect();
    let per_file = |t: Instant| t.elapsed() / n as u32;

    let t = Instant::now();
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let g = dirs[i % dirs.len()];
        core.getattr(g).expect("getattr");
        let u = format!("u{i}");
        assert!(core.lookup(g, &name(&u)).is_err());
        let d = mkdir(g, &u);
        assert!(core.lookup(d, &name("profile")).is_err());
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
        let (attr, _, fh, _) = core
            .create(&me, d, &name("profile"), 0o644, 0o022, flags)
            .expect("create");
        write(fh, b"value\n");
        core.flush(fh).expect("flush");
        core.release(fh).expect("release");
        files.push((d, attr.ino));
    }
    let create = per_file(t);

    let t = Instant::now();
    for &(_, ino) in &files {
        let (fh, _) = core
            .open(ino, fuser::OpenFlags(libc::O_WRONLY | libc::O_TRUNC))
            .expect("open");
        write(fh, b"updated\n");
        core.flush(fh).expect("flush");
        core.release(fh).expect("release");
        core.getattr(ino).expect("getattr");
    }
    let overwrite = per_file(t);

    let rounds = (n / dirs.len()).max(1);
    let t = Instant::now();
    for _ in 0..rounds {
        for &g in &dirs {
            core.getattr(g).expect("getattr");
            core.readdir(g, 0, |_, _, _, _| false).expect("readdir");
        }
    }
    let list = t.elapsed() / (rounds * dirs.len()) as u32;

    let t = Instant::now();
    for &(d, _) in &files {
        core.unlink(d, &name("profile")).expect("unlink");
    }
    let unlink = per_file(t);
    Timings {
        create,
        overwrite,
        list,
        unlink,
    }
}
