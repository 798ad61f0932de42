//! Plaintext chunks from an authenticated peer after a real handshake (see `gitdb::fuzzing::wire::frames`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gitdb::fuzzing::wire::frames(data));
