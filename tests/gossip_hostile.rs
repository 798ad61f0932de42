//! Hostile peers: random bytes, wrong versions, broken handshakes, frames that lie about their
//! length, and a peer that answers a pull with objects that do not check out. After each, the
//! node is still up, still serves its good peer, and kept nothing the hostile peer sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use gitdb::GitDb;
use gitdb::gossip::connection::{Connection, MAGIC, VERSION};
use gitdb::gossip::message::{Announce, Message, Packed, WireBlob, WireEdit, WireItem, WireValue};
use gitdb::gossip::{ClusterKey, Gossip, GossipConfig};
use gitdb::merge::Strategy;
use gossip_support::{now_ms, open};

mod gossip_support;

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    gossip_support::wait_for(what, Duration::from_secs(20), cond)
}

fn config(peers: &[String]) -> GossipConfig {
    let mut cfg = GossipConfig::new(Strategy::KeepBoth);
    cfg.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.peers = peers.to_vec();
    cfg.interval = Duration::from_millis(100);
    cfg.timeout = Duration::from_secs(2);
    cfg
}

/// The id git gives a blob of `data` (`git hash-object`).
fn git_blob_id(data: &[u8]) -> [u8; 20] {
    use std::process::{Command, Stdio};
    let mut child = Command::new("git")
        .args(["hash-object", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    let id = gitdb::ObjectId::from_hex(hex.trim().as_bytes()).unwrap();
    let mut o = [0u8; 20];
    o.copy_from_slice(id.as_slice());
    o
}

fn preamble(version: u16) -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.extend_from_slice(&version.to_be_bytes());
    p
}

/// Sends `bytes` raw and reads until the node hangs up (or 2 s pass): it must hang up.
fn raw(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn garbage_never_stops_a_node_from_serving_its_good_peers() {
    let (_da, a) = open("a");
    let ga = Gossip::start(a.clone(), config(&[])).unwrap();
    let addr = ga.local_addr().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Not our protocol, a wrong version, a cut preamble, a handshake of garbage, a huge
    // 2-byte frame of garbage after a good preamble.
    let mut junk = vec![0u8; 100_000];
    for (i, b) in junk.iter_mut().enumerate() {
        *b = (i * 7919 % 251) as u8;
    }
    let mut wrong_handshake = preamble(VERSION);
    wrong_handshake.extend_from_slice(&[0x00, 0x30]);
    wrong_handshake.extend_from_slice(&[0xAB; 0x30]);
    let mut big_frame = preamble(VERSION);
    big_frame.extend_from_slice(&[0xFF, 0xFF]);
    big_frame.extend_from_slice(&junk[..65_535]);
    for (what, bytes) in [
        ("random bytes", junk.clone()),
        ("a wrong version", preamble(VERSION + 1)),
        ("half a preamble", MAGIC[..3].to_vec()),
        ("a garbage handshake", wrong_handshake),
        ("a garbage frame", big_frame),
    ] {
        assert!(raw(addr, &bytes), "the node did not hang up on {what}");
    }

    // After a good handshake: a message claiming 4 GiB, a message that is not postcard, a
    // message whose bounds are broken, and an announce followed by a pull of nothing here.
    let key = ClusterKey::open();
    rt.block_on(async {
        let cases: Vec<Vec<u8>> = vec![
            u32::MAX.to_be_bytes().to_vec(),
            [&5u32.to_be_bytes()[..], &[0xFF; 5]].concat(),
        ];
        for plain in cases {
            let mut c = Connection::connect(addr, &key, Duration::from_secs(5))
                .await
                .unwrap();
            c.send_raw_chunk(&plain).await.unwrap();
            assert!(c.recv(Duration::from_secs(5)).await.is_err());
        }
        let mut c = Connection::connect(addr, &key, Duration::from_secs(5))
            .await
            .unwrap();
        let peers = vec!["127.0.0.1:1".to_string(); 100];
        c.send(&Message::Announce(Announce {
            node: "evil".into(),
            listen: None,
            head: None,
            clock: vec![],
            hlc_millis: 0,
            hlc_counter: 0,
            peers,
            wants_yours: false,
        }))
        .await
        .unwrap();
        assert!(
            c.recv(Duration::from_secs(5)).await.is_err(),
            "too many peers"
        );
        let mut c = Connection::connect(addr, &key, Duration::from_secs(5))
            .await
            .unwrap();
        c.send(&Message::Pull {
            want: [9; 20],
            have: vec![],
        })
        .await
        .unwrap();
        assert!(
            c.recv(Duration::from_secs(5)).await.is_err(),
            "a pull before an announce"
        );
    });

    // The node still serves a good peer.
    a.set("k", b"v").unwrap();
    a.db_commit();
    let (_db, b) = open("b");
    let gb = Gossip::start(b.clone(), config(&[addr.to_string()])).unwrap();
    wait_for("b has a's head", || b.head() == a.head());
    drop((ga, gb));
}

trait Commit {
    fn db_commit(&self);
}
impl Commit for Arc<GitDb> {
    fn db_commit(&self) {
        self.commit("c", now_ms()).unwrap();
    }
}

/// A fake peer that answers every exchange with an announce of `head` and, to the pull, with
/// `items` (then `End`, unless it `vanish`es); it counts the exchanges.
fn hostile_peer(
    head: [u8; 20],
    items: Vec<WireItem>,
    vanish: bool,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let items = items.clone();
                tokio::spawn(async move {
                    let key = ClusterKey::open();
                    let Ok(mut c) = Connection::accept(s, &key, Duration::from_secs(5)).await
                    else {
                        return;
                    };
                    let _ = c.recv(Duration::from_secs(5)).await;
                    let _ = c
                        .send(&Message::Announce(Announce {
                            node: "evil".into(),
                            listen: None,
                            head: Some(head),
                            clock: vec![],
                            hlc_millis: 0,
                            hlc_counter: 0,
                            peers: vec![],
                            wants_yours: false,
                        }))
                        .await;
                    if let Ok(Message::Pull { .. }) = c.recv(Duration::from_secs(5)).await {
                        let _ = c.send(&Message::Items(Packed::pack(&items))).await;
                        if vanish {
                            // Mid-transfer: the commit's blob went, the commit never comes.
                            return;
                        }
                        let _ = c.send(&Message::End { commits: 1 }).await;
                    }
                    let _ = c.recv(Duration::from_secs(5)).await;
                });
            }
        });
    });
    (addr, count)
}

#[test]
fn objects_that_do_not_check_out_are_refused_and_the_peer_marked_failing() {
    // A real commit made elsewhere, whose tree the hostile peer then lies about.
    let (_dm, maker) = open("m");
    maker.set("k", b"v").unwrap();
    maker.commit("c", now_ms()).unwrap();
    let head = maker.head().unwrap();
    let mut raw_commit = Vec::new();
    let mut blob_v = [0u8; 20];
    maker
        .export(head, &[], &mut |item| {
            if let WireItem::Commit { data, edits } = WireItem::from(item) {
                raw_commit = data;
                if let Some(WireValue {
                    blob: WireBlob::Data(d),
                    ..
                }) = &edits.unwrap()[0].value
                {
                    blob_v = git_blob_id(d);
                }
            }
            Ok(())
        })
        .unwrap();
    let mut want = [0u8; 20];
    want.copy_from_slice(head.as_slice());
    let cases: Vec<(&str, Vec<WireItem>, bool)> = vec![
        (
            "an edit naming a blob never sent",
            vec![WireItem::Commit {
                data: raw_commit.clone(),
                edits: Some(vec![WireEdit {
                    path: "k".into(),
                    value: Some(WireValue {
                        mode: 0o100644,
                        blob: WireBlob::Id(blob_v),
                    }),
                }]),
            }],
            false,
        ),
        (
            "an edit with `..`",
            vec![
                WireItem::Blob(b"v".to_vec()),
                WireItem::Commit {
                    data: raw_commit.clone(),
                    edits: Some(vec![WireEdit {
                        path: "../k".into(),
                        value: Some(WireValue {
                            mode: 0o100644,
                            blob: WireBlob::Id(blob_v),
                        }),
                    }]),
                },
            ],
            false,
        ),
        (
            "edits that rebuild another tree",
            vec![
                WireItem::Blob(b"w".to_vec()),
                WireItem::Commit {
                    data: raw_commit.clone(),
                    edits: Some(vec![]),
                },
            ],
            false,
        ),
        (
            "no commit at all",
            vec![WireItem::Blob(b"x".to_vec())],
            false,
        ),
        (
            "a peer that vanishes mid-transfer",
            vec![WireItem::Blob(b"v".to_vec())],
            true,
        ),
    ];
    for (what, items, vanish) in cases {
        let (evil, count) = hostile_peer(want, items, vanish);
        let (_d, a) = open("a");
        let ga = Gossip::start(a.clone(), config(&[evil.to_string()])).unwrap();
        wait_for("two exchanges with the hostile peer", || {
            count.load(std::sync::atomic::Ordering::SeqCst) >= 2
        });
        assert_eq!(a.head(), None, "{what}: the head moved");
        assert!(!a.has_object(head), "{what}: the commit was kept");
        let p = &ga.peers()[0];
        assert!(
            p.failures >= 1 && !p.alive && p.last_contact_ms.is_none(),
            "{what}: {p:?}"
        );
        drop(ga);
    }
}
