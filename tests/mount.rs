//! The mount, driven by the programs users use: real `gitdb-mount` daemons on fresh
//! repositories, each test in its own temp dir (tests run in parallel), unmounted in `Drop`.

mod common;

use common::{Mount, git, git_env, is_mounted, wait_for};
use std::io::Read;

fn errno_of<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

#[test]
fn shell_tools_work() {
    let m = Mount::start(&[]);
    m.sh_ok("echo hello > a.txt");
    assert_eq!(m.sh_ok("cat a.txt"), "hello\n");
    // Overwriting with shorter content truncates (O_TRUNC arrives as open, then setattr).
    m.sh_ok("echo a-much-longer-value > over && echo s > over");
    assert_eq!(m.sh_ok("cat over"), "s\n");
    m.sh_ok("echo more >> a.txt");
    assert_eq!(m.sh_ok("cat a.txt"), "hello\nmore\n");
    m.sh_ok("mkdir -p conf/app/db && echo 5432 > conf/app/db/port && echo x > conf/app/name");
    let ls = m.sh_ok("ls -la conf/app");
    assert!(ls.contains("db") && ls.contains("name"), "{ls}");
    m.sh_ok("cp -r conf conf2");
    assert_eq!(m.sh_ok("cat conf2/app/db/port"), "5432\n");
    let found = m.sh_ok("find conf2 -type f | sort");
    assert_eq!(found, "conf2/app/db/port\nconf2/app/name\n");
    assert_eq!(
        m.sh_ok("grep -r 5432 conf | cut -d: -f1"),
        "conf/app/db/port\n"
    );
    m.sh_ok("sed -i 's/5432/6543/' conf/app/db/port");
    assert_eq!(m.sh_ok("cat conf/app/db/port"), "6543\n");
    m.sh_ok("mv conf2 conf3 && mv a.txt conf3/b.txt");
    assert_eq!(m.sh_ok("cat conf3/b.txt"), "hello\nmore\n");
    assert!(!m.path("a.txt").exists());
    m.sh_ok("ln -s conf3/b.txt link");
    assert_eq!(m.sh_ok("readlink link"), "conf3/b.txt\n");
    assert_eq!(m.sh_ok("cat link"), "hello\nmore\n");
    assert_eq!(m.sh_ok("stat -c %F link"), "symbolic link\n");
    m.sh_ok("printf '#!/bin/sh\\necho ran\\n' > run.sh && chmod +x run.sh");
    assert_eq!(m.sh_ok("stat -c %a run.sh"), "755\n");
    assert_eq!(m.sh_ok("./run.sh"), "ran\n");
    assert_eq!(m.sh_ok("stat -c %s conf/app/db/port"), "5\n");
    let inode1 = m.sh_ok("stat -c %i conf/app/name");
    assert_eq!(m.sh_ok("stat -c %i conf/app/name"), inode1);
    assert_eq!(
        m.sh_ok("stat -c %u run.sh").trim(),
        unsafe { libc::getuid() }.to_string()
    );
    m.sh_ok("rm conf3/b.txt && rm -r conf3");
    assert!(!m.path("conf3").exists());
    m.sh_ok("touch empty && test -f empty && test ! -s empty");
    // Empty directories live until removed; rmdir refuses non-empty ones.
    m.sh_ok("mkdir -p e1/e2 && test -d e1/e2");
    assert!(!m.sh("rmdir e1").status.success());
    assert!(!m.sh("rmdir conf").status.success());
    m.sh_ok("rmdir e1/e2 e1");
    // Truncate and sparse writes.
    m.sh_ok("truncate -s 3 conf/app/db/port");
    assert_eq!(m.sh_ok("cat conf/app/db/port"), "654");
    m.sh_ok("dd if=/dev/zero of=sparse bs=1 count=1 seek=9999 2>/dev/null");
    assert_eq!(m.sh_ok("stat -c %s sparse"), "10000\n");
}

#[test]
fn python_config_writer_and_reader() {
    let m = Mount::start(&[]);
    let writer = r#"
import os, sys, json, tempfile
d = sys.argv[1]
os.makedirs(os.path.join(d, "etc/app"), exist_ok=True)
for gen in range(5):
    fd, tmp = tempfile.mkstemp(dir=os.path.join(d, "etc/app"), prefix=".cfg-")
    with os.fdopen(fd, "w") as f:
        json.dump({"generation": gen, "port": 8000 + gen}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(d, "etc/app/config.json"))
"#;
    let reader = r#"
import json, sys, os
cfg = json.load(open(os.path.join(sys.argv[1], "etc/app/config.json")))
print(cfg["generation"], cfg["port"])
print(sorted(os.listdir(os.path.join(sys.argv[1], "etc/app"))))
# The temp names never reached a commit: only the config is staged for the next one.
status = json.load(open(os.path.join(sys.argv[1], ".gitdb/status")))
print([d["key"] for d in status["dirty"]])
"#;
    let run = |script: &str| {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&m.mnt)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(writer);
    assert_eq!(
        run(reader),
        "4 8004\n['config.json']\n['/etc/app/config.json']\n"
    );
}

#[test]
fn commit_makes_a_git_commit_git_accepts() {
    let m = Mount::start(&[]);
    m.sh_ok("mkdir -p users/alice && echo '{\"age\": 30}' > users/alice/profile && echo 1 > top");
    m.sh_ok("mkdir only-empty");
    m.sh_ok("echo 'commit first commit' > .gitdb/ctl");
    let head = m.sh_ok("cat .gitdb/head");
    assert_eq!(head.trim().len(), 40);
    let log = m.git(&["log", "--format=%H %s", "main"]);
    assert_eq!(log, format!("{} first commit", head.trim()));
    assert_eq!(
        m.git(&["show", "main:users/alice/profile"]),
        "{\"age\": 30}"
    );
    m.git(&["fsck", "--strict"]);
    // The empty directory is kept by the mount, not by the commit.
    assert!(m.path("only-empty").is_dir());
    assert!(
        !m.git(&["ls-tree", "--name-only", "main"])
            .contains("only-empty")
    );
    // log and history views.
    assert!(m.sh_ok("cat .gitdb/log").starts_with(head.trim()));
    let hist = format!(".gitdb/history/{}/users/alice/profile", head.trim());
    assert_eq!(m.sh_ok(&format!("cat {hist}")), "{\"age\": 30}\n");
    assert!(m.sh_ok("ls .gitdb/history").contains(head.trim()));
    // Changes after the commit do not show in history; writes there get EROFS.
    m.sh_ok("echo 2 > top");
    let old_top = m.path(&format!(".gitdb/history/{}/top", head.trim()));
    assert_eq!(std::fs::read_to_string(&old_top).expect("history"), "1\n");
    assert_eq!(errno_of(std::fs::write(&old_top, "x")), libc::EROFS);
    assert_eq!(
        errno_of(std::fs::write(
            m.path(&format!(".gitdb/history/{}/new", head.trim())),
            "x"
        )),
        libc::EPERM
    );
    // Rollback drops the uncommitted change, and the mount shows it at once.
    m.sh_ok("echo rollback > .gitdb/ctl");
    wait_for("rollback to show", || {
        std::fs::read_to_string(m.path("top")).is_ok_and(|s| s == "1\n")
    });
}

#[test]
fn control_files() {
    let m = Mount::start(&[]);
    assert_eq!(
        m.sh_ok("ls .gitdb"),
        "conflicts\nctl\nhead\nhistory\nlog\nmetrics\nstatus\n"
    );
    assert_eq!(m.sh_ok("cat .gitdb/head"), "");
    m.sh_ok("echo v > k");
    let status: serde_json::Value =
        serde_json::from_str(&m.sh_ok("cat .gitdb/status")).expect("status is JSON");
    assert_eq!(status["node"], "test-node");
    assert_eq!(status["dirty"][0]["key"], "/k");
    assert_eq!(status["conflicts"], serde_json::json!([]));
    assert_eq!(status["peers"], serde_json::json!([]));
    assert_eq!(m.sh_ok("cat .gitdb/conflicts"), "");
    // An unknown command fails the write with EINVAL and shows in status.
    let r = std::fs::write(m.path(".gitdb/ctl"), "frobnicate\n");
    assert_eq!(errno_of(r), libc::EINVAL);
    let status: serde_json::Value =
        serde_json::from_str(&m.sh_ok("cat .gitdb/status")).expect("status is JSON");
    assert!(
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|e| e.contains("frobnicate")),
        "{status}"
    );
    assert_eq!(status["last_error"]["op"], "ctl");
    assert!(status["last_error"]["at_ms"].as_u64().is_some(), "{status}");
    // head is never stale.
    m.sh_ok("echo commit > .gitdb/ctl");
    // The next ctl command that succeeds clears the ctl failure.
    let status: serde_json::Value =
        serde_json::from_str(&m.sh_ok("cat .gitdb/status")).expect("status is JSON");
    assert_eq!(status["last_error"], serde_json::Value::Null, "{status}");
    let h1 = m.sh_ok("cat .gitdb/head");
    m.sh_ok("echo w > k && echo commit > .gitdb/ctl");
    let h2 = m.sh_ok("cat .gitdb/head");
    assert_ne!(h1, h2);
    assert_eq!(h2.trim().len(), 40);
    // The control dir is read-only apart from ctl.
    assert_eq!(
        errno_of(std::fs::write(m.path(".gitdb/head"), "x")),
        libc::EROFS
    );
    assert_eq!(
        errno_of(std::fs::create_dir(m.path(".gitdb/d"))),
        libc::EPERM
    );
    assert_eq!(
        errno_of(std::fs::write(m.path(".gitdb/new"), "x")),
        libc::EPERM
    );
    // The control tree is not the user's to rename or remove: EPERM, not EXDEV (which
    // makes `mv` copy the whole tree, history included, into the store).
    m.sh_ok("echo v > k && echo commit > .gitdb/ctl");
    let mv = m.sh("mv .gitdb moved 2>&1; echo rc=$?");
    assert!(
        String::from_utf8_lossy(&mv.stdout).contains("rc=1"),
        "{:?}",
        mv
    );
    assert!(!m.path("moved").exists());
    for (what, r) in [
        (
            "rename .gitdb",
            std::fs::rename(m.path(".gitdb"), m.path("x")),
        ),
        (
            "rename into .gitdb",
            std::fs::rename(m.path("k"), m.path(".gitdb/k")),
        ),
        (
            "rename out of .gitdb",
            std::fs::rename(m.path(".gitdb/status"), m.path("s")),
        ),
        ("unlink", std::fs::remove_file(m.path(".gitdb/status"))),
        ("rmdir", std::fs::remove_dir(m.path(".gitdb/history"))),
        (
            "symlink",
            std::os::unix::fs::symlink("k", m.path(".gitdb/l")),
        ),
    ] {
        assert_eq!(errno_of(r), libc::EPERM, "{what}");
    }
    assert_eq!(m.sh_ok("cat k"), "v\n");
}

#[test]
fn unsupported_operations_fail_cleanly() {
    let m = Mount::start(&[]);
    m.sh_ok("echo a > f && mkdir -p d && echo b > d/x");
    assert_eq!(
        errno_of(std::fs::hard_link(m.path("f"), m.path("g"))),
        libc::EPERM
    );
    assert!(!m.sh("mkfifo fifo").status.success());
    assert!(!m.path("fifo").exists());
    assert_eq!(errno_of(std::fs::remove_dir(m.path("d"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(std::fs::remove_file(m.path("d"))), libc::EISDIR);
    assert_eq!(errno_of(std::fs::write(m.path("f/x"), "x")), libc::ENOTDIR);
    // A name that is not UTF-8 is EINVAL (`.git`, once EINVAL here, is stored escaped: see
    // git_names.rs).
    use std::os::unix::ffi::OsStrExt;
    let bad = m.mnt.join(std::ffi::OsStr::from_bytes(b"\xff"));
    assert_eq!(errno_of(std::fs::write(&bad, "x")), libc::EINVAL);
    assert_eq!(
        errno_of(std::fs::write(m.path(&"n".repeat(256)), "x")),
        libc::ENAMETOOLONG
    );
    // Extended attributes: ENOTSUP from every call, the second round answered by the kernel.
    let xattrs = m.sh_ok(
        r#"python3 -c '
import os
calls = (lambda: os.setxattr("f", "user.x", b"1"), lambda: os.getxattr("f", "user.x"),
         lambda: os.listxattr("f"), lambda: os.removexattr("f", "user.x"))
for call in calls * 2:
    try:
        call(); print("ok")
    except OSError as e:
        print(e.errno)
'"#,
    );
    assert_eq!(xattrs, format!("{}\n", libc::ENOTSUP).repeat(8));
    // Still alive and well.
    assert_eq!(m.sh_ok("cat f"), "a\n");
}

#[test]
fn rename_replaces_atomically() {
    let m = Mount::start(&[]);
    m.sh_ok("echo old > target && echo new > tmp && mv tmp target");
    assert_eq!(m.sh_ok("cat target"), "new\n");
    m.sh_ok("mkdir -p a/b && echo 1 > a/b/f && mv a c");
    assert_eq!(m.sh_ok("cat c/b/f"), "1\n");
    assert!(!m.path("a").exists());
    m.sh_ok("mkdir empty && mv c/b empty/b");
    assert_eq!(m.sh_ok("cat empty/b/f"), "1\n");
    assert_eq!(
        errno_of(std::fs::rename(m.path("target"), m.path("empty"))),
        libc::EISDIR
    );
    assert_eq!(
        errno_of(std::fs::rename(m.path("empty"), m.path("target"))),
        libc::ENOTDIR
    );
}

/// Builds a commit on top of `main` with stock git plumbing (the daemon holds the writer lock,
/// so nothing but git touches the repository) and moves the branch.
fn outside_commit(
    repo: &std::path::Path,
    work: &std::path::Path,
    set: &[(&str, &str)],
    rm: &[&str],
) {
    let index = work.join("outside-index");
    let env = [("GIT_INDEX_FILE", index.as_path())];
    let head = git(repo, &["rev-parse", "refs/heads/main"], None);
    git_env(repo, &["read-tree", "main"], None, &env);
    let mut info = String::new();
    for (key, value) in set {
        let blob = git(
            repo,
            &["hash-object", "-w", "--stdin"],
            Some(value.as_bytes()),
        );
        info.push_str(&format!("100644 {blob}\t{key}\n"));
    }
    for key in rm {
        // Mode 0 removes the entry from the index.
        info.push_str(&format!("0 {}\t{key}\n", "0".repeat(40)));
    }
    git_env(
        repo,
        &["update-index", "--index-info"],
        Some(info.as_bytes()),
        &env,
    );
    let tree = git_env(repo, &["write-tree"], None, &env);
    let commit = git(
        repo,
        &["commit-tree", &tree, "-p", &head, "-m", "outside"],
        None,
    );
    git(
        repo,
        &["update-ref", "refs/heads/main", &commit, &head],
        None,
    );
}

#[test]
fn commit_behind_the_mounts_back_becomes_visible() {
    let m = Mount::start(&[]);
    m.sh_ok(
        "mkdir -p app && echo 1 > app/version && echo bye > app/old && echo commit > .gitdb/ctl",
    );
    // Warm the kernel caches.
    assert_eq!(m.sh_ok("cat app/version"), "1\n");
    assert_eq!(m.sh_ok("ls app"), "old\nversion\n");
    assert!(!m.path("app/new").exists());
    let mut open = std::fs::File::open(m.path("app/version")).expect("open");
    outside_commit(
        &m.repo,
        m.dir.path(),
        &[
            ("app/version", "2\n"),
            ("app/new", "fresh\n"),
            ("other/x", "y\n"),
        ],
        &["app/old"],
    );
    let want_head = git(&m.repo, &["rev-parse", "main"], None);
    wait_for("the new head", || {
        std::fs::read_to_string(m.path(".gitdb/head")).is_ok_and(|h| h.trim() == want_head)
    });
    wait_for("changed value", || {
        std::fs::read_to_string(m.path("app/version")).is_ok_and(|s| s == "2\n")
    });
    assert_eq!(m.sh_ok("cat app/new"), "fresh\n");
    assert_eq!(m.sh_ok("cat other/x"), "y\n");
    assert!(!m.path("app/old").exists());
    assert_eq!(m.sh_ok("ls app"), "new\nversion\n");
    // A handle opened before the change keeps reading what it opened.
    let mut s = String::new();
    open.read_to_string(&mut s).expect("read");
    assert_eq!(s, "1\n");
}

#[test]
fn sigterm_syncs_unmounts_and_exits_zero() {
    let mut m = Mount::start(&[]);
    m.sh_ok("echo kept > uncommitted");
    let status = m.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "exit {status}: {}", m.log_text());
    assert!(!is_mounted(&m.mnt));
    // The journal kept the uncommitted value: a new daemon shows it.
    m.spawn(&[]);
    assert_eq!(m.sh_ok("cat uncommitted"), "kept\n");
}

#[test]
fn stale_mount_is_cleaned_on_restart() {
    let mut m = Mount::start(&[]);
    m.sh_ok("echo v > k && echo commit > .gitdb/ctl");
    let status = m.signal_and_wait(libc::SIGKILL);
    assert!(!status.success());
    // The kernel still has the mount, with nobody behind it.
    assert!(is_mounted(&m.mnt));
    let err = std::fs::metadata(&m.mnt).expect_err("stale mount");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN));
    m.spawn(&[]);
    assert_eq!(m.sh_ok("cat k"), "v\n");
    assert!(m.log_text().contains("stale FUSE mount"));
}

#[test]
fn autocommit_commits_after_quiet() {
    let m = Mount::start(&["--autocommit", "200ms"]);
    m.sh_ok("echo v > k");
    wait_for("an autocommit", || {
        std::fs::read_to_string(m.path(".gitdb/head")).is_ok_and(|h| h.trim().len() == 40)
    });
    assert_eq!(m.git(&["show", "main:k"]), "v");
}

#[test]
fn large_value_round_trips() {
    let m = Mount::start(&[]);
    let src = m.dir.path().join("big.src");
    let len: usize = 48 << 20;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(&src, &data).expect("write src");
    m.sh_ok(&format!("cp {} big", src.display()));
    assert_eq!(
        std::fs::metadata(m.path("big")).expect("stat").len(),
        len as u64
    );
    let back = m.dir.path().join("big.back");
    m.sh_ok(&format!("cp big {}", back.display()));
    assert!(std::fs::read(&back).expect("read back") == data);
    // Neither way held the value in the daemon's memory: the flush streamed the spill file
    // into the object store, and the reads came from the plain copy.
    let pid = m.pid().expect("pid");
    let peak_rss_kib = || -> usize {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    };
    let peak_kib = peak_rss_kib();
    assert!(
        peak_kib * 1024 < len,
        "daemon peak RSS {peak_kib} KiB for a {len}-byte value"
    );
    m.sh_ok("echo commit > .gitdb/ctl");
    assert_eq!(m.git(&["cat-file", "-s", "main:big"]), len.to_string());

    // The flushed spill file became the value's plain copy, named by its blob id.
    let values = m.repo.join("gitdb/values");
    let id = m.git(&["rev-parse", "main:big"]);
    let plain = values.join(&id);
    assert!(std::fs::read(&plain).expect("plain copy") == data);
    // A write into the middle copies it first: the copy of the old blob stays intact, and
    // the new value gets its own.
    m.sh_ok("printf XYZ | dd of=big bs=1 seek=1000 conv=notrunc status=none");
    let mut changed = data.clone();
    changed[1000..1003].copy_from_slice(b"XYZ");
    assert!(std::fs::read(m.path("big")).expect("read") == changed);
    assert!(std::fs::read(&plain).expect("plain copy") == data);
    m.sh_ok("echo commit > .gitdb/ctl");
    let new_id = m.git(&["rev-parse", "main:big"]);
    assert!(std::fs::read(values.join(&new_id)).expect("new copy") == changed);
    // The cache may be emptied at any time: reads fall back to the object and refill it.
    for e in std::fs::read_dir(&values).expect("values") {
        std::fs::remove_file(e.expect("entry").path()).expect("rm");
    }
    m.sh_ok("echo 3 > /proc/sys/vm/drop_caches");
    assert!(std::fs::read(m.path("big")).expect("read") == changed);
    assert!(values.join(&new_id).exists());
    // Refilling the copy inflated the loose object piece by piece: the value was never whole
    // in the daemon's memory (reading it whole through gix peaked at twice its size).
    let peak_kib = peak_rss_kib();
    assert!(
        peak_kib * 1024 < len,
        "daemon peak RSS {peak_kib} KiB after refilling the copy of a {len}-byte value"
    );
    let spills = std::fs::read_dir(m.repo.join("gitdb/tmp"))
        .expect("tmp")
        .count();
    assert_eq!(spills, 0, "no spill file left behind");
}

#[test]
fn read_only_mount_refuses_writes() {
    let mut m = Mount::start(&[]);
    m.sh_ok("echo v > k && echo commit > .gitdb/ctl");
    assert!(m.signal_and_wait(libc::SIGTERM).success());
    m.spawn(&["--read-only"]);
    assert_eq!(m.sh_ok("cat k"), "v\n");
    assert_eq!(errno_of(std::fs::write(m.path("k"), "w")), libc::EROFS);
}

#[test]
fn external_umount_stops_the_daemon_cleanly() {
    let mut m = Mount::start(&[]);
    m.sh_ok("echo kept > k");
    // The attribute warmer stats `k` right after the write; a umount landing during that stat
    // is refused as busy, as on any filesystem something is using (README, "Shutdown").
    common::wait_for("umount to succeed", || {
        let out = std::process::Command::new("umount")
            .arg(&m.mnt)
            .output()
            .expect("umount");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("busy"),
            "umount: {stderr}"
        );
        out.status.success()
    });
    // Signal 0 sends nothing: just wait for the daemon to notice and exit.
    let status = m.signal_and_wait(0);
    assert!(status.success(), "exit {status}: {}", m.log_text());
    assert!(!m.log_text().contains("WARN"), "{}", m.log_text());
    m.spawn(&[]);
    assert_eq!(m.sh_ok("cat k"), "kept\n");
}

#[test]
fn the_store_never_sees_a_half_written_value() {
    use std::io::{BufRead, Write};
    let m = Mount::start(&[]);
    m.sh_ok("echo old-value > f && echo commit > .gitdb/ctl");
    // A writer truncates and writes part of the new value, then waits.
    let mut writer = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys\nf = open(sys.argv[1], 'wb')\nf.write(b'new-'); f.flush()\n\
             g = open(sys.argv[2], 'wb')\ng.write(b'half'); g.flush()\n\
             print('ready', flush=True)\nsys.stdin.readline()\nf.write(b'value\\n'); f.close()\n\
             g.write(b'-and-whole\\n'); g.close()\n",
        )
        .arg(m.path("f"))
        .arg(m.path("g"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(writer.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready");
    assert_eq!(line, "ready\n");
    // A commit now records the old value, not an empty or half one, and not the new file.
    m.sh_ok("echo commit > .gitdb/ctl");
    assert_eq!(m.git(&["show", "main:f"]), "old-value");
    assert_eq!(m.git(&["ls-tree", "--name-only", "main"]), "f");
    // Through the mount the new file is there while it is being written.
    assert_eq!(m.sh_ok("ls"), "f\ng\n");
    writer
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
    assert!(writer.wait().expect("wait").success());
    m.sh_ok("echo commit > .gitdb/ctl");
    assert_eq!(m.git(&["show", "main:f"]), "new-value");
    assert_eq!(m.git(&["show", "main:g"]), "half-and-whole");
}

#[test]
fn an_open_file_keeps_an_uncommitted_value_across_rollback() {
    let m = Mount::start(&[]);
    m.sh_ok("printf 'draft' > note");
    let mut f = std::fs::File::open(m.path("note")).unwrap();
    std::fs::write(m.path(".gitdb/ctl"), "rollback").unwrap();
    common::wait_for("rollback to hide the note", || !m.path("note").exists());
    let mut s = String::new();
    use std::io::Read;
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "draft");
}

#[test]
fn keep_both_conflicts_show_in_the_control_directory() {
    let mut m = Mount::start(&[]);
    m.sh_ok("printf base > k && echo commit > .gitdb/ctl");
    assert!(m.signal_and_wait(libc::SIGTERM).success());
    // Two nodes change /k concurrently; node-b's commit is on another branch, then merged.
    let gitdb = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .arg("--repo")
            .arg(&m.repo)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gitdb {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&m.repo, &["branch", "other", "main"], None);
    gitdb(&["--node-id", "node-a", "set", "/k", "ours"]);
    gitdb(&["--node-id", "node-a", "commit", "-m", "a"]);
    gitdb(&[
        "--node-id",
        "node-b",
        "--branch",
        "other",
        "set",
        "/k",
        "theirs",
    ]);
    gitdb(&[
        "--node-id",
        "node-b",
        "--branch",
        "other",
        "commit",
        "-m",
        "b",
    ]);
    gitdb(&[
        "--node-id",
        "node-a",
        "merge",
        "other",
        "--strategy",
        "keep-both",
    ]);
    m.spawn(&[]);
    assert_eq!(
        std::fs::read_to_string(m.path(".gitdb/conflicts")).unwrap(),
        "/k\n"
    );
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(m.path(".gitdb/status")).unwrap()).unwrap();
    assert_eq!(status["conflicts"], serde_json::json!(["/k"]));
    let merged = std::fs::read_to_string(m.path("k")).unwrap();
    assert!(
        merged.contains("ours") && merged.contains("theirs"),
        "{merged}"
    );
    // Writing the key and committing resolves it.
    m.sh_ok("printf resolved > k && echo commit > .gitdb/ctl");
    assert_eq!(
        std::fs::read_to_string(m.path(".gitdb/conflicts")).unwrap(),
        ""
    );
}

/// For the tests of the speculative work itself (the page-cache prefill, the attribute
/// warmer): the daemon never takes the machine for saturated (debug builds), so the busy
/// loops of the tests running beside do not make that work rest.
const IGNORE_SATURATION: (&str, &str) = ("GITDB_TEST_IGNORE_SATURATION", "1");

/// Values a writer flushes are put in the kernel's page cache for the next reader; whatever
/// follows (a shorter rewrite, a partial overwrite, an append, a truncate, a rename over it, a
/// write through a shared mapping) must win over a prefill still on its way, so every read
/// right after a change sees exactly that change. Run as is, and with every prefill slowed
/// down so that most of them land after the changes that follow them.
#[test]
fn every_read_right_after_a_change_sees_it() {
    for delay_us in ["0", "400"] {
        // The suite's busy loops would rest the prefills this races (see `IGNORE_SATURATION`).
        let m = Mount::start_env(
            &[],
            &[("GITDB_TEST_PREFILL_DELAY_US", delay_us), IGNORE_SATURATION],
        );
        assert_eq!(m.sh_ok(READ_AFTER_CHANGE), "ok\n");
        // The reads above raced real prefills, not a mechanism that never ran.
        let prefilled = m.sh_ok(
            "python3 -c 'import json; print(json.load(open(\".gitdb/status\"))[\"page_cache\"][\"prefilled\"] > 0)'",
        );
        assert_eq!(prefilled, "True\n", "{}", m.log_text());
    }
}

const READ_AFTER_CHANGE: &str = r#"python3 - <<'PY'
import mmap, os, random
rnd = random.Random(7)
want = {}
sizes = [0, 1, 5, 100, 4095, 4096, 4097, 20000, 65536, 70000]
for i in range(2000):
    p = "k%d" % rnd.randrange(2)
    cur = want.get(p)
    byte = bytes([65 + i % 26])
    op = rnd.choice(["write", "write", "patch", "append", "truncate", "rename", "mmap"])
    if cur is None or op == "write":
        data = byte * rnd.choice(sizes)
        with open(p, "wb") as f:
            f.write(data)
    elif op == "patch":
        at = rnd.randrange(len(cur) + 1)
        with open(p, "r+b") as f:
            f.seek(at)
            f.write(byte * 3)
        data = cur[:at] + byte * 3 + cur[at + 3:]
    elif op == "append":
        with open(p, "ab") as f:
            f.write(byte * 10)
        data = cur + byte * 10
    elif op == "truncate":
        n = rnd.randrange(len(cur) + 2)
        os.truncate(p, n)
        data = cur[:n] + b"\0" * (n - len(cur[:n]))
    elif op == "rename":
        data = byte * rnd.choice(sizes)
        with open(p + ".tmp", "wb") as f:
            f.write(data)
        os.rename(p + ".tmp", p)
    else:
        data = cur
        if cur:
            with open(p, "r+b") as f:
                with mmap.mmap(f.fileno(), 0) as mm:
                    at = rnd.randrange(len(cur))
                    mm[at:at + 1] = byte
                    mm.flush()
            data = cur[:at] + byte + cur[at + 1:]
    want[p] = data
    with open(p, "rb") as f:
        got = f.read()
    assert got == data, (i, op, p, len(got), len(data), got[:20], data[:20])
    assert os.stat(p).st_size == len(data), (i, op, p, os.stat(p).st_size, len(data))
print("ok")
PY"#;

/// The kernel opens directories itself (OPENDIR is answered with ENOSYS) and caches their
/// listings: a large directory is read in several READDIRs whose cookies lead back into one
/// listing, so a reader sees every entry that stays exactly once even while others go.
#[test]
fn large_directories_list_each_entry_once() {
    let m = Mount::start(&[]);
    let out = m.sh_ok(
        r#"python3 - <<'PY'
import os
os.mkdir("d")
names = ["entry-%05d" % i for i in range(3000)]
for n in names:
    open(os.path.join("d", n), "w").close()
# No listing before this one: the kernel's cached listing starts empty, so the reader's
# later chunks come from READDIRs with the cookies handed out before the changes.
seen = []
with os.scandir("d") as it:
    for i, e in enumerate(it):
        seen.append(e.name)
        if i == 100:
            # Remove entries the reader has passed and some it has not reached yet, and add
            # new ones: a cookie that were only an index would now skip or repeat entries.
            for n in names[:100] + names[2000:2100]:
                os.unlink(os.path.join("d", n))
            for k in range(50):
                open(os.path.join("d", "new-%d" % k), "w").close()
kept = set(names) - set(names[:100]) - set(names[2000:2100])
assert len(seen) == len(set(seen)), "an entry was listed twice"
assert kept <= set(seen), sorted(kept - set(seen))[:5]
print(len(os.listdir("d")))
PY"#,
    );
    assert_eq!(out, "2850\n");
    // `ls` of a directory whose listing the kernel cached sees a removal and an addition.
    m.sh_ok("ls d >/dev/null && rm d/entry-00100 && touch d/zz");
    let ls = m.sh_ok("ls d");
    assert!(!ls.contains("entry-00100\n") && ls.ends_with("zz\n"));
}

/// `/.gitdb/history` lists the latest commits, even to a reader that keeps the directory
/// open and rewinds it.
#[test]
fn history_listing_follows_commits() {
    use std::io::{BufRead, Write};
    let m = Mount::start(&[]);
    m.sh_ok("echo 1 > k && echo commit > .gitdb/ctl");
    // One reader keeps the directory open and rewinds it: rewinddir + readdir reach the
    // kernel's cached listing without a new lookup or fstat, so only the invalidation at the
    // new head can make it current.
    let mut reader = std::process::Command::new("perl")
        .arg("-e")
        .arg(
            "$| = 1; opendir(my $d, $ARGV[0]) or die $!; \
             do { rewinddir($d); print join(' ', sort grep { !/^[.]/ } readdir($d)), \"\\n\" } \
             while (<STDIN>);",
        )
        .arg(m.path(".gitdb/history"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("perl");
    let mut input = reader.stdin.take().expect("stdin");
    let mut output = std::io::BufReader::new(reader.stdout.take().expect("stdout"));
    let mut listing = |again: bool| {
        if again {
            input.write_all(b"again\n").expect("ask");
        }
        let mut line = String::new();
        output.read_line(&mut line).expect("listing");
        line.trim().to_owned()
    };
    let first = m.git(&["rev-parse", "main"]);
    assert_eq!(listing(false), first);
    m.sh_ok("echo 2 > k && echo commit > .gitdb/ctl");
    let second = m.git(&["rev-parse", "main"]);
    let mut both = [first, second];
    both.sort();
    wait_for("the new commit in the open history listing", || {
        listing(true) == both.join(" ")
    });
    assert_eq!(m.sh_ok("ls .gitdb/history").split_whitespace().count(), 2);
    drop(input);
    assert!(reader.wait().expect("perl").success());
}

#[test]
fn an_unlinked_open_file_still_answers_fstat_reads_and_writes() {
    // pjdfstest unlink::open_file_not_freed: fstat sends no file handle, so the daemon must
    // find the open handle by inode once the name is gone; ftruncate works there too.
    let m = Mount::start(&[]);
    let out = m.python(
        r#"
import os
fd = os.open("f", os.O_CREAT | os.O_RDWR, 0o644)
os.unlink("f")
st = os.fstat(fd)
print(st.st_nlink, st.st_size)
os.write(fd, b"Hello, World!")
print(os.pread(fd, 13, 0).decode(), os.fstat(fd).st_size)
os.ftruncate(fd, 5)
print(os.pread(fd, 13, 0).decode(), os.fstat(fd).st_size)
os.close(fd)
# A file replaced by a rename is orphaned the same way.
with open("a", "w") as f:
    f.write("old")
fd = os.open("a", os.O_RDONLY)
with open("b", "w") as f:
    f.write("newer")
os.rename("b", "a")
st = os.fstat(fd)
print(st.st_nlink, st.st_size, os.read(fd, 10).decode())
os.close(fd)
print(os.path.exists("f"), open("a").read())
"#,
    );
    assert_eq!(
        out,
        "0 0\nHello, World! 13\nHello 5\n0 3 old\nFalse newer\n"
    );
}

#[test]
fn times_follow_posix_for_names_chmod_rename_and_utimens() {
    // pjdfstest mkdir/rmdir/chmod ctime and mtime cases, plus what they imply: a directory's
    // mtime and ctime move when a name is added or removed, chmod moves only the ctime, close
    // without a write changes nothing, rename keeps a file's mtime, `cp -p` keeps its times.
    // Times have nanosecond resolution, so consecutive operations differ without sleeping.
    let m = Mount::start(&[]);
    let out = m.python(
        r#"
import os, subprocess
def t(p):
    st = os.lstat(p)
    return st.st_mtime_ns, st.st_ctime_ns
def grew(p, before, what):
    after = t(p)
    assert after[0] > before[0] and after[1] > before[1], (what, before, after)
os.mkdir("d")
for what, op in [
    ("create", lambda: os.close(os.open("d/f", os.O_CREAT | os.O_WRONLY, 0o644))),
    ("mkdir", lambda: os.mkdir("d/sub")),
    ("symlink", lambda: os.symlink("f", "d/l")),
    ("rename in", lambda: os.rename("d/f", "d/g")),
    ("unlink", lambda: os.unlink("d/l")),
    ("rmdir", lambda: os.rmdir("d/sub")),
    ("rename out", lambda: os.rename("d/g", "g")),
]:
    before = t("d")
    op()
    grew("d", before, what)
# chmod: ctime only, on a directory and on a file (even a mode it already has).
for p, mode in [("d", 0o700), ("g", 0o755), ("g", 0o755)]:
    before = t(p)
    os.chmod(p, mode)
    after = t(p)
    assert after[0] == before[0] and after[1] > before[1], ("chmod", p, before, after)
# A file created and closed without a write keeps its creation times (the setattr reply of
# the chmod comes from the daemon, not from the kernel's cache).
os.close(os.open("h", os.O_CREAT | os.O_WRONLY, 0o644))
before = t("h")
os.chmod("h", 0o644)
assert t("h")[0] == before[0], ("close without write", before, t("h"))
# A committed value keeps its mtime when renamed.
with open("c", "w") as f:
    f.write("x")
with open(".gitdb/ctl", "w") as f:
    f.write("commit c")
before = t("c")
os.rename("c", "c2")
assert t("c2")[0] == before[0], ("rename", before, t("c2"))
# cp -p sets the times before closing the copy: the close must not undo them.
with open("src", "w") as f:
    f.write("data")
os.utime("src", ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
subprocess.run(["cp", "-p", "src", "dst"], check=True)
assert os.stat("dst").st_mtime_ns == 1_000_000_000_000_000_000, os.stat("dst")
print("ok")
"#,
    );
    assert_eq!(out, "ok\n");
}

#[test]
fn a_directory_counts_its_subdirectories_in_nlink() {
    // pjdfstest rename::updates_link_parent: nlink = 2 + subdirectories, whether they hold
    // keys or were only made by mkdir, and it follows mkdir, rmdir and rename.
    let m = Mount::start(&[]);
    let nlink = |p: &str| m.sh_ok(&format!("stat -c %h {p}")).trim().to_owned();
    m.sh_ok("mkdir -p src/kept dst && mkdir -p src/full && echo 1 > src/full/v && echo 2 > src/f");
    assert_eq!(nlink("src"), "4");
    assert_eq!(nlink("dst"), "2");
    assert_eq!(nlink("src/full"), "2");
    m.sh_ok("mv src/kept dst/kept && mv src/full dst/full");
    assert_eq!(nlink("src"), "2");
    assert_eq!(nlink("dst"), "4");
    assert_eq!(
        m.sh_ok("stat -c %i dst/kept/..").trim(),
        m.sh_ok("stat -c %i dst").trim()
    );
    m.sh_ok("rmdir dst/kept && echo 'commit c' > .gitdb/ctl");
    assert_eq!(nlink("dst"), "3");
    // The root: `.`, `..`, the control directory and src, dst.
    assert_eq!(nlink("."), "5");
    // Counts given out follow each mkdir and rmdir (they are adjusted, not recounted).
    m.sh_ok("mkdir n");
    assert_eq!(nlink("n"), "2");
    m.sh_ok("mkdir n/a n/b && touch n/f");
    assert_eq!(nlink("n"), "4");
    m.sh_ok("rmdir n/a");
    assert_eq!(nlink("n"), "3");
    // A subdirectory that arrives with a commit made behind the mount's back counts too.
    outside_commit(&m.repo, m.dir.path(), &[("dst/new/v", "x")], &[]);
    wait_for("the outside commit's directory in nlink", || {
        nlink("dst") == "4"
    });
}

/// What `ls -l` and `os.scandir` + `stat` show on a fresh mount of committed data is what
/// each file holds, and a file still being written shows its current size: with plain
/// listings (the default: the kernel looks up each entry) and with `-o readdirplus` (the
/// listing carries the attributes, as the request counters show).
#[test]
fn listings_carry_the_right_attributes() {
    for (args, plus) in [(&[][..], false), (&["-o", "readdirplus"][..], true)] {
        let mut m = Mount::start(args);
        m.sh_ok(
            "mkdir -p d/sub && touch d/sub/f && printf 12345 > d/five && printf x > d/run \
             && chmod +x d/run && ln -s five d/link && echo commit > .gitdb/ctl",
        );
        m.signal_and_wait(libc::SIGTERM);
        m.spawn(args);
        let out = m.sh_ok(
            r#"python3 - <<'PY'
import json, os, stat
rows = []
for e in sorted(os.scandir("d"), key=lambda e: e.name):
    st = os.lstat(e.path)
    rows.append("%s %o %d %d" % (e.name, stat.S_IMODE(st.st_mode), st.st_size, st.st_nlink))
print("\n".join(rows))
f = open("d/growing", "wb")
f.write(b"abc")
f.flush()
print([(e.name, os.stat(e.path).st_size) for e in os.scandir("d") if e.name == "growing"])
f.close()
with open(".gitdb/status") as f:
    print(json.load(f)["requests"]["readdirplus"] > 0)
PY"#,
        );
        assert_eq!(
            out,
            format!(
                "five 644 5 1\nlink 777 4 1\nrun 755 1 1\nsub 755 0 2\n[('growing', 3)]\n{}\n",
                if plus { "True" } else { "False" }
            ),
            "{args:?}"
        );
        let ls = m.sh_ok("ls -l d | awk 'NR>1 {print $1, $5, $9}'");
        assert_eq!(
            ls,
            "-rw-r--r-- 5 five\n-rw-r--r-- 3 growing\nlrwxrwxrwx 4 link\n-rwxr-xr-x 1 run\ndrwxr-xr-x 0 sub\n",
            "{args:?}"
        );
    }
}

/// What the kernel should answer never reaches the daemon: a file just written and closed is
/// read back from the page cache (no READ) and its attributes from the kernel's cache (no
/// GETATTR), per the request counters in `status`.
#[test]
fn reading_back_a_written_file_costs_no_read_or_getattr() {
    // The governor rests the prefill and the warmer while the machine is saturated (the
    // suite's busy-loop tests run beside this one), and this is about them.
    let m = Mount::start_env(&[], &[IGNORE_SATURATION]);
    let out = m.sh_ok(
        r#"python3 - <<'PY'
import json, os, time
def status():
    with open(".gitdb/status") as f:
        return json.load(f)
def wait(what, cond):
    end = time.monotonic() + 20
    while not cond(status()):
        assert time.monotonic() < end, "timed out waiting for " + what
        time.sleep(0.01)
def attempt(n):
    path = "app/port%d" % n
    with open(path, "wb") as f:
        f.write(b"8080\n")
    wait("the prefill and the attributes", lambda s: s["page_cache"]["prefilled"] >= n
         and s["page_cache"]["attributes_warmed"] >= n)
    # What reading `status` itself costs, to take it out of the difference.
    a = status()["requests"]; b = status()["requests"]
    with open(path, "rb") as f:
        assert f.read() == b"8080\n"
    assert os.stat(path).st_size == 5
    c = status()["requests"]
    return ["%s %d" % (op, (c[op] - b[op]) - (b[op] - a[op])) for op in ("read", "getattr", "lookup")]
os.makedirs("app", exist_ok=True)
# Another process dropping the kernel's caches (drop_caches, memory pressure) makes an
# attempt pay round trips: a few attempts, each on a new file; a broken cache fails them all.
for n in range(1, 4):
    got = attempt(n)
    if got == ["read 0", "getattr 0", "lookup 0"]:
        break
print("\n".join(got))
PY"#,
    );
    assert_eq!(out, "read 0\ngetattr 0\nlookup 0\n", "{}", m.log_text());
}

#[test]
fn a_reader_sees_what_a_writer_still_open_has_written() {
    // Found next to fsx (glibc's posix_fallocate fallback writes single bytes past the end):
    // a second descriptor's READ used to be answered from the value the store held, shorter
    // than what the open writer had written. The kernel takes a short READ for the end of
    // the file and shrinks its size, so the writer's own pread of its tail then returned
    // nothing, and the reader saw neither the old nor the new file. Pages a writer only
    // partly wrote are not cached, so every such READ reaches the daemon.
    let m = Mount::start(&[]);
    let out = m.python(
        r#"
import os, mmap
with open("t", "wb") as f:
    f.write(b"x" * 5000)
w = os.open("t", os.O_RDWR)
os.pwrite(w, b"END", 9997)
r = os.open("t", os.O_RDONLY)
d = os.pread(r, 20000, 0)
print(len(d), d[:5000] == b"x" * 5000, d[9997:])
print(os.pread(w, 10, 9990)[-3:], os.fstat(w).st_size)
os.pwrite(w, b"MORE", 20000)
os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
with mmap.mmap(r, 0, prot=mmap.PROT_READ) as mm:
    print(len(mm), mm[20000:20004], mm[9997:10000])
os.close(r)
os.close(w)
d = open("t", "rb").read()
print(len(d), d[9997:10000], d[20000:])
"#,
    );
    assert_eq!(
        out,
        "10000 True b'END'\nb'END' 10000\n20004 b'MORE' b'END'\n20004 b'END' b'MORE'\n"
    );
}

/// CPU time (utime + stime, in clock ticks) of every thread of process `pid` so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("daemon stat");
    // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn busy_polling_runs_during_bursts_and_stops_when_the_mount_goes_quiet() {
    // Polling needs a CPU to spare (see the one-CPU mount below).
    let polls = std::thread::available_parallelism().map_or(1, |n| n.get()) > 1;
    let m = Mount::start(&[]);
    let burst = r#"python3 - <<'PY'
import json, os
os.makedirs("poll", exist_ok=True)
for i in range(300):
    with open("poll/f%d" % i, "w") as f:
        f.write("v%d\n" % i)
    with open("poll/f%d" % i) as f:
        assert f.read() == "v%d\n" % i
with open(".gitdb/status") as f:
    s = json.load(f)["busy_poll"]
print(s["period_us"], s["episodes"] > 0)
PY"#;
    let expected = if polls { "100 True\n" } else { "0 False\n" };
    assert_eq!(m.sh_ok(burst), expected, "{}", m.log_text());
    // Polling ends within a few periods of the last request; from then on the worker sleeps
    // in read(2) and the daemon spends (next to) nothing. A worker left polling would burn
    // most of a CPU second here.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = m.pid().expect("daemon pid");
    let before = cpu_ticks(pid);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let spent = cpu_ticks(pid) - before;
    assert!(
        spent <= 20,
        "an idle mount used {spent} ticks of CPU in 1 s"
    );

    let off = Mount::start(&["-o", "busy_poll=0"]);
    assert_eq!(off.sh_ok(burst), "0 False\n", "{}", off.log_text());

    // A daemon that may run on one CPU only does not poll: it would take turns with the
    // application on that CPU. The child inherits this thread's affinity.
    let one_cpu = on_first_cpu(|| Mount::start(&[]));
    assert_eq!(one_cpu.sh_ok(burst), "0 False\n", "{}", one_cpu.log_text());
}

/// Busy processes killed when dropped, even if the test fails.
struct Burners(Vec<std::process::Child>);

/// One process spinning on a CPU, for [`Burners`].
fn burner() -> std::process::Child {
    std::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .expect("spawn a busy loop")
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn busy_polling_backs_off_while_no_cpu_is_idle() {
    saturation_rests_speculative_work(&[], false);
}

/// Without polling (`busy_poll=0`, or a daemon confined to one CPU) the governor still
/// watches the CPUs the daemon may use, and the prefill and warmer rest while they are
/// saturated.
#[test]
fn speculative_work_rests_on_a_saturated_machine_without_polling() {
    saturation_rests_speculative_work(&["-o", "busy_poll=0"], false);
}

/// A daemon confined to one CPU that a busy loop fills is saturated even while the
/// machine's other CPUs idle: the governor watches the CPUs of its affinity mask.
#[test]
fn speculative_work_rests_when_the_daemons_own_cpu_is_saturated() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        // One CPU: the other tests cover it.
        return;
    }
    saturation_rests_speculative_work(&[], true);
}

/// Runs `f` with this thread confined to its first allowed CPU (children inherit it).
fn on_first_cpu<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sched_{get,set}affinity on the calling thread with a properly sized set.
    unsafe {
        let mut all: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(libc::sched_getaffinity(0, size, &mut all), 0);
        let first = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &all))
            .expect("an allowed CPU");
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(first, &mut one);
        assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
        let out = f();
        assert_eq!(libc::sched_setaffinity(0, size, &all), 0);
        out
    }
}

/// On a saturated machine, the worker moves to the CPU of the application it serves (see
/// `placement.rs`; its unit test checks the move itself). Here, a writer hops between two
/// CPUs and `status` counts the worker's moves. With `-o nofollow_cpu` nothing moves. The
/// scheduler also brings the worker beside a pinned writer by itself at times, so the count
/// is checked, not who moved it each time.
#[test]
fn on_a_saturated_machine_the_worker_follows_the_application_to_its_cpu() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return;
    }
    let follow = |args: &[&str]| {
        let m = Mount::start(args);
        let _burners = Burners((0..cpus).map(|_| burner()).collect());
        let out = m.sh_ok(
            r#"python3 - <<'PY'
import json, os, time
def status():
    with open(".gitdb/status") as f:
        return json.load(f)["busy_poll"]
def write(i):
    with open("follow/f%d" % (i % 50), "w") as f:
        f.write("x")
os.makedirs("follow", exist_ok=True)
a, b = sorted(os.sched_getaffinity(0))[:2]
end = time.monotonic() + 30
i = 0
while not status()["holding_off"] and time.monotonic() < end:
    for _ in range(100):
        write(i); i += 1
print("saturated", status()["holding_off"])
for hop in range(12):
    os.sched_setaffinity(0, {(a, b)[hop % 2]})
    for _ in range(50):
        write(i); i += 1
print("moves", status()["worker_moves"])
PY"#,
        );
        (out, m.log_text())
    };
    let moves = |out: &str, log: &str| -> u64 {
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("saturated True"), "{out}\n{log}");
        lines
            .next()
            .and_then(|l| l.strip_prefix("moves "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{out}\n{log}"))
    };

    let (out, log) = follow(&[]);
    assert!(moves(&out, &log) >= 1, "{out}\n{log}");
    let (out, log) = follow(&["-o", "nofollow_cpu"]);
    assert_eq!(moves(&out, &log), 0, "{out}\n{log}");
}

fn saturation_rests_speculative_work(args: &[&str], one_cpu: bool) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One spinning process per CPU the daemon may use: the polling worker would take CPU
    // time they want, so the governor sees no idle time over a window and holds polling off.
    let (m, _burners) = if one_cpu {
        on_first_cpu(|| (Mount::start(args), Burners(vec![burner()])))
    } else {
        (
            Mount::start(args),
            Burners((0..cpus).map(|_| burner()).collect()),
        )
    };
    let out = m.sh_ok(
        r#"python3 - <<'PY'
import json, os, time
os.makedirs("busy", exist_ok=True)
end = time.monotonic() + 20
i = 0
while True:
    with open("busy/f%d" % (i % 100), "w") as f:
        f.write("x")
    i += 1
    if i % 200 == 0:
        with open(".gitdb/status") as f:
            s = json.load(f)["busy_poll"]
        if s["held_off"] > 0 or time.monotonic() > end:
            break
print(s["held_off"] > 0)
# While polling is held off, written files are neither put in the page cache nor warmed (the
# prefill and the warmer's stat would take CPU from the writers): a batch written from start
# to end inside one hold-off gains at most the ones already queued when it began.
def status():
    with open(".gitdb/status") as f:
        return json.load(f)
checked = False
end = time.monotonic() + 60
while not checked and time.monotonic() < end:
    s0 = status()
    if not s0["busy_poll"]["holding_off"]:
        for j in range(20):
            with open("busy/g%d" % j, "w") as f:
                f.write("x")
        continue
    for j in range(20):
        with open("busy/h%d" % j, "w") as f:
            f.write("x")
    s1 = status()
    if s1["busy_poll"]["holding_off"] and s1["busy_poll"]["held_off"] == s0["busy_poll"]["held_off"]:
        gained = s1["page_cache"]["attributes_warmed"] - s0["page_cache"]["attributes_warmed"]
        filled = s1["page_cache"]["prefilled"] - s0["page_cache"]["prefilled"]
        print("warmed while held off:", gained <= 3 and filled <= 3, gained, filled)
        checked = True
if not checked:
    print("warmed while held off: no whole batch inside a hold-off")
PY"#,
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("True"), "{}", m.log_text());
    let warmed = lines.next().unwrap_or_default();
    assert!(
        warmed.starts_with("warmed while held off: True"),
        "{warmed}\n{}",
        m.log_text()
    );
}

#[test]
fn status_lists_at_most_a_thousand_dirty_keys_and_counts_them_all() {
    let m = Mount::start(&[]);
    let out = m.sh_ok(
        r#"python3 - <<'PY'
import json, os
os.makedirs("bulk", exist_ok=True)
for i in range(1200):
    with open("bulk/%04d" % i, "w") as f:
        f.write("v")
with open(".gitdb/status") as f:
    s = json.load(f)
print(len(s["dirty"]), s["dirty_count"], s["dirty"][0]["key"], s["dirty"][-1]["key"])
PY"#,
    );
    assert_eq!(out, "1000 1200 /bulk/0000 /bulk/0999\n", "{}", m.log_text());
}

/// The README's quick start, line by line as written (the mount, repository and `cargo run`
/// of the client swapped for this test's), on a fresh mount: it used to fail at its first
/// line (`echo 8080 > /mnt/db/app/port` with no `app` directory).
#[test]
fn the_readme_quick_start_runs_verbatim() {
    let readme = include_str!("../README.md");
    let block = readme
        .split("<!-- quick start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- end quick start -->").next())
        .expect("the README's quick start block");
    let m = Mount::start(&[]);
    let client = format!(
        "{} --repo '{}'",
        env!("CARGO_BIN_EXE_gitdb"),
        m.repo.display()
    );
    let mut out = String::new();
    for line in block
        .lines()
        .filter(|l| !l.starts_with("```") && !l.trim().is_empty())
    {
        let line = line
            .replace("cargo run --release --bin gitdb --", &client)
            .replace(
                "~/.local/share/gitdb/repo.git",
                &m.repo.display().to_string(),
            )
            .replace("/mnt/db", &m.mnt.display().to_string());
        out += &m.sh_ok(&line);
    }
    assert!(out.starts_with("8080\n"), "{out}");
    assert!(out.ends_with("\ndb1"), "{out}");
    assert_eq!(m.git(&["show", "main:app/host"]), "db1");
}
