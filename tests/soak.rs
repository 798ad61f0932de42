//! Soak, the driver of `scripts/soak.sh DURATION` (the suite runs 20 s): three daemons with
//! gossip on — two `gitdb-mount`s and a headless `gitdb serve` — writers on each (through the
//! mounts with fsync, through the door for the headless one), every node committing every
//! 2–4 s, so that merges run all the time (KeepBoth, the default). At the end: one last commit
//! on each, then the heads are identical, every acknowledged value is in that head and shows in
//! both mounts, the daemons' RSS (printed at the start and the end) did not grow without bound,
//! and no log holds an ERROR line.
//!
//! `GITDB_SOAK_SECS` sets the duration.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Mount;
use common::serve::Serve;

/// The acknowledged value of each key, all nodes together (each node writes keys of its own).
type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Resident set size of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Writes `node/k<n>` through a mount, 200 keys round-robin, fsync then close; a value counts
/// once both returned.
fn mount_writer(mnt: PathBuf, node: &'static str, acked: Acked, stop: Arc<AtomicBool>) -> u64 {
    std::fs::create_dir_all(mnt.join(node)).expect("writer dir");
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let key = format!("{node}/k{}", n % 200);
        let value = format!("{node} write {n}\n");
        let mut f = std::fs::File::create(mnt.join(&key)).expect("create");
        f.write_all(value.as_bytes()).expect("write");
        f.sync_all().expect("fsync");
        drop(f);
        acked.lock().unwrap().insert(key, value);
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    n
}

/// Sets `c/k<n>` through the headless node's door (`gitdb set`), one process a value.
fn door_writer(repo: PathBuf, acked: Acked, stop: Arc<AtomicBool>) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let key = format!("c/k{}", n % 200);
        let value = format!("c write {n}\n");
        common::gitdb_ok(&repo, &["set", &format!("/{key}"), &value]);
        acked.lock().unwrap().insert(key, value);
        n += 1;
    }
    n
}

fn head_of(repo: &Path) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["rev-parse", "--verify", "-q", "refs/heads/main"])
        .output()
        .expect("git");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Every value of `head`'s tree in `repo`, path → content, from one `git cat-file --batch`.
fn tree_values(repo: &Path, head: &str) -> BTreeMap<String, String> {
    let list = common::git(repo, &["ls-tree", "-r", "--name-only", head], None);
    let paths: Vec<&str> = list.lines().collect();
    let input: String = paths.iter().map(|p| format!("{head}:{p}\n")).collect();
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["cat-file", "--batch"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git cat-file");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("cat-file output");
    writer
        .join()
        .expect("stdin thread")
        .expect("write to cat-file");
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    // Each answer: "<id> blob <size>\n<content>\n".
    let mut rest = out.as_str();
    let mut values = BTreeMap::new();
    for p in paths {
        let (header, tail) = rest.split_once('\n').unwrap_or((rest, ""));
        let size: usize = header
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("cat-file answered {header:?} for {p}"));
        let (content, tail) = tail.split_at(size.min(tail.len()));
        values.insert(p.to_owned(), content.to_owned());
        rest = tail.strip_prefix('\n').unwrap_or(tail);
    }
    values
}

#[test]
fn three_nodes_under_load_converge_keep_every_value_and_stay_flat() {
    let secs: u64 = std::env::var("GITDB_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        format!("127.0.0.1:{}", l.local_addr().expect("addr").port())
    };
    let mut a = Mount::prepare("mnt", &[]);
    a.node_id = "a".into();
    a.spawn(&["--listen", &listen, "--interval", "1s"]);
    let mut b = Mount::prepare("mnt", &[]);
    b.node_id = "b".into();
    b.spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--peer",
        &listen,
        "--interval",
        "1s",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Serve::start(dir.path(), "c", &["--peer", &listen]);
    let pids = [
        ("a (mounted)", a.pid().expect("a")),
        ("b (mounted)", b.pid().expect("b")),
        ("c (headless)", c.pid().expect("c")),
    ];

    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let mut writers = vec![
        {
            let (mnt, ack, st) = (a.mnt.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || mount_writer(mnt, "a", ack, st))
        },
        {
            let (mnt, ack, st) = (b.mnt.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || mount_writer(mnt, "b", ack, st))
        },
        {
            let (repo, ack, st) = (c.repo.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || door_writer(repo, ack, st))
        },
    ];
    // Committers: one per node, every 2–4 s, the three out of step.
    let ctl = |m: &Mount| m.path(".gitdb/ctl");
    let targets: Vec<Box<dyn Fn() + Send>> = vec![
        {
            let p = ctl(&a);
            Box::new(move || std::fs::write(&p, "commit soak\n").expect("commit on a"))
        },
        {
            let p = ctl(&b);
            Box::new(move || std::fs::write(&p, "commit soak\n").expect("commit on b"))
        },
        {
            let r = c.repo.clone();
            Box::new(move || {
                common::gitdb_ok(&r, &["commit", "-m", "soak"]);
            })
        },
    ];
    for (i, commit) in targets.into_iter().enumerate() {
        let (st, n) = (stop.clone(), commits.clone());
        writers.push(std::thread::spawn(move || {
            let mut k = 0u64;
            while !st.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(
                    2_000 + (i as u64 * 700 + k * 450) % 2_000,
                ));
                commit();
                n.fetch_add(1, Ordering::SeqCst);
                k += 1;
            }
            0
        }));
    }

    // RSS: after a few seconds of load (start), every second (peak), and at the end.
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5.min(secs)));
    let start_rss: Vec<u64> = pids.iter().map(|(_, p)| rss_kib(*p)).collect();
    let mut peak_rss = start_rss.clone();
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        for (i, (_, p)) in pids.iter().enumerate() {
            peak_rss[i] = peak_rss[i].max(rss_kib(*p));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut ops = 0;
    for w in writers {
        ops += w.join().expect("writer or committer");
    }
    let end_rss: Vec<u64> = pids.iter().map(|(_, p)| rss_kib(*p)).collect();

    // The last commits, then convergence.
    a.sh_ok("echo commit last > .gitdb/ctl");
    b.sh_ok("echo commit last > .gitdb/ctl");
    common::gitdb_ok(&c.repo, &["commit", "-m", "last"]);
    let t = Instant::now();
    let deadline = t + Duration::from_secs(120);
    let head = loop {
        let heads = [head_of(&a.repo), head_of(&b.repo), head_of(&c.repo)];
        if heads[0].is_some() && heads.iter().all(|h| h == &heads[0]) {
            break heads[0].clone().expect("a head");
        }
        assert!(
            Instant::now() < deadline,
            "no convergence: {heads:?}\n{}\n{}",
            a.log_text(),
            b.log_text()
        );
        let _ = a.sh("echo sync > .gitdb/ctl");
        let _ = b.sh("echo sync > .gitdb/ctl");
        std::thread::sleep(Duration::from_millis(200));
    };
    let converge_ms = t.elapsed().as_millis();

    let acked = acked.lock().unwrap().clone();
    let values = tree_values(&a.repo, &head);
    let mut lost = Vec::new();
    for (key, want) in &acked {
        if values.get(key) != Some(want) {
            lost.push(format!(
                "{key}: head has {:?}, acknowledged {want:?}",
                values.get(key)
            ));
        }
        for m in [&a, &b] {
            let got = std::fs::read_to_string(m.path(key)).ok();
            assert_eq!(
                got.as_ref(),
                Some(want),
                "{key} through {}",
                m.mnt.display()
            );
        }
    }
    assert!(
        lost.is_empty(),
        "{} values lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    for repo in [&a.repo, &b.repo, &c.repo] {
        common::git(
            repo,
            &["fsck", "--strict", "--no-dangling", "--no-progress"],
            None,
        );
    }

    let c_log = std::fs::read_to_string(&c.log).unwrap_or_default();
    for (who, log) in [("a", a.log_text()), ("b", b.log_text()), ("c", c_log)] {
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" ERROR ") || l.contains("panicked"))
            .collect();
        assert!(errors.is_empty(), "node {who} logged errors: {errors:#?}");
    }
    let commits_made = common::git(&a.repo, &["rev-list", "--count", &head], None);
    eprintln!(
        "soak figures: {secs} s, 3 nodes, {ops} acknowledged writes ({} keys), {} commits \
         asked, {commits_made} commits in the final history, converged {converge_ms} ms after \
         the last commits, no value lost, no ERROR line",
        acked.len(),
        commits.load(Ordering::SeqCst)
    );
    for (i, (who, _)) in pids.iter().enumerate() {
        eprintln!(
            "soak RSS {who}: start {} MiB, peak {} MiB, end {} MiB",
            start_rss[i] / 1024,
            peak_rss[i].max(end_rss[i]) / 1024,
            end_rss[i] / 1024
        );
        // Bounded: the working set of a steady load, not a leak of every write. (The start is
        // taken after 5 s of load; caches fill up to their caps after that.)
        assert!(
            end_rss[i] <= start_rss[i] * 3 + 128 * 1024,
            "{who}: RSS grew from {} KiB to {} KiB",
            start_rss[i],
            end_rss[i]
        );
    }
}
