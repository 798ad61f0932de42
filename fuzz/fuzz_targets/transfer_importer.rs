//! Generated pull items (hostile trees, edits, commits) into the importer (see `gitdb::fuzzing::transfer`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gitdb::fuzzing::transfer::importer(data));
