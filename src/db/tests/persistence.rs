//! The journal across reopens: uncommitted state comes back, a journal whose commit landed is
//! dropped, a second writer is refused, and the journal stays small under rewrites.
//!
//! Kept apart because each of these closes and reopens the db, which is what a crash looks
//! like to the next process.

use super::*;

#[test]
fn journal_restores_uncommitted_state_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        db.set("a", b"1").unwrap();
        db.commit("c", 1_000).unwrap();
        db.set("b", b"2").unwrap();
        db.delete("a").unwrap();
        db.set("c/d", b"3").unwrap();
        db.sync().unwrap();
    }
    let db = open(dir.path());
    assert_eq!(get(&db, "a"), None);
    assert_eq!(get(&db, "b"), Some(b"2".to_vec()));
    assert_eq!(get(&db, "c/d"), Some(b"3".to_vec()));
    assert_eq!(db.status().dirty.len(), 3);
    db.commit("after reopen", 2_000).unwrap();
    drop(db);
    let db = open(dir.path());
    assert!(!db.is_dirty());
}

#[test]
fn a_journal_whose_commit_landed_is_dropped_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let journal_copy;
    {
        let db = open(dir.path());
        db.set("a", b"1").unwrap();
        db.commit("c1", 1_000).unwrap();
        db.set("b", b"2").unwrap();
        db.sync().unwrap();
        journal_copy = std::fs::read(db.git_dir().join("gitdb/journal")).unwrap();
        db.commit("c2", 2_000).unwrap();
        // Simulate a crash between moving the ref and truncating the journal.
        std::fs::write(db.git_dir().join("gitdb/journal"), &journal_copy).unwrap();
    }
    let db = open(dir.path());
    assert!(
        !db.is_dirty(),
        "the committed journal must not come back as changes"
    );
    assert_eq!(get(&db, "b"), Some(b"2".to_vec()));
}

#[test]
fn a_second_writer_is_refused_with_the_pid() {
    let dir = tempfile::tempdir().unwrap();
    let _db = open(dir.path());
    let err = GitDb::open(dir.path().join("repo.git"), node("n2"), Options::default())
        .err()
        .unwrap();
    match err {
        DbError::Locked { pid, .. } => assert_eq!(pid, std::process::id().to_string()),
        other => panic!("{other:?}"),
    }
    // Readers are welcome and see the same data.
    let ro = GitDb::open(
        dir.path().join("repo.git"),
        node("n2"),
        Options {
            read_only: true,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(matches!(ro.set("a", b"1"), Err(DbError::ReadOnly { .. })));
}
#[test]
fn rewriting_one_key_all_day_keeps_the_journal_small() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    for i in 0..20_000u32 {
        db.set("hot", &i.to_le_bytes()).unwrap();
    }
    db.sync().unwrap();
    let len = std::fs::metadata(db.git_dir().join("gitdb/journal"))
        .unwrap()
        .len();
    assert!(len < 256 * 1024, "journal grew to {len} bytes");
    assert!(
        db.read_state().pending.blobs.len() < 5_000,
        "superseded values are forgotten"
    );
    drop(db);
    let db = open(dir.path());
    assert_eq!(get(&db, "hot"), Some(19_999u32.to_le_bytes().to_vec()));
}

#[test]
fn restaging_a_value_waiting_for_its_commit_keeps_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        db.set("run.sh", b"#!/bin/sh\n").unwrap();
        let Some(Stat::Value { id, .. }) = db.stat("run.sh").unwrap() else {
            panic!("staged value expected");
        };
        assert_eq!(db.value(id).unwrap().to_vec(), b"#!/bin/sh\n");
        db.set_blob("run.sh", id, ValueMode::Executable).unwrap();
        db.sync().unwrap();
    }
    let db = open(dir.path());
    assert_eq!(get(&db, "run.sh"), Some(b"#!/bin/sh\n".to_vec()));
    db.commit("c", 1_000).unwrap();
    match db.stat("run.sh").unwrap() {
        Some(Stat::Value {
            mode, committed, ..
        }) => {
            assert_eq!((mode, committed), (ValueMode::Executable, true))
        }
        other => panic!("{other:?}"),
    }
}

/// A node killed between locking a ref and renaming the lock into place leaves
/// `<ref>.lock`: the next node's commits used to fail on it ("Could not prepare reference
/// edit", EIO at the mount, seen in a kill -9 round). Open removes the locks that stay, and
/// leaves one that a live writer lets go of meanwhile.
#[test]
fn ref_locks_left_by_a_killed_node_do_not_block_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let git_dir;
    {
        let db = open(dir.path());
        db.set("a", b"1").unwrap();
        db.commit("c1", 1_000).unwrap();
        db.set("b", b"2").unwrap();
        db.sync().unwrap();
        git_dir = db.git_dir().to_owned();
    }
    let branch_lock = git_dir.join("refs/heads/main.lock");
    std::fs::write(&branch_lock, "").unwrap();
    std::fs::create_dir_all(git_dir.join("refs/gitdb/staged")).unwrap();
    let staged_lock = git_dir.join("refs/gitdb/staged/dead.lock");
    std::fs::write(&staged_lock, "").unwrap();
    // A lock a live writer holds and then renames away, as stock git does: it is not ours
    // to remove, and it is gone by itself.
    let live = git_dir.join("packed-refs.lock");
    std::fs::write(&live, "live").unwrap();
    let writer = {
        let live = live.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            std::fs::rename(&live, live.with_file_name("packed-refs.live")).unwrap();
        })
    };
    let db = open(dir.path());
    writer.join().unwrap();
    assert!(!branch_lock.exists() && !staged_lock.exists());
    assert!(git_dir.join("packed-refs.live").exists());
    db.set("c", b"3").unwrap();
    db.commit("after the crash", 2_000).unwrap();
    assert_eq!(get(&db, "c"), Some(b"3".to_vec()));
}
