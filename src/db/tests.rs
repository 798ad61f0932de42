//! Unit and property tests of the db layer on real repositories in temp directories.

use std::collections::BTreeMap;
use std::io::Write;

use super::staged::{STAGED_REFS, staged_ref};
use super::*;
use crate::store::{Signature, StoreError, TreeEdit};
use proptest::prelude::*;

fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn open(dir: &Path) -> GitDb {
    // Other tests in this process spawn programs; a child forked between our drop of the lock
    // file and its exec briefly shares the lock, so a reopen waits for that, with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match GitDb::open(dir.join("repo.git"), node("n1"), Options::default()) {
            Err(DbError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            other => return other.unwrap(),
        }
    }
}

fn get(db: &GitDb, key: &str) -> Option<Vec<u8>> {
    db.get(key).unwrap().map(|b| b.to_vec())
}

/// The listing of `prefix` (directories end in `/`), checking on the way that `subdirs`
/// agrees with it (so every listing in these tests, the model-based ones included, checks it).
fn names(db: &GitDb, prefix: &str) -> Vec<String> {
    let listed = db.list(prefix).unwrap();
    let dirs: Vec<String> = listed
        .iter()
        .filter(|e| e.kind == NodeKind::Dir)
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(db.subdirs(prefix).unwrap(), dirs, "subdirs of {prefix:?}");
    listed
        .into_iter()
        .map(|e| match e.kind {
            NodeKind::Dir => format!("{}/", e.name),
            NodeKind::Value(_) => e.name,
        })
        .collect()
}

/// A commit made without this db (like stock git would): `path` = `value` on top of `parent`,
/// written to the store but moving no ref.
fn outside_commit(db: &GitDb, parent: ObjectId, path: &str, value: &[u8]) -> ObjectId {
    let blob = db.store().write_blob(value).unwrap();
    let base = db.store().commit_info(parent).unwrap().tree;
    let edit = TreeEdit::Upsert {
        path,
        mode: ValueMode::Regular,
        id: blob,
    };
    let tree = db.store().write_tree(base, [edit]).unwrap();
    let sig = Signature {
        name: "git".into(),
        email: "git@x".into(),
        seconds: 2,
    };
    db.store()
        .write_commit(tree, &[parent], &sig, "outside\n")
        .unwrap()
}

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
fn commit_then_read_committed_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    assert_eq!(
        db.commit("empty", 1).unwrap(),
        CommitOutcome::NothingToCommit
    );
    db.set("k", b"v1").unwrap();
    let c1 = match db.commit("first", 1_000).unwrap() {
        CommitOutcome::Committed { id, changed } => {
            assert_eq!(changed, 1);
            id
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(db.head(), Some(c1));
    assert!(!db.is_dirty());
    db.set("k", b"v2").unwrap();
    db.set("other", b"o").unwrap();
    assert_eq!(get(&db, "k"), Some(b"v2".to_vec()));
    assert_eq!(db.rollback().unwrap(), 2);
    assert_eq!(get(&db, "k"), Some(b"v1".to_vec()));
    assert_eq!(get(&db, "other"), None);
    // Setting the same value again changes nothing.
    db.set("k", b"v1").unwrap();
    assert_eq!(
        db.commit("same", 2_000).unwrap(),
        CommitOutcome::NothingToCommit
    );
    assert!(!db.is_dirty());
    assert_eq!(db.head(), Some(c1));
}

#[test]
fn commits_carry_clock_and_hlc() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a", b"1").unwrap();
    db.commit("one", 5_000).unwrap();
    db.set("a", b"2").unwrap();
    // A clock that went backwards still yields a later HLC.
    db.commit("two", 4_000).unwrap();
    let log = db.log(10).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].summary, "two");
    assert_eq!(log[0].clock, "n1=2");
    assert_eq!(log[1].clock, "n1=1");
    assert_eq!(log[0].hlc.as_deref(), Some("5000.1"));
    assert_eq!(log[0].author, "n1");
    assert_eq!(db.clock().to_string(), "n1=2");
}

#[test]
fn history_get_at_list_at_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("x/a", b"1").unwrap();
    db.set("x/b", b"2").unwrap();
    db.commit("one", 1_000).unwrap();
    let c1 = db.head().unwrap().to_string();
    db.set("x/a", b"changed").unwrap();
    db.delete("x/b").unwrap();
    db.set("y", b"new").unwrap();
    db.commit("two", 2_000).unwrap();
    assert_eq!(db.get_at(&c1, "x/a").unwrap().unwrap().to_vec(), b"1");
    assert_eq!(
        db.get_at("main", "x/a").unwrap().unwrap().to_vec(),
        b"changed"
    );
    assert_eq!(db.get_at("main~1", "y").unwrap(), None);
    let listed: Vec<_> = db
        .list_at(&c1, "x")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(listed, vec!["a", "b"]);
    let diff = db.diff(&c1, "main").unwrap();
    assert_eq!(
        diff,
        vec![
            DiffEntry {
                key: "x/a".into(),
                change: DiffKind::Modified
            },
            DiffEntry {
                key: "x/b".into(),
                change: DiffKind::Deleted
            },
            DiffEntry {
                key: "y".into(),
                change: DiffKind::Added
            },
        ]
    );
    assert!(matches!(
        db.resolve_rev("nope"),
        Err(DbError::Store(StoreError::UnknownRevision { .. }))
    ));
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
fn refresh_adopts_a_head_moved_behind_our_back_and_keeps_the_working_layer() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a", b"1").unwrap();
    db.commit("c1", 1_000).unwrap();
    let c1 = db.head().unwrap();
    // Another writer commits directly with the store.
    let c2 = outside_commit(&db, c1, "outside", b"from outside");
    db.store()
        .update_ref("refs/heads/main", Some(c1), c2, "test")
        .unwrap();
    db.set("mine", b"m").unwrap();
    let moved = db.refresh().unwrap().unwrap();
    assert_eq!(
        moved,
        HeadMove {
            old: Some(c1),
            new: Some(c2)
        }
    );
    assert_eq!(get(&db, "outside"), Some(b"from outside".to_vec()));
    assert_eq!(get(&db, "mine"), Some(b"m".to_vec()));
    // The clock survives a head without a stamp.
    assert_eq!(db.clock().to_string(), "n1=1");
}

/// A head stamped an hour ahead (a peer whose clock is wrong) moves our HLC only to the skew
/// bound, whether we adopt it while running or find it at open; our next commit is stamped
/// and dated near our own clock, and still descends from (so, for LWW, is later than) it.
#[test]
fn a_head_stamped_an_hour_ahead_moves_our_clock_only_to_the_skew_bound() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let now = crate::defaults::now_ms();
    db.set("a", b"1").unwrap();
    db.commit("c1", now).unwrap();
    let c1 = db.head().unwrap();
    let hour = now + 3_600_000;
    let stamp = CommitStamp {
        node: Some(node("skewed")),
        clock: VectorClock::parse("n1=1 skewed=1").unwrap(),
        hlc: Some(Hlc {
            millis: hour,
            counter: 0,
        }),
    };
    let blob = db.store().write_blob(b"from the future").unwrap();
    let base = db.store().commit_info(c1).unwrap().tree;
    let edit = TreeEdit::Upsert {
        path: "a",
        mode: ValueMode::Regular,
        id: blob,
    };
    let tree = db.store().write_tree(base, [edit]).unwrap();
    let sig = Signature {
        name: "skewed".into(),
        email: "skewed@gitdb".into(),
        seconds: (hour / 1000) as i64,
    };
    let message = format!("skewed\n\n{}", stamp.trailers());
    let c2 = db
        .store()
        .write_commit(tree, &[c1], &sig, &message)
        .unwrap();
    db.store()
        .update_ref("refs/heads/main", Some(c1), c2, "test")
        .unwrap();
    db.refresh().unwrap().unwrap();
    let bound = crate::defaults::now_ms() + clock::MAX_CLOCK_SKEW_MS;
    let hlc = db.hlc();
    assert!(hlc.millis <= bound && hlc.millis >= now, "{hlc}");
    db.set("a", b"2").unwrap();
    db.commit("after", crate::defaults::now_ms()).unwrap();
    let c3 = db.head().unwrap();
    let log = db.log(1).unwrap();
    let c3_hlc = Hlc::parse(log[0].hlc.as_deref().unwrap()).unwrap();
    assert!(c3_hlc.millis <= bound, "{c3_hlc}");
    assert!(db.store().commit_info(c3).unwrap().seconds <= (bound / 1000) as i64);
    assert_eq!(
        log[0].clock, "n1=2 skewed=1",
        "causally after the skewed write"
    );
    drop(db);

    // Found at open: the same bound.
    let db = open(dir.path());
    db.store()
        .update_ref("refs/heads/main", Some(c3), c2, "test")
        .unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.head(), Some(c2));
    let hlc = db.hlc();
    assert!(
        hlc.millis <= crate::defaults::now_ms() + clock::MAX_CLOCK_SKEW_MS,
        "{hlc}"
    );
}

#[test]
fn commit_retries_on_top_of_a_concurrent_writer() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a", b"1").unwrap();
    db.commit("c1", 1_000).unwrap();
    let c1 = db.head().unwrap();
    let c2 = outside_commit(&db, c1, "theirs", b"theirs");
    db.store()
        .update_ref("refs/heads/main", Some(c1), c2, "test")
        .unwrap();
    // We have not refreshed: our commit must not lose theirs.
    db.set("ours", b"o").unwrap();
    let CommitOutcome::Committed { id, .. } = db.commit("c3", 3_000).unwrap() else {
        panic!("expected a commit");
    };
    assert_eq!(db.store().commit_info(id).unwrap().parents, vec![c2]);
    assert_eq!(get(&db, "theirs"), Some(b"theirs".to_vec()));
    assert_eq!(get(&db, "ours"), Some(b"o".to_vec()));
}

#[test]
fn writes_during_a_commit_stay_in_the_working_layer() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(open(dir.path()));
    for i in 0..200 {
        db.set(&format!("k/{i}"), b"x").unwrap();
    }
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                db.set(&format!("late/{i}"), b"y").unwrap();
            }
        })
    };
    db.commit("racing", 1_000).unwrap();
    writer.join().unwrap();
    // Whatever the interleaving, every late write is visible and either committed or staged.
    for i in 0..200 {
        assert_eq!(get(&db, &format!("late/{i}")), Some(b"y".to_vec()));
    }
    db.commit("rest", 2_000).unwrap();
    assert_eq!(db.list_recursive("late").unwrap().len(), 200);
    assert!(!db.is_dirty());
}

#[test]
fn gitdb_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<GitDb>();
}

// ----- property test: the db against a model map ------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Set(String, u8),
    Delete(String),
    DeletePrefix(String),
    Rename(String, String),
    Commit,
    Rollback,
    Reopen,
}

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof!["a", "b", "c"], 1..4).prop_map(|v| v.join("/"))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (path(), any::<u8>()).prop_map(|(p, v)| Op::Set(p, v)),
        2 => path().prop_map(Op::Delete),
        1 => path().prop_map(Op::DeletePrefix),
        2 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => Just(Op::Reopen),
    ]
}

type Model = BTreeMap<String, u8>;

fn model_is_dir(m: &Model, p: &str) -> bool {
    m.keys().any(|k| k.starts_with(&format!("{p}/")))
}

fn model_children(m: &Model, p: &str) -> Vec<String> {
    let prefix = if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    };
    let mut out = std::collections::BTreeSet::new();
    for k in m.keys() {
        if let Some(rest) = k.strip_prefix(&prefix) {
            match rest.split_once('/') {
                Some((d, _)) => out.insert(format!("{d}/")),
                None => out.insert(rest.to_owned()),
            };
        }
    }
    out.into_iter().collect()
}

fn rename_error_name(e: &DbError) -> &'static str {
    match e {
        DbError::InvalidRename { .. } => "invalid",
        DbError::NotFound { .. } => "not-found",
        DbError::NotEmpty { .. } => "not-empty",
        DbError::IsDirectory { .. } => "is-dir",
        DbError::NotADirectory { .. } => "not-dir",
        DbError::ParentIsValue { .. } => "parent-is-value",
        _ => "other",
    }
}

/// rename(2) on the model map, with the error the db must give.
fn model_rename(m: &mut Model, from: &str, to: &str) -> Result<(), &'static str> {
    if to.starts_with(&format!("{from}/")) {
        return Err("invalid");
    }
    let from_val = m.contains_key(from);
    let from_dir = model_is_dir(m, from);
    if !from_val && !from_dir {
        return Err("not-found");
    }
    if from == to {
        return Ok(());
    }
    let to_val = m.contains_key(to);
    let to_dir = model_is_dir(m, to);
    if to_dir && from.starts_with(&format!("{to}/")) {
        return Err("not-empty");
    }
    match (from_val, to_val, to_dir) {
        (true, _, true) => return Err("is-dir"),
        (false, true, _) => return Err("not-dir"),
        (false, _, true) => return Err("not-empty"),
        _ => {}
    }
    if Key::parse(to)
        .unwrap()
        .ancestors()
        .any(|a| m.contains_key(a))
    {
        return Err("parent-is-value");
    }
    if from_val {
        let v = m.remove(from).unwrap();
        m.insert(to.to_owned(), v);
    } else {
        let prefix = format!("{from}/");
        let moved: Vec<(String, u8)> = m
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (format!("{to}/{}", &k[prefix.len()..]), *v))
            .collect();
        m.retain(|k, _| !k.starts_with(&prefix));
        m.extend(moved);
    }
    Ok(())
}

fn check_against_model(db: &GitDb, m: &Model) -> Result<(), TestCaseError> {
    let all: Vec<String> = db
        .list_recursive("")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    prop_assert_eq!(&all, &m.keys().cloned().collect::<Vec<_>>());
    for (k, v) in m {
        prop_assert_eq!(get(db, k), Some(vec![*v]));
    }
    let mut dirs: Vec<String> = vec![String::new()];
    dirs.extend(m.keys().flat_map(|k| {
        let key = Key::parse(k).unwrap();
        key.ancestors().map(str::to_owned).collect::<Vec<_>>()
    }));
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        prop_assert_eq!(names(db, d), model_children(m, d), "listing {:?}", d);
    }
    Ok(())
}

/// Every tombstone in the working layer hides something the head holds (none is left behind
/// by a name created and removed, or renamed away, before a commit).
fn no_tombstone_without_a_head_path(db: &GitDb) -> Result<(), TestCaseError> {
    let st = db.read_state();
    for (path, change) in &st.working {
        if *change == Change::Delete && !path.is_empty() {
            prop_assert!(
                db.store.lookup(st.head_tree, path).unwrap().is_some(),
                "tombstone for {:?}, which the head lacks",
                path
            );
        }
    }
    Ok(())
}

fn dirty_keys(db: &GitDb) -> Vec<String> {
    db.status().dirty.into_iter().map(|d| d.key).collect()
}

#[test]
fn names_that_never_reached_a_commit_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("kept", b"1").unwrap();
    db.commit("base", 1_000).unwrap();
    // A scratch file, and a config written to a temp name and renamed over its target.
    db.set("app/scratch", b"x").unwrap();
    db.delete("app/scratch").unwrap();
    db.set("app/.config.tmp", b"port=1").unwrap();
    db.rename("app/.config.tmp", "app/config").unwrap();
    assert_eq!(dirty_keys(&db), ["/app/config"]);
    // A committed key's deletion is kept, and so is every tombstone while a commit runs
    // (that commit may be adding the name to the head).
    db.delete("kept").unwrap();
    {
        let _commit = db.commit_lock.lock().unwrap();
        db.set("racing", b"r").unwrap();
        db.delete("racing").unwrap();
    }
    assert_eq!(dirty_keys(&db), ["/app/config", "/kept", "/racing"]);
    // Reopening replays the journal's deletes and keeps only the tombstones that matter.
    db.sync().unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(dirty_keys(&db), ["/app/config", "/kept"]);
    db.commit("c", 2_000).unwrap();
    assert_eq!(get(&db, "app/config"), Some(b"port=1".to_vec()));
    assert_eq!(get(&db, "kept"), None);
    assert_eq!(names(&db, ""), ["app/"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn working_layer_matches_a_model_map(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Some(open(dir.path()));
        let mut committed: Model = Model::new();
        let mut visible: Model = Model::new();
        for op in ops {
            let d = db.as_ref().unwrap();
            match op {
                Op::Set(p, v) => {
                    let parent_is_value = Key::parse(&p).unwrap().ancestors().any(|a| visible.contains_key(a));
                    let is_dir = model_is_dir(&visible, &p);
                    let r = d.set(&p, &[v]);
                    if parent_is_value {
                        prop_assert!(matches!(r, Err(DbError::ParentIsValue { .. })), "{:?}", r);
                    } else if is_dir {
                        prop_assert!(matches!(r, Err(DbError::IsDirectory { .. })), "{:?}", r);
                    } else {
                        prop_assert!(r.is_ok(), "{:?}", r);
                        visible.insert(p, v);
                    }
                }
                Op::Delete(p) => {
                    let r = d.delete(&p);
                    if visible.remove(&p).is_some() {
                        prop_assert!(r.is_ok(), "{:?}", r);
                    } else if model_is_dir(&visible, &p) {
                        prop_assert!(matches!(r, Err(DbError::IsDirectory { .. })), "{:?}", r);
                    } else {
                        prop_assert!(matches!(r, Err(DbError::NotFound { .. })), "{:?}", r);
                    }
                }
                Op::DeletePrefix(p) => {
                    let exists = visible.contains_key(&p) || model_is_dir(&visible, &p);
                    let r = d.delete_prefix(&p);
                    prop_assert_eq!(r.is_ok(), exists, "{:?}", r);
                    visible.retain(|k, _| k != &p && !k.starts_with(&format!("{p}/")));
                }
                Op::Rename(from, to) => {
                    let r = d.rename(&from, &to);
                    match model_rename(&mut visible, &from, &to) {
                        Ok(()) => prop_assert!(r.is_ok(), "{:?}", r),
                        Err(expected) => prop_assert_eq!(
                            r.as_ref().err().map(rename_error_name),
                            Some(expected),
                            "rename {} -> {}: {:?}", from, to, r
                        ),
                    }
                }
                Op::Commit => {
                    d.commit("c", 1_000).unwrap();
                    committed = visible.clone();
                    prop_assert!(!d.is_dirty());
                }
                Op::Rollback => {
                    d.rollback().unwrap();
                    visible = committed.clone();
                }
                Op::Reopen => {
                    d.sync().unwrap();
                    drop(db.take());
                    db = Some(open(dir.path()));
                }
            }
            check_against_model(db.as_ref().unwrap(), &visible)?;
            no_tombstone_without_a_head_path(db.as_ref().unwrap())?;
        }
        // Whatever was committed is what a fresh reader of the branch sees.
        let d = db.as_ref().unwrap();
        d.commit("final", 2_000).unwrap();
        let fresh = GitDb::open(dir.path().join("repo.git"), node("r"), Options { read_only: true, ..Options::default() }).unwrap();
        check_against_model(&fresh, &visible)?;
    }
}

#[test]
fn subscribers_hear_every_head_move_with_changed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rx = db.subscribe();
    db.set("a", b"1").unwrap();
    db.commit("c1", 1_000).unwrap();
    let ev = rx.try_recv().unwrap();
    assert_eq!(ev.origin, HeadOrigin::LocalCommit);
    assert_eq!(ev.changed, vec!["a".to_string()]);
    let c1 = db.head().unwrap();
    let c2 = outside_commit(&db, c1, "b/c", b"2");
    assert!(matches!(
        db.move_head(None, c2, "wrong expectation", HeadOrigin::Merge),
        Err(DbError::Store(StoreError::RefMoved { .. }))
    ));
    db.move_head(Some(c1), c2, "merge", HeadOrigin::Merge)
        .unwrap();
    let ev = rx.try_recv().unwrap();
    assert_eq!(
        (ev.origin, ev.old, ev.new),
        (HeadOrigin::Merge, Some(c1), Some(c2))
    );
    assert_eq!(ev.changed, vec!["b/c".to_string()]);
    assert_eq!(get(&db, "b/c"), Some(b"2".to_vec()));
}

/// A rollback is news too (what readers see changed), on the same channel; a callback
/// subscriber hears it before `rollback` returns.
#[test]
fn rollback_is_announced_with_the_dropped_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rx = db.subscribe();
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let heard = heard.clone();
        db.subscribe_with(move |ev| {
            heard.lock().unwrap().push((ev.origin, ev.changed.clone()));
            true
        });
    }
    db.set("a", b"1").unwrap();
    db.commit("c1", 1_000).unwrap();
    db.set("a", b"2").unwrap();
    db.set("d/x", b"3").unwrap();
    assert_eq!(db.rollback().unwrap(), 2);
    let expect = vec!["a".to_string(), "d/x".to_string()];
    assert_eq!(
        heard.lock().unwrap().last().cloned(),
        Some((HeadOrigin::Rollback, expect.clone()))
    );
    assert_eq!(rx.try_recv().unwrap().origin, HeadOrigin::LocalCommit);
    let ev = rx.try_recv().unwrap();
    assert_eq!((ev.origin, ev.changed), (HeadOrigin::Rollback, expect));
    assert_eq!(ev.old, ev.new);
    // Nothing to drop: no news.
    assert_eq!(db.rollback().unwrap(), 0);
    assert!(rx.try_recv().is_err());
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

#[test]
fn a_value_replacing_a_directory_commits_past_unrelated_siblings() {
    // "a" < "a-b" < "a/x" in path order: the tombstone below "a" comes after a sibling.
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a/x", b"1").unwrap();
    db.commit("c", 1_000).unwrap();
    db.delete("a/x").unwrap();
    db.set("a", b"value").unwrap();
    db.set("a-b", b"sibling").unwrap();
    db.commit("c2", 2_000).unwrap();
    assert_eq!(get(&db, "a"), Some(b"value".to_vec()));
    assert_eq!(names(&db, ""), vec!["a", "a-b"]);
}

/// A merge or fast-forward to a commit whose tree the repository lacks fails before the
/// branch moves.
#[test]
fn move_head_refuses_a_commit_whose_tree_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a", b"1").unwrap();
    db.commit("c1", 1_000).unwrap();
    let head = db.head().unwrap();
    let absent_tree = db.store().hash_blob(b"no such tree").unwrap();
    let sig = Signature {
        name: "peer".into(),
        email: "peer@x".into(),
        seconds: 2,
    };
    let broken = db
        .store()
        .write_commit(absent_tree, &[head], &sig, "names a missing tree\n")
        .unwrap();
    let err = db
        .move_head(Some(head), broken, "test", HeadOrigin::Merge)
        .unwrap_err();
    assert!(
        matches!(err, DbError::Store(StoreError::Missing { id }) if id == absent_tree),
        "{err:?}"
    );
    assert_eq!(db.head(), Some(head));
    assert_eq!(db.store().read_ref("refs/heads/main").unwrap(), Some(head));
}

// ----- errno --------------------------------------------------------------------------------

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

// ----- full disks, staged refs, read-only followers ------------------------------------------

fn open_at(repo: &Path) -> GitDb {
    GitDb::open(repo, node("n1"), Options::default()).unwrap()
}

fn open_read_only(repo: &Path) -> GitDb {
    GitDb::open(
        repo,
        node("reader"),
        Options {
            read_only: true,
            ..Options::default()
        },
    )
    .unwrap()
}

/// A value larger than what the journal carries inline: written as a blob when set.
fn large(seed: u8) -> Vec<u8> {
    (0..100_000u32)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
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

/// A large value's blob is kept reachable by `refs/gitdb/staged/<id>` while only the working
/// layer names it; the ref goes when the value is committed, overwritten (at the next commit)
/// or rolled back, and a reopen puts the refs right.
#[test]
fn staged_large_values_are_protected_by_refs_until_committed_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let staged = |db: &GitDb| -> Vec<ObjectId> {
        db.store()
            .refs_under(STAGED_REFS)
            .unwrap()
            .into_iter()
            .map(|(_, id)| id.unwrap())
            .collect()
    };
    let id_of = |db: &GitDb, key: &str| match db.stat(key).unwrap() {
        Some(Stat::Value { id, .. }) => id,
        other => panic!("{other:?}"),
    };
    db.set("small", b"inline").unwrap();
    assert!(staged(&db).is_empty(), "a small value has no blob yet");
    db.set("big", &large(1)).unwrap();
    let first = id_of(&db, "big");
    assert_eq!(staged(&db), vec![first]);
    db.set("big", &large(2)).unwrap();
    let second = id_of(&db, "big");
    db.commit("c1", 1_000).unwrap();
    assert!(staged(&db).is_empty(), "{:?}", staged(&db));
    db.set("big", &large(3)).unwrap();
    let third = id_of(&db, "big");
    assert_eq!(staged(&db), vec![third]);
    db.rollback().unwrap();
    assert!(staged(&db).is_empty());
    // A rename of a committed value stages its blob under the new name.
    db.rename("big", "moved").unwrap();
    assert_eq!(staged(&db), vec![second]);
    db.sync().unwrap();
    // A reopen deletes a ref nothing staged needs and re-creates a missing one.
    db.store()
        .force_refs(&[(staged_ref(first), first)], &[staged_ref(second)], "test")
        .unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(staged(&db), vec![second]);
    db.commit("c2", 2_000).unwrap();
    assert!(staged(&db).is_empty());
}

/// A read-only handle beside a writer follows its journal: a draft appears, a commit replaces
/// it (never the old draft over the new head), a rollback and a rewrite are noticed, and
/// subscribers hear of each change.
#[test]
fn a_read_only_handle_follows_the_writers_journal() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo.git");
    let writer = open_at(&repo);
    writer.set("k", b"0").unwrap();
    writer.commit("c0", 1_000).unwrap();
    let reader = open_read_only(&repo);
    let events = reader.subscribe();
    writer.set("k", b"1").unwrap();
    writer.sync().unwrap();
    assert_eq!(get(&reader, "k"), Some(b"0".to_vec()));
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "k"), Some(b"1".to_vec()));
    let ev = events.try_recv().unwrap();
    assert_eq!(
        (ev.origin, ev.changed),
        (HeadOrigin::FollowedWriter, vec!["k".into()])
    );
    writer.set("k", b"2").unwrap();
    writer.commit("c1", 2_000).unwrap();
    let moved = reader.refresh().unwrap();
    assert_eq!(
        moved.map(|m| m.new),
        Some(writer.head()),
        "the reader follows the head"
    );
    assert_eq!(get(&reader, "k"), Some(b"2".to_vec()));
    assert!(!reader.is_dirty());
    assert_eq!(events.try_recv().unwrap().changed, vec!["k".to_string()]);
    // A rollback resets the journal in place and the writer appends again past the old end.
    writer.set("k", b"3").unwrap();
    writer.set("other", b"x").unwrap();
    writer.sync().unwrap();
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "k"), Some(b"3".to_vec()));
    writer.rollback().unwrap();
    writer.set("k", b"4").unwrap();
    writer.set("other", b"y").unwrap();
    writer.set("third", b"z").unwrap();
    writer.sync().unwrap();
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "k"), Some(b"4".to_vec()));
    assert_eq!(get(&reader, "other"), Some(b"y".to_vec()));
    // A commit that leaves changes rewrites the journal (a new file).
    let writer = std::sync::Arc::new(writer);
    {
        let slot = writer.clone();
        *writer.after_ref_moved.lock().unwrap() = Some(Box::new(move |db: &GitDb| {
            let _ = &slot;
            db.set("during", b"d").unwrap();
        }));
    }
    writer.commit("c2", 3_000).unwrap();
    writer.sync().unwrap();
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "during"), Some(b"d".to_vec()));
    assert_eq!(get(&reader, "k"), Some(b"4".to_vec()));
    assert_eq!(dirty_keys(&reader), vec!["/during"]);
    assert_eq!(reader.refresh().unwrap(), None);
}

/// Between the writer moving the ref and emptying the journal, a reader sees the journal's
/// `Base` disagree with the head: it shows the committed state alone (never the old draft
/// over the new head) until they agree again. A torn tail (the writer mid-append) is skipped
/// until it is whole.
#[test]
fn a_read_only_handle_never_shows_a_draft_older_than_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo.git");
    let writer = open_at(&repo);
    writer.set("k", b"0").unwrap();
    writer.commit("c0", 1_000).unwrap();
    writer.set("k", b"1").unwrap();
    writer.sync().unwrap();
    let journal_path = writer.git_dir().join("gitdb/journal");
    let reader = open_read_only(&repo);
    assert_eq!(get(&reader, "k"), Some(b"1".to_vec()));
    writer.set("k", b"2").unwrap();
    writer.sync().unwrap();
    let draft = std::fs::read(&journal_path).unwrap();
    // The writer commits k=2 but "dies" before the journal is emptied: the file still holds
    // the drafts k=1, k=2 on the old head, and the reader reads k=2 for the first time now.
    writer.commit("c1", 2_000).unwrap();
    let c1 = writer.head();
    drop(writer);
    std::fs::write(&journal_path, &draft).unwrap();
    reader.refresh().unwrap();
    assert_eq!(reader.head(), c1);
    assert_eq!(get(&reader, "k"), Some(b"2".to_vec()));
    assert!(
        !reader.is_dirty(),
        "the drafts are not shown over the new head"
    );
    // The writer comes back (and finds the journal committed), then appends a new draft; the
    // reader meets its last record in two halves.
    let writer = open_at(&repo);
    assert!(!writer.is_dirty());
    writer.set("k", b"3").unwrap();
    writer.sync().unwrap();
    let mut bytes = std::fs::read(&journal_path).unwrap();
    let whole = bytes.len();
    writer.set("t", b"torn").unwrap();
    writer.sync().unwrap();
    let full = std::fs::read(&journal_path).unwrap();
    bytes.extend_from_slice(&full[whole..whole + 5]);
    // What a reader may meet mid-append: half a record at the end.
    let half = dir.path().join("half");
    std::fs::write(&half, &bytes).unwrap();
    std::fs::rename(&half, &journal_path).unwrap();
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "k"), Some(b"3".to_vec()));
    assert_eq!(get(&reader, "t"), None);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal_path)
        .unwrap()
        .write_all(&full[whole + 5..])
        .unwrap();
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "t"), Some(b"torn".to_vec()));
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
