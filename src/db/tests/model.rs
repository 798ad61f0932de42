//! Property test: the db against a model map, through sets, deletes, renames, commits,
//! rollbacks and reopens, with the invariants of the working layer checked at each step.
//!
//! Kept apart because the model (and its rename rules) is a small program of its own.

use std::collections::BTreeMap;

use super::*;

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
