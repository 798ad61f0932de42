//! Unit tests of the filesystem's operations, without `/dev/fuse`: an [`FsCore`] over a temp
//! repository, driven as the adapter drives it. The mount tests (`tests/mount.rs` and friends)
//! check the same through a real kernel; these pin the core's answers one call at a time.

use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

use fuser::{Errno, FileHandle, FileType, INodeNo, OpenFlags, RenameFlags};

use super::coherence::KernelTask;
use super::config::FsConfig;
use super::fscore::{Caller, FsCore};
use super::inodes::ROOT_INO;
use super::io::Written;
use super::setattr::SetAttr;
use super::shared::Shared;

use crate::db::{GitDb, NodeId, Options, Stat, ValueMode};

const ROOT: INodeNo = INodeNo(ROOT_INO);

struct Fixture {
    core: FsCore,
    db: Arc<GitDb>,
    /// What the core asked of the notifier thread (nothing runs it here).
    _kernel: Receiver<KernelTask>,
    _dir: tempfile::TempDir,
}

fn fixture_with(cfg: FsConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = GitDb::open(
        dir.path().join("repo.git"),
        NodeId::new("n1").unwrap(),
        Options::default(),
    )
    .unwrap();
    let db = Arc::new(db);
    let (tx, rx) = channel();
    let shared = Arc::new(Shared::new(db.clone(), cfg, tx).unwrap());
    Fixture {
        core: FsCore::new(shared),
        db,
        _kernel: rx,
        _dir: dir,
    }
}

fn fixture() -> Fixture {
    fixture_with(FsConfig::default())
}

fn me() -> Caller {
    Caller::this_process()
}

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn value(db: &GitDb, key: &str) -> Option<Vec<u8>> {
    db.get(key).unwrap().map(|b| b.to_vec())
}

impl Fixture {
    /// `create`, write `data`, flush and release: what `echo data > parent/name` does.
    fn write_file(&self, parent: INodeNo, file: &str, data: &[u8]) -> INodeNo {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
        let (attr, _, fh, _) = self
            .core
            .create(&me(), parent, name(file), 0o644, 0o022, flags)
            .unwrap();
        self.write(fh, 0, data);
        self.core.flush(fh).unwrap();
        self.core.release(fh).unwrap();
        attr.ino
    }

    fn write(&self, fh: FileHandle, offset: u64, data: &[u8]) {
        match self.core.write(fh, offset, data) {
            Written::Now(r) => assert_eq!(r, Ok(data.len() as u32)),
            Written::AfterKernel(_) => panic!("a value's write is answered at once"),
        }
    }

    fn read_all(&self, ino: INodeNo) -> Vec<u8> {
        let (fh, _) = self.core.open(ino, OpenFlags(libc::O_RDONLY)).unwrap();
        let data = self.core.read(fh, 0, 1 << 20, |b| b.to_vec()).unwrap();
        self.core.release(fh).unwrap();
        data
    }

    fn names(&self, dir: INodeNo) -> Vec<(String, FileType)> {
        let mut out = Vec::new();
        self.core
            .readdir(dir, 0, |_, _, kind, n| {
                out.push((n.to_owned(), kind));
                false
            })
            .unwrap();
        out.retain(|(n, _)| n != "." && n != "..");
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[test]
fn a_created_file_is_pending_until_its_flush_stores_it_as_one_value() {
    let fx = fixture();
    let flags = libc::O_WRONLY | libc::O_CREAT;
    let (attr, _, fh, _) = fx
        .core
        .create(&me(), ROOT, name("a"), 0o644, 0o022, flags)
        .unwrap();
    assert_eq!(attr.kind, FileType::RegularFile);
    // Listed and stat-able, but not in the db yet.
    assert_eq!(fx.core.lookup(ROOT, name("a")).unwrap().0.ino, attr.ino);
    assert_eq!(value(&fx.db, "a"), None);
    fx.write(fh, 0, b"hello");
    fx.write(fh, 5, b" world");
    // The open file speaks for the size before the flush.
    assert_eq!(fx.core.getattr(attr.ino).unwrap().0.size, 11);
    assert_eq!(value(&fx.db, "a"), None);
    fx.core.flush(fh).unwrap();
    assert_eq!(value(&fx.db, "a").as_deref(), Some(&b"hello world"[..]));
    fx.core.release(fh).unwrap();
    assert_eq!(fx.read_all(attr.ino), b"hello world");
    assert_eq!(fx.core.lookup(ROOT, name("a")).unwrap().0.size, 11);
}

#[test]
fn create_with_o_excl_on_an_existing_name_is_eexist() {
    let fx = fixture();
    fx.write_file(ROOT, "a", b"1");
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
    let r = fx.core.create(&me(), ROOT, name("a"), 0o644, 0, flags);
    assert_eq!(r.err(), Some(Errno::EEXIST));
}

#[test]
fn lookup_answers_enoent_enametoolong_and_the_control_directory() {
    let fx = fixture();
    assert_eq!(
        fx.core.lookup(ROOT, name("nope")).err(),
        Some(Errno::ENOENT)
    );
    let long = "x".repeat(300);
    assert_eq!(
        fx.core.lookup(ROOT, name(&long)).err(),
        Some(Errno::ENAMETOOLONG)
    );
    let (ctl, ttl) = fx.core.lookup(ROOT, name(".gitdb")).unwrap();
    assert_eq!(ctl.kind, FileType::Directory);
    assert!(ttl.is_zero());
    // An inode number nobody handed out has no name: ESTALE, so the kernel looks again.
    assert_eq!(fx.core.getattr(INodeNo(1 << 40)).err(), Some(Errno::ESTALE));
}

#[test]
fn mkdir_keeps_an_empty_directory_that_lists_and_refuses_rmdir_while_not_empty() {
    let fx = fixture();
    let (d, _) = fx.core.mkdir(&me(), ROOT, name("d"), 0o755, 0o022).unwrap();
    assert_eq!(d.kind, FileType::Directory);
    assert_eq!(
        fx.core.mkdir(&me(), ROOT, name("d"), 0o755, 0).err(),
        Some(Errno::EEXIST)
    );
    fx.write_file(d.ino, "f", b"x");
    assert_eq!(value(&fx.db, "d/f").as_deref(), Some(&b"x"[..]));
    assert_eq!(
        fx.names(d.ino),
        vec![("f".to_owned(), FileType::RegularFile)]
    );
    assert!(
        fx.names(ROOT)
            .contains(&("d".to_owned(), FileType::Directory))
    );
    assert_eq!(fx.core.rmdir(ROOT, name("d")).err(), Some(Errno::ENOTEMPTY));
    fx.core.unlink(d.ino, name("f")).unwrap();
    assert_eq!(value(&fx.db, "d/f"), None);
    // The directory stays after its last key goes, as on a disk, and can then be removed.
    assert!(fx.core.lookup(ROOT, name("d")).is_ok());
    fx.core.rmdir(ROOT, name("d")).unwrap();
    assert_eq!(fx.core.lookup(ROOT, name("d")).err(), Some(Errno::ENOENT));
}

#[test]
fn rename_moves_the_value_and_noreplace_and_the_control_directory_refuse() {
    let fx = fixture();
    let a = fx.write_file(ROOT, "a", b"first");
    fx.write_file(ROOT, "b", b"second");
    let noreplace = RenameFlags::RENAME_NOREPLACE;
    assert_eq!(
        fx.core
            .rename(ROOT, name("a"), ROOT, name("b"), noreplace)
            .err(),
        Some(Errno::EEXIST)
    );
    let (ctl, _) = fx.core.lookup(ROOT, name(".gitdb")).unwrap();
    assert_eq!(
        fx.core
            .rename(ROOT, name("a"), ctl.ino, name("x"), RenameFlags::empty())
            .err(),
        Some(Errno::EPERM)
    );
    fx.core
        .rename(ROOT, name("a"), ROOT, name("b"), RenameFlags::empty())
        .unwrap();
    assert_eq!(value(&fx.db, "a"), None);
    assert_eq!(value(&fx.db, "b").as_deref(), Some(&b"first"[..]));
    assert_eq!(fx.core.lookup(ROOT, name("a")).err(), Some(Errno::ENOENT));
    // The inode moves with the name.
    assert_eq!(fx.core.lookup(ROOT, name("b")).unwrap().0.ino, a);
}

#[test]
fn rename_of_a_file_still_being_written_lands_its_flush_at_the_new_name() {
    let fx = fixture();
    let flags = libc::O_WRONLY | libc::O_CREAT;
    let (_, _, fh, _) = fx
        .core
        .create(&me(), ROOT, name("tmp"), 0o644, 0o022, flags)
        .unwrap();
    fx.write(fh, 0, b"data");
    fx.core
        .rename(ROOT, name("tmp"), ROOT, name("cfg"), RenameFlags::empty())
        .unwrap();
    fx.core.flush(fh).unwrap();
    fx.core.release(fh).unwrap();
    assert_eq!(value(&fx.db, "tmp"), None);
    assert_eq!(value(&fx.db, "cfg").as_deref(), Some(&b"data"[..]));
}

#[test]
fn setattr_truncates_and_chmod_sets_gits_executable_bit() {
    let fx = fixture();
    let ino = fx.write_file(ROOT, "run", b"#!/bin/sh\n");
    let set = SetAttr {
        size: Some(2),
        ..SetAttr::default()
    };
    let (attr, _) = fx.core.setattr(&me(), ino, set).unwrap();
    assert_eq!(attr.size, 2);
    // No writer open: stored at once.
    assert_eq!(value(&fx.db, "run").as_deref(), Some(&b"#!"[..]));
    let set = SetAttr {
        mode: Some(0o755),
        ..SetAttr::default()
    };
    let (attr, _) = fx.core.setattr(&me(), ino, set).unwrap();
    assert_eq!(attr.perm & 0o111, 0o111);
    assert!(matches!(
        fx.db.stat("run").unwrap(),
        Some(Stat::Value {
            mode: ValueMode::Executable,
            ..
        })
    ));
}

#[test]
fn a_ctl_commit_is_answered_after_the_kernel_and_commits() {
    let fx = fixture();
    fx.write_file(ROOT, "k", b"v");
    assert_eq!(fx.db.head(), None);
    let (dir, _) = fx.core.lookup(ROOT, name(".gitdb")).unwrap();
    let (ctl, _) = fx.core.lookup(dir.ino, name("ctl")).unwrap();
    let (fh, _) = fx
        .core
        .open(ctl.ino, OpenFlags(libc::O_WRONLY | libc::O_TRUNC))
        .unwrap();
    match fx.core.write(fh, 0, b"commit first\n") {
        Written::AfterKernel(r) => assert_eq!(r, Ok(13)),
        Written::Now(_) => panic!("a ctl command is answered after the kernel's caches"),
    }
    assert!(fx.db.head().is_some());
    match fx.core.write(fh, 0, b"bogus\n") {
        Written::AfterKernel(r) => assert_eq!(r, Err(Errno::EINVAL)),
        Written::Now(_) => panic!("a ctl command is answered after the kernel's caches"),
    }
    fx.core.release(fh).unwrap();
}

#[test]
fn a_read_only_mount_refuses_changes_with_erofs() {
    let fx = fixture_with(FsConfig {
        read_only: true,
        ..FsConfig::default()
    });
    let flags = libc::O_WRONLY | libc::O_CREAT;
    let r = fx.core.create(&me(), ROOT, name("a"), 0o644, 0, flags);
    assert_eq!(r.err(), Some(Errno::EROFS));
    assert_eq!(
        fx.core.mkdir(&me(), ROOT, name("d"), 0o755, 0).err(),
        Some(Errno::EROFS)
    );
    assert_eq!(
        fx.core.access(ROOT, fuser::AccessFlags::W_OK).err(),
        Some(Errno::EROFS)
    );
}

/// A lookup, a getattr or a CREATE that races a writer's flush sees the file as it is: never
/// missing, never shorter than a write already answered. The kernel takes the size a lookup
/// answers as the file's, and an O_APPEND write lands at that size: one stale answer (a db
/// stat from before the flush, the open file's state from after it) made two `>>` loops lose
/// a line under CPU load. A CREATE that found the file in neither place truncated it.
#[test]
fn lookups_and_creates_racing_a_flush_see_every_answered_write() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const ROUNDS: u64 = 400;
    let fx = fixture();
    // (round << 32) | bytes answered so far in that round's file, set once a write returned.
    let acked = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let append = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND;
    std::thread::scope(|s| {
        let observer = |joiner: bool| {
            let (core, acked, done) = (&fx.core, &acked, &done);
            move || {
                let mut checks = 0u64;
                while !done.load(Ordering::SeqCst) {
                    let now = acked.load(Ordering::SeqCst);
                    let (round, size) = (now >> 32, now & 0xffff_ffff);
                    if round == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    let file = format!("f{round}");
                    let size_seen = if joiner {
                        let (attr, _, fh, _) = core
                            .create(&me(), ROOT, name(&file), 0o644, 0o022, append)
                            .unwrap_or_else(|e| panic!("create {file}: {e:?}"));
                        core.release(fh).unwrap();
                        attr.size
                    } else {
                        match core.lookup(ROOT, name(&file)) {
                            Ok((attr, _)) => attr.size,
                            Err(e) => panic!("{file} answered {size} bytes, lookup: {e:?}"),
                        }
                    };
                    assert!(
                        size_seen >= size,
                        "{file}: {size} bytes answered, {size_seen} seen (joiner: {joiner})"
                    );
                    checks += 1;
                }
                checks
            }
        };
        let looker = s.spawn(observer(false));
        let joiner = s.spawn(observer(true));
        for round in 1..=ROUNDS {
            let file = format!("f{round}");
            let mut len = 0u64;
            for line in [&b"x\n"[..], b"yy\n"] {
                let (attr, _, fh, _) = fx
                    .core
                    .create(&me(), ROOT, name(&file), 0o644, 0o022, append)
                    .unwrap();
                assert_eq!(attr.size, len, "{file}");
                fx.write(fh, len, line);
                len += line.len() as u64;
                acked.store(round << 32 | len, Ordering::SeqCst);
                fx.core.flush(fh).unwrap();
                fx.core.release(fh).unwrap();
            }
            assert_eq!(value(&fx.db, &file).as_deref(), Some(&b"x\nyy\n"[..]));
        }
        done.store(true, Ordering::SeqCst);
        let (looks, joins) = (looker.join().unwrap(), joiner.join().unwrap());
        assert!(looks > 0 && joins > 0, "{looks} lookups, {joins} creates");
    });
}

/// The attribute warmer's requests do not pull the worker to the warmer's CPU: nobody waits
/// for them. Any other requester's do, on a saturated machine.
#[test]
fn the_warmers_requests_are_not_followed() {
    use super::placement::{
        INTERVAL,
        tests::{Requester, cpus, set_cpus},
    };
    use std::os::fd::AsFd;
    let allowed = cpus();
    if allowed.len() < 2 {
        return;
    }
    let f = fixture();
    let s = &f.core.s;
    let requester = Requester::on(allowed[1]);
    let (reader, _writer) = std::io::pipe().unwrap();
    assert!(
        s.busy
            .set(super::busy::BusyPoll::saturated(reader.as_fd()).following(true))
            .is_ok()
    );
    let moves = || s.busy.get().unwrap().snapshot().worker_moves;
    // Requests from the requester's thread, from a worker started anew on the first CPU
    // each time, for up to `tries` requests or until it moved.
    let worker = |tries: usize| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    for _ in 0..tries {
                        set_cpus(&[allowed[0]]);
                        set_cpus(&allowed);
                        s.request(super::stats::Op::Getattr, requester.tid);
                        if moves() > 0 {
                            break;
                        }
                        std::thread::sleep(INTERVAL);
                    }
                })
                .join()
                .unwrap()
        })
    };
    s.warmer_pid
        .store(requester.tid, std::sync::atomic::Ordering::Relaxed);
    worker(20);
    assert_eq!(moves(), 0, "the worker followed the warmer");
    s.warmer_pid.store(0, std::sync::atomic::Ordering::Relaxed);
    worker(100);
    assert!(moves() >= 1, "the worker never followed an application");
}
