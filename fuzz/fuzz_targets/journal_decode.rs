//! Any bytes as a journal file (see `gitdb::fuzzing::journal_decode`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gitdb::fuzzing::journal_decode(data));
