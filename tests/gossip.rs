//! Gossip between in-process nodes on loopback: real TCP, real Noise, real repositories (one
//! temp dir each), every node its own `Gossip` service. Conditions are awaited with a
//! deadline, never slept on.

mod common;
mod gossip_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gitdb::GitDb;
use gitdb::gossip::{ClusterKey, Gossip, GossipConfig};
use gitdb::merge::Strategy;
use gossip_support::{now_ms, open, wait_for};

struct Node {
    db: Arc<GitDb>,
    gossip: Option<Gossip>,
    _dir: tempfile::TempDir,
}

impl Node {
    fn addr(&self) -> SocketAddr {
        self.gossip.as_ref().unwrap().local_addr().unwrap()
    }
}

fn config(peers: &[SocketAddr], strategy: Strategy) -> GossipConfig {
    let mut cfg = GossipConfig::new(strategy);
    cfg.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.peers = peers.iter().map(|p| p.to_string()).collect();
    cfg.interval = Duration::from_millis(200);
    cfg.timeout = Duration::from_secs(5);
    cfg
}

fn start(name: &str, peers: &[SocketAddr], strategy: Strategy) -> Node {
    let (dir, db) = open(name);
    let gossip = Gossip::start(db.clone(), config(peers, strategy)).unwrap();
    Node {
        db,
        gossip: Some(gossip),
        _dir: dir,
    }
}

fn converged(nodes: &[Node]) -> bool {
    let h = nodes[0].db.head();
    h.is_some() && nodes.iter().all(|n| n.db.head() == h)
}

#[test]
fn a_commit_on_one_node_reaches_all() {
    let a = start("a", &[], Strategy::KeepBoth);
    let b = start("b", &[a.addr()], Strategy::KeepBoth);
    let c = start("c", &[b.addr()], Strategy::KeepBoth);
    a.db.set("users/alice/profile", b"hello").unwrap();
    a.db.commit("first", now_ms()).unwrap();
    let nodes = [a, b, c];
    wait_for("all nodes at a's head", Duration::from_secs(20), || {
        converged(&nodes)
    });
    for n in &nodes {
        assert_eq!(
            n.db.get("users/alice/profile").unwrap().as_deref(),
            Some(&b"hello"[..])
        );
    }
    // The peer table shows the contact.
    let peers = nodes[2].gossip.as_ref().unwrap().peers();
    assert!(
        peers
            .iter()
            .any(|p| p.alive && p.node.as_deref() == Some("b")),
        "{peers:?}"
    );
}

#[test]
fn concurrent_commits_converge_to_one_head_under_each_strategy() {
    // The driver takes the union of both sides' lines, sorted: commutative and associative,
    // as a cluster's driver must be for every node to reach the same merge.
    let union = gitdb::merge::merge_driver("sort -u %A %B -o %A", Duration::from_secs(10));
    for strategy in [Strategy::KeepBoth, Strategy::LastWriteWins, union] {
        // The writes are committed before gossip starts: a write still uncommitted when a
        // peer's head arrives stays on top of it and, once committed, causally follows (so
        // rightly overwrites) what arrived, which is not the concurrency this test is about.
        let dbs: Vec<_> = ["a", "b", "c"].iter().map(|n| open(n)).collect();
        for (i, (_, db)) in dbs.iter().enumerate() {
            db.set("shared/key", format!("from {i}").as_bytes())
                .unwrap();
            db.set(&format!("own/{i}"), b"mine").unwrap();
            db.commit(&format!("write {i}"), now_ms()).unwrap();
        }
        let mut nodes: Vec<Node> = Vec::new();
        for (dir, db) in dbs {
            let seeds: Vec<SocketAddr> = nodes.iter().map(Node::addr).collect();
            let gossip = Gossip::start(db.clone(), config(&seeds, strategy.clone())).unwrap();
            nodes.push(Node {
                db,
                gossip: Some(gossip),
                _dir: dir,
            });
        }
        wait_for("one head", Duration::from_secs(30), || converged(&nodes));
        for n in &nodes {
            for i in 0..3 {
                assert!(n.db.get(&format!("own/{i}")).unwrap().is_some());
            }
        }
        if matches!(strategy, Strategy::KeepBoth | Strategy::Custom(_)) {
            let v = nodes[0].db.get("shared/key").unwrap().unwrap();
            let v = String::from_utf8_lossy(&v);
            for i in 0..3 {
                assert!(
                    v.contains(&format!("from {i}")),
                    "{} kept every side: {v}",
                    strategy.name()
                );
            }
        }
        if matches!(strategy, Strategy::Custom(_)) {
            let v = nodes[0].db.get("shared/key").unwrap().unwrap();
            assert_eq!(
                &v[..],
                b"from 0\nfrom 1\nfrom 2\n",
                "the driver's union, on every node"
            );
        }
    }
}

#[test]
fn a_node_that_was_down_catches_up_and_an_empty_one_gets_everything() {
    let a = start("a", &[], Strategy::KeepBoth);
    let (dir_b, db_b) = open("b");
    for i in 0..20 {
        a.db.set(&format!("k/{i}"), format!("v{i}").as_bytes())
            .unwrap();
        a.db.commit(&format!("c{i}"), now_ms()).unwrap();
    }
    // b was down for all of that, then starts with a as its seed.
    let b = Node {
        gossip: Some(Gossip::start(db_b.clone(), config(&[a.addr()], Strategy::KeepBoth)).unwrap()),
        db: db_b,
        _dir: dir_b,
    };
    let nodes = [a, b];
    wait_for("b caught up", Duration::from_secs(20), || converged(&nodes));
    assert_eq!(nodes[1].db.log(100).unwrap().len(), 20);
    assert_eq!(
        nodes[1].db.get("k/19").unwrap().as_deref(),
        Some(&b"v19"[..])
    );
}

#[test]
fn a_wrong_cluster_key_gets_nothing_and_gives_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ka, kb) = (dir.path().join("a.key"), dir.path().join("b.key"));
    std::fs::write(&ka, "a".repeat(40)).unwrap();
    std::fs::write(&kb, "b".repeat(40)).unwrap();
    let (da, dba) = open("a");
    let mut cfg = config(&[], Strategy::KeepBoth);
    cfg.key = ClusterKey::from_file(&ka).unwrap();
    let a = Node {
        gossip: Some(Gossip::start(dba.clone(), cfg).unwrap()),
        db: dba,
        _dir: da,
    };
    let (db_dir, dbb) = open("b");
    let mut cfg = config(&[a.addr()], Strategy::KeepBoth);
    cfg.key = ClusterKey::from_file(&kb).unwrap();
    let b = Node {
        gossip: Some(Gossip::start(dbb.clone(), cfg).unwrap()),
        db: dbb,
        _dir: db_dir,
    };
    a.db.set("secret", b"a's").unwrap();
    a.db.commit("a", now_ms()).unwrap();
    b.db.set("other", b"b's").unwrap();
    b.db.commit("b", now_ms()).unwrap();
    // b's sync must fail (it reaches no one), and neither side may learn the other's head.
    let err = b.db.sync_with_peers().unwrap_err();
    assert!(err.to_string().contains("sync failed"), "{err}");
    let peers = b.gossip.as_ref().unwrap().peers();
    assert!(peers[0].failures >= 1 && !peers[0].alive, "{peers:?}");
    assert!(!a.db.has_object(b.db.head().unwrap()));
    assert!(!b.db.has_object(a.db.head().unwrap()));
}

#[test]
fn sync_runs_a_round_now_and_stop_is_clean() {
    let a = start("a", &[], Strategy::KeepBoth);
    let (dir_b, db_b) = open("b");
    let mut cfg = config(&[a.addr()], Strategy::KeepBoth);
    // A timer that never fires within the test: only `sync` can move the data.
    cfg.interval = Duration::from_secs(3600);
    let mut b = Node {
        gossip: Some(Gossip::start(db_b.clone(), cfg).unwrap()),
        db: db_b,
        _dir: dir_b,
    };
    // (The timer's first tick fires at once; `sync` works whether that exchange is still
    // running, failed under load and backs off, or is done.)
    b.db.set("k", b"v").unwrap();
    b.db.commit("b", now_ms()).unwrap();
    // The push on commit may already have done it; sync must leave a with b's head either way.
    let summary = b.db.sync_with_peers().unwrap();
    assert!(summary.contains("1 peer"), "{summary}");
    wait_for("a has b's head", Duration::from_secs(10), || {
        a.db.head() == b.db.head()
    });
    b.gossip.take().unwrap().stop();
    // Without the service, sync says so.
    assert!(matches!(
        b.db.sync_with_peers(),
        Err(gitdb::DbError::NoReplication)
    ));
}

#[test]
fn uncommitted_writes_stay_on_top_of_what_gossip_brings() {
    let a = start("a", &[], Strategy::KeepBoth);
    let b = start("b", &[a.addr()], Strategy::KeepBoth);
    b.db.set("draft", b"not yet").unwrap();
    b.db.set("shared", b"b's draft").unwrap();
    a.db.set("shared", b"a's").unwrap();
    a.db.set("other", b"a's").unwrap();
    a.db.commit("a", now_ms()).unwrap();
    let nodes = [a, b];
    wait_for("b at a's head", Duration::from_secs(20), || {
        nodes[1].db.head() == nodes[0].db.head()
    });
    let b = &nodes[1].db;
    assert_eq!(b.get("draft").unwrap().as_deref(), Some(&b"not yet"[..]));
    assert_eq!(b.get("shared").unwrap().as_deref(), Some(&b"b's draft"[..]));
    assert_eq!(b.get("other").unwrap().as_deref(), Some(&b"a's"[..]));
    assert_eq!(b.status().dirty_count, 2);
}

/// The convergence tests again with every CPU busy: gossip must not depend on a quiet machine.
#[test]
fn convergence_with_every_cpu_busy() {
    let _busy = common::BusyCpus::start();
    let a = start("a", &[], Strategy::KeepBoth);
    let b = start("b", &[a.addr()], Strategy::KeepBoth);
    let c = start("c", &[b.addr()], Strategy::KeepBoth);
    let d = start("d", &[a.addr(), c.addr()], Strategy::KeepBoth);
    let nodes = [a, b, c, d];
    for round in 0..3 {
        for (i, n) in nodes.iter().enumerate() {
            n.db.set(&format!("k/{i}"), format!("{round}").as_bytes())
                .unwrap();
            n.db.commit("busy", now_ms()).unwrap();
        }
        wait_for("one head under load", Duration::from_secs(60), || {
            converged(&nodes)
                && nodes.iter().all(|n| {
                    (0..4).all(|i| {
                        n.db.get(&format!("k/{i}")).unwrap().as_deref()
                            == Some(format!("{round}").as_bytes())
                    })
                })
        });
    }
}

#[test]
fn a_value_larger_than_a_message_replicates_in_parts() {
    let a = start("a", &[], Strategy::KeepBoth);
    let b = start("b", &[a.addr()], Strategy::KeepBoth);
    // 20 MiB of poorly compressible bytes: several 4 MiB parts, each its own message.
    let mut big = Vec::with_capacity(20 << 20);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while big.len() < 20 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    a.db.set("big/blob", &big).unwrap();
    a.db.set("small", b"s").unwrap();
    a.db.commit("big", now_ms()).unwrap();
    let nodes = [a, b];
    wait_for("b has the big value", Duration::from_secs(60), || {
        converged(&nodes)
    });
    assert!(nodes[1].db.get("big/blob").unwrap().unwrap()[..] == big[..]);
}

#[test]
fn two_nodes_with_one_node_id_are_told_apart_and_refused() {
    let a = start("same", &[], Strategy::KeepBoth);
    let b = start("same", &[a.addr()], Strategy::KeepBoth);
    a.db.set("k", b"v").unwrap();
    a.db.commit("a", now_ms()).unwrap();
    let err = b.db.sync_with_peers().unwrap_err().to_string();
    assert!(err.contains("own node id"), "{err}");
    assert!(
        !b.db.has_object(a.db.head().unwrap()),
        "nothing was taken from the twin"
    );
    assert!(b.db.status().peers.is_empty() || !b.db.status().peers[0].alive);
}

/// A receiver whose disk fills up during a transfer keeps its head (nothing names the cut
/// transfer), its repository stays sound for stock git, and the exchange reports the failure.
#[test]
fn a_full_disk_on_the_receiver_moves_no_ref() {
    let disk = common::Tmpfs::mount("12M");
    let b_db = Arc::new(
        GitDb::open(
            disk.path().join("repo.git"),
            gitdb::NodeId::new("b").unwrap(),
            Default::default(),
        )
        .unwrap(),
    );
    b_db.set("local", b"kept").unwrap();
    b_db.commit("before", now_ms()).unwrap();
    let b_head = b_db.head();
    let a = start("a", &[], Strategy::KeepBoth);
    // 24 MiB that deflate cannot shrink: more than the receiver's disk holds.
    let mut big = Vec::with_capacity(24 << 20);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    while big.len() < 24 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    a.db.set("big", &big).unwrap();
    a.db.commit("big", now_ms()).unwrap();
    let mut cfg = config(&[a.addr()], Strategy::KeepBoth);
    cfg.listen = None;
    cfg.interval = Duration::from_secs(3600);
    let gb = Gossip::start(b_db.clone(), cfg).unwrap();
    let err = b_db.sync_with_peers().unwrap_err().to_string();
    assert!(
        err.contains("No space left"),
        "the full disk is named: {err}"
    );
    assert_eq!(b_db.head(), b_head, "the branch did not move");
    assert_eq!(b_db.get("local").unwrap().as_deref(), Some(&b"kept"[..]));
    drop(gb);
    let fsck = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(disk.path().join("repo.git"))
        .args(["fsck", "--strict"])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}
