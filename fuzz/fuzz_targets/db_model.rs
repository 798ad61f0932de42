//! The db against a BTreeMap model with injected I/O errors (see `gitdb::fuzzing::model`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gitdb::fuzzing::model::db(data));
