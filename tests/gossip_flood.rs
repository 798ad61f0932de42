//! Hostile clients against a running node: 2,000 idle connections, slow-loris connections
//! (the preamble a byte a second), dialers with a wrong cluster key, and a good session's
//! bytes replayed. Meanwhile the node keeps serving: a commit on its good peer still reaches
//! it within a deadline, and its reads stay fast (the latency of `get` is printed); afterwards
//! it holds no more sockets than its bounds allow (`MAX_HANDSHAKING`, `HANDSHAKE_TIMEOUT`) and
//! no more threads than before.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gitdb::gossip::connection::{Connection, MAGIC, VERSION};
use gitdb::gossip::message::{Announce, Message};
use gitdb::gossip::{ClusterKey, Gossip, GossipConfig};
use gitdb::merge::Strategy;
use gossip_support::{now_ms, open};

mod gossip_support;

const IDLE: usize = 2000;
const LORIS: usize = 50;

fn config(key: &ClusterKey, peers: &[String]) -> GossipConfig {
    let mut cfg = GossipConfig::new(Strategy::KeepBoth);
    cfg.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.peers = peers.to_vec();
    cfg.interval = Duration::from_millis(200);
    cfg.timeout = Duration::from_secs(3);
    cfg.key = key.clone();
    cfg
}

fn threads() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Raises the soft fd limit to the hard one: the test holds 2,000 sockets, the node its own.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur as usize > IDLE * 2 + 512,
        "the hard fd limit {} is too low for this test",
        lim.rlim_max
    );
}

/// Whether the node closed `s` (EOF or reset) rather than leaving it open.
fn closed_by_node(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // its preamble
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A real dialer's bytes to `addr` (preamble, handshake, an announce), recorded by a proxy.
fn record_session(addr: SocketAddr, key: &ClusterKey, rt: &tokio::runtime::Runtime) -> Vec<u8> {
    rt.block_on(async {
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let paddr = proxy.local_addr().unwrap();
        let rec = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut client, _) = proxy.accept().await.unwrap();
            let mut server = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut recorded = Vec::new();
            let mut a = [0u8; 4096];
            let mut b = [0u8; 4096];
            loop {
                tokio::select! {
                    n = client.read(&mut a) => match n {
                        Ok(0) | Err(_) => break,
                        Ok(n) => { recorded.extend_from_slice(&a[..n]); let _ = server.write_all(&a[..n]).await; }
                    },
                    n = server.read(&mut b) => match n {
                        Ok(0) | Err(_) => break,
                        Ok(n) => { let _ = client.write_all(&b[..n]).await; }
                    },
                }
            }
            recorded
        });
        let mut c = Connection::connect(paddr, key, Duration::from_secs(5))
            .await
            .unwrap();
        c.send(&Message::Announce(Announce {
            node: "replayed".into(),
            listen: None,
            head: None,
            clock: vec![],
            hlc_millis: 0,
            hlc_counter: 0,
            peers: vec![],
            wants_yours: false,
        }))
        .await
        .unwrap();
        assert!(matches!(
            c.recv(Duration::from_secs(5)).await,
            Ok(Message::Announce(_))
        ));
        drop(c);
        rec.await.unwrap()
    })
}

#[test]
fn a_flooded_node_keeps_serving_its_good_peers_and_reads() {
    raise_fd_limit();
    let key = ClusterKey::from_secret(b"the flood test's cluster key, 32 bytes or more");
    let (_da, a) = open("a");
    let ga = Gossip::start(a.clone(), config(&key, &[])).unwrap();
    let addr = ga.local_addr().unwrap();
    let (_db, b) = open("b");
    // Only b dials: everything a gets from b comes through a's flooded listener.
    let gb = Gossip::start(b.clone(), config(&key, &[addr.to_string()])).unwrap();
    a.set("r", b"read me").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let replay = record_session(addr, &key, &rt);
    let threads_before = threads();

    // The flood: idle sockets, slow loris, wrong keys, replays.
    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loris = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut preamble = MAGIC.to_vec();
            preamble.extend_from_slice(&VERSION.to_be_bytes());
            let mut socks: Vec<TcpStream> = (0..LORIS)
                .map(|_| TcpStream::connect(addr).unwrap())
                .collect();
            let mut sent = 0;
            let mut cut_off = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for s in &mut socks {
                    if s.write_all(&preamble[sent % preamble.len()..][..1])
                        .is_err()
                    {
                        cut_off += 1;
                        *s = TcpStream::connect(addr).unwrap();
                    }
                }
                sent += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            (cut_off, socks)
        })
    };
    let wrong = ClusterKey::from_secret(b"not the cluster key, but 32 bytes long at least");
    rt.block_on(async {
        for _ in 0..20 {
            let r = Connection::connect(addr, &wrong, Duration::from_secs(5)).await;
            assert!(r.is_err(), "a handshake with a wrong key succeeded");
        }
    });
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&replay);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The node answers the replayed handshake, then cannot read the replayed frames
        // (keys of a new ephemeral exchange) and hangs up: it must never get further.
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(
            got.len() < 200,
            "the node sent {} bytes to a replay",
            got.len()
        );
    }

    // Meanwhile: a commit on b reaches a, and a's reads stay fast.
    let started = Instant::now();
    b.set("from-b", b"1").unwrap();
    b.commit("c", now_ms()).unwrap();
    let mut lat = Vec::new();
    // A second of reads under the flood, then until the commit arrived.
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(1) {
        let t = Instant::now();
        assert_eq!(a.get("r").unwrap().as_deref(), Some(&b"read me"[..]));
        lat.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    let deadline = Duration::from_secs(30);
    while a.get("from-b").unwrap().is_none() {
        assert!(started.elapsed() < deadline, "b's commit never reached a");
        let t = Instant::now();
        assert_eq!(a.get("r").unwrap().as_deref(), Some(&b"read me"[..]));
        lat.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    let propagated = started.elapsed();
    lat.sort();
    let pct = |p: usize| lat[(lat.len() - 1) * p / 100];
    eprintln!(
        "flood: {IDLE} idle + {LORIS} slow-loris connections: b's commit reached a in \
         {propagated:?}; a's get over {} reads: p50 {:?}, p99 {:?}, max {:?}",
        lat.len(),
        pct(50),
        pct(99),
        lat.last().unwrap()
    );

    // Bounds: every idle socket is closed by the node within its handshake deadline (or
    // pushed out by newer ones), and the node made no thread per connection.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        idle.retain_mut(|s| !closed_by_node(s));
        if idle.is_empty() {
            break;
        }
        assert!(
            Instant::now() < end,
            "{} idle connections still open",
            idle.len()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (cut_off, mut socks) = loris.join().unwrap();
    // A slow loris is cut off at the handshake deadline, a byte a second notwithstanding.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        socks.retain_mut(|s| !closed_by_node(s));
        if socks.is_empty() {
            break;
        }
        assert!(
            Instant::now() < end,
            "{} slow-loris connections still open",
            socks.len()
        );
    }
    eprintln!("slow loris: {cut_off} connections found cut off while writing");
    let threads_after = threads();
    eprintln!("threads: {threads_before} before the flood, {threads_after} after");
    assert!(threads_after <= threads_before + 8);
    drop((ga, gb));
}
