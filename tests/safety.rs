//! Data safety at the mount, as users meet it: several writers of one file, renames over a
//! file being read, ctl commands racing the kernel's caches, SIGTERM with files open, a disk that
//! fills up (writes, commits, a gossip pull) and is given room again. Real
//! `gitdb-mount` daemons driven by real programs; the timing-sensitive cases also run with
//! every CPU busy.

mod common;

use common::{BusyCpus, Mount};

/// `echo rollback > ctl` returns only once the kernel's caches agree: the dropped file is
/// gone for the very next `[ -e ]`, and making it again right away works (it used to fail
/// with ENOENT about twice in a hundred rounds under CPU load: the kernel still held the
/// dropped directory).
fn rollback_is_seen_at_once(rounds: usize) {
    let m = Mount::start(&[]);
    m.sh_ok("echo base > keep && echo commit > .gitdb/ctl");
    let script = format!(
        "i=0; while [ $i -lt {rounds} ]; do i=$((i+1)); \
           mkdir -p d && echo scratch > d/tmp || {{ echo \"create failed at $i\"; exit 1; }}; \
           echo rollback > .gitdb/ctl || exit 2; \
           if [ -e d/tmp ]; then echo \"still there at $i\"; exit 3; fi; \
         done"
    );
    let out = m.sh(&script);
    assert!(
        out.status.success(),
        "{}{}\nlog: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        m.log_text()
    );
}

#[test]
fn a_rollback_is_seen_by_the_kernel_when_ctl_returns() {
    rollback_is_seen_at_once(200);
}

#[test]
fn a_rollback_is_seen_by_the_kernel_when_ctl_returns_with_every_cpu_busy() {
    let _busy = BusyCpus::start();
    rollback_is_seen_at_once(200);
}

/// Every line written by concurrent appenders is kept, whole, with no NUL bytes: the open
/// file is one per inode, shared by every descriptor and process (it used to be one buffer
/// per descriptor, and the last close won: two `>>` loops kept 209–398 of 400 lines).
fn appenders_keep_every_line() {
    let m = Mount::start(&[]);
    m.sh_ok(
        "for w in a b; do (i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo $w$i >> log; done) & \
         done; wait",
    );
    m.python(
        r#"
import os, sys, multiprocessing
def appender(w):
    for i in range(300):
        with open("plog", "a") as f:
            f.write(f"{w}{i}\n")
def one_descriptor(w):
    fd = os.open("flog", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for i in range(300):
        os.write(fd, f"{w}{i}\n".encode())
    os.close(fd)
ps = [multiprocessing.Process(target=appender, args=(w,)) for w in "pqrs"]
ps += [multiprocessing.Process(target=one_descriptor, args=(w,)) for w in "wxyz"]
for p in ps: p.start()
for p in ps: p.join()
assert all(p.exitcode == 0 for p in ps)
"#,
    );
    m.sh_ok("echo commit appenders > .gitdb/ctl");
    for (file, writers, each) in [
        ("log", "ab", 200),
        ("plog", "pqrs", 300),
        ("flog", "wxyz", 300),
    ] {
        for (what, text) in [
            ("mount", std::fs::read(m.path(file)).expect("read")),
            (
                "commit",
                m.git(&["show", &format!("main:{file}")]).into_bytes(),
            ),
        ] {
            assert!(!text.contains(&0), "{file} ({what}) has NUL bytes");
            let text = String::from_utf8(text).expect("utf8");
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            let mut expect: Vec<String> = writers
                .chars()
                .flat_map(|w| (1..=each).map(move |i| format!("{w}{i}")))
                .collect();
            if file != "log" {
                expect = writers
                    .chars()
                    .flat_map(|w| (0..each).map(move |i| format!("{w}{i}")))
                    .collect();
            }
            expect.sort_unstable();
            if lines != expect {
                let missing: Vec<&String> = expect
                    .iter()
                    .filter(|e| lines.binary_search(&e.as_str()).is_err())
                    .collect();
                // Say whether the store kept what the mount's view lost, for the next reader.
                let committed = m.git(&["show", &format!("main:{file}")]);
                panic!(
                    "{file} ({what}): {} lines kept of {}, missing {missing:?}; the commit has                      {} lines",
                    lines.len(),
                    expect.len(),
                    committed.lines().count()
                );
            }
            assert_eq!(lines, expect, "{file} ({what})");
        }
    }
}

#[test]
fn concurrent_appenders_keep_every_line() {
    appenders_keep_every_line();
}

#[test]
fn concurrent_appenders_keep_every_line_with_every_cpu_busy() {
    let _busy = BusyCpus::start();
    appenders_keep_every_line();
}

/// Two descriptors on one file see one file: A writes `via A`, B overwrites the first byte
/// and closes, A closes: `Via A`, as on a local filesystem (it used to be `via A`).
#[test]
fn two_descriptors_write_one_file() {
    let m = Mount::start(&[]);
    let out = m.python(
        r#"
import os
a = os.open("f", os.O_RDWR | os.O_CREAT, 0o644)
os.write(a, b"via A")
b = os.open("f", os.O_RDWR)
os.pwrite(b, b"V", 0)
print(os.pread(a, 100, 0).decode())
os.close(b)
os.close(a)
print(open("f").read())
"#,
    );
    assert_eq!(out, "Via A\nVia A\n");
    m.sh_ok("echo commit > .gitdb/ctl");
    assert_eq!(m.git(&["show", "main:f"]), "Via A");
}

/// SQLite used by two processes at once, in rollback-journal and WAL mode: every row of
/// both is there and the database passes its integrity check (it used to end "file is not
/// a database" or "database disk image is malformed").
#[test]
fn sqlite_in_two_processes() {
    let m = Mount::start(&[]);
    let out = m.python(
        r#"
import sqlite3, multiprocessing
def writer(db, mode, w):
    c = sqlite3.connect(db, timeout=30)
    if mode == "wal":
        c.execute("pragma journal_mode=wal")
    for i in range(100):
        with c:
            c.execute("insert into t values (?, ?)", (w, i))
    c.close()
for db, mode in [("rollback.db", "delete"), ("wal.db", "wal")]:
    c = sqlite3.connect(db, timeout=30)
    c.execute(f"pragma journal_mode={mode}")
    c.execute("create table t (w text, i int)")
    c.commit()
    c.close()
    ps = [multiprocessing.Process(target=writer, args=(db, mode, w)) for w in "ab"]
    for p in ps: p.start()
    for p in ps: p.join()
    assert all(p.exitcode == 0 for p in ps), [p.exitcode for p in ps]
    c = sqlite3.connect(db, timeout=30)
    print(db, c.execute("pragma integrity_check").fetchone()[0],
          c.execute("select count(*) from t").fetchone()[0])
    c.close()
"#,
    );
    assert_eq!(out, "rollback.db ok 200\nwal.db ok 200\n");
}

/// A python process holding files open with data the db does not have yet: a new file
/// written and still open, bytes appended to a committed file, bytes written after an fsync.
/// It prints `ready`, then waits for a line on stdin: `close` closes its files, `write`
/// tries one more write and prints its errno (0 if it worked).
struct OpenWriter {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl OpenWriter {
    fn start(m: &Mount) -> OpenWriter {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                r#"
import os, sys
new = open("new", "w"); new.write("written, never closed\n"); new.flush()
app = open("committed", "a"); app.write("appended\n"); app.flush()
syn = open("synced", "w"); syn.write("before fsync\n"); syn.flush(); os.fsync(syn.fileno())
syn.write("after fsync\n"); syn.flush()
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "close":
        for f in (new, app, syn):
            f.close()
        print("closed", flush=True)
    elif cmd == "write":
        try:
            os.write(new.fileno(), b"too late\n")
            print(0, flush=True)
        except OSError as e:
            print(e.errno, flush=True)
"#,
            )
            .current_dir(&m.mnt)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("ready line");
        assert_eq!(line.trim(), "ready", "{}", m.log_text());
        OpenWriter { child, stdout }
    }

    fn say(&mut self, cmd: &str) -> String {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{cmd}").expect("command");
        stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("answer");
        line.trim().to_owned()
    }
}

impl Drop for OpenWriter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_open_writes_kept(m: &Mount) {
    assert_eq!(
        std::fs::read_to_string(m.path("new")).expect("new"),
        "written, never closed\n",
        "{}",
        m.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(m.path("committed")).expect("committed"),
        "base\nappended\n"
    );
    assert_eq!(
        std::fs::read_to_string(m.path("synced")).expect("synced"),
        "before fsync\nafter fsync\n"
    );
}

/// SIGTERM while files are open and closed soon after: what they held is stored at once,
/// the daemon waits for them to be closed (it says so), unmounts, exits 0; after a restart
/// every byte is there (they used to be lost: a file still open was gone after restart).
#[test]
fn sigterm_keeps_what_open_files_hold() {
    let mut m = Mount::start(&[]);
    m.sh_ok("echo base > committed && echo commit > .gitdb/ctl");
    let mut w = OpenWriter::start(&m);
    let pid = m.pid().expect("daemon pid");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    common::wait_for("the daemon to wait for open files", || {
        m.log_text().contains("waiting up to")
    });
    assert_eq!(w.say("close"), "closed");
    let status = m.signal_and_wait(0);
    assert!(status.success(), "exit {status}: {}", m.log_text());
    assert!(
        m.log_text().contains("stored 3 file(s) still open"),
        "{}",
        m.log_text()
    );
    m.spawn(&[]);
    assert_open_writes_kept(&m);
}

/// SIGTERM while files stay open past `--stop-timeout`: still stored, the daemon detaches
/// the mount and exits 0, and the writer's next write fails instead of being acknowledged
/// and lost.
#[test]
fn sigterm_with_files_left_open_stores_them_and_refuses_later_writes() {
    let mut m = Mount::start(&["--stop-timeout", "300ms"]);
    m.sh_ok("echo base > committed && echo commit > .gitdb/ctl");
    let mut w = OpenWriter::start(&m);
    let status = m.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "exit {status}: {}", m.log_text());
    let errno: i32 = w.say("write").parse().expect("errno");
    assert!(
        errno == libc::EIO || errno == libc::ENOTCONN,
        "a write after the stop answered {errno}"
    );
    drop(w);
    m.spawn(&[]);
    assert_open_writes_kept(&m);
}

/// The config-update pattern: one process writes a temp file and renames it over `cfg`
/// while others open and read it. Every open succeeds and reads one whole version (1,318
/// of 5,104 opens used to fail with ENOENT: the reader's inode had lost its name).
fn rename_over_is_atomic_for_readers() {
    let m = Mount::start(&[]);
    m.sh_ok("mkdir cfg && echo version-0 > cfg/target && echo commit > .gitdb/ctl");
    let out = m.python(
        r#"
import os, multiprocessing, time
def writer(stop):
    i = 0
    while not stop.is_set():
        i += 1
        with open("cfg/.tmp", "w") as f:
            f.write(f"version-{i}\n" * 50)
        os.rename("cfg/.tmp", "cfg/target")
def reader(q):
    fails, reads, bad = 0, 0, 0
    end = time.time() + 3
    while time.time() < end:
        try:
            with open("cfg/target") as f:
                text = f.read()
        except OSError as e:
            fails += 1
            continue
        reads += 1
        lines = set(text.splitlines())
        if len(lines) != 1 or not next(iter(lines)).startswith("version-"):
            bad += 1
    q.put((reads, fails, bad))
stop = multiprocessing.Event()
q = multiprocessing.Queue()
w = multiprocessing.Process(target=writer, args=(stop,))
rs = [multiprocessing.Process(target=reader, args=(q,)) for _ in range(2)]
w.start()
for r in rs: r.start()
results = [q.get() for _ in rs]
stop.set()
w.join()
for r in rs: r.join()
reads = sum(r[0] for r in results)
print(reads, sum(r[1] for r in results), sum(r[2] for r in results))
"#,
    );
    let nums: Vec<u64> = out
        .split_whitespace()
        .map(|n| n.parse().expect("number"))
        .collect();
    assert!(nums[0] > 100, "too few reads to tell: {out}");
    assert_eq!(
        (nums[1], nums[2]),
        (0, 0),
        "failed opens, torn reads (of {} reads)",
        nums[0]
    );
}

#[test]
fn rename_over_a_file_is_atomic_for_its_readers() {
    rename_over_is_atomic_for_readers();
}

#[test]
fn rename_over_a_file_is_atomic_for_its_readers_with_every_cpu_busy() {
    let _busy = BusyCpus::start();
    rename_over_is_atomic_for_readers();
}

/// A descriptor opened before another one appended reads the appended bytes, and a fresh
/// open reads to what stat says: it used to answer from the value it had opened, shorter
/// than the size the kernel knew, which the kernel took for the end of the file and shrank
/// the file to (69,632 bytes of 70,000 until an uncached stat).
#[test]
fn a_reader_open_before_an_append_reads_it_all() {
    let m = Mount::start(&[]);
    m.sh_ok("head -c 60000 /dev/zero | tr '\\0' x > v && echo commit > .gitdb/ctl");
    let out = m.python(
        r#"
import os
r = os.open("v", os.O_RDONLY)
w = os.open("v", os.O_WRONLY | os.O_APPEND)
os.write(w, b"y" * 10000)
os.close(w)
def read_all(fd):
    out, off = b"", 0
    while True:
        b = os.pread(fd, 1 << 16, off)
        if not b:
            return out
        out += b
        off += len(b)
old = read_all(r)
os.close(r)
with open("v", "rb") as f:
    fresh = f.read()
print(len(old), old == b"x" * 60000 + b"y" * 10000, len(fresh), os.stat("v").st_size)
"#,
    );
    assert_eq!(out.trim(), "70000 True 70000 70000");
}

/// A 70,000-byte value rewritten in place while two readers loop; once everyone stopped, a
/// fresh open and read to EOF returns what stat says (it used to return 69,632 bytes for up
/// to 42 s: a reader's short answer had shrunk the kernel's idea of the file).
#[test]
fn no_short_reads_once_the_writer_is_done() {
    let m = Mount::start(&[]);
    let out = m.python(
        r#"
import os, multiprocessing, time
SIZE = 70000
def writer():
    for i in range(300):
        with open("v", "w") as f:
            f.write(chr(ord("a") + i % 26) * SIZE)
def reader():
    end = time.time() + 60
    while time.time() < end and not os.path.exists(".done"):
        with open("v") as f:
            f.read()
with open("v", "w") as f:
    f.write("z" * SIZE)
rs = [multiprocessing.Process(target=reader) for _ in range(2)]
for r in rs: r.start()
writer()
open(".done", "w").close()
for r in rs: r.join()
with open("v", "rb") as f:
    n = len(f.read())
print(n, os.stat("v").st_size)
"#,
    );
    assert_eq!(out.trim(), "70000 70000");
}

/// The repository on a small disk that fills up through the mount: the application sees
/// ENOSPC (not EIO) where its data could not be stored, the daemon restarts on the full disk,
/// and once space is back every value whose write, fsync and close returned 0 survives a
/// `kill -9` (a failed append used to leave a torn record in the journal that hid every later
/// one: 0 of 10 survived).
#[test]
fn a_full_disk_loses_nothing_acknowledged() {
    let disk = common::Tmpfs::mount("8m");
    let mut m = Mount::prepare("mnt", &[]);
    m.repo = disk.path().join("repo.git");
    m.spawn(&[]);
    // Room to give back later, taken before the mount fills the rest.
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 1 << 20]).expect("ballast");
    let fill = m.python(
        r#"
import os, errno
n = 0
while n < 1000:
    try:
        fd = os.open(f"fill-{n}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"f" * 60000)
        os.fsync(fd)
        os.close(fd)
    except OSError as e:
        print(errno.errorcode[e.errno])
        break
    n += 1
"#,
    );
    assert_eq!(fill.trim(), "ENOSPC", "the error a full disk gives");
    // A restart on the full disk works (opening used to rewrite the whole journal first).
    assert!(!m.signal_and_wait(libc::SIGKILL).success());
    m.spawn(&[]);
    std::fs::remove_file(&ballast).expect("free the ballast");
    m.python(
        r#"
import os
for i in range(10):
    fd = os.open(f"after-{i}", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"kept %d" % i)
    os.fsync(fd)
    os.close(fd)
"#,
    );
    assert!(!m.signal_and_wait(libc::SIGKILL).success());
    m.spawn(&[]);
    for i in 0..10 {
        assert_eq!(
            std::fs::read_to_string(m.path(&format!("after-{i}"))).expect("kept"),
            format!("kept {i}"),
            "{}",
            m.log_text()
        );
    }
    m.sh_ok("echo commit > .gitdb/ctl");
    m.git(&["fsck", "--strict"]);
}

/// Stock `git prune` and `git gc --prune=now` beside a running mount keep the blob of a large
/// value that is not committed yet (they used to delete it: reads gave EIO, and the next
/// commit named a missing blob), and the commit passes `git fsck --strict`.
#[test]
fn git_gc_beside_the_mount_keeps_uncommitted_large_values() {
    let m = Mount::start(&[]);
    m.sh_ok("echo small > s && echo commit > .gitdb/ctl");
    m.python(
        r#"
with open("big", "wb") as f:
    f.write(bytes(range(256)) * 1000)
"#,
    );
    m.git(&["prune"]);
    m.git(&["gc", "--prune=now", "--quiet"]);
    // Read from the store itself, not the kernel's page cache.
    let got = std::process::Command::new(env!("CARGO_BIN_EXE_gitdb"))
        .arg("--repo")
        .arg(&m.repo)
        .args(["get", "/big"])
        .output()
        .expect("gitdb get");
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout.len(), 256_000);
    m.sh_ok("echo commit > .gitdb/ctl");
    m.git(&["fsck", "--strict"]);
    m.git(&["gc", "--prune=now", "--quiet"]);
    assert_eq!(m.git(&["cat-file", "-s", "main:big"]), "256000");
}

/// A `--read-only` mount beside a writer follows the writer's journal: it shows a draft the
/// writer has not committed, and once the writer commits a newer value it shows that one and
/// never the old draft again (it used to read the journal once, at start, and show that draft
/// over every later head).
#[test]
fn a_read_only_mount_beside_a_writer_never_shows_a_stale_draft() {
    let writer = Mount::start(&[]);
    writer.sh_ok("echo 0 > k && echo commit > .gitdb/ctl && echo 1 > k");
    let mut reader = Mount::prepare("ro", &[]);
    reader.repo = writer.repo.clone();
    reader.spawn(&["--read-only"]);
    let read = |m: &Mount| std::fs::read_to_string(m.path("k")).unwrap_or_default();
    common::wait_for("the reader to show the draft", || read(&reader) == "1\n");
    writer.sh_ok("echo 2 > k && echo commit > .gitdb/ctl");
    common::wait_for("the reader to show the commit", || read(&reader) == "2\n");
    writer.sh_ok("echo 3 > k");
    common::wait_for("the reader to show the new draft", || {
        read(&reader) == "3\n"
    });
    writer.sh_ok("echo rollback > .gitdb/ctl");
    common::wait_for("the reader to drop the draft", || read(&reader) == "2\n");
    for _ in 0..20 {
        assert_eq!(read(&reader), "2\n", "{}", reader.log_text());
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

/// A commit on a full disk fails cleanly: the write to `ctl` fails with ENOSPC, the branch
/// stays where it was, every uncommitted value (small ones in the journal, large ones staged
/// as blobs) is still there and the repository passes `git fsck --strict`. Once the filesystem
/// grows (`mount -o remount,size=`) the same commit succeeds and holds every value, also after
/// a `kill -9`.
#[test]
fn a_commit_on_a_full_disk_fails_cleanly_and_succeeds_once_space_returns() {
    let disk = common::Tmpfs::mount("12m");
    let mut m = Mount::prepare("mnt", &[]);
    m.repo = disk.path().join("repo.git");
    m.spawn(&[]);
    m.sh_ok("echo one > a && echo commit > .gitdb/ctl");
    let before = m.git(&["rev-parse", "main"]);
    // 300 small values (one pack at commit) and 3 large ones (each a blob when set).
    let write = r#"
import os, sys
os.makedirs("s", exist_ok=True)
for i in range(300):
    with open(f"s/{i}", "w") as f:
        f.write(f"small {i}\n" * 20)
for j in range(3):
    with open(f"big{j}", "wb") as f:
        f.write(bytes((i * 7 + j) % 251 for i in range(200_000)))
        os.fsync(f.fileno())
"#;
    let check = r#"
import os, sys
for i in range(300):
    assert open(f"s/{i}").read() == f"small {i}\n" * 20, i
for j in range(3):
    assert open(f"big{j}", "rb").read() == bytes((i * 7 + j) % 251 for i in range(200_000)), j
print("ok")
"#;
    m.python(write);
    let filler = disk.fill();
    let commit = r#"
import os, errno
fd = os.open(".gitdb/ctl", os.O_WRONLY)
try:
    os.write(fd, b"commit\n")
    print("committed")
except OSError as e:
    print(errno.errorcode[e.errno])
os.close(fd)
"#;
    assert_eq!(
        m.python(commit).trim(),
        "ENOSPC",
        "the error a full disk gives: {}",
        std::fs::read_to_string(m.path(".gitdb/status")).unwrap_or_default()
    );
    assert_eq!(m.git(&["rev-parse", "main"]), before, "the branch moved");
    assert_eq!(m.python(check).trim(), "ok", "{}", m.log_text());
    m.git(&["fsck", "--strict", "--no-dangling"]);
    let status = std::fs::read_to_string(m.path(".gitdb/status")).expect("status");
    assert!(status.contains("No space left"), "last_error: {status}");

    disk.grow("64m");
    m.sh_ok("echo commit > .gitdb/ctl");
    let after = m.git(&["rev-parse", "main"]);
    assert_ne!(after, before);
    m.git(&["merge-base", "--is-ancestor", &before, &after]);
    assert_eq!(
        m.git(&["show", "main:s/299"]),
        "small 299\n".repeat(20).trim()
    );
    assert_eq!(m.git(&["cat-file", "-s", "main:big2"]), "200000");
    m.git(&["fsck", "--strict", "--no-dangling"]);
    assert!(!m.signal_and_wait(libc::SIGKILL).success());
    std::fs::remove_file(filler).expect("filler");
    m.spawn(&[]);
    assert_eq!(m.python(check).trim(), "ok", "{}", m.log_text());
    assert_eq!(m.git(&["rev-parse", "main"]), after);
    let status = std::fs::read_to_string(m.path(".gitdb/status")).expect("status");
    assert!(
        status.contains("\"dirty_count\": 0,"),
        "all committed: {status}"
    );
}

/// A mount whose disk is too small for what its peer sends: `sync` fails, the branch does not
/// move and the repository stays sound; once the filesystem grows, the next `sync` brings the
/// peer's head and its value whole.
#[test]
fn a_mount_receiving_onto_a_full_disk_catches_up_once_space_returns() {
    let peers = tempfile::tempdir().expect("tempdir");
    let b = common::serve::Serve::start(peers.path(), "b", &[]);
    // 12 MiB that deflate cannot shrink, more than the receiver's disk holds.
    let mut big = Vec::with_capacity(12 << 20);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while big.len() < 12 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    let value = peers.path().join("big.bin");
    std::fs::write(&value, &big).expect("value file");
    let set = std::process::Command::new(env!("CARGO_BIN_EXE_gitdb"))
        .args(["--repo", b.repo.to_str().expect("utf-8"), "set", "/big"])
        .stdin(std::fs::File::open(&value).expect("value"))
        .status()
        .expect("gitdb set");
    assert!(set.success());
    common::gitdb_ok(&b.repo, &["commit", "-m", "big"]);
    let b_head = b.head().expect("b has a head");

    let disk = common::Tmpfs::mount("8m");
    let mut m = Mount::prepare("mnt", &[]);
    m.repo = disk.path().join("repo.git");
    // A long interval: the test's `sync`s are the exchanges that count.
    m.spawn(&["--peer", &b.addr, "--interval", "1h"]);
    m.sh_ok("echo local > l && echo commit > .gitdb/ctl");
    let before = m.git(&["rev-parse", "main"]);
    let out = m.sh("echo sync > .gitdb/ctl");
    assert!(!out.status.success(), "a sync onto a full disk succeeded");
    assert_eq!(m.git(&["rev-parse", "main"]), before, "the branch moved");
    let status = std::fs::read_to_string(m.path(".gitdb/status")).expect("status");
    assert!(
        status.contains("No space left"),
        "the full disk is named: {status}"
    );
    m.git(&["fsck", "--strict", "--no-dangling"]);
    assert_eq!(
        std::fs::read_to_string(m.path("l")).ok().as_deref(),
        Some("local\n")
    );

    disk.grow("64m");
    m.sh_ok("echo sync > .gitdb/ctl");
    common::wait_for("the peer's head merged", || {
        let head = m.git(&["rev-parse", "main"]);
        head != before
            && std::process::Command::new("git")
                .arg("--git-dir")
                .arg(&m.repo)
                .args(["merge-base", "--is-ancestor", &b_head, &head])
                .status()
                .is_ok_and(|s| s.success())
    });
    m.git(&["fsck", "--strict", "--no-dangling"]);
    assert!(
        std::fs::read(m.path("big")).ok() == Some(big),
        "the value arrived whole"
    );
    assert_eq!(
        std::fs::read_to_string(m.path("l")).ok().as_deref(),
        Some("local\n")
    );
}
