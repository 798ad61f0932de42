//! Any commit message (a peer's or a user's): reading the gitdb stamp never panics, and a stamp
//! that was read writes back to trailers that read the same.
#![no_main]
use gitdb::db::CommitStamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let stamp = CommitStamp::from_message(s);
    let again = CommitStamp::from_message(&format!("x\n\n{}", stamp.trailers()));
    assert_eq!(stamp.clock, again.clock);
    assert_eq!(stamp.hlc, again.hlc);
    assert_eq!(stamp.node, again.node);
});
