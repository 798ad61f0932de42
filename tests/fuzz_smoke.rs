//! Every fuzz target's body (`gitdb::fuzzing`, the same functions `fuzz/` hands libFuzzer's
//! inputs to) run on stable with seeded random inputs: a few thousand each, a few seconds at
//! most, so `cargo test` exercises every target and a change that breaks one fails here
//! before anyone runs cargo-fuzz. The seed of a failing run is printed; rerun it with
//! `FUZZ_SEED=<seed> cargo test --test fuzz_smoke`. Long runs (cargo-fuzz): the README's
//! "Tests and fuzzing" section.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Runs `target` on up to `runs` inputs of up to `max_len` bytes, for at most `budget`;
/// inputs are random bytes, or a mutation of an earlier input (a flipped byte, a cut), as a
/// poor man's libFuzzer. Returns how many ran.
fn drive(name: &str, runs: usize, max_len: usize, budget: Duration, target: impl Fn(&[u8])) {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("{name}: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut done = 0;
    while done < runs && started.elapsed() < budget {
        let input = if !corpus.is_empty() && rng.random_bool(0.5) {
            let mut v = corpus[rng.random_range(0..corpus.len())].clone();
            if !v.is_empty() {
                let i = rng.random_range(0..v.len());
                match rng.random_range(0..3) {
                    0 => v[i] = rng.random(),
                    1 => v.truncate(i),
                    _ => v.insert(i, rng.random()),
                }
            }
            v
        } else {
            let mut v = vec![0u8; rng.random_range(0..=max_len)];
            rng.fill_bytes(&mut v);
            v
        };
        target(&input);
        if corpus.len() < 256 {
            corpus.push(input);
        }
        done += 1;
    }
    eprintln!("{name}: {done} inputs in {:?}", started.elapsed());
    assert!(done >= runs.min(10), "{name}: only {done} inputs ran");
}

fn text(f: impl Fn(&str)) -> impl Fn(&[u8]) {
    move |b| f(&String::from_utf8_lossy(b))
}

const BUDGET: Duration = Duration::from_secs(5);

#[test]
fn journal_decode() {
    drive(
        "journal_decode",
        5000,
        512,
        BUDGET,
        gitdb::fuzzing::journal_decode,
    );
}

#[test]
fn key_parse() {
    drive(
        "key_parse",
        5000,
        64,
        BUDGET,
        text(gitdb::fuzzing::key_parse),
    );
}

#[test]
fn commit_stamp() {
    drive(
        "commit_stamp",
        5000,
        256,
        BUDGET,
        text(gitdb::fuzzing::commit_stamp),
    );
}

#[test]
fn gossip_message() {
    drive(
        "gossip_message",
        5000,
        512,
        BUDGET,
        gitdb::fuzzing::wire::message_decode,
    );
}

#[test]
fn gossip_frames() {
    drive(
        "gossip_frames",
        2000,
        1024,
        BUDGET,
        gitdb::fuzzing::wire::frames,
    );
}

#[test]
fn gossip_handshake() {
    drive(
        "gossip_handshake",
        3000,
        256,
        BUDGET,
        gitdb::fuzzing::wire::handshake,
    );
}

#[test]
fn gossip_blob_parts() {
    drive(
        "gossip_blob_parts",
        5000,
        512,
        BUDGET,
        gitdb::fuzzing::wire::blob_parts,
    );
}

#[test]
fn transfer_importer() {
    drive(
        "transfer_importer",
        1000,
        512,
        BUDGET,
        gitdb::fuzzing::transfer::importer,
    );
}

#[test]
fn db_model() {
    drive(
        "db_model",
        300,
        1024,
        Duration::from_secs(10),
        gitdb::fuzzing::model::db,
    );
    let (ops, failed, checked) = gitdb::fuzzing::model::stats();
    eprintln!("db_model: {ops} operations, {failed} injected failures, {checked} reopens checked");
    assert!(
        failed > 0 && checked > 0,
        "the model never met a fault or a reopen"
    );
}
