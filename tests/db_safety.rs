//! Integration: stock git's housekeeping (`gc`, `prune`, `repack`, `pack-refs`, `fsck`) on a
//! repository gitdb is writing: it keeps everything gitdb still needs, finds nothing broken,
//! and finds nothing of gitdb's in its way.

mod support;

use std::path::{Path, PathBuf};

use gitdb::db::{CommitOutcome, DbError, GitDb, NodeId, Options, Stat};
use gitdb::store::ObjectId;
use support::{git, git_all};

fn open(repo: &Path) -> GitDb {
    GitDb::open(repo, NodeId::new("node-a").unwrap(), Options::default()).unwrap()
}

/// A value larger than what the journal carries inline: written as a loose blob when set.
fn large(seed: u8) -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

fn id_of(db: &GitDb, key: &str) -> ObjectId {
    match db.stat(key).unwrap() {
        Some(Stat::Value { id, .. }) => id,
        other => panic!("{key}: {other:?}"),
    }
}

fn staged_refs(repo: &Path) -> Vec<String> {
    git(
        repo,
        &["for-each-ref", "--format=%(refname)", "refs/gitdb/"],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

fn loose_path(repo: &Path, id: ObjectId) -> PathBuf {
    let hex = id.to_string();
    repo.join("objects").join(&hex[..2]).join(&hex[2..])
}

fn fsck(repo: &Path) {
    let out = git_all(repo, &["fsck", "--strict", "--no-dangling"]);
    assert!(
        !out.contains("missing") && !out.contains("error"),
        "fsck: {out}"
    );
}

/// `git prune`, `git gc --prune=now` and `git repack -a -d` while large values are staged (one
/// set from memory, one streamed like the mount does): the blobs stay, reads and the commit
/// work, and the commit passes fsck. The staged refs may have been packed by gc by then: the
/// commit still deletes them.
#[test]
fn gc_and_prune_keep_the_blobs_of_staged_large_values() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("db.git");
    let db = open(&repo);
    db.set("/base", b"committed").unwrap();
    db.commit("base", 1_000).unwrap();
    db.set("/big", &large(1)).unwrap();
    let streamed = large(2);
    let sid = db
        .set_stream(
            "/streamed",
            streamed.len() as u64,
            &streamed[..],
            gitdb::store::ValueMode::Regular,
        )
        .unwrap();
    // Overwritten before any commit: its ref may stay until then, harmlessly.
    db.set("/over", &large(3)).unwrap();
    db.set("/over", &large(4)).unwrap();
    db.sync().unwrap();
    let big = id_of(&db, "/big");
    let refs = staged_refs(&repo);
    assert!(
        refs.contains(&format!("refs/gitdb/staged/{big}"))
            && refs.contains(&format!("refs/gitdb/staged/{sid}")),
        "{refs:?}"
    );
    git(&repo, &["prune", "--expire=now"]);
    git(&repo, &["gc", "-q", "--prune=now"]);
    git(&repo, &["repack", "-q", "-a", "-d"]);
    git(&repo, &["prune", "--expire=now"]);
    fsck(&repo);
    // A fresh handle, so nothing comes from a cache.
    drop(db);
    let db = open(&repo);
    assert_eq!(&db.get("/big").unwrap().unwrap()[..], &large(1)[..]);
    assert_eq!(&db.get("/streamed").unwrap().unwrap()[..], &streamed[..]);
    assert_eq!(&db.get("/over").unwrap().unwrap()[..], &large(4)[..]);
    assert!(
        std::fs::read_to_string(repo.join("packed-refs"))
            .unwrap_or_default()
            .contains("refs/gitdb/staged/"),
        "gc packs the staged refs"
    );
    let CommitOutcome::Committed { .. } = db.commit("large values", 2_000).unwrap() else {
        panic!("expected a commit");
    };
    assert_eq!(staged_refs(&repo), Vec::<String>::new());
    fsck(&repo);
    git(&repo, &["gc", "-q", "--prune=now"]);
    assert_eq!(
        git(&repo, &["cat-file", "-s", "main:big"]).trim(),
        large(1).len().to_string()
    );
    let mirror = dir.path().join("mirror.git");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--mirror",
            repo.to_str().unwrap(),
            mirror.to_str().unwrap(),
        ],
    );
    fsck(&mirror);
}

/// A rollback deletes the staged refs; a reopen re-creates the refs of what the journal still
/// stages, even after `git pack-refs` and a deletion behind gitdb's back.
#[test]
fn staged_refs_follow_rollback_and_reopen_in_packed_refs_too() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("db.git");
    let db = open(&repo);
    db.set("/big", &large(5)).unwrap();
    db.rollback().unwrap();
    assert_eq!(staged_refs(&repo), Vec::<String>::new());
    db.set("/big", &large(6)).unwrap();
    db.sync().unwrap();
    let id = id_of(&db, "/big");
    drop(db);
    git(&repo, &["pack-refs", "--all"]);
    assert!(!repo.join(format!("refs/gitdb/staged/{id}")).exists());
    let db = open(&repo);
    assert_eq!(staged_refs(&repo), vec![format!("refs/gitdb/staged/{id}")]);
    drop(db);
    git(
        &repo,
        &["update-ref", "-d", &format!("refs/gitdb/staged/{id}")],
    );
    let db = open(&repo);
    assert_eq!(staged_refs(&repo), vec![format!("refs/gitdb/staged/{id}")]);
    git(&repo, &["gc", "-q", "--prune=now"]);
    db.rollback().unwrap();
    assert_eq!(staged_refs(&repo), Vec::<String>::new());
    assert!(
        !std::fs::read_to_string(repo.join("packed-refs"))
            .unwrap_or_default()
            .contains("refs/gitdb/"),
        "the packed staged ref is gone too"
    );
}

/// A staged blob deleted behind gitdb's back (its ref too): the commit fails with the key and
/// the id, the branch does not move, and the repository stays valid.
#[test]
fn a_commit_refuses_a_value_whose_blob_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("db.git");
    let db = open(&repo);
    db.set("/kept", b"1").unwrap();
    db.commit("c1", 1_000).unwrap();
    let head = db.head();
    db.set("/lost", &large(7)).unwrap();
    db.sync().unwrap();
    let id = id_of(&db, "/lost");
    git(
        &repo,
        &["update-ref", "-d", &format!("refs/gitdb/staged/{id}")],
    );
    std::fs::remove_file(loose_path(&repo, id)).unwrap();
    match db.commit("c2", 2_000) {
        Err(DbError::MissingValue { key, id: missing }) => {
            assert_eq!((key.as_str(), missing), ("lost", id));
        }
        other => panic!("expected MissingValue, got {other:?}"),
    }
    assert_eq!(db.head(), head);
    assert_eq!(
        git(&repo, &["rev-parse", "main"]).trim(),
        head.unwrap().to_string()
    );
    fsck(&repo);
}

/// Deleting every key commits the empty tree, which must then exist (gix treats it as always
/// present; `git fsck` reports a missing tree).
#[test]
fn a_commit_of_nothing_left_writes_the_empty_tree() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("db.git");
    let db = open(&repo);
    db.set("/a", b"1").unwrap();
    db.commit("one key", 1_000).unwrap();
    db.delete("/a").unwrap();
    db.commit("no keys", 2_000).unwrap();
    assert_eq!(
        git(&repo, &["rev-parse", "main^{tree}"]).trim(),
        "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    );
    // (`git cat-file` knows the empty tree without having it: only fsck tells.)
    fsck(&repo);
}

fn packs(repo: &Path, ext: &str) -> usize {
    std::fs::read_dir(repo.join("objects/pack"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .count()
        })
        .unwrap_or(0)
}

/// A bulk commit's pack keeps no `.keep` once the branch names it, so `git repack -a -d`
/// consolidates gitdb's packs like any others.
#[test]
fn bulk_commits_leave_no_keep_files_and_repack_consolidates_them() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("db.git");
    let db = open(&repo);
    for round in 0..2 {
        for i in 0..40 {
            db.set(
                &format!("/bulk/{round}/{i}"),
                format!("v{round}-{i}").as_bytes(),
            )
            .unwrap();
        }
        db.commit(&format!("bulk {round}"), 1_000 + round).unwrap();
    }
    assert_eq!(packs(&repo, "pack"), 2);
    assert_eq!(packs(&repo, "keep"), 0, "a .keep file stayed");
    git(&repo, &["repack", "-q", "-a", "-d"]);
    assert_eq!(packs(&repo, "pack"), 1);
    fsck(&repo);
    drop(db);
    let db = open(&repo);
    assert_eq!(&db.get("/bulk/1/39").unwrap().unwrap()[..], b"v1-39");
}

/// Temp files a killed gix writer left (loose objects, packs) go when the writer opens, if
/// they are old; stock git's temp files and young ones stay.
#[test]
fn stale_gix_temp_files_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("db.git");
    drop(open(&repo));
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let plant = |rel: &str, aged: bool| {
        let path = repo.join(rel);
        std::fs::write(&path, b"partial").unwrap();
        if aged {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(old).unwrap();
        }
        path
    };
    let gone = [
        plant("objects/.tmpAbC123", true),
        plant("objects/pack/.tmpXyZ789", true),
    ];
    let kept = [
        plant("objects/.tmpNew123", false),
        plant("objects/tmp_obj_abcdef", true),
        plant("objects/pack/tmp_pack_abcdef", true),
        plant("objects/pack/tmp_idx_abcdef", true),
        plant("objects/pack/.tmp-123-pack-abc.pack", true),
        plant("objects/.tmpTooLong1", true),
    ];
    let db = open(&repo);
    for p in &gone {
        assert!(!p.exists(), "{} stayed", p.display());
    }
    for p in &kept {
        assert!(p.exists(), "{} was removed", p.display());
    }
    drop(db);
}

/// Not a check: what the staged refs cost a large `set` (run with `--ignored --nocapture`,
/// in release). Times `set` + `sync` of 100 KiB values, and the ref part alone (creating one
/// ref and fsyncing it, then deleting it as a commit does).
#[test]
#[ignore]
fn cost_of_staged_refs() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("db.git");
    let db = open(&repo);
    let n = 200u8;
    let values: Vec<Vec<u8>> = (0..n).map(|i| large(i)[..100_000].to_vec()).collect();
    let t = std::time::Instant::now();
    for (i, v) in values.iter().enumerate() {
        db.set(&format!("/big/{i}"), v).unwrap();
        db.sync().unwrap();
    }
    let per_set = t.elapsed() / u32::from(n);
    let ids: Vec<ObjectId> = (0..n).map(|i| id_of(&db, &format!("/big/{i}"))).collect();
    let t = std::time::Instant::now();
    db.commit("big", 1_000).unwrap();
    let commit = t.elapsed();
    // The store alone, opened beside the db (the db keeps its own to itself).
    let store = gitdb::store::Store::open(&repo, Default::default()).unwrap();
    let names: Vec<String> = ids
        .iter()
        .map(|id| format!("refs/gitdb/probe/{id}"))
        .collect();
    let t = std::time::Instant::now();
    for (name, id) in names.iter().zip(&ids) {
        store
            .force_refs(&[(name.clone(), *id)], &[], "probe")
            .unwrap();
        store.sync_refs(std::slice::from_ref(name)).unwrap();
    }
    let per_ref = t.elapsed() / u32::from(n);
    let t = std::time::Instant::now();
    store.force_refs(&[], &names, "probe").unwrap();
    let delete_all = t.elapsed();
    let t = std::time::Instant::now();
    for (name, id) in names.iter().zip(&ids) {
        store
            .force_refs(&[(name.clone(), *id)], &[], "probe")
            .unwrap();
    }
    let per_ref_unsynced = t.elapsed() / u32::from(n);
    let t = std::time::Instant::now();
    for (i, v) in values.iter().enumerate() {
        db.set(&format!("/again/{i}"), &v[..99_999]).unwrap();
    }
    let per_set_unsynced = t.elapsed() / u32::from(n);
    println!(
        "100 KiB set+sync: {per_set:?} each; set alone: {per_set_unsynced:?}; commit of {n}: {commit:?}; one ref created: {per_ref_unsynced:?}, created and fsynced: {per_ref:?}; {n} deleted in one transaction: {delete_all:?}"
    );
}
