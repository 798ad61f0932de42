//! placeholder
pub fn db(_data: &[u8]) {}
