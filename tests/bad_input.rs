//! Bad input gets a clear answer and changes nothing: the `gitdb` client and `gitdb-mount`
//! given a wrong path, a mistyped option or an absurd value.

mod support;

use std::process::Command;

fn mount_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gitdb-mount"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A read command on a path with no repository says so and creates nothing (it used to create
/// a repository at the typo, then answer "no such key").
#[test]
fn read_commands_never_create_a_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let typo = dir.path().join("typo").join("repo.git");
    for args in [&["get", "/k"][..], &["ls"], &["log"], &["status"]] {
        let out = support::gitdb(&typo, None, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("no repository at"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            !typo.exists() && !dir.path().join("typo").exists(),
            "{args:?}"
        );
    }
    // A write creates it, as the README says.
    support::gitdb_ok(&typo, None, &["set", "/k", "v"]);
    assert_eq!(support::gitdb_ok(&typo, None, &["get", "/k"]), "v");
}

/// A regular file as mountpoint is "not a directory", found before the repository is created.
#[test]
fn mounting_on_a_file_fails_before_creating_the_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let repo = dir.path().join("repo.git");
    let out = mount_bin()
        .arg(&file)
        .arg("--repo")
        .arg(&repo)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
    assert!(!repo.exists(), "the repository was created anyway");
}

/// A mistyped `-o` option and absurd durations are refused with a message naming them, before
/// anything is created or mounted (a typo used to be a warning, and the mount went ahead
/// without what was meant; `--autocommit 99999999999999999999` panicked).
#[test]
fn unknown_options_and_absurd_values_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    let repo = dir.path().join("repo.git");
    for (args, says) in [
        (
            &["-o", "alow_other"][..],
            "unknown mount option \"alow_other\"",
        ),
        (
            &["--autocommit", "99999999999999999999"],
            "invalid duration",
        ),
        (&["-o", "autocommit=1000y"], "invalid duration"),
        (&["-o", "stop_timeout=soon"], "invalid duration"),
        (&["-o", "threads=0"], "threads=0"),
        (&["-o", "uid=-1"], "uid=-1"),
    ] {
        let out = mount_bin()
            .arg(&mnt)
            .arg("--repo")
            .arg(&repo)
            .args(args)
            .output()
            .expect("run");
        // A usage error: exit 2 (as clap's own), said once.
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).matches(says).count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            !repo.exists() && !mnt.exists(),
            "{args:?}: something was created"
        );
    }
}

/// `gitdb log | head -1`: the reader goes away; the client stops without a word (it used to
/// print "gitdb: Broken pipe" and exit 2).
#[test]
fn a_closed_stdout_ends_the_client_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo.git");
    let gitdb = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .arg("--repo")
            .arg(&repo)
            .args(args)
            .output()
            .expect("gitdb");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    for i in 0..50 {
        gitdb(&["set", &format!("/k{i}"), "v"]);
        gitdb(&["commit", "-m", &format!("commit {i}")]);
    }
    for args in [&["log", "-n", "50"][..], &["ls", "-r"], &["status"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .arg("--repo")
            .arg(&repo)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}
