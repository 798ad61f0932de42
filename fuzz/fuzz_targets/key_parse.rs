//! Any string as a key: parsing never panics, and what it accepts is normalized, round-trips
//! through its display form, and has only components POSIX accepts (names git refuses in a
//! tree are valid keys: the store escapes them).
#![no_main]
use gitdb::Key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(k) = Key::parse(s) {
        assert_eq!(Key::parse(&k.to_string()).unwrap(), k);
        for c in k.components() {
            assert!(!c.is_empty() && c != "." && c != ".." && c.len() <= 255);
            assert!(!c.contains('\0') && !c.contains('/'));
        }
    }
});
