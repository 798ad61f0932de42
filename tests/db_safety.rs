//! Integration: stock git's housekeeping (`gc`, `prune`, `repack`, `pack-refs`, `fsck`) on a
//! repository gitdb is writing: it keeps everything gitdb still needs, finds nothing broken,
//! and finds nothing of gitdb's in its way.

mod support;

use std::path::Path;

use gitdb::db::{GitDb, NodeId, Options};
use support::{git, git_all};

fn open(repo: &Path) -> GitDb {
    GitDb::open(repo, NodeId::new("node-a").unwrap(), Options::default()).unwrap()
}

fn fsck(repo: &Path) {
    let out = git_all(repo, &["fsck", "--strict", "--no-dangling"]);
    assert!(
        !out.contains("missing") && !out.contains("error"),
        "fsck: {out}"
    );
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
