//! Helpers shared by the integration tests that drive the `gitdb` client and stock git
//! (the mount tests have their own in `common/`). Each test binary uses a subset.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `gitdb` client on `repo` (as `node`, if given).
pub fn gitdb(repo: &Path, node: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitdb"));
    cmd.arg("--repo").arg(repo);
    if let Some(node) = node {
        cmd.arg("--node-id").arg(node);
    }
    cmd.args(args).output().expect("run gitdb")
}

/// Like [`gitdb`], asserting success; returns stdout.
pub fn gitdb_ok(repo: &Path, node: Option<&str>, args: &[&str]) -> String {
    stdout_of(&gitdb(repo, node, args), "gitdb", args)
}

/// `git -C dir args` with a fixed identity, asserting success; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    stdout_of(&git_output(dir, args), "git", args)
}

/// Like [`git`], but returns stdout followed by stderr (where `fsck` reports).
pub fn git_all(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    stdout_of(&out, "git", args) + &String::from_utf8_lossy(&out.stderr)
}

fn git_output(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "stock")
        .env("GIT_AUTHOR_EMAIL", "stock@example.com")
        .env("GIT_COMMITTER_NAME", "stock")
        .env("GIT_COMMITTER_EMAIL", "stock@example.com")
        .output()
        .expect("git is installed (scripts/test.sh installs it)")
}

/// Asserts `out` succeeded and returns its stdout.
pub fn stdout_of(out: &Output, program: &str, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}
