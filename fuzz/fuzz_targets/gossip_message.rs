//! Any bytes as a gossip message body, and any bytes as a deflated batch: decoding never
//! panics, never inflates past the declared size, and what decodes encodes back to the same.
#![no_main]
use gitdb::gossip::message::{Message, Packed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        if let Message::Items(p) = &m
            && let Ok(items) = p.unpack()
        {
            for item in items {
                let _ = item.into_item();
            }
        }
    }
    let raw_len = data.first().map_or(0, |b| u32::from(*b) << 8);
    let p = Packed {
        raw_len,
        zlib: data.to_vec(),
    };
    if let Ok(items) = p.unpack() {
        assert!(postcard_len(&items) <= raw_len as usize);
    }
});

fn postcard_len(items: &[gitdb::gossip::message::WireItem]) -> usize {
    Packed::pack(items).raw_len as usize
}
