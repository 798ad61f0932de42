//! Keys and values through the working layer: set, get, delete, rename, modes, and the rules
//! of names (a value and a directory never share one; invalid keys are typed errors).
//!
//! Kept apart from commits: these hold whatever the head is, and check what a reader of the
//! working layer sees.

use super::*;

#[test]
fn set_get_delete_through_the_working_layer() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    assert_eq!(get(&db, "/users/alice/profile"), None);
    db.set("/users/alice/profile", b"hi").unwrap();
    assert_eq!(get(&db, "/users/alice/profile"), Some(b"hi".to_vec()));
    assert_eq!(names(&db, "/"), vec!["users/"]);
    assert_eq!(names(&db, "/users"), vec!["alice/"]);
    db.delete("/users/alice/profile").unwrap();
    assert_eq!(get(&db, "/users/alice/profile"), None);
    assert!(matches!(db.list("/users"), Err(DbError::NotFound { .. })));
    assert!(matches!(
        db.delete("/users/alice/profile"),
        Err(DbError::NotFound { .. })
    ));
}

#[test]
fn value_and_directory_never_share_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a/b", b"1").unwrap();
    assert!(matches!(
        db.set("a", b"x"),
        Err(DbError::IsDirectory { .. })
    ));
    assert!(matches!(
        db.set("a/b/c", b"x"),
        Err(DbError::ParentIsValue { .. })
    ));
    assert!(matches!(db.get("a"), Err(DbError::IsDirectory { .. })));
    assert!(matches!(db.delete("a"), Err(DbError::IsDirectory { .. })));
    assert!(matches!(db.list("a/b"), Err(DbError::NotADirectory { .. })));
    db.commit("c", 1000).unwrap();
    assert!(matches!(
        db.set("a", b"x"),
        Err(DbError::IsDirectory { .. })
    ));
    assert!(matches!(
        db.set("a/b/c", b"x"),
        Err(DbError::ParentIsValue { .. })
    ));
}

#[test]
fn invalid_keys_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    assert!(matches!(
        db.set("a//b", b"x"),
        Err(DbError::Key(KeyError::EmptyComponent { .. }))
    ));
    assert!(matches!(
        db.set("/.gitdb/x", b"x"),
        Err(DbError::Key(KeyError::Reserved { .. }))
    ));
    assert!(matches!(
        db.set("/", b"x"),
        Err(DbError::Key(KeyError::Root))
    ));
    let e = db.set(&"n".repeat(300), b"x").unwrap_err();
    assert!(matches!(e, DbError::Key(KeyError::TooLong { .. })), "{e}");
}
#[test]
fn delete_prefix_then_recreate_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("d/a", b"1").unwrap();
    db.set("d/sub/b", b"2").unwrap();
    db.commit("c", 1_000).unwrap();
    db.delete_prefix("d").unwrap();
    assert!(matches!(db.list("d"), Err(DbError::NotFound { .. })));
    db.set("d/new", b"3").unwrap();
    assert_eq!(names(&db, "d"), vec!["new"]);
    assert_eq!(get(&db, "d/a"), None);
    db.commit("c2", 2_000).unwrap();
    assert_eq!(names(&db, "d"), vec!["new"]);
    assert_eq!(
        db.list_recursive("").unwrap(),
        vec![("d/new".to_string(), ValueMode::Regular)]
    );
}

#[test]
fn a_value_replaces_a_deleted_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("d/a", b"1").unwrap();
    db.commit("c", 1_000).unwrap();
    db.delete("d/a").unwrap();
    assert_eq!(
        db.stat("d").unwrap(),
        None,
        "a directory with no visible keys is gone"
    );
    db.set("d", b"now a value").unwrap();
    assert_eq!(get(&db, "d"), Some(b"now a value".to_vec()));
    // The value hides the directory: the tombstone below it is gone, also after a replay.
    assert_eq!(dirty_keys(&db), ["/d"]);
    db.sync().unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(dirty_keys(&db), ["/d"]);
    db.commit("c2", 2_000).unwrap();
    assert_eq!(get(&db, "d"), Some(b"now a value".to_vec()));
    assert_eq!(names(&db, ""), vec!["d"]);
}

#[test]
fn delete_everything_at_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a", b"1").unwrap();
    db.set("b/c", b"2").unwrap();
    db.commit("c", 1_000).unwrap();
    db.delete_prefix("/").unwrap();
    assert!(names(&db, "").is_empty());
    db.set("z", b"3").unwrap();
    db.commit("c2", 2_000).unwrap();
    assert_eq!(names(&db, ""), vec!["z"]);
}

#[test]
fn modes_and_stat() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set_with_mode("bin/run", b"#!/bin/sh\n", ValueMode::Executable)
        .unwrap();
    db.set_with_mode("link", b"bin/run", ValueMode::Symlink)
        .unwrap();
    match db.stat("bin/run").unwrap() {
        Some(Stat::Value {
            mode,
            size,
            committed,
            ..
        }) => {
            assert_eq!((mode, size, committed), (ValueMode::Executable, 10, false));
        }
        other => panic!("{other:?}"),
    }
    db.commit("c", 1_000).unwrap();
    match db.stat("link").unwrap() {
        Some(Stat::Value {
            mode,
            size,
            committed,
            ..
        }) => {
            assert_eq!((mode, size, committed), (ValueMode::Symlink, 7, true));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.stat("bin").unwrap(), Some(Stat::Dir));
    assert_eq!(db.stat("nope").unwrap(), None);
}
#[test]
fn gitdb_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<GitDb>();
}
#[test]
fn rename_moves_values_and_directories_atomically() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        db.set("d/a", b"1").unwrap();
        db.set("d/s/b", b"2").unwrap();
        db.set("f", b"file").unwrap();
        db.set("g", b"other").unwrap();
        db.commit("c", 1_000).unwrap();
        db.set("d/s/c", b"3").unwrap();
        db.rename("d", "e/moved").unwrap();
        assert_eq!(db.stat("d").unwrap(), None);
        assert_eq!(names(&db, "e/moved"), vec!["a", "s/"]);
        assert_eq!(get(&db, "e/moved/s/c"), Some(b"3".to_vec()));
        // A value replaces a value, as rename(2) does.
        db.rename("f", "g").unwrap();
        assert_eq!(get(&db, "g"), Some(b"file".to_vec()));
        assert_eq!(get(&db, "f"), None);
        assert!(matches!(
            db.rename("g", "e"),
            Err(DbError::IsDirectory { .. })
        ));
        assert!(matches!(
            db.rename("e", "g"),
            Err(DbError::NotADirectory { .. })
        ));
        assert!(matches!(
            db.rename("e", "e/moved/x"),
            Err(DbError::InvalidRename { .. })
        ));
        assert!(matches!(
            db.rename("nope", "x"),
            Err(DbError::NotFound { .. })
        ));
        db.set("h/x", b"1").unwrap();
        assert!(matches!(
            db.rename("e/moved", "h"),
            Err(DbError::NotEmpty { .. })
        ));
        db.sync().unwrap();
    }
    let db = open(dir.path());
    assert_eq!(
        db.list_recursive("")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>(),
        vec!["e/moved/a", "e/moved/s/b", "e/moved/s/c", "g", "h/x"]
    );
    db.commit("renamed", 2_000).unwrap();
    assert_eq!(get(&db, "e/moved/s/b"), Some(b"2".to_vec()));
}
/// Deleting the committed values of one directory one by one, in any order, costs a bounded
/// number of tree entries per delete in the search for what keeps the directory visible (the
/// old search walked every tombstone already there at each step: O(n²) for `rm -rf`).
#[test]
fn deleting_a_large_committed_directory_scans_each_entry_about_once() {
    const N: usize = 2000;
    const IN_SUB: usize = 200;
    type Order = (&'static str, fn(usize) -> usize);
    let orders: [Order; 3] = [
        ("sorted", |i| i),
        ("reversed", |i| N + IN_SUB - 1 - i),
        // A fixed permutation (7919 is prime, so i -> 7919 i mod n is one).
        ("shuffled", |i| (i * 7919) % (N + IN_SUB)),
    ];
    for (order, pick) in orders {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let mut keys: Vec<String> = (0..N).map(|i| format!("d/f{i:05}")).collect();
        keys.extend((0..IN_SUB).map(|i| format!("d/s/g{i:04}")));
        keys.sort();
        for k in &keys {
            db.set(k, b"v").unwrap();
        }
        db.set("other", b"o").unwrap();
        db.commit("many", 1_000).unwrap();
        let before = db.visibility_scans();
        for i in 0..keys.len() {
            db.delete(&keys[pick(i)]).unwrap();
            // What the mount asks after each unlink: is the parent still a directory, and
            // how many subdirectories does the root have (its link count)?
            let last = i + 1 == keys.len();
            let expect = if last { None } else { Some(Stat::Dir) };
            assert_eq!(
                db.stat("d").unwrap(),
                expect,
                "{order}: d after {} deletes",
                i + 1
            );
            let subdirs = db.subdirs("").unwrap();
            assert_eq!(
                subdirs.is_empty(),
                last,
                "{order}: root's subdirs after {}",
                i + 1
            );
        }
        let scans = db.visibility_scans() - before;
        let bound = 8 * keys.len() as u64;
        assert!(
            scans <= bound,
            "{order}: {scans} tree entries scanned for {} deletes (bound {bound})",
            keys.len()
        );
        assert_eq!(names(&db, ""), vec!["other".to_owned()], "{order}");
    }
}

/// The size of a small value waiting for its commit comes from memory: it is not in the object
/// database yet (asking there cost a rescan of the pack directory per open), and the answer
/// stays right once the commit writes it.
#[test]
fn a_waiting_value_has_its_size_before_the_object_database_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("/k", b"hello").unwrap();
    let Some(Stat::Value { id, size, .. }) = db.stat("/k").unwrap() else {
        panic!("no value at /k");
    };
    assert_eq!(size, 5);
    assert!(
        !db.has_object(id),
        "small values wait in memory until the commit"
    );
    assert_eq!(db.value_size(id).unwrap(), 5);
    db.commit("c", 1_000).unwrap();
    assert!(db.has_object(id));
    assert_eq!(db.value_size(id).unwrap(), 5);
}
