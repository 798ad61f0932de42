//! Gossip transfer benchmark: bytes on the wire per sync and the catch-up of a new node, against
//! `git pack-objects --thin` and `git clone --bare` from a `git daemon` of the same repository,
//! in the same run. Convergence across many daemons is `scripts/bench-gossip.sh`.
//!
//! `cargo bench --bench gossip` (or `scripts/bench-gossip.sh`). Size: `GITDB_BENCH_KEYS`
//! (default 100000; 1,000 keys of 20 bytes per directory). Under `cargo test --all-targets` (no
//! `--bench` argument) it returns at once.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gitdb::gossip::{Gossip, GossipConfig};
use gitdb::merge::Strategy;
use gitdb::{GitDb, NodeId};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn key(i: usize) -> String {
    format!("d{}/k{i}", i / 1000)
}

fn value(i: usize, round: usize) -> String {
    format!("{:020}", i * 7 + round)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn open(dir: &Path, name: &str) -> Arc<GitDb> {
    Arc::new(
        GitDb::open(
            dir.join(format!("{name}.git")),
            NodeId::new(name).unwrap(),
            Default::default(),
        )
        .unwrap(),
    )
}

/// A node that listens and never dials on its own (a timer of an hour, no seeds).
fn server(db: &Arc<GitDb>) -> Gossip {
    let mut cfg = GossipConfig::new(Strategy::KeepBoth);
    cfg.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.interval = Duration::from_secs(3600);
    Gossip::start(db.clone(), cfg).unwrap()
}

/// A node that dials `peer` only when told (`sync`), and does not listen: the server never
/// learns an address to push to, so each measured exchange is exactly one `sync`.
fn client(db: &Arc<GitDb>, peer: std::net::SocketAddr) -> Gossip {
    let mut cfg = GossipConfig::new(Strategy::KeepBoth);
    cfg.peers = vec![peer.to_string()];
    cfg.interval = Duration::from_secs(3600);
    Gossip::start(db.clone(), cfg).unwrap()
}

fn wire_bytes(g: &Gossip) -> u64 {
    let c = &g.node().counters;
    c.bytes_sent.load(Ordering::Relaxed) + c.bytes_received.load(Ordering::Relaxed)
}

fn object_bytes(g: &Gossip) -> u64 {
    g.node()
        .counters
        .object_bytes_received
        .load(Ordering::Relaxed)
}

fn wait_head(db: &GitDb, want: Option<gitdb::ObjectId>, deadline: Duration) -> Duration {
    let t = Instant::now();
    while db.head() != want {
        assert!(t.elapsed() < deadline, "timed out waiting for the head");
        std::thread::sleep(Duration::from_micros(200));
    }
    t.elapsed()
}

/// Bytes of `git pack-objects --thin` for `new` given the receiver has `old`.
fn git_thin_pack(repo: &Path, old: &str, new: &str) -> usize {
    let mut child = Command::new("git")
        .args(["--git-dir", repo.to_str().unwrap()])
        .args(["pack-objects", "--thin", "--stdout", "--revs", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.as_mut().unwrap(), "{new}\n^{old}").unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    out.stdout.len()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = env_logger::builder().try_init();
    let n = env_usize("GITDB_BENCH_KEYS", 100_000);
    let tmp = tempfile::tempdir().unwrap();
    println!(
        "gitdb gossip benchmark, {n} keys (1,000 of 20 bytes per directory), {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let a = open(tmp.path(), "a");
    let t = Instant::now();
    for i in 0..n {
        a.set(&key(i), value(i, 0).as_bytes()).unwrap();
    }
    a.commit("bulk", now_ms()).unwrap();
    println!("  built the store in {:.1} s", t.elapsed().as_secs_f64());
    let ga = server(&a);
    let addr = ga.local_addr().unwrap();

    // --- catch-up: a new node gets everything ------------------------------------------------
    let b = open(tmp.path(), "b");
    let t = Instant::now();
    let gb = client(&b, addr);
    gb.sync_now().unwrap();
    wait_head(&b, a.head(), Duration::from_secs(600));
    let gossip_catchup = t.elapsed();
    let catchup_bytes = wire_bytes(&gb);

    let port = free_port();
    let mut daemon = Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", tmp.path().display()))
        .arg(tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the daemon to accept.
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "git daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let clone = tmp.path().join("clone.git");
    let t = Instant::now();
    let st = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(format!("git://127.0.0.1:{port}/a.git"))
        .arg(&clone)
        .status()
        .unwrap();
    let git_clone = t.elapsed();
    assert!(st.success());
    let _ = daemon.kill();
    let _ = daemon.wait();
    let clone_bytes = dir_bytes(&clone.join("objects"));
    println!(
        "  catch-up of a new node: gossip {:.2} s ({} KB on the wire), git clone --bare from git \
         daemon {:.2} s ({} KB of objects): ratio {:.2}",
        gossip_catchup.as_secs_f64(),
        catchup_bytes / 1000,
        git_clone.as_secs_f64(),
        clone_bytes / 1000,
        gossip_catchup.as_secs_f64() / git_clone.as_secs_f64()
    );

    // --- bytes per sync -----------------------------------------------------------------------
    for (label, keys) in [
        ("one key", vec![n / 2 + 17]),
        ("1,000 keys", {
            let step = (n / 1000).max(1);
            (0..1000.min(n)).map(|i| i * step).collect::<Vec<_>>()
        }),
    ] {
        let old = a.head().unwrap();
        for &k in &keys {
            a.set(&key(k), value(k, 1 + keys.len()).as_bytes()).unwrap();
        }
        a.commit(label, now_ms()).unwrap();
        let new = a.head().unwrap();
        let before = wire_bytes(&gb);
        let objects_before = object_bytes(&gb);
        let t = Instant::now();
        gb.sync_now().unwrap();
        wait_head(&b, Some(new), Duration::from_secs(60));
        let took = t.elapsed();
        let bytes = wire_bytes(&gb) - before;
        let objects = object_bytes(&gb) - objects_before;
        let thin = git_thin_pack(a.git_dir(), &old.to_string(), &new.to_string());
        println!(
            "  sync of a {label} change: objects {objects} B (git pack-objects --thin: {thin} B); \
             the whole exchange {bytes} B on the wire (preamble, handshake, announces, pull, \
             objects), {:.1} ms",
            took.as_secs_f64() * 1000.0
        );
    }
    // --- a catch-up of many commits ----------------------------------------------------------
    let old = a.head().unwrap();
    for round in 0..50 {
        a.set(&key(round * 97 % n), value(round, 99).as_bytes())
            .unwrap();
        a.commit("chain", now_ms()).unwrap();
    }
    let new = a.head().unwrap();
    let before = wire_bytes(&gb);
    let objects_before = object_bytes(&gb);
    gb.sync_now().unwrap();
    wait_head(&b, Some(new), Duration::from_secs(60));
    let bytes = wire_bytes(&gb) - before;
    let objects = object_bytes(&gb) - objects_before;
    let thin = git_thin_pack(a.git_dir(), &old.to_string(), &new.to_string());
    println!(
        "  sync of 50 one-key commits: objects {objects} B (git pack-objects --thin: {thin} B); \
         the whole exchange {bytes} B"
    );
    drop((ga, gb));
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            total += if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}
