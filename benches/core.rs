//! Storage-engine benchmark: gitdb against the git CLI on the same data, in one run.
//!
//! `cargo bench --bench core` (or `scripts/bench-core.sh`). Sizes: `GITDB_BENCH_KEYS`
//! (default 100000) and `GITDB_BENCH_OPEN_KEYS` (default 1000000) for the lazy-open check.
//! Under `cargo test --all-targets` (no `--bench` argument) it returns at once.
//!
//! Measured:
//! - bulk: setting and committing N new small keys vs `git add -A && git commit` of N files;
//! - one key: committing one changed key in the N-key store vs `git commit -a` of a one-line
//!   change in a worktree of the same N files;
//! - reads: cold and warm `get` of committed keys, and of uncommitted ones;
//! - open: `GitDb::open` of an N-key and an M-key repository (built with `git fast-import`) in a
//!   fresh process each, with the memory it holds afterwards.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitdb::db::Options;
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

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(st.success(), "git {args:?}");
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Child mode: open `repo`, report open time, RSS growth, and first/warm get times.
fn open_probe(repo: &Path, probe_key: &str) {
    let before = rss_kib();
    let (db, open) = time(|| {
        GitDb::open(
            repo,
            NodeId::new("probe").unwrap(),
            Options {
                read_only: true,
                ..Options::default()
            },
        )
        .unwrap()
    });
    let after_open = rss_kib();
    let (v, first) = time(|| db.get(probe_key).unwrap());
    assert!(v.is_some(), "probe key {probe_key} missing");
    let (_, warm) = time(|| {
        for _ in 0..1000 {
            std::hint::black_box(db.get(probe_key).unwrap());
        }
    });
    println!(
        "{} {} {} {} {}",
        open.as_nanos(),
        after_open.saturating_sub(before),
        first.as_nanos(),
        warm.as_nanos() / 1000,
        rss_kib().saturating_sub(before)
    );
}

/// A repository with `n` keys in one commit on `main`, made by `git fast-import` (a pack).
fn fast_import_repo(dir: &Path, n: usize) -> PathBuf {
    let repo = dir.join(format!("fi-{n}.git"));
    git(
        dir,
        &["init", "-q", "--bare", "-b", "main", repo.to_str().unwrap()],
    );
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(&repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut w = std::io::BufWriter::new(child.stdin.take().unwrap());
        writeln!(w, "commit refs/heads/main").unwrap();
        writeln!(w, "committer bench <bench@example.com> 1700000000 +0000").unwrap();
        writeln!(w, "data 6\nimport").unwrap();
        for i in 0..n {
            let v = format!("value {i}\n");
            writeln!(w, "M 100644 inline {}\ndata {}\n{v}", key(i), v.len()).unwrap();
        }
        writeln!(w).unwrap();
    }
    assert!(child.wait().unwrap().success());
    repo
}

fn probe(repo: &Path, n: usize) -> (Duration, u64, Duration, Duration, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--open-probe", repo.to_str().unwrap(), &key(n / 2)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    let f: Vec<u64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (
        Duration::from_nanos(f[0]),
        f[1],
        Duration::from_nanos(f[2]),
        Duration::from_nanos(f[3]),
        f[4],
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--open-probe") {
        open_probe(Path::new(&args[2]), &args[3]);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let n = env_usize("GITDB_BENCH_KEYS", 100_000);
    let open_n = env_usize("GITDB_BENCH_OPEN_KEYS", 1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    println!(
        "gitdb core benchmark, {n} keys (1,000 per directory), {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // --- git CLI baseline ---------------------------------------------------------------------
    let work = tmp.path().join("git-work");
    for i in 0..n {
        let p = work.join(key(i));
        if i % 1000 == 0 {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        }
        std::fs::write(&p, format!("value {i}\n")).unwrap();
    }
    git(&work, &["init", "-q", "-b", "main"]);
    let (_, git_bulk) = time(|| {
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "bulk"]);
    });
    let mut git_one = Vec::new();
    for r in 0..3 {
        std::fs::write(work.join(key(n / 2)), format!("changed {r}\n")).unwrap();
        git_one.push(time(|| git(&work, &["commit", "-q", "-a", "-m", "one"])).1);
    }
    let git_one = median(git_one);

    // --- gitdb --------------------------------------------------------------------------------
    let repo = tmp.path().join("gitdb.git");
    let db = GitDb::open(&repo, NodeId::new("bench").unwrap(), Options::default()).unwrap();
    let (_, set_all) = time(|| {
        for i in 0..n {
            db.set(&key(i), format!("value {i}\n").as_bytes()).unwrap();
        }
    });
    let (_, commit_all) = time(|| db.commit("bulk", 1_000).unwrap());
    let mut one = Vec::new();
    for r in 0..20 {
        db.set(&key(n / 2), format!("changed {r}\n").as_bytes())
            .unwrap();
        one.push(time(|| db.commit("one", 2_000 + r).unwrap()).1);
    }
    let one = median(one);
    let mut one_total = Vec::new();
    for r in 0..20 {
        one_total.push(
            time(|| {
                db.set(&key(n / 3), format!("again {r}\n").as_bytes())
                    .unwrap();
                db.commit("one", 3_000 + r).unwrap()
            })
            .1,
        );
    }
    let one_total = median(one_total);

    // Reads of committed keys: a cold pass over 10,000 keys, then warm passes.
    let sample: Vec<String> = (0..n).step_by((n / 10_000).max(1)).map(key).collect();
    let (_, cold) = time(|| {
        for k in &sample {
            std::hint::black_box(db.get(k).unwrap());
        }
    });
    let (_, warm) = time(|| {
        for _ in 0..10 {
            for k in &sample {
                std::hint::black_box(db.get(k).unwrap());
            }
        }
    });
    let cold_per = cold / sample.len() as u32;
    let warm_per = warm / (10 * sample.len()) as u32;
    for k in sample.iter().take(1000) {
        db.set(k, b"staged").unwrap();
    }
    let (_, staged) = time(|| {
        for _ in 0..100 {
            for k in sample.iter().take(1000) {
                std::hint::black_box(db.get(k).unwrap());
            }
        }
    });
    let staged_per = staged / 100_000;
    db.rollback().unwrap();
    drop(db);

    // Lazy open: an N-key and an M-key repository, each in a fresh process.
    let small = probe(&repo, n);
    let (big_repo, build) = time(|| fast_import_repo(tmp.path(), open_n));
    let big = probe(&big_repo, open_n);

    println!();
    println!("| measurement | git CLI | gitdb | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| commit 1 changed key in {n} keys | {} (`git commit -a`) | {} (commit) / {} (set+commit) | {:.0}× faster |",
        ms(git_one),
        ms(one),
        ms(one_total),
        git_one.as_secs_f64() / one_total.as_secs_f64()
    );
    println!(
        "| {n} new keys, set + commit | {} (`git add -A && git commit`) | {} ({} set + {} commit) | {:.1}× faster |",
        ms(git_bulk),
        ms(set_all + commit_all),
        ms(set_all),
        ms(commit_all),
        git_bulk.as_secs_f64() / (set_all + commit_all).as_secs_f64()
    );
    println!(
        "| get, committed key, cold (10,000 keys) | | {:.1} µs | |",
        cold_per.as_secs_f64() * 1e6
    );
    println!(
        "| get, committed key, warm | | {:.2} µs | |",
        warm_per.as_secs_f64() * 1e6
    );
    println!(
        "| get, uncommitted key | | {:.2} µs | |",
        staged_per.as_secs_f64() * 1e6
    );
    for (label, keys, p) in [("N", n, small), ("M", open_n, big)] {
        let _ = label;
        println!(
            "| open {keys}-key repository (fresh process) | | {} open, +{} KiB RSS; first get {}, warm get {:.2} µs; +{} KiB after | |",
            ms(p.0),
            p.1,
            ms(p.2),
            p.3.as_secs_f64() * 1e6,
            p.4
        );
    }
    println!(
        "(building the {open_n}-key repository with git fast-import took {})",
        ms(build)
    );
}
