//! Names git refuses in a tree (`.git` in every spelling `git fsck` knows, `.gitmodules` and
//! `.gitattributes`) are ordinary names at the mount and the client, stored under the escape
//! the README describes, with the repository `git fsck --strict` clean; names that are not
//! UTF-8 get EINVAL. Real mounts, stock git and python.

mod common;

use common::{Mount, git};
use std::path::Path;
use std::process::Command;

/// `git -C dir args` with a fixed identity, asserting success; returns stdout.
fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "stock")
        .env("GIT_AUTHOR_EMAIL", "stock@example.com")
        .env("GIT_COMMITTER_NAME", "stock")
        .env("GIT_COMMITTER_EMAIL", "stock@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git -C {} {args:?} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `git fsck --strict` of the mount's repository: exit 0 and not a word on stderr (warnings
/// included).
fn assert_fsck_clean(m: &Mount) {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(&m.repo)
        .args(["fsck", "--strict", "--no-dangling"])
        .output()
        .expect("git fsck");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("error") && !err.contains("warning"),
        "git fsck --strict: {err}"
    );
}

/// A small project made with stock git: three commits, nested directories, an executable, a
/// symlink, `.gitignore`, `.gitattributes` and a `.gitmodules`-free history.
fn make_project(dir: &Path) {
    std::fs::create_dir_all(dir.join("src/deep/er")).unwrap();
    git_in(dir, &["init", "-q", "-b", "trunk"]);
    std::fs::write(dir.join("README"), "hello\n").unwrap();
    std::fs::write(dir.join("src/deep/er/leaf.txt"), "leaf\n").unwrap();
    git_in(dir, &["add", "-A"]);
    git_in(dir, &["commit", "-qm", "one"]);
    std::fs::write(dir.join(".gitignore"), "*.o\n").unwrap();
    std::fs::write(dir.join(".gitattributes"), "*.txt text\n").unwrap();
    std::fs::write(dir.join("src/run.sh"), "#!/bin/sh\necho run\n").unwrap();
    Command::new("chmod")
        .args(["+x"])
        .arg(dir.join("src/run.sh"))
        .status()
        .unwrap();
    std::os::unix::fs::symlink("deep/er/leaf.txt", dir.join("src/link")).unwrap();
    git_in(dir, &["add", "-A"]);
    git_in(dir, &["commit", "-qm", "two"]);
    std::fs::write(dir.join("src/deep/er/leaf.txt"), "leaf 2\n").unwrap();
    git_in(dir, &["commit", "-qam", "three"]);
}

/// `git clone` into the mount makes a working repository there; the mount's own repository
/// stays fsck-clean with the clone's `.git` stored as `%.git`; after a restart the clone is
/// still clean. Before the escape, the clone failed with EINVAL creating `.git`.
#[test]
fn git_clone_into_the_mount_works_and_survives_a_restart() {
    let mut m = Mount::start(&[]);
    let src = m.dir.path().join("origin");
    make_project(&src);
    let clone = m.path("work/proj");
    std::fs::create_dir_all(m.path("work")).unwrap();
    let out = Command::new("git")
        .arg("clone")
        .arg("-q")
        .arg(format!("file://{}", src.display()))
        .arg(&clone)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git clone into the mount: {}\nlog: {}",
        String::from_utf8_lossy(&out.stderr),
        m.log_text()
    );
    assert_eq!(git_in(&clone, &["status", "--porcelain"]), "");
    assert_eq!(git_in(&clone, &["log", "--format=%s"]), "three\ntwo\none\n");
    assert_eq!(
        std::fs::read_to_string(clone.join("src/deep/er/leaf.txt")).unwrap(),
        "leaf 2\n"
    );
    // A commit made by stock git inside the clone, then one by gitdb of all of it.
    std::fs::write(clone.join("NEW"), "new\n").unwrap();
    git_in(&clone, &["add", "NEW"]);
    git_in(&clone, &["commit", "-qm", "four"]);
    std::fs::write(m.path(".gitdb/ctl"), "commit the clone").unwrap();
    assert_fsck_clean(&m);
    let names = git(&m.repo, &["ls-tree", "--name-only", "main:work/proj"], None);
    assert!(
        names.lines().any(|l| l == "%.git") && !names.lines().any(|l| l == ".git"),
        "{names}"
    );
    assert!(
        names.lines().any(|l| l == "%.gitattributes") && names.lines().any(|l| l == ".gitignore"),
        "{names}"
    );
    assert!(!git(&m.repo, &["show", "main:work/proj/%.git/HEAD"], None).is_empty());
    // Through the client too, under the real names.
    let ls = support_gitdb(&m, &["ls", "/work/proj"]);
    assert!(ls.lines().any(|l| l == ".git/"), "{ls}");
    assert_eq!(
        support_gitdb(&m, &["get", "/work/proj/.git/HEAD"]),
        "ref: refs/heads/trunk\n"
    );

    m.signal_and_wait(libc::SIGTERM);
    m.spawn(&[]);
    assert_eq!(git_in(&clone, &["status", "--porcelain"]), "");
    assert_eq!(
        git_in(&clone, &["log", "--format=%s"]),
        "four\nthree\ntwo\none\n"
    );
    git_in(&clone, &["fsck", "--strict"]);
    // `git init` and a first commit in the mount work too.
    let fresh = m.path("work/fresh");
    std::fs::create_dir(&fresh).unwrap();
    git_in(&fresh, &["init", "-q"]);
    std::fs::write(fresh.join("f"), "f\n").unwrap();
    git_in(&fresh, &["add", "f"]);
    git_in(&fresh, &["commit", "-qm", "first"]);
    assert_eq!(git_in(&fresh, &["status", "--porcelain"]), "");
    std::fs::write(m.path(".gitdb/ctl"), "commit fresh").unwrap();
    assert_fsck_clean(&m);
}

/// The `gitdb` client on a mount's repository (read commands go through the daemon's socket).
fn support_gitdb(m: &Mount, args: &[&str]) -> String {
    common::gitdb_ok(&m.repo, args)
}

/// `cp -a` of a directory holding `.git` (and the other names git refuses in trees) into the
/// mount copies all of it, the copy reads back the same, and the commit is fsck-clean.
#[test]
fn cp_a_of_a_project_with_dot_git_copies_everything() {
    let m = Mount::start(&[]);
    let src = m.dir.path().join("project");
    make_project(&src);
    for name in [".GIT", "git~1", ".git. ", "a\\.git", "%25", ".gitmodules"] {
        std::fs::write(src.join("src").join(name), name).unwrap();
    }
    std::os::unix::fs::symlink("README", src.join(".gitattributes-link")).unwrap();
    std::fs::create_dir(src.join("src/.gitattributes")).unwrap();
    std::fs::write(src.join("src/.gitattributes/inside"), "x").unwrap();
    std::os::unix::fs::symlink("../README", src.join("src/deep/.gitmodules")).unwrap();
    let out = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(m.path("copy"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cp -a: {}\nlog: {}",
        String::from_utf8_lossy(&out.stderr),
        m.log_text()
    );
    let diff = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&src)
        .arg(m.path("copy"))
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "diff -r: {}",
        String::from_utf8_lossy(&diff.stdout)
    );
    let status = git_in(&src, &["status", "--porcelain"]);
    assert!(status.contains("src/.GIT"), "{status}");
    assert_eq!(git_in(&m.path("copy"), &["status", "--porcelain"]), status);
    std::fs::write(m.path(".gitdb/ctl"), "commit copy").unwrap();
    assert_fsck_clean(&m);
    // Listings and renames use the real names.
    let mut listed: Vec<String> = std::fs::read_dir(m.path("copy/src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    for name in [
        ".GIT",
        "git~1",
        ".git. ",
        "a\\.git",
        "%25",
        ".gitmodules",
        ".gitattributes",
    ] {
        assert!(listed.iter().any(|l| l == name), "{name:?} in {listed:?}");
    }
    std::fs::rename(m.path("copy/src/.GIT"), m.path("copy/src/.Git")).unwrap();
    assert_eq!(
        std::fs::read_to_string(m.path("copy/src/.Git")).unwrap(),
        ".GIT"
    );
    std::fs::rename(m.path("copy/.git"), m.path("copy/.git-moved")).unwrap();
    std::fs::rename(m.path("copy/.git-moved"), m.path("copy/.git")).unwrap();
    let status = status.replace("src/.GIT", "src/.Git");
    assert_eq!(git_in(&m.path("copy"), &["status", "--porcelain"]), status);
    std::fs::write(m.path(".gitdb/ctl"), "commit renames").unwrap();
    assert_fsck_clean(&m);
}

/// The client shows real names in get, ls, log-adjacent show and diff; the tree holds escapes.
#[test]
fn the_client_reads_and_writes_real_names() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo.git");
    let gitdb = |args: &[&str]| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .arg("--repo")
            .arg(&repo)
            .arg("--node-id")
            .arg("cli")
            .args(args)
            .output()
            .expect("run gitdb");
        assert!(
            out.status.success(),
            "gitdb {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The longest name (255 bytes) whose escape is three times as long.
    let long = "%".repeat(255);
    let names = [
        long.as_str(),
        ".git",
        ".GiT",
        ".git:x",
        "git~1",
        ".g\u{200c}it",
        "\u{feff}.git",
        "x\\.git",
        "%",
        "%.git",
        "%25",
        ".gitmodules",
        "gi7eba~1",
        ".gitattributes",
        "plain",
    ];
    for (i, n) in names.iter().enumerate() {
        gitdb(&["set", &format!("/d/{n}/v"), &i.to_string()]);
    }
    let first = gitdb(&["commit", "-m", "names"]).trim().to_owned();
    assert_fsck_clean_at(&repo);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(gitdb(&["get", &format!("/d/{n}/v")]), i.to_string());
    }
    let ls = gitdb(&["ls", "/d"]);
    let mut want: Vec<String> = names.iter().map(|n| format!("{n}/")).collect();
    want.sort();
    let mut got: Vec<String> = ls.lines().map(str::to_owned).collect();
    got.sort();
    assert_eq!(got, want);
    gitdb(&["set", "/d/.git/v", "changed"]);
    gitdb(&["rm", "/d/%/v"]);
    gitdb(&["commit", "-m", "more"]);
    let diff = gitdb(&["diff", &first, "main"]);
    assert!(
        diff.contains("/d/.git/v") && diff.contains("/d/%/v"),
        "{diff}"
    );
    assert!(
        !diff.contains("%.git/v") && !diff.contains("%%25"),
        "{diff}"
    );
    assert_eq!(gitdb(&["show", &first, "/d/.git/v"]), "1");
    let show = gitdb(&["show", &first]);
    assert!(
        show.contains("A /d/.g\u{200c}it/v") && show.contains("A /d/x\\.git/v"),
        "{show}"
    );
    // Stock git sees the escapes.
    let raw = git(&repo, &["ls-tree", "--name-only", "main:d"], None);
    assert!(
        raw.lines().any(|l| l == "%.git") && raw.lines().any(|l| l == "%%2525"),
        "{raw}"
    );
    assert_fsck_clean_at(&repo);
}

fn assert_fsck_clean_at(repo: &Path) {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["fsck", "--strict", "--no-dangling"])
        .output()
        .expect("git fsck");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("error") && !err.contains("warning"),
        "git fsck --strict: {err}"
    );
}

/// A name that is not UTF-8 is EINVAL at the mount (the README's limit), for create, mkdir,
/// rename to it and lookup; nothing reaches the repository.
#[test]
fn names_that_are_not_utf8_get_einval() {
    let m = Mount::start(&[]);
    std::fs::write(m.path("ok"), "x").unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import errno, os, sys
root = sys.argv[1].encode()
def errno_of(f):
    try:
        f()
    except OSError as e:
        return e.errno
    return 0
bad = root + b"/\xff"
print(errno_of(lambda: os.open(bad, os.O_CREAT | os.O_WRONLY, 0o644)))
print(errno_of(lambda: os.mkdir(root + b"/caf\xe9")))
print(errno_of(lambda: os.rename(root + b"/ok", bad)))
print(errno_of(lambda: os.stat(bad)))
"#,
        )
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let einval = libc::EINVAL.to_string();
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        [einval.as_str(), &einval, &einval, &einval],
        "create, mkdir, rename, stat"
    );
    assert_eq!(std::fs::read_to_string(m.path("ok")).unwrap(), "x");
}
