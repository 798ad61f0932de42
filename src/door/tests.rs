//! The door on real repositories in temp directories: a server on a db, requests through the
//! socket, and what hostile or unlucky clients (garbage, oversized frames, a stale socket)
//! cannot do to it.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::protocol::{self, MAGIC, VERSION};
use super::*;
use crate::db::{DbError, Options};
use crate::{GitDb, NodeId, ValueMode};

fn open(dir: &Path, read_only: bool) -> Result<GitDb, DbError> {
    GitDb::open(
        dir.join("repo.git"),
        NodeId::new("n1").unwrap(),
        Options {
            read_only,
            ..Options::default()
        },
    )
}

/// A writable db in a temp dir, serving its door.
fn served() -> (tempfile::TempDir, Arc<GitDb>, DoorGuard) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open(dir.path(), false).unwrap());
    let guard = serve(db.clone()).unwrap();
    (dir, db, guard)
}

fn ask(command: Command) -> Ask {
    Ask {
        branch: "main".into(),
        node: None,
        command,
    }
}

fn send(guard: &DoorGuard, command: Command) -> Response {
    client::request(guard.path(), &ask(command)).unwrap()
}

fn set(key: &str, value: &[u8]) -> Command {
    Command::Set {
        key: key.into(),
        value: value.to_vec(),
        mode: ValueMode::Regular,
    }
}

fn lines(v: &[&str]) -> Response {
    Response::Lines(v.iter().map(|s| s.to_string()).collect())
}

fn kind(r: &Response) -> Option<ErrorKind> {
    match r {
        Response::Error { kind, .. } => Some(*kind),
        _ => None,
    }
}

/// Raw bytes to the door; the answer it gives, if any.
fn raw(guard: &DoorGuard, bytes: &[u8]) -> Option<Response> {
    let mut s = UnixStream::connect(guard.path()).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let payload = protocol::read_frame(&mut s, MAX_FRAME).ok()?;
    protocol::decode(&payload).ok()
}

#[test]
fn the_socket_is_beside_the_journal_and_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, db, guard) = served();
    assert_eq!(guard.path(), db.git_dir().join("gitdb/door.sock"));
    assert_eq!(client::door_of(db.git_dir()).as_deref(), Some(guard.path()));
    let mode = std::fs::metadata(guard.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn every_command_works_through_the_door() {
    let (_dir, db, guard) = served();
    assert_eq!(send(&guard, set("/a", b"1")), Response::Done);
    let exec = Command::Set {
        key: "d/e".into(),
        value: b"#!/bin/sh\n".to_vec(),
        mode: ValueMode::Executable,
    };
    assert_eq!(send(&guard, exec), Response::Done);
    assert_eq!(
        db.stat("d/e").unwrap(),
        db.stat("/d/e/").unwrap(),
        "the daemon's own db sees it"
    );
    let get = |k: &str| Command::Get { key: k.into() };
    assert_eq!(send(&guard, get("a")), Response::Value(b"1".to_vec()));
    assert_eq!(kind(&send(&guard, get("/nope"))), Some(ErrorKind::Missing));
    assert_eq!(kind(&send(&guard, get("/d"))), Some(ErrorKind::Missing));
    let ls = |p: &str, recursive| Command::Ls {
        prefix: p.into(),
        recursive,
    };
    assert_eq!(send(&guard, ls("/", false)), lines(&["a", "d/"]));
    assert_eq!(send(&guard, ls("/", true)), lines(&["/a", "/d/e"]));
    assert_eq!(
        kind(&send(&guard, ls("/a", false))),
        Some(ErrorKind::Missing)
    );
    let Response::Status { json } = send(&guard, Command::Status) else {
        panic!("status");
    };
    assert_eq!(json, serde_json::to_string_pretty(&db.status()).unwrap());
    assert!(json.contains("\"dirty_count\": 2"), "{json}");
    let commit = || Command::Commit {
        message: "through the door".into(),
    };
    let Response::Committed { id } = send(&guard, commit()) else {
        panic!("commit");
    };
    assert_eq!(db.head().map(|h| h.to_string()), Some(id.clone()));
    assert_eq!(send(&guard, commit()), Response::NothingToCommit);
    let Response::Lines(log) = send(&guard, Command::Log { n: 5 }) else {
        panic!("log");
    };
    assert_eq!(log.len(), 1);
    assert!(log[0].starts_with(&id) && log[0].ends_with("through the door"));
    let rm = |k: &str, recursive| Command::Rm {
        key: k.into(),
        recursive,
    };
    assert_eq!(
        kind(&send(&guard, rm("/nope", false))),
        Some(ErrorKind::Missing)
    );
    assert_eq!(send(&guard, rm("/d", true)), Response::Done);
    assert_eq!(send(&guard, rm("/a", false)), Response::Done);
    assert_eq!(kind(&send(&guard, get("/a"))), Some(ErrorKind::Missing));
    assert_eq!(
        send(&guard, Command::Rollback),
        Response::RolledBack { dropped: 2 }
    );
    assert_eq!(send(&guard, get("/a")), Response::Value(b"1".to_vec()));
    let sync = send(&guard, Command::Sync);
    assert_eq!(
        sync,
        Response::error(ErrorKind::Failed, DbError::NoReplication),
        "a node without peers says so"
    );
    // A bad key is the db's error, exit 2.
    assert_eq!(
        kind(&send(&guard, set("/a/../b", b"x"))),
        Some(ErrorKind::Failed)
    );
}

#[test]
fn the_door_answers_what_the_direct_path_answers() {
    let (dir, db, guard) = served();
    for (k, v) in [("/x/1", "a"), ("/x/2", "b"), ("/y", "c")] {
        assert_eq!(send(&guard, set(k, v.as_bytes())), Response::Done);
    }
    send(
        &guard,
        Command::Commit {
            message: "m".into(),
        },
    );
    send(&guard, set("/z", b"uncommitted"));
    let reads = [
        Command::Get { key: "/x/1".into() },
        Command::Get { key: "/x".into() },
        Command::Ls {
            prefix: "/".into(),
            recursive: false,
        },
        Command::Ls {
            prefix: "/x".into(),
            recursive: true,
        },
        Command::Log { n: 3 },
    ];
    // A read-only handle beside the daemon, as the client opens without a door.
    let beside = open(dir.path(), true).unwrap();
    for c in reads {
        let through = send(&guard, c.clone());
        assert_eq!(through, execute(&db, &c), "{c:?}");
        assert_eq!(through, execute(&beside, &c), "{c:?} read-only");
    }
}

#[test]
fn the_client_goes_through_the_door_while_the_daemon_holds_the_lock() {
    let (dir, db, _guard) = served();
    let repo = dir.path().join("repo.git");
    // Without the door, opening for writing meets the daemon's lock.
    assert!(matches!(
        open(dir.path(), false),
        Err(DbError::Locked { .. })
    ));
    let direct = || -> Result<GitDb, DbError> { panic!("the door answers") };
    assert_eq!(
        client::run(&repo, &ask(set("/k", b"v")), direct),
        Response::Done
    );
    assert_eq!(db.get("/k").unwrap().as_deref(), Some(&b"v"[..]));
    let commit = ask(Command::Commit {
        message: "m".into(),
    });
    assert!(matches!(
        client::run(&repo, &commit, direct),
        Response::Committed { .. }
    ));
    // A read the door refuses (another branch) is read directly, read-only.
    let other = Ask {
        branch: "other".into(),
        ..ask(Command::Get { key: "/k".into() })
    };
    assert_eq!(
        kind(&client::request(_guard.path(), &other).unwrap()),
        Some(ErrorKind::Refused)
    );
    let mut direct_ran = false;
    let read_only = || {
        direct_ran = true;
        GitDb::open(
            &repo,
            NodeId::new("n1").unwrap(),
            Options {
                branch: "other".into(),
                read_only: true,
                create: false,
                ..Options::default()
            },
        )
    };
    let r = client::run(&repo, &other, read_only);
    assert_eq!(kind(&r), Some(ErrorKind::Missing), "{r:?}");
    assert!(direct_ran);
    // A write it refuses is not run behind its back.
    let wrong_node = Ask {
        node: Some("n2".into()),
        ..ask(Command::Commit {
            message: "m".into(),
        })
    };
    let r = client::run(&repo, &wrong_node, direct);
    assert_eq!(kind(&r), Some(ErrorKind::Refused), "{r:?}");
}

#[test]
fn oversized_requests_are_refused() {
    let (dir, db, guard) = served();
    let huge = set("/big", &vec![7u8; MAX_VALUE + (1 << 20)]);
    match client::request(guard.path(), &ask(huge.clone())) {
        Err(DoorError::Frame {
            source: FrameError::TooLarge { .. },
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let not_direct = || -> Result<GitDb, DbError> { panic!("not run directly") };
    let r = client::run(&dir.path().join("repo.git"), &ask(huge), not_direct);
    let Response::Error { kind: k, message } = r else {
        panic!("{r:?}");
    };
    assert_eq!(k, ErrorKind::TooLarge);
    assert!(message.contains("through the mount"), "{message}");
    // A length prefix over the limit is answered without reading (or allocating) the rest.
    let mut header = MAGIC.to_vec();
    header.push(VERSION);
    header.extend_from_slice(&(MAX_FRAME as u32 + 1).to_be_bytes());
    assert_eq!(
        kind(&raw(&guard, &header).unwrap()),
        Some(ErrorKind::Protocol)
    );
    assert_eq!(db.get("/big").unwrap(), None);
    assert_eq!(send(&guard, set("/small", b"ok")), Response::Done);
}

#[test]
fn garbage_on_the_socket_does_not_stop_the_door() {
    let (_dir, db, guard) = served();
    let mut other_version = MAGIC.to_vec();
    other_version.extend_from_slice(&[VERSION + 1, 0, 0, 0, 0]);
    let mut undecodable = MAGIC.to_vec();
    undecodable.extend_from_slice(&[VERSION, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
    let mut truncated = MAGIC.to_vec();
    truncated.extend_from_slice(&[VERSION, 0, 0, 1, 0, 1, 2]);
    let mut trailing = MAGIC.to_vec();
    let mut payload = protocol::encode(&ask(Command::Status), MAX_FRAME).unwrap();
    payload.push(0);
    trailing.push(VERSION);
    trailing.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    trailing.extend_from_slice(&payload);
    for bytes in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        &other_version,
        &undecodable,
        &truncated,
        &trailing,
        &[],
        &MAGIC[..2],
    ] {
        let answer = raw(&guard, bytes);
        assert_eq!(
            answer.as_ref().and_then(kind),
            Some(ErrorKind::Protocol),
            "{bytes:?}: {answer:?}"
        );
    }
    // Random bytes, and clients that vanish halfway.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for len in [1usize, 9, 64, 4096] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        raw(&guard, &bytes);
        let mut s = UnixStream::connect(guard.path()).unwrap();
        let _ = s.write_all(&bytes[..len / 2]);
        drop(s);
    }
    assert_eq!(send(&guard, set("/still", b"up")), Response::Done);
    assert_eq!(db.get("/still").unwrap().as_deref(), Some(&b"up"[..]));
}

#[test]
fn concurrent_clients_are_all_served() {
    let (_dir, db, guard) = served();
    let path = guard.path().to_path_buf();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                for j in 0..10 {
                    let r = client::request(&path, &ask(set(&format!("/t{i}/k{j}"), b"v")));
                    assert_eq!(r.unwrap(), Response::Done);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(db.list_recursive("/").unwrap().len(), 80);
}

#[test]
fn a_stale_socket_neither_blocks_the_next_daemon_nor_hangs_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo.git");
    let db = Arc::new(open(dir.path(), false).unwrap());
    // What a killed daemon leaves: the socket file, nobody listening.
    let path = socket_path(db.git_dir());
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    // The client does not wait on it: a read goes its own way, a write meets the lock and
    // says why the door did not help.
    let start = Instant::now();
    let r = client::run(&repo, &ask(set("/a", b"1")), || open(dir.path(), false));
    let Response::Error { kind: k, message } = r else {
        panic!("{r:?}");
    };
    assert_eq!(k, ErrorKind::Failed);
    assert!(message.contains("locked by pid"), "{message}");
    assert!(message.contains("does not answer"), "{message}");
    let r = client::run(
        &repo,
        &ask(Command::Ls {
            prefix: "/".into(),
            recursive: false,
        }),
        || open(dir.path(), true),
    );
    assert_eq!(r, lines(&[]));
    assert!(start.elapsed() < Duration::from_secs(5));
    // The next daemon replaces it.
    let guard = serve(db.clone()).unwrap();
    assert_eq!(send(&guard, set("/a", b"1")), Response::Done);
    drop(guard);
    assert!(!path.exists(), "a clean stop removes the socket");
    // Without a socket, a write opens the repository itself (here: meets the lock, no note).
    let r = client::run(&repo, &ask(set("/b", b"1")), || open(dir.path(), false));
    let Response::Error { message, .. } = r else {
        panic!("{r:?}");
    };
    assert!(!message.contains("door"), "{message}");
}

#[test]
fn stopping_does_not_wait_for_a_client_that_sends_nothing() {
    let (_dir, _db, guard) = served();
    let path = guard.path().to_path_buf();
    let mut idle = UnixStream::connect(&path).unwrap();
    // Let the door accept it.
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    drop(guard);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(!path.exists());
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(UnixStream::connect(&path).is_err());
}

#[test]
fn a_read_only_handle_serves_no_door() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), false).unwrap());
    let db = Arc::new(open(dir.path(), true).unwrap());
    assert!(matches!(serve(db), Err(DoorError::ReadOnly)));
}
