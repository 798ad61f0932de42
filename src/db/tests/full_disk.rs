//! Full disks: a blob written to one is ENOSPC, a daemon opens on one, refuses writes, rolls
//! back and recovers, and a commit whose journal cannot be rewritten still stands.
//!
//! Kept apart because these run on a small test tmpfs (skipped where none can be mounted).

use std::io::Write;

use super::*;

/// Whether `e` says the disk is full (what the mount passes on as ENOSPC).
fn full_disk(e: &DbError) -> bool {
    e.io_error()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
}

/// Through gix for real: a blob written to a full disk reports the full disk, not just a failure (gix wraps
/// the OS error with the temp file's path, several sources down).
#[test]
fn a_blob_written_to_a_full_disk_is_enospc() {
    let Some(fs) = testfs::Tmpfs::mount(1 << 20) else {
        return;
    };
    let store = Store::open_or_create(&fs.path().join("r.git"), CacheConfig::default()).unwrap();
    let _filler = fs.fill();
    let value: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let err = DbError::from(store.write_blob(&value).unwrap_err());
    assert!(full_disk(&err), "{err}");
}
/// A daemon must start on a full disk, answer ENOSPC (not EIO) to writes, roll back, and work
/// again once there is space.
#[test]
fn a_full_disk_opens_refuses_writes_with_enospc_and_recovers() {
    let Some(fs) = testfs::Tmpfs::mount(8 << 20) else {
        return;
    };
    let repo = fs.path().join("repo.git");
    {
        let db = open_at(&repo);
        db.set("a", b"1").unwrap();
        db.set("big", &large(1)).unwrap();
        db.commit("c1", 1_000).unwrap();
        db.set("b", b"2").unwrap();
        db.set("big2", &large(2)).unwrap();
        db.sync().unwrap();
    }
    let filler = fs.fill();
    // A journal.tmp a dead rewrite left behind goes at open (the disk has no room for one).
    let tmp = repo.join("gitdb/journal.tmp");
    let _ = std::fs::write(&tmp, b"");
    let db = open_at(&repo);
    assert!(!tmp.exists(), "a stale journal.tmp is removed at open");
    assert_eq!(get(&db, "b"), Some(b"2".to_vec()));
    assert_eq!(get(&db, "big2"), Some(large(2)));
    // Small values go to the journal until its last page is full.
    let mut small_err = None;
    for i in 0..10_000 {
        if let Err(e) = db.set(&format!("s/{i}"), &[7u8; 1000]) {
            small_err = Some(e);
            break;
        }
    }
    let small_err = small_err.expect("the disk never filled up");
    assert!(full_disk(&small_err), "{small_err}");
    let big_err = db.set("big3", &large(3)).unwrap_err();
    assert!(full_disk(&big_err), "{big_err}");
    // Rolling back needs no space.
    db.rollback().unwrap();
    assert_eq!(get(&db, "b"), None);
    assert!(!db.is_dirty());
    drop(db);
    let db = open_at(&repo);
    assert!(!db.is_dirty(), "the rollback on a full disk is durable");
    std::fs::remove_file(filler).unwrap();
    db.set("c", b"3").unwrap();
    db.set("big4", &large(4)).unwrap();
    db.sync().unwrap();
    drop(db);
    let db = open_at(&repo);
    assert_eq!(get(&db, "c"), Some(b"3".to_vec()));
    assert_eq!(get(&db, "big4"), Some(large(4)));
    assert_eq!(get(&db, "a"), Some(b"1".to_vec()));
    db.commit("c2", 2_000).unwrap();
    assert!(!db.is_dirty());
}

/// Once the ref has moved the commit has happened: a journal that then cannot be rewritten
/// (the disk filled up right there) must not turn it into an error, and nothing is lost or
/// comes back once there is space again.
#[test]
fn a_commit_that_cannot_rewrite_its_journal_still_succeeds() {
    let Some(fs) = testfs::Tmpfs::mount(8 << 20) else {
        return;
    };
    let repo = fs.path().join("repo.git");
    let filler = std::sync::Arc::new(Mutex::new(None));
    {
        let db = open_at(&repo);
        db.set("k", b"committed").unwrap();
        let slot = filler.clone();
        *db.after_ref_moved.lock().unwrap() = Some(Box::new(move |db: &GitDb| {
            // A write made while the commit runs stays uncommitted: the journal must be
            // rewritten to hold it alone, which needs space.
            db.set("late", &[9u8; 30_000]).unwrap();
            *slot.lock().unwrap() = Some(fs_fill(db));
        }));
        let outcome = db.commit("c1", 1_000).unwrap();
        assert!(matches!(outcome, CommitOutcome::Committed { .. }));
        assert_eq!(get(&db, "k"), Some(b"committed".to_vec()));
        assert_eq!(dirty_keys(&db), vec!["/late"]);
        // Not durable until the journal can be rewritten: sync says so.
        assert!(full_disk(&db.sync().unwrap_err()));
        std::fs::remove_file(filler.lock().unwrap().take().unwrap()).unwrap();
        db.set("x", b"after").unwrap();
        db.sync().unwrap();
    }
    let db = open_at(&repo);
    assert_eq!(dirty_keys(&db), vec!["/late", "/x"]);
    assert_eq!(get(&db, "k"), Some(b"committed".to_vec()));
    assert_eq!(get(&db, "late"), Some(vec![9u8; 30_000]));
}

/// Fills the filesystem holding `db`'s repository (a test tmpfs).
fn fs_fill(db: &GitDb) -> PathBuf {
    let path = db.git_dir().join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [64 << 10, 4096, 512, 1] {
        let buf = vec![0u8; chunk];
        while f.write(&buf).is_ok_and(|n| n > 0) {}
    }
    path
}
