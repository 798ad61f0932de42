//! The daemon's own CPU per FUSE callback: fsbench's phases (create, overwrite, list,
//! unlink) driven on the filesystem core over a temp repository, without a kernel (see
//! `gitdb::fuse::bench`). Steady where ops/s at a mount are not, so it is the figure to
//! watch for a change to the hot path; the kernel's part of each request is the same for
//! every FUSE daemon and is not in it.
//!
//! `cargo bench --bench callbacks`; files per run: `GITDB_BENCH_FILES` (default 30000), runs:
//! `GITDB_BENCH_RUNS` (default 5), the median is shown. Under `cargo test --all-targets`
//! (no `--bench` argument) it returns at once.

use std::time::Duration;

use gitdb::fuse::bench::{Timings, run};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = env_usize("GITDB_BENCH_FILES", 30_000);
    let runs = env_usize("GITDB_BENCH_RUNS", 5).max(1);
    let all: Vec<Timings> = (0..runs)
        .map(|_| {
            let dir = tempfile::tempdir().expect("temp dir");
            run(dir.path(), n)
        })
        .collect();
    let phase = |f: fn(&Timings) -> Duration| median(all.iter().map(f).collect());
    println!("daemon code per file, {n} files in 50 directories, median of {runs} runs (µs)");
    for (name, d) in [
        (
            "create (getattr, lookup, mkdir, lookup, create, write, flush, release)",
            phase(|t| t.create),
        ),
        (
            "overwrite (open O_TRUNC, write, flush, release, getattr)",
            phase(|t| t.overwrite),
        ),
        ("list, per directory (getattr, readdir)", phase(|t| t.list)),
        ("unlink", phase(|t| t.unlink)),
    ] {
        println!("  {:>8.2}  {name}", d.as_secs_f64() * 1e6);
    }
}
