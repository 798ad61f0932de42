//! The daemons under systemd (`contrib/gitdb-mount@.service`, `Type=notify`): started the way
//! the unit starts them, with `NOTIFY_SOCKET` naming a datagram socket this test holds, they
//! send `READY=1` only once the mount answers, and `STOPPING=1` when SIGTERM begins the
//! clean stop.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEADLINE, Mount, is_mounted};

/// A socket in the service manager's place: every notice the daemon sends, as text.
struct Manager {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    socket: UnixDatagram,
}

impl Manager {
    fn new() -> Manager {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        Manager {
            _dir: dir,
            path,
            socket,
        }
    }

    /// The next notice that holds `line`, and what `check` said the moment it came.
    fn wait_for<T>(&self, line: &str, mut check: impl FnMut() -> T) -> (String, T) {
        let end = Instant::now() + DEADLINE;
        let mut buf = vec![0u8; 4096];
        let mut seen = Vec::new();
        while Instant::now() < end {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if text.lines().any(|l| l == line) {
                        return (text, check());
                    }
                    seen.push(text);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
        panic!("no {line} within {DEADLINE:?}; got {seen:?}");
    }
}

#[test]
fn gitdb_mount_is_ready_only_once_the_mount_answers_and_says_when_it_stops() {
    let manager = Manager::new();
    let socket = manager.path.to_str().expect("utf8 path").to_owned();
    let mut m = Mount::prepare("mnt", &[("NOTIFY_SOCKET", &socket)]);
    let mnt = m.mnt.clone();
    std::thread::scope(|s| {
        // What a unit ordered After= this one would do first: read the mount.
        let ready = s.spawn(|| {
            manager.wait_for("READY=1", || {
                (
                    is_mounted(&mnt),
                    std::fs::read_to_string(mnt.join(".gitdb/head")),
                )
            })
        });
        m.spawn(&[]);
        let (text, (mounted, head)) = ready.join().expect("ready thread");
        assert!(
            mounted,
            "READY=1 before the kernel showed the mount: {text:?}"
        );
        head.unwrap_or_else(|e| panic!("READY=1 but the mount does not answer: {e}"));
        assert!(
            text.lines().any(|l| l.starts_with("STATUS=mounted on ")),
            "{text:?}"
        );
    });
    m.sh_ok("mkdir -p app && echo 8080 > app/port");
    let stopping = std::thread::scope(|s| {
        let stopping = s.spawn(|| manager.wait_for("STOPPING=1", || ()));
        let status = m.signal_and_wait(libc::SIGTERM);
        assert!(status.success(), "{status}: {}", m.log_text());
        stopping.join().expect("stopping thread").0
    });
    assert!(stopping.contains("STOPPING=1"));
    assert!(!is_mounted(&m.mnt), "still mounted after a clean stop");
    // What was written before the stop is kept (in the journal: a stop does not commit).
    m.spawn(&[]);
    assert_eq!(m.sh_ok("cat app/port").trim(), "8080");
}

#[test]
fn gitdb_serve_tells_the_service_manager_it_is_ready_and_stopping() {
    let manager = Manager::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo.git");
    let child = Command::new(env!("CARGO_BIN_EXE_gitdb"))
        .args(["--repo"])
        .arg(&repo)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &manager.path)
        .env("GITDB_NODE_ID", "svc")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gitdb serve");
    let (text, ()) = manager.wait_for("READY=1", || ());
    assert!(
        text.lines()
            .any(|l| l.starts_with("STATUS=node svc serving ")),
        "{text:?}"
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    manager.wait_for("STOPPING=1", || ());
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipped unit parses as systemd reads it (`systemd-analyze verify`, which warns on
/// stderr for any key it ignores), with its ExecStart pointed at the binary under test.
#[test]
fn the_shipped_unit_file_is_one_systemd_accepts() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/gitdb-mount@.service"
    ))
    .expect("contrib/gitdb-mount@.service");
    assert!(
        unit.contains("\nType=notify\n"),
        "the unit must wait for READY=1"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gitdb-mount@mnt-db.service");
    let here = unit.replace("/usr/local/bin/gitdb-mount", common::binary());
    std::fs::write(&path, here).expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/test.sh installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}
