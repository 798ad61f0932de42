//! Partitions and node loss between real hosts: every node is a `gitdb serve` daemon in a
//! network namespace of its own (tests/common/netns.rs), on its own address, talking to its
//! peers through a bridge with a cluster key, as separate machines would. The test drives each
//! node through its door (the `gitdb` client over the unix socket beside its repository), pulls
//! cables (`eth0` down), stops and restarts daemons, adds an empty node, and runs one node with
//! its clock an hour ahead (libfaketime). Every wait has a deadline counted in gossip intervals.

mod common;

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::netns::{Host, Net};
use common::serve::Serve;

/// The gossip interval of every node here: short, so that "a few intervals" is quick.
const INTERVAL: Duration = Duration::from_millis(100);
const PORT: u16 = 7420;
/// The deadline of a heal, in intervals: typically 3–20 are needed (the first exchange across
/// the healed link, then merges of ~0.2 s each in a debug build and the pushes they set off);
/// the rest is slack for a loaded machine. A node cut off from every peer keeps trying its
/// seeds each interval (gossip::peers), so backoff does not hold a heal up.
const HEAL: u32 = 80;
/// Failed exchanges with each peer a cut-off node must have seen before the heal.
const FAILURES_BEFORE_HEAL: u64 = 7;

/// One node: its host, its repository, and its daemon while it runs.
struct Node {
    name: String,
    host: Host,
    repo: PathBuf,
    log: PathBuf,
    peers: Vec<String>,
    env: Vec<(String, String)>,
    serve: Option<Serve>,
}

/// The nodes of one test and their network. Fields drop in order: the daemons are killed
/// before the namespaces are deleted.
struct Cluster {
    nodes: Vec<Node>,
    net: Net,
    key: PathBuf,
    merge: &'static str,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `n` hosts (no daemons yet) on `10.77.subnet.0/24`, nodes named a, b, c, …
    fn new(subnet: u8, merge: &'static str, n: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("cluster.key");
        std::fs::write(
            &key,
            format!("partition-test-key-{subnet}-0123456789abcdef\n"),
        )
        .unwrap();
        let mut c = Cluster {
            nodes: Vec::new(),
            net: Net::new(subnet),
            key,
            merge,
            dir,
        };
        for _ in 0..n {
            c.add_host();
        }
        c
    }

    fn add_host(&mut self) -> usize {
        let i = self.nodes.len();
        let name = ((b'a' + i as u8) as char).to_string();
        let host = self.net.add_host();
        self.nodes.push(Node {
            repo: self.dir.path().join(format!("{name}.git")),
            log: self.dir.path().join(format!("{name}.log")),
            name,
            host,
            peers: Vec::new(),
            env: Vec::new(),
            serve: None,
        });
        i
    }

    fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.nodes[i].host.ip)
    }

    /// Starts node `i`'s daemon in its namespace, knowing the nodes `seeds`.
    fn start(&mut self, i: usize, seeds: &[usize]) {
        self.nodes[i].peers = seeds.iter().map(|&s| self.addr(s)).collect();
        self.restart(i);
    }

    /// Starts node `i` again with the seeds and environment it had.
    fn restart(&mut self, i: usize) {
        let listen = self.addr(i);
        let n = &self.nodes[i];
        let mut cmd = Net::command(&n.host, env!("CARGO_BIN_EXE_gitdb"));
        cmd.args([
            "--repo",
            n.repo.to_str().unwrap(),
            "--node-id",
            &n.name,
            "serve",
        ])
        .args([
            "--listen",
            &listen,
            "--interval",
            "100ms",
            "--merge",
            self.merge,
        ])
        .arg("--cluster-key-file")
        .arg(&self.key);
        for p in &n.peers {
            cmd.args(["--peer", p]);
        }
        for (k, v) in &n.env {
            cmd.env(k, v);
        }
        let serve = Serve::launch(cmd, n.repo.clone(), n.log.clone());
        assert_eq!(serve.addr, listen);
        self.nodes[i].serve = Some(serve);
    }

    /// SIGTERM to node `i`; its exit status.
    fn stop(&mut self, i: usize) -> ExitStatus {
        self.nodes[i].serve.take().expect("running").stop()
    }

    /// The `gitdb` client on node `i`'s repository (through its daemon's door).
    fn client(&self, i: usize, args: &[&str]) -> std::process::Output {
        let n = &self.nodes[i];
        Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .args(["--repo", n.repo.to_str().unwrap(), "--node-id", &n.name])
            .args(args)
            .output()
            .expect("run gitdb")
    }

    fn client_ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.client(i, args);
        assert!(
            out.status.success(),
            "node {} gitdb {args:?}: {}",
            self.nodes[i].name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sets each `key = value` on node `i` and commits them; the new head.
    fn write(&self, i: usize, pairs: &[(&str, &str)]) -> String {
        for (k, v) in pairs {
            // From stdin: a value may be larger than one argument may be.
            let n = &self.nodes[i];
            let mut child = Command::new(env!("CARGO_BIN_EXE_gitdb"))
                .args(["--repo", n.repo.to_str().unwrap(), "--node-id", &n.name])
                .args(["set", k])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run gitdb");
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), v.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "node {} set {k}: {}",
                n.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.client_ok(i, &["commit", "-m", "partition test"])
            .trim()
            .to_owned()
    }

    fn get(&self, i: usize, key: &str) -> Option<String> {
        let out = self.client(i, &["get", key]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn head(&self, i: usize) -> Option<String> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&self.nodes[i].repo)
            .args(["rev-parse", "--verify", "-q", "refs/heads/main"])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Whether the nodes `which` all have one head.
    fn one_head(&self, which: &[usize]) -> bool {
        let h = self.head(which[0]);
        h.is_some() && which.iter().all(|&i| self.head(i) == h)
    }

    fn status(&self, i: usize) -> serde_json::Value {
        serde_json::from_str(&self.client_ok(i, &["status"])).unwrap()
    }

    /// Node `i`'s HLC, milliseconds part.
    fn hlc_millis(&self, i: usize) -> u64 {
        let s = self.status(i);
        let hlc = s["hlc"].as_str().unwrap().to_owned();
        hlc.split('.').next().unwrap().parse().unwrap()
    }

    fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// The last lines of every node's log, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let text = self.log_text(i);
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            out.push_str(&format!(
                "\n--- node {} ({}) head {:?}\n{}",
                n.name,
                n.host.ip,
                self.head(i),
                tail.join("\n")
            ));
        }
        out
    }

    /// Polls `cond` until it holds; panics naming `what` (with the logs) after `intervals`
    /// gossip intervals. How long it took.
    fn wait(&self, what: &str, intervals: u32, mut cond: impl FnMut(&Cluster) -> bool) -> Duration {
        let start = Instant::now();
        let end = start + INTERVAL * intervals;
        loop {
            if cond(self) {
                return start.elapsed();
            }
            if Instant::now() > end {
                panic!(
                    "timed out after {intervals} intervals waiting for {what}{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn fsck(&self, i: usize) {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&self.nodes[i].repo)
            .args(["fsck", "--strict"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "node {}: {}",
            self.nodes[i].name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn intervals(d: Duration) -> f64 {
    d.as_secs_f64() / INTERVAL.as_secs_f64()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Three nodes, each seeded with both others; a first commit on a that all of them hold.
fn three_nodes(subnet: u8, merge: &'static str) -> Cluster {
    let mut c = Cluster::new(subnet, merge, 3);
    c.start(0, &[1, 2]);
    c.start(1, &[0, 2]);
    c.start(2, &[0, 1]);
    let head = c.write(0, &[("base/k", "0")]);
    c.wait("every node at a's first commit", 100, |c| {
        (0..3).all(|i| c.head(i).as_deref() == Some(&*head))
    });
    c
}

/// Waits until node `i` has failed to reach each of its peers [`FAILURES_BEFORE_HEAL`] times:
/// long enough that backoff would hold the heal up (0.1 s × 2^7 = 12.8 s, past [`HEAL`]) if it
/// still applied.
fn wait_cut_off(c: &Cluster, i: usize) {
    c.wait("the cut-off node failing to reach its peers", 200, |c| {
        c.status(i)["peers"].as_array().is_some_and(|ps| {
            !ps.is_empty()
                && ps
                    .iter()
                    .all(|p| p["failures"].as_u64() >= Some(FAILURES_BEFORE_HEAL))
        })
    });
}

/// The keys each side writes while c is cut off, and the one both write.
const WRITES: [(usize, &str, &str); 5] = [
    (0, "left/a", "a1"),
    (1, "left/b", "b1"),
    (2, "right/c", "c1"),
    (0, "left/a2", "a2"),
    (2, "right/c2", "c2"),
];

/// c cut off; a and b on one side, c on the other, each writing keys of its own and `shared`
/// (a first, then c); healed. Returns the cluster, converged, and how long the heal took.
fn partition_and_heal(subnet: u8, merge: &'static str) -> (Cluster, Duration) {
    let c = three_nodes(subnet, merge);
    c.net.cut(&c.nodes[2].host);
    c.write(0, &[("left/a", "a1"), ("shared", "from a")]);
    c.write(1, &[("left/b", "b1")]);
    c.write(2, &[("right/c", "c1"), ("shared", "from c")]);
    c.write(0, &[("left/a2", "a2")]);
    c.write(2, &[("right/c2", "c2")]);
    c.wait("a and b at one head holding both their writes", 100, |c| {
        c.one_head(&[0, 1])
            && c.get(0, "left/b").as_deref() == Some("b1")
            && c.get(1, "left/a2").as_deref() == Some("a2")
    });
    wait_cut_off(&c, 2);
    // The partition is real: nothing crossed it.
    assert_ne!(c.head(2), c.head(0));
    assert_eq!(c.get(2, "left/a"), None, "{}", c.logs());
    assert_eq!(c.get(0, "right/c"), None, "{}", c.logs());

    c.net.heal(&c.nodes[2].host);
    // One head on all three holds every write: each node's head holds its own.
    let took = c.wait("one head on all three nodes after the heal", HEAL, |c| {
        c.one_head(&[0, 1, 2])
    });
    eprintln!(
        "{merge}: one head {:.0} ms ({:.1} intervals) after the heal",
        took.as_secs_f64() * 1000.0,
        intervals(took)
    );
    for i in 0..3 {
        for (_, k, v) in WRITES {
            assert_eq!(c.get(i, k).as_deref(), Some(v), "node {i} {k}");
        }
        assert_eq!(c.get(i, "base/k").as_deref(), Some("0"));
        c.fsck(i);
    }
    (c, took)
}

#[test]
fn a_cut_off_node_heals_into_one_head_and_keep_both_loses_no_write() {
    let (c, _) = partition_and_heal(1, "keep-both");
    for i in 0..3 {
        let shared = c.get(i, "shared").unwrap();
        assert!(
            shared.contains("<<<<<<< a")
                && shared.contains("from a")
                && shared.contains("=======")
                && shared.contains("from c")
                && shared.contains(">>>>>>> c"),
            "node {i} holds {shared:?}"
        );
    }
}

#[test]
fn a_cut_off_node_heals_into_one_head_and_lww_decides_alike_everywhere() {
    let (c, _) = partition_and_heal(2, "lww");
    // c wrote `shared` after a did (and "c" > "a" breaks a tie): its write is the later one.
    for i in 0..3 {
        assert_eq!(c.get(i, "shared").as_deref(), Some("from c"), "node {i}");
    }
}

/// The keep-both partition again while busy loops hold every CPU: the daemons, the kernel's
/// bridge and the test's clients all compete for the two cores.
#[test]
fn a_cut_off_node_heals_into_one_head_with_every_cpu_busy() {
    let _busy = common::BusyCpus::start();
    let (c, _) = partition_and_heal(3, "keep-both");
    for i in 0..3 {
        let shared = c.get(i, "shared").unwrap();
        assert!(
            shared.contains("from a") && shared.contains("from c"),
            "{shared:?}"
        );
    }
}

#[test]
fn a_stopped_node_catches_up_when_it_restarts() {
    let mut c = three_nodes(4, "keep-both");
    assert!(c.stop(2).success(), "{}", c.log_text(2));
    c.write(0, &[("while/down/a", "a")]);
    c.write(1, &[("while/down/b", "b")]);
    c.write(0, &[("while/down/a2", "a2")]);
    // "A while": long enough that a has failed to reach c a few times and backs off.
    c.wait("a and b at one head, c given up on a few times", 200, |c| {
        c.one_head(&[0, 1])
            && c.get(1, "while/down/a2").is_some()
            && c.status(0)["peers"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["node"] == "c" && p["failures"].as_u64() >= Some(3))
            })
    });
    assert_ne!(c.head(2), c.head(0));
    c.restart(2);
    let took = c.wait("c at the others' head", 100, |c| {
        c.one_head(&[0, 1, 2]) && c.get(2, "while/down/a2").as_deref() == Some("a2")
    });
    eprintln!(
        "restarted node caught up in {:.1} intervals",
        intervals(took)
    );
    assert_eq!(c.get(2, "while/down/a").as_deref(), Some("a"));
    assert_eq!(c.get(2, "while/down/b").as_deref(), Some("b"));
    c.fsck(2);
}

#[test]
fn a_new_empty_node_knowing_one_seed_gets_everything_and_is_heard() {
    let mut c = three_nodes(5, "keep-both");
    let big = "x".repeat(300_000);
    let mut keys: Vec<(String, String)> = (0..20)
        .map(|i| (format!("dir{}/key{i}", i % 4), format!("value {i}")))
        .collect();
    keys.push(("big/value".into(), big.clone()));
    for (n, chunk) in keys.chunks(7).enumerate() {
        let pairs: Vec<(&str, &str)> = chunk.iter().map(|(k, v)| (&**k, &**v)).collect();
        c.write(n % 3, &pairs);
    }
    c.wait("the three nodes at one head", 100, |c| {
        c.one_head(&[0, 1, 2]) && c.get(2, "dir0/key0").is_some()
    });

    let d = c.add_host();
    c.start(d, &[0]);
    let took = c.wait("the new node at the cluster's head", 100, |c| {
        c.one_head(&[0, 1, 2, 3])
    });
    eprintln!(
        "new node had everything in {:.1} intervals",
        intervals(took)
    );
    for (k, v) in &keys {
        assert_eq!(c.get(d, k).as_deref(), Some(&**v), "{k}");
    }
    // The others hear of it through a's announces: a write on d reaches c, which d never knew.
    c.write(d, &[("from/d", "hello")]);
    c.wait("d's write on every node", 100, |c| {
        c.one_head(&[0, 1, 2, 3]) && c.get(2, "from/d").as_deref() == Some("hello")
    });
    c.fsck(d);
}

/// A node started before its only seed (a cluster booting in any order) fails to reach it
/// again and again; once the seed is up, the node reaches it within an interval or so, not
/// after the backoff it built up (12.8 s after seven failures, up to 30 s): a node whose every
/// peer failed keeps trying its seeds each round. The seed does not know the node, so only the
/// node's own dial can bring them together.
#[test]
fn a_node_started_before_its_seed_reaches_it_as_soon_as_it_is_up() {
    let mut c = Cluster::new(7, "keep-both", 2);
    c.start(1, &[0]);
    wait_cut_off(&c, 1);
    c.start(0, &[]);
    let head = c.write(0, &[("booted", "late")]);
    let took = c.wait("the early node at the seed's commit", HEAL, |c| {
        c.head(1).as_deref() == Some(&*head)
    });
    eprintln!(
        "early node reached its seed in {:.1} intervals",
        intervals(took)
    );
    assert_eq!(c.get(1, "booted").as_deref(), Some("late"));
}

/// libfaketime's preload library, as Debian's `faketime` package installs it.
fn libfaketime() -> String {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("libfaketime not found (apt-get install faketime; scripts/test.sh does)")
        })
        .to_string()
}

/// The commit `rev` of node `i`: its Gitdb-Hlc milliseconds and its committer time.
fn commit_times(c: &Cluster, i: usize, rev: &str) -> (u64, u64) {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(&c.nodes[i].repo)
        .args(["log", "-1", "--format=%ct%n%B", rev])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let seconds: u64 = text.lines().next().unwrap().parse().unwrap();
    let hlc = text
        .lines()
        .find_map(|l| l.strip_prefix("Gitdb-Hlc: "))
        .unwrap_or_else(|| panic!("no Gitdb-Hlc in {text}"));
    (hlc.split('.').next().unwrap().parse().unwrap(), seconds)
}

#[test]
fn a_node_an_hour_ahead_drags_no_clock_and_lww_decides_alike_everywhere() {
    const HOUR: u64 = 3_600_000;
    // The bound the daemons keep (src/db/clock.rs), plus slack for the test's own steps.
    const BOUND: u64 = 60_000 + 5_000;
    let mut c = Cluster::new(6, "lww", 3);
    c.nodes[2].env = vec![
        ("LD_PRELOAD".into(), libfaketime()),
        ("FAKETIME".into(), "+1h".into()),
        // Timers and timeouts keep the real pace; only the wall clock is off.
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ];
    c.start(0, &[1, 2]);
    c.start(1, &[0, 2]);
    c.start(2, &[0, 1]);
    let s = 2;

    // libfaketime really moves the daemon's clock: its commit is stamped an hour ahead.
    let own = c.write(s, &[("s/own", "1")]);
    let (hlc, _) = commit_times(&c, s, &own);
    let ahead = hlc.saturating_sub(now_ms());
    assert!(
        (HOUR - BOUND..HOUR + BOUND).contains(&ahead),
        "s's commit is {ahead} ms ahead, not an hour: is libfaketime working?"
    );
    c.wait("everyone at s's commit", 100, |c| c.one_head(&[0, 1, 2]));
    for i in 0..2 {
        let h = c.hlc_millis(i);
        assert!(
            h <= now_ms() + BOUND,
            "node {i}'s HLC followed s: {} s ahead",
            (h - now_ms()) / 1000
        );
    }

    // Concurrent writes of one key: s first (by real time), a after. LWW goes by the stamps,
    // so s's (an hour later) wins — and wins on every node alike.
    c.net.cut(&c.nodes[s].host);
    c.write(s, &[("k", "skewed")]);
    c.write(0, &[("k", "honest")]);
    c.wait("b at a's write", 100, |c| c.one_head(&[0, 1]));
    wait_cut_off(&c, s);
    c.net.heal(&c.nodes[s].host);
    c.wait("one head after the heal", HEAL, |c| {
        c.one_head(&[0, 1, 2]) && c.get(1, "k").as_deref() == Some("skewed")
    });
    for i in 0..3 {
        assert_eq!(c.get(i, "k").as_deref(), Some("skewed"), "node {i}");
    }
    for i in 0..2 {
        assert!(c.hlc_millis(i) <= now_ms() + BOUND, "node {i}");
    }

    // A later write on a honest node is stamped and dated near real time (not an hour ahead),
    // and still wins: it saw s's write, and LWW asks causality before the HLC.
    let after = c.write(0, &[("k", "after")]);
    let (hlc, seconds) = commit_times(&c, 0, &after);
    assert!(hlc <= now_ms() + BOUND, "a's commit stamped {hlc}");
    assert!(
        seconds * 1000 <= now_ms() + BOUND,
        "a's commit dated {seconds}"
    );
    c.wait("a's later write everywhere", 100, |c| {
        c.one_head(&[0, 1, 2]) && (0..3).all(|i| c.get(i, "k").as_deref() == Some("after"))
    });
    // The operator is told which node's clock is off.
    assert!(
        c.log_text(0).contains("node c's clock is") || c.log_text(1).contains("node c's clock is"),
        "{}",
        c.logs()
    );
}
