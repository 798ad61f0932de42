//! Hostile peers that dial us, and slow ones, against real `gitdb serve` daemons on loopback.
//!
//! - A fake peer holding the cluster key dials the node in a loop from 127.0.0.2, claiming the
//!   node id and the listen address of a good peer (which dials from 127.0.0.1 and can only
//!   be pulled from on its own connections: the address it advertises answers nobody), and
//!   answers every pull with a tree naming `..`: the node pulls from it a bounded number of
//!   times in a window (the doubling backoff), while the good peer's commits keep arriving.
//! - A fake peer the node dials answers a pull with the parts of a 40 MiB blob, each just in
//!   time for the per-message timeout: the node cuts the exchange at its deadline
//!   (`--exchange-deadline 2s`), keeps no temp file, stays `git fsck --strict` clean, and backs
//!   the peer off.
//! - A fake peer dialing in from 127.0.0.3 under the listen address of a dead seed
//!   (127.0.0.2:9) completes good exchanges: the seed's failures and backoff stay, since an
//!   address claimed from another host proves nothing.

mod common;
mod gossip_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::{gitdb_ok, wait_for};
use gitdb::gossip::ClusterKey;
use gitdb::gossip::connection::Connection;
use gitdb::gossip::message::{Announce, Message, Packed, WireItem};
use gix::objs::Kind;
use gossip_support::{fsck_strict, has_object, oid_of, raw_commit, raw_tree, wire};

fn key(dir: &Path) -> (String, ClusterKey) {
    let path = dir.join("cluster.key");
    std::fs::write(&path, "a cluster secret of more than thirty-two bytes\n").unwrap();
    let key = ClusterKey::from_file(&path).unwrap();
    (path.to_str().unwrap().to_owned(), key)
}

fn announce(node: &str, listen: Option<String>, head: gix::ObjectId) -> Message {
    Message::Announce(Announce {
        node: node.into(),
        listen,
        head: Some(wire(head)),
        clock: vec![(node.into(), 1)],
        hlc_millis: 0,
        hlc_counter: 0,
        peers: vec![],
        wants_yours: false,
    })
}

/// A commit whose tree names `..`, and the messages that answer a pull of it.
fn hostile_commit() -> (gix::ObjectId, Vec<Message>) {
    let v = b"v".to_vec();
    let tree = raw_tree(&[("100644", b"..", oid_of(Kind::Blob, &v))]);
    let commit = raw_commit(oid_of(Kind::Tree, &tree), &[], "climbs out");
    let items = vec![
        WireItem::Blob(v),
        WireItem::Tree(tree),
        WireItem::Commit {
            data: commit.clone(),
            edits: None,
        },
    ];
    (
        oid_of(Kind::Commit, &commit),
        vec![
            Message::Items(Packed::pack(&items)),
            Message::End { commits: 1 },
        ],
    )
}

/// Files in `objects/` itself: loose objects live one level down, so these are temp files.
fn temp_files(repo: &Path) -> Vec<String> {
    std::fs::read_dir(repo.join("objects"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn log_of(s: &Serve) -> String {
    std::fs::read_to_string(&s.log).unwrap_or_default()
}

/// A fake peer dialing `target` from 127.0.0.2 again and again until dropped.
struct Redialer {
    connections: Arc<AtomicUsize>,
    pulls: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Redialer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn redialer(target: SocketAddr, key: ClusterKey, node: &str, listen: &str) -> Redialer {
    let (connections, pulls, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (c2, p2, s2) = (connections.clone(), pulls.clone(), stop.clone());
    let (node, listen) = (node.to_owned(), listen.to_owned());
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let (head, answer) = hostile_commit();
            let t = Duration::from_secs(5);
            while !s2.load(Ordering::SeqCst) {
                // Paced a little: hammering, not a CPU benchmark on a 2-core machine.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                let Ok(stream) = sock.connect(target).await else {
                    continue;
                };
                let Ok(mut c) = Connection::over(stream, target, &key, true).await else {
                    continue;
                };
                c2.fetch_add(1, Ordering::SeqCst);
                if c.send(&announce(&node, Some(listen.clone()), head))
                    .await
                    .is_err()
                {
                    continue;
                }
                let Ok(Message::Announce(theirs)) = c.recv(t).await else {
                    continue;
                };
                // We pull nothing; the node pulls from us if it wants our head.
                if c.send(&Message::Bye).await.is_err() || !theirs.wants_yours {
                    continue;
                }
                if let Ok(Message::Pull { .. }) = c.recv(t).await {
                    p2.fetch_add(1, Ordering::SeqCst);
                    for m in &answer {
                        let _ = c.send(m).await;
                    }
                    // Until the node hangs up on the refused tree.
                    let _ = c.recv(t).await;
                }
            }
        });
    });
    Redialer {
        connections,
        pulls,
        stop,
        thread: Some(thread),
    }
}

#[test]
fn a_hostile_peer_dialing_in_a_loop_is_pulled_from_a_bounded_number_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let (key_arg, key) = key(dir.path());
    // Serve's interval is 200 ms: backoffs of 0.4, 0.8, 1.6, 3.2 s... allow 5 pulls in 6 s.
    let node = Serve::start(dir.path(), "node", &["--cluster-key-file", &key_arg]);
    // Nothing answers at the address the good peer advertises: the node can get its commits
    // only on the good peer's own connections, from 127.0.0.1.
    let claimed = "127.0.0.1:9";
    let good = Serve::start(
        dir.path(),
        "good",
        &[
            "--peer",
            &node.addr,
            "--advertise",
            claimed,
            "--cluster-key-file",
            &key_arg,
        ],
    );
    let evil = redialer(node.addr.parse().unwrap(), key, "good", claimed);
    let (hostile, _) = hostile_commit();

    let window = Duration::from_secs(6);
    let started = Instant::now();
    let mut commits = 0;
    while started.elapsed() < window || commits < 3 {
        commits += 1;
        gitdb_ok(&good.repo, &["set", "/k", &commits.to_string()]);
        gitdb_ok(&good.repo, &["commit", "-m", &format!("commit {commits}")]);
        let head = good.head().unwrap();
        wait_for("the node has the good peer's head", || {
            node.head().as_deref() == Some(&*head)
        });
    }
    let (pulls, connections) = (
        evil.pulls.load(Ordering::SeqCst),
        evil.connections.load(Ordering::SeqCst),
    );
    let elapsed = started.elapsed();
    drop(evil);
    eprintln!("{pulls} pulls of {connections} connections in {elapsed:?}, {commits} commits");
    let log = log_of(&node);
    assert!(
        connections >= 30,
        "the fake peer connected only {connections} times in {elapsed:?}"
    );
    assert!(
        (1..=7).contains(&pulls),
        "the node pulled the hostile tree {pulls} times in {elapsed:?} ({connections} \
         connections):\n{log}"
    );
    assert!(
        log.contains("node \"good\" from 127.0.0.2 not pulled from for"),
        "{log}"
    );
    assert!(
        log.contains("not pulling from node \"good\" at 127.0.0.2"),
        "{log}"
    );
    assert!(!has_object(&node.repo, hostile));
    assert_eq!(
        common::git(&node.repo, &["show", "main:k"], None),
        commits.to_string()
    );
    fsck_strict(&node.repo);
}

/// A fake peer the node dials: its first pull is answered with the parts of a 40 MiB blob,
/// one 64 KiB part every 100 ms; later connections are closed at once.
struct Slow {
    addr: SocketAddr,
    /// When the first pull came, and when the node cut it (a send failed).
    pulled_at: Arc<Mutex<Option<Instant>>>,
    cut_at: Arc<Mutex<Option<Instant>>>,
}

fn slow_peer(key: ClusterKey) -> Slow {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (pulled_at, cut_at) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(None)));
    let (p2, c2) = (pulled_at.clone(), cut_at.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let commit = raw_commit(oid_of(Kind::Tree, b""), &[], "slow");
            let head = oid_of(Kind::Commit, &commit);
            let t = Duration::from_secs(5);
            let mut first = true;
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                if !std::mem::take(&mut first) {
                    continue;
                }
                let Ok(mut c) = Connection::accept(s, &key, t).await else {
                    return;
                };
                let Ok(Message::Announce(_)) = c.recv(t).await else {
                    return;
                };
                if c.send(&announce("slow", None, head)).await.is_err() {
                    return;
                }
                let Ok(Message::Pull { .. }) = c.recv(t).await else {
                    return;
                };
                *p2.lock().unwrap() = Some(Instant::now());
                let part = vec![7u8; 64 << 10];
                loop {
                    let m = Message::Items(Packed::pack(&[WireItem::BlobPart {
                        size: 40 << 20,
                        data: part.clone(),
                    }]));
                    if c.send(&m).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                *c2.lock().unwrap() = Some(Instant::now());
            }
        });
    });
    Slow {
        addr,
        pulled_at,
        cut_at,
    }
}

#[test]
fn a_peer_sending_blob_parts_slowly_is_cut_off_at_the_deadline_and_backed_off() {
    let dir = tempfile::tempdir().unwrap();
    let (key_arg, key) = key(dir.path());
    let slow = slow_peer(key);
    let slow_addr = slow.addr.to_string();
    let node = Serve::start(
        dir.path(),
        "node",
        &[
            "--peer",
            &slow_addr,
            "--exchange-deadline",
            "2s",
            "--cluster-key-file",
            &key_arg,
        ],
    );
    let repo: PathBuf = node.repo.clone();
    wait_for("the node pulls from the slow peer", || {
        slow.pulled_at.lock().unwrap().is_some()
    });
    wait_for("the slow blob's temp file", || {
        !temp_files(&repo).is_empty()
    });
    wait_for("the node cuts the exchange", || {
        log_of(&node).contains("passed its deadline of 2s")
    });
    wait_for("the slow peer sees the cut", || {
        slow.cut_at.lock().unwrap().is_some()
    });
    let took = slow.cut_at.lock().unwrap().unwrap() - slow.pulled_at.lock().unwrap().unwrap();
    eprintln!("cut {took:?} after the pull began");
    assert!(
        took < Duration::from_secs(6),
        "cut {took:?} after the pull began"
    );
    // Backed off, and nothing of the blob stays.
    let log = log_of(&node);
    assert!(
        log.contains("the exchange passed its deadline of 2s (next try in"),
        "{log}"
    );
    wait_for("no temp file in objects/", || temp_files(&repo).is_empty());
    let status: serde_json::Value = serde_json::from_str(&gitdb_ok(&repo, &["status"])).unwrap();
    let peer = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["addr"] == slow_addr.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no peer {slow_addr} in {status}"));
    assert!(
        peer["failures"].as_u64().unwrap() >= 1 && peer["alive"] == false,
        "{peer}"
    );
    assert_eq!(node.head(), None, "nothing of the slow peer was taken");
    fsck_strict(&repo);
}

/// A peer the impostor lists in its announce (nothing answers there).
const LISTED: &str = "127.0.0.4:9";

#[test]
fn an_address_claimed_from_another_host_books_no_contact_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (key_arg, key) = key(dir.path());
    let dead = "127.0.0.2:9";
    let node = Serve::start(
        dir.path(),
        "node",
        &["--peer", dead, "--cluster-key-file", &key_arg],
    );
    let seed = || -> serde_json::Value {
        let status: serde_json::Value =
            serde_json::from_str(&gitdb_ok(&node.repo, &["status"])).unwrap();
        status["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["addr"] == dead)
            .cloned()
            .unwrap_or_else(|| panic!("no peer {dead} in {status}"))
    };
    wait_for("the dead seed failed three times", || {
        seed()["failures"].as_u64().unwrap() >= 3
    });
    let before = seed()["failures"].as_u64().unwrap();
    let target: SocketAddr = node.addr.parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let exchanges = rt.block_on(async {
        let mut done = 0;
        for _ in 0..10 {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind("127.0.0.3:0".parse().unwrap()).unwrap();
            let stream = sock.connect(target).await.unwrap();
            let mut c = Connection::over(stream, target, &key, true).await.unwrap();
            let mut hello = announce("impostor", Some(dead.into()), oid_of(Kind::Tree, b""));
            if let Message::Announce(a) = &mut hello {
                a.head = None;
                a.clock.clear();
                // Learned in the same booking as the contact: the sign it was booked.
                a.peers = vec![LISTED.into()];
            }
            c.send(&hello).await.unwrap();
            if let Ok(Message::Announce(_)) = c.recv(Duration::from_secs(5)).await {
                let _ = c.send(&Message::Bye).await;
                let _ = c.recv(Duration::from_secs(5)).await;
                done += 1;
            }
        }
        done
    });
    assert_eq!(exchanges, 10, "the impostor's exchanges did not complete");
    // The node booked them (it learned the peer they listed) ...
    wait_for("the impostor's exchanges are booked", || {
        let status: serde_json::Value =
            serde_json::from_str(&gitdb_ok(&node.repo, &["status"])).unwrap();
        status["peers"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["addr"] == LISTED))
    });
    // ... but not as contacts of the dead seed.
    let after = seed();
    assert!(
        after["last_contact_ms"].is_null()
            && after["node"].is_null()
            && after["failures"].as_u64().unwrap() >= before,
        "{after} (failures before: {before})"
    );
}
