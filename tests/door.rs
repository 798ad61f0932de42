//! Integration: the `gitdb` client drives a running `gitdb-mount` through the daemon's door
//! (`<repo>/gitdb/door.sock`) instead of meeting its writer lock, and what it writes is what
//! the mount shows and what git records. Each test has its own temp dir and mount, unmounted
//! in `Drop` even when it fails.

mod common;
mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Output;

use common::{Mount, wait_for};

/// The client as the mount's node (`--node-id` given, as scripts beside a daemon would).
fn gitdb(m: &Mount, args: &[&str]) -> Output {
    support::gitdb(&m.repo, Some("test-node"), args)
}

fn gitdb_ok(m: &Mount, args: &[&str]) -> String {
    let out = gitdb(m, args);
    assert!(
        out.status.success(),
        "gitdb {args:?}: {}\n{}\nlog: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        m.log_text()
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn door(repo: &Path) -> std::path::PathBuf {
    repo.join("gitdb").join("door.sock")
}

/// `cat` of `rel` in the mount, waiting (with a deadline) for it to read `want`: a change
/// made through the door reaches the kernel's caches through the mount's invalidation thread.
fn wait_cat(m: &Mount, rel: &str, want: &str) {
    let path = m.path(rel);
    wait_for(&format!("{rel} to read {want:?}"), || {
        std::fs::read_to_string(&path).is_ok_and(|s| s == want)
    });
}

#[test]
fn the_client_drives_a_mounted_daemon_through_its_door() {
    let mut m = Mount::start(&[]);
    let sock = door(&m.repo);
    let meta = std::fs::symlink_metadata(&sock).expect("the door exists while mounted");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // Writes that would have met "locked by pid N".
    gitdb_ok(&m, &["set", "/conf/port", "5432"]);
    assert_eq!(m.sh_ok("cat conf/port"), "5432");
    // A value the kernel has cached is replaced in the mount too.
    m.sh_ok("echo 1 > a");
    assert_eq!(m.sh_ok("cat a"), "1\n");
    gitdb_ok(&m, &["set", "/a", "2"]);
    wait_cat(&m, "a", "2");
    assert_eq!(gitdb_ok(&m, &["get", "/a"]), "2");
    assert_eq!(gitdb_ok(&m, &["ls"]), "a\nconf/\n");
    assert_eq!(gitdb_ok(&m, &["ls", "-r", "/"]), "/a\n/conf/port\n");
    wait_for("the listing to show the door's key", || {
        m.sh_ok("ls").split_whitespace().collect::<Vec<_>>() == ["a", "conf"]
    });
    // A value from stdin, with a mode.
    let script = m.dir.path().join("script");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --repo {} --node-id test-node set --exec /run.sh < {}",
            env!("CARGO_BIN_EXE_gitdb"),
            m.repo.display(),
            script.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("run.sh to be the script", || {
        std::fs::read_to_string(m.path("run.sh")).is_ok_and(|s| s.contains("ran"))
    });
    assert_eq!(m.sh_ok("stat -c %a run.sh"), "755\n");
    assert_eq!(m.sh_ok("./run.sh"), "ran\n");

    let status = gitdb_ok(&m, &["status"]);
    assert!(status.contains("\"node\": \"test-node\""), "{status}");
    assert!(status.contains("\"dirty_count\": 3"), "{status}");

    // Commit: the mount and git agree.
    let id = gitdb_ok(&m, &["commit", "-m", "through the door"]);
    let id = id.trim();
    assert_eq!(id.len(), 40, "{id}");
    assert_eq!(m.git(&["rev-parse", "main"]), id);
    assert_eq!(m.git(&["log", "-1", "--format=%s"]), "through the door");
    assert_eq!(m.git(&["show", "main:conf/port"]), "5432");
    wait_for("/.gitdb/head to show the commit", || {
        std::fs::read_to_string(m.path(".gitdb/head")).is_ok_and(|h| h.trim() == id)
    });
    let log = gitdb_ok(&m, &["log", "-n", "1"]);
    assert!(
        log.starts_with(id) && log.ends_with(" through the door\n"),
        "{log}"
    );
    let nothing = gitdb(&m, &["commit"]);
    assert!(nothing.status.success());
    assert_eq!(stderr(&nothing), "gitdb: nothing to commit\n");

    // rm and rollback, seen by the mount.
    gitdb_ok(&m, &["rm", "/a"]);
    wait_for("a to vanish from the mount", || !m.path("a").exists());
    let missing = gitdb(&m, &["get", "/a"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing), "gitdb: no such key: /a\n");
    assert_eq!(gitdb(&m, &["rm", "/nope"]).status.code(), Some(1));
    assert_eq!(gitdb(&m, &["ls", "/nope"]).status.code(), Some(1));
    gitdb_ok(&m, &["rm", "-r", "/conf"]);
    wait_for("conf to vanish from the mount", || !m.path("conf").exists());
    let rolled = gitdb(&m, &["rollback"]);
    assert!(rolled.status.success());
    assert_eq!(stderr(&rolled), "gitdb: dropped 2 uncommitted change(s)\n");
    wait_cat(&m, "a", "2");
    wait_cat(&m, "conf/port", "5432");

    // sync is the daemon's: this one has no peers, and says so (exit 2).
    let sync = gitdb(&m, &["sync"]);
    assert_eq!(sync.status.code(), Some(2));
    assert!(stderr(&sync).contains("no peers"), "{}", stderr(&sync));

    // The same bytes through the door as without it.
    let reads: [&[&str]; 5] = [
        &["get", "/conf/port"],
        &["ls", "/"],
        &["ls", "-r", "/"],
        &["log", "-n", "5"],
        &["get", "/run.sh"],
    ];
    let through: Vec<String> = reads.iter().map(|a| gitdb_ok(&m, a)).collect();
    let status = m.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "{status}: {}", m.log_text());
    assert!(!sock.exists(), "a clean stop removes the door");
    let direct: Vec<String> = reads.iter().map(|a| gitdb_ok(&m, a)).collect();
    assert_eq!(through, direct);
    // Without a daemon the client writes itself again.
    gitdb_ok(&m, &["set", "/after", "x"]);
    assert_eq!(gitdb_ok(&m, &["get", "/after"]), "x");
}

#[test]
fn a_killed_daemon_leaves_a_door_that_blocks_nobody() {
    let mut m = Mount::start(&[]);
    gitdb_ok(&m, &["set", "/k", "v"]);
    let status = m.signal_and_wait(libc::SIGKILL);
    assert!(!status.success());
    let sock = door(&m.repo);
    assert!(sock.exists(), "SIGKILL leaves the socket file");
    // Nobody listens: the client does not wait, and with the lock gone it writes itself.
    let start = std::time::Instant::now();
    assert_eq!(gitdb_ok(&m, &["get", "/k"]), "v");
    gitdb_ok(&m, &["set", "/k2", "v2"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    // The next daemon replaces the stale socket and serves it.
    m.spawn(&[]);
    gitdb_ok(&m, &["set", "/k3", "v3"]);
    assert_eq!(m.sh_ok("cat k2 k3"), "v2v3");
    assert!(m.log_text().contains("stale door"), "{}", m.log_text());
}

#[test]
fn a_daemon_on_another_branch_serves_writes_to_nobody_else() {
    let m = Mount::start(&[]);
    // Another branch is not the daemon's: a write is refused with the reason, not run on
    // the daemon's branch.
    let out = support::gitdb(&m.repo, None, &["--branch", "other", "set", "/x", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("serves branch main"),
        "{}",
        stderr(&out)
    );
    assert!(!m.path("x").exists());
}
