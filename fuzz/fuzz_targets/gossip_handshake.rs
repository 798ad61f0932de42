//! Any bytes as a dialer's preamble and handshake, to the responder (see `gitdb::fuzzing::wire::handshake`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gitdb::fuzzing::wire::handshake(data));
