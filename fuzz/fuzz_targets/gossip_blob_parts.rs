//! Blob parts claiming any sizes (see `gitdb::fuzzing::wire::blob_parts`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gitdb::fuzzing::wire::blob_parts(data));
