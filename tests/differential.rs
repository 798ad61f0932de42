//! Differential test: the same seeded random operations on the mount and on an ordinary
//! directory; every result (data or errno) must match, and so must the final trees.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use common::Mount;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

fn random_path(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(3);
    (0..depth)
        .map(|_| NAMES[rng.below(NAMES.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join("/")
}

#[derive(Debug, Clone)]
enum Op {
    Write(String, Vec<u8>),
    Append(String, Vec<u8>),
    Read(String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    Rename(String, String),
    List(String),
    Stat(String),
    Truncate(String, u64),
    /// Open for writing (create, truncate), write, optionally list the parent and stat the
    /// file and/or rename it while still open, write more, close.
    WriteOpen {
        path: String,
        data: Vec<u8>,
        look: bool,
        rename_to: Option<String>,
    },
}

fn random_op(rng: &mut Rng) -> Op {
    let p = random_path(rng);
    let data = |rng: &mut Rng| {
        let len = rng.below(20) as usize;
        (0..len)
            .map(|_| b'a' + rng.below(26) as u8)
            .collect::<Vec<u8>>()
    };
    match rng.below(12) {
        0 => Op::Write(p, data(rng)),
        1 => Op::Append(p, data(rng)),
        2 => Op::Read(p),
        3 => Op::Unlink(p),
        4 => Op::Mkdir(p),
        5 => Op::Rmdir(p),
        6 => Op::Rename(p, random_path(rng)),
        7 => {
            let depth = rng.below(3);
            let dir: Vec<&str> = (0..depth)
                .map(|_| NAMES[rng.below(NAMES.len() as u64) as usize])
                .collect();
            Op::List(dir.join("/"))
        }
        8 => Op::Stat(p),
        9 => Op::Truncate(p, rng.below(8)),
        _ => Op::WriteOpen {
            path: p,
            data: data(rng),
            look: rng.below(2) == 0,
            rename_to: (rng.below(2) == 0).then(|| random_path(rng)),
        },
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Data(Vec<u8>),
    Names(Vec<String>),
    Kind { dir: bool, len: Option<u64> },
    Err(i32),
    Steps(Vec<Outcome>),
}

fn errno(e: std::io::Error) -> Outcome {
    Outcome::Err(e.raw_os_error().unwrap_or(-1))
}

fn apply(root: &Path, op: &Op) -> Outcome {
    let p = |s: &str| root.join(s);
    let res = match op {
        Op::Write(path, data) => fs::write(p(path), data).map(|()| Outcome::Ok),
        Op::Append(path, data) => fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p(path))
            .and_then(|mut f| f.write_all(data))
            .map(|()| Outcome::Ok),
        Op::Read(path) => fs::read(p(path)).map(Outcome::Data),
        Op::Unlink(path) => fs::remove_file(p(path)).map(|()| Outcome::Ok),
        Op::Mkdir(path) => fs::create_dir(p(path)).map(|()| Outcome::Ok),
        Op::Rmdir(path) => fs::remove_dir(p(path)).map(|()| Outcome::Ok),
        Op::Rename(from, to) => fs::rename(p(from), p(to)).map(|()| Outcome::Ok),
        Op::List(dir) => fs::read_dir(p(dir)).and_then(|rd| {
            let mut names = Vec::new();
            for e in rd {
                let name = e?.file_name().to_string_lossy().into_owned();
                if !(dir.is_empty() && name == ".gitdb") {
                    names.push(name);
                }
            }
            names.sort();
            Ok(Outcome::Names(names))
        }),
        Op::Stat(path) => fs::symlink_metadata(p(path)).map(|m| Outcome::Kind {
            dir: m.is_dir(),
            len: (!m.is_dir()).then_some(m.len()),
        }),
        Op::WriteOpen {
            path,
            data,
            look,
            rename_to,
        } => fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(p(path))
            .map(|mut f| {
                let mut steps = vec![
                    f.write_all(data)
                        .map(|()| Outcome::Ok)
                        .unwrap_or_else(errno),
                ];
                if *look {
                    let parent = path.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
                    steps.push(apply(root, &Op::List(parent)));
                    steps.push(apply(root, &Op::Stat(path.clone())));
                }
                if let Some(to) = rename_to {
                    steps.push(apply(root, &Op::Rename(path.clone(), to.clone())));
                }
                steps.push(
                    f.write_all(b"+tail")
                        .map(|()| Outcome::Ok)
                        .unwrap_or_else(errno),
                );
                drop(f);
                Outcome::Steps(steps)
            }),
        Op::Truncate(path, len) => fs::OpenOptions::new()
            .write(true)
            .open(p(path))
            .and_then(|f| f.set_len(*len))
            .map(|()| Outcome::Ok),
    };
    res.unwrap_or_else(errno)
}

/// Every file (with contents) and directory below `root`, sorted.
fn snapshot(root: &Path, rel: &str, out: &mut Vec<(String, Option<Vec<u8>>)>) {
    let dir = if rel.is_empty() {
        root.to_owned()
    } else {
        root.join(rel)
    };
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .expect("read_dir")
        .map(|e| e.expect("entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if rel.is_empty() && name == ".gitdb" {
            continue;
        }
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if e.file_type().expect("type").is_dir() {
            out.push((path.clone(), None));
            snapshot(root, &path, out);
        } else {
            out.push((
                path.clone(),
                Some(fs::read(root.join(&path)).expect("read")),
            ));
        }
    }
}

fn run(seed: u64, steps: usize) {
    let m = Mount::start(&[]);
    let reference = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut history = Vec::new();
    for step in 0..steps {
        let op = random_op(&mut rng);
        let want = apply(reference.path(), &op);
        let got = apply(&m.mnt, &op);
        history.push(format!("{step}: {op:?} -> {want:?}"));
        if want != got {
            let tail = history[history.len().saturating_sub(40)..].join("\n");
            panic!(
                "seed {seed} step {step}: {op:?}\n reference: {want:?}\n mount:     {got:?}\nlast ops:\n{tail}\nlog:\n{}",
                m.log_text()
            );
        }
        if step % 50 == 49 && rng.below(2) == 0 {
            // Commits must not change what the mount shows.
            m.sh_ok("echo commit > .gitdb/ctl");
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    snapshot(reference.path(), "", &mut a);
    snapshot(&m.mnt, "", &mut b);
    assert_eq!(a, b, "seed {seed}: final trees differ");
}

#[test]
fn random_ops_match_a_real_directory_seed_1() {
    run(1, 1500);
}

#[test]
fn random_ops_match_a_real_directory_seed_2() {
    run(2, 1500);
}

#[test]
fn random_ops_match_a_real_directory_seed_3() {
    run(3, 1500);
}

#[test]
fn random_ops_match_a_real_directory_seed_4() {
    run(4, 1500);
}

#[test]
fn random_ops_match_a_real_directory_seed_5() {
    run(5, 1500);
}
