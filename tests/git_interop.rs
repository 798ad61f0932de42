//! Integration: the `gitdb` client and stock git on the same repository, both directions.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::git;

fn gitdb(repo: &Path, args: &[&str]) -> Output {
    support::gitdb(repo, Some("node-a"), args)
}

fn gitdb_ok(repo: &Path, args: &[&str]) -> String {
    support::gitdb_ok(repo, Some("node-a"), args)
}

#[test]
fn stock_git_reads_what_gitdb_commits() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("db.git");
    gitdb_ok(&repo, &["set", "/users/alice/profile", "alice v1"]);
    gitdb_ok(&repo, &["set", "/app/port", "8080"]);
    gitdb_ok(
        &repo,
        &["set", "--exec", "/bin/run", "#!/bin/sh\necho hi\n"],
    );
    gitdb_ok(&repo, &["set", "--symlink", "/current", "app/port"]);
    let c1 = gitdb_ok(&repo, &["commit", "-m", "first config"]);
    assert_eq!(c1.trim().len(), 40);
    gitdb_ok(&repo, &["rm", "/app/port"]);
    gitdb_ok(&repo, &["set", "/users/alice/profile", "alice v2"]);
    let c2 = gitdb_ok(&repo, &["commit", "-m", "second"]);

    assert_eq!(git(&repo, &["rev-parse", "main"]).trim(), c2.trim());
    assert_eq!(
        git(&repo, &["show", "main:users/alice/profile"]),
        "alice v2"
    );
    assert_eq!(git(&repo, &["show", "main~1:app/port"]), "8080");
    let log = git(&repo, &["log", "--format=%an <%ae> %s"]);
    assert_eq!(
        log,
        "node-a <node-a@gitdb> second\nnode-a <node-a@gitdb> first config\n"
    );
    let tree = git(&repo, &["ls-tree", "-r", "main~1"]);
    assert!(
        tree.contains("100755 blob") && tree.contains("bin/run"),
        "{tree}"
    );
    assert!(
        tree.contains("120000 blob") && tree.contains("current"),
        "{tree}"
    );
    // The stamp is a set of real git trailers.
    let msg = git(&repo, &["log", "-1", "--format=%B", "main"]);
    let trailers = Command::new("git")
        .args(["interpret-trailers", "--parse"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(msg.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let trailers = String::from_utf8(trailers.stdout).unwrap();
    assert!(trailers.contains("Gitdb-Clock: node-a=2"), "{trailers}");
    assert!(trailers.contains("Gitdb-Node: node-a"), "{trailers}");
    assert!(trailers.contains("Gitdb-Hlc: "), "{trailers}");
    git(&repo, &["fsck", "--strict", "--no-dangling"]);
}

#[test]
fn gitdb_works_on_a_repository_made_by_stock_git() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("etc/app")).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("etc/app/port"), "80\n").unwrap();
    std::fs::write(work.join("README"), "hello\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "made by git"]);

    // Readers see the git commit, including through `ls` and history.
    assert_eq!(gitdb_ok(&work, &["get", "/etc/app/port"]), "80\n");
    assert_eq!(gitdb_ok(&work, &["ls", "/"]), "README\netc/\n");
    assert!(gitdb_ok(&work, &["log"]).contains("stock "));

    gitdb_ok(&work, &["set", "/etc/app/port", "81\n"]);
    gitdb_ok(&work, &["commit", "-m", "from gitdb"]);
    assert_eq!(git(&work, &["show", "main:etc/app/port"]), "81\n");
    assert_eq!(git(&work, &["rev-list", "--count", "main"]).trim(), "2");
    // A later stock-git commit on the branch is picked up and built upon.
    git(&work, &["reset", "-q", "--hard", "main"]);
    std::fs::write(work.join("extra"), "x").unwrap();
    git(&work, &["add", "extra"]);
    git(&work, &["commit", "-q", "-m", "git again"]);
    gitdb_ok(&work, &["set", "/more", "y"]);
    gitdb_ok(&work, &["commit", "-m", "gitdb again"]);
    assert_eq!(git(&work, &["rev-list", "--count", "main"]).trim(), "4");
    assert_eq!(git(&work, &["show", "main:extra"]), "x");
    // A second branch written by gitdb leaves the work tree's HEAD where the user put it.
    gitdb_ok(&work, &["--branch", "other", "set", "/o", "1"]);
    gitdb_ok(
        &work,
        &["--branch", "other", "commit", "-m", "other branch"],
    );
    assert_eq!(git(&work, &["symbolic-ref", "HEAD"]), "refs/heads/main\n");
    assert_eq!(git(&work, &["show", "other:o"]), "1");
    git(&work, &["fsck", "--strict", "--no-dangling"]);
}

#[test]
fn cli_errors_are_clear_and_exit_codes_are_shell_friendly() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("db.git");
    gitdb_ok(&repo, &["set", "/a", "1"]);
    let missing = gitdb(&repo, &["get", "/nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "gitdb: no such key: /nope\n"
    );

    let bad = gitdb(&repo, &["set", "/a/b", "2"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/a is a value, not a directory"));
    let reserved = gitdb(&repo, &["set", "/.gitdb/x", "2"]);
    assert!(String::from_utf8_lossy(&reserved.stderr).contains("reserved"));
    let dotdot = gitdb(&repo, &["set", "/a/../b", "2"]);
    assert!(String::from_utf8_lossy(&dotdot.stderr).contains("is not allowed"));

    // Values from stdin; nothing-to-commit is not an error.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitdb"))
        .arg("--repo")
        .arg(&repo)
        .args(["set", "/from/stdin"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"piped\x00bytes")
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(
        gitdb(&repo, &["get", "/from/stdin"]).stdout,
        b"piped\x00bytes"
    );
    gitdb_ok(&repo, &["commit"]);
    let again = gitdb(&repo, &["commit"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to commit"));

    let status: serde_json::Value = serde_json::from_str(&gitdb_ok(&repo, &["status"])).unwrap();
    assert_eq!(status["dirty"].as_array().unwrap().len(), 0);
    gitdb_ok(&repo, &["set", "/x", "1"]);
    gitdb_ok(&repo, &["rollback"]);
    assert_eq!(gitdb(&repo, &["get", "/x"]).status.code(), Some(1));
    let show = gitdb_ok(&repo, &["show", "main"]);
    assert!(
        show.contains("A /a") && show.contains("A /from/stdin"),
        "{show}"
    );
    assert_eq!(gitdb_ok(&repo, &["show", "main", "/a"]), "1");
}

#[test]
fn a_bulk_commit_writes_one_pack_that_stock_git_verifies() {
    use gitdb::db::Options;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("db.git");
    {
        let db = gitdb::GitDb::open(
            &repo,
            gitdb::NodeId::new("bulk").unwrap(),
            Options::default(),
        )
        .unwrap();
        for i in 0..500 {
            db.set(
                &format!("/bulk/{}/k{i}", i % 10),
                format!("value {i}\n").as_bytes(),
            )
            .unwrap();
        }
        // A large value takes the other path (written as a blob when set).
        db.set("/big", &vec![7u8; 100 << 10]).unwrap();
        db.commit("bulk", 1_000).unwrap();
        assert_eq!(
            db.get("/bulk/3/k123").unwrap().unwrap().to_vec(),
            b"value 123\n"
        );
        db.set("/bulk/3/k123", b"changed").unwrap();
        db.commit("one", 2_000).unwrap();
    }
    let packs: Vec<_> = std::fs::read_dir(repo.join("objects/pack"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .collect();
    assert_eq!(packs.len(), 1, "the 500 new values go into one pack");
    git(&repo, &["fsck", "--strict", "--no-dangling"]);
    assert_eq!(git(&repo, &["show", "main~1:bulk/7/k457"]), "value 457\n");
    assert_eq!(git(&repo, &["show", "main:bulk/3/k123"]), "changed");
    assert_eq!(git(&repo, &["cat-file", "-s", "main:big"]).trim(), "102400");
    // A fresh reader finds the packed values.
    assert_eq!(gitdb_ok(&repo, &["get", "/bulk/9/k499"]), "value 499\n");
}
