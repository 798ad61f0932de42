//! Any string (see `gitdb::fuzzing::commit_stamp`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| gitdb::fuzzing::commit_stamp(s));
