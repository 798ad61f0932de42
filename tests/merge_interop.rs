//! Interop of merges with stock git, through the `gitdb` client: node B fetches node A's branch
//! with `git fetch`, `gitdb merge` merges it, and git sees a two-parent commit that
//! `git fsck --strict` accepts. Also the external merge driver end to end.

mod support;

use std::path::Path;

use support::{git, git_all};

fn gitdb(repo: &Path, node: &str, args: &[&str]) -> String {
    support::gitdb_ok(repo, Some(node), args)
}

/// Node b fetches node a's `main` with stock git, as `refs/remotes/a/main`.
fn fetch_a(a: &Path, b: &Path) {
    let spec = a.to_str().expect("utf-8 temp path");
    git(b, &["fetch", "-q", spec, "main:refs/remotes/a/main"]);
}

/// Two nodes with a common base and concurrent changes to `k` (and one other key each).
fn setup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (dir.join("a.git"), dir.join("b.git"));
    gitdb(&a, "node-a", &["set", "/k", "base"]);
    gitdb(&a, "node-a", &["commit", "-m", "base"]);
    git(
        dir,
        &[
            "clone",
            "-q",
            "--bare",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
    );
    gitdb(&a, "node-a", &["set", "/k", "from a"]);
    gitdb(&a, "node-a", &["set", "/only-a", "1"]);
    gitdb(&a, "node-a", &["commit", "-m", "a"]);
    gitdb(&b, "node-b", &["set", "/k", "from b"]);
    gitdb(&b, "node-b", &["set", "/only-b", "2"]);
    gitdb(&b, "node-b", &["commit", "-m", "b"]);
    fetch_a(&a, &b);
    (a, b)
}

#[test]
fn merge_via_git_fetch_shows_two_parents_and_fsck_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, b) = setup(dir.path());
    let out = gitdb(
        &b,
        "node-b",
        &["merge", "refs/remotes/a/main", "--strategy", "keep-both"],
    );
    assert!(out.starts_with("merged "), "{out}");
    assert!(out.contains("conflict /k"), "{out}");
    let graph = git(&b, &["log", "--graph", "--oneline", "main"]);
    assert!(graph.contains("|\\"), "{graph}");
    let parents = git(&b, &["rev-list", "--parents", "-n1", "main"]);
    assert_eq!(parents.split_whitespace().count(), 3, "{parents}");
    let fsck = git_all(&b, &["fsck", "--strict"]);
    assert!(
        !fsck.contains("error") && !fsck.contains("warning"),
        "{fsck}"
    );
    assert_eq!(
        git(&b, &["show", "main:k"]),
        "<<<<<<< node-a\nfrom a\n=======\nfrom b\n>>>>>>> node-b\n"
    );
    assert_eq!(git(&b, &["show", "main:only-a"]), "1");
    assert_eq!(
        gitdb(&b, "node-b", &["merge", "refs/remotes/a/main"]),
        "noop\n"
    );
}

#[test]
fn merge_driver_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, b) = setup(dir.path());
    let out = gitdb(
        &b,
        "node-b",
        &[
            "merge",
            "refs/remotes/a/main",
            "--merge-driver",
            "printf ' & ' >> %A; cat %B >> %A",
        ],
    );
    assert!(
        out.starts_with("merged ") && !out.contains("conflict"),
        "{out}"
    );
    assert_eq!(gitdb(&b, "node-b", &["get", "/k"]), "from a & from b");
    git(&b, &["fsck", "--strict"]);
}

#[test]
fn lww_from_the_cli_takes_the_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = setup(dir.path());
    // a writes k again, later than b's write: a's value wins on b.
    gitdb(&a, "node-a", &["set", "/k", "a again"]);
    gitdb(&a, "node-a", &["commit", "-m", "a2"]);
    fetch_a(&a, &b);
    let out = gitdb(
        &b,
        "node-b",
        &["merge", "refs/remotes/a/main", "--strategy", "lww"],
    );
    assert!(
        out.starts_with("merged ") && !out.contains("conflict"),
        "{out}"
    );
    assert_eq!(gitdb(&b, "node-b", &["get", "/k"]), "a again");
    assert_eq!(gitdb(&b, "node-b", &["get", "/only-b"]), "2");
}
