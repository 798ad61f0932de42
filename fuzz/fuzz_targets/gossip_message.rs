//! Any bytes as a gossip message body or deflated batch (see `gitdb::fuzzing::wire::message_decode`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gitdb::fuzzing::wire::message_decode(data));
