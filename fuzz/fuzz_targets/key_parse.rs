//! Any string (see `gitdb::fuzzing::key_parse`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| gitdb::fuzzing::key_parse(s));
