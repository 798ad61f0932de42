//! Any bytes as a journal file: decoding never panics, never allocates past the record limit,
//! and the good prefix it reports decodes to the same records again.
#![no_main]
use gitdb::db::journal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (records, good) = journal::decode(data);
    assert!(good <= data.len());
    let (again, good_again) = journal::decode(&data[..good]);
    assert_eq!(records, again);
    assert_eq!(good, good_again);
});
