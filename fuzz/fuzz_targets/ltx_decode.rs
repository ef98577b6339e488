//! Feeds arbitrary bytes to the LTX decoder: it must return an error or a result, never
//! panic, hang or allocate without bound. Whatever decodes must re-encode and decode to
//! the same pages (when it is a file litevault could write).
#![no_main]

use libfuzzer_sys::fuzz_target;
use litevault::ltx::{Decoder, Encoder, Header, decode_all};

fuzz_target!(|data: &[u8]| {
    // Streaming path, reading pages one by one into a reused buffer.
    if let Ok(mut dec) = Decoder::new(data) {
        let mut buf = Vec::new();
        while let Ok(Some(_)) = dec.next_page(&mut buf) {}
        let _ = dec.finish();
    }

    // Whole-file path, then a round trip through the encoder.
    if let Ok((header, pages, trailer)) = decode_all(data) {
        let ours = Header { flags: 0, ..header };
        let Ok(mut enc) = Encoder::new(Vec::new(), ours) else {
            return;
        };
        for (pgno, page) in &pages {
            if enc.encode_page(*pgno, page).is_err() {
                return;
            }
        }
        if let Ok((bytes, _)) = enc.finish(trailer.post_apply_checksum) {
            let (_, again, _) = decode_all(&bytes).expect("re-encoded file must decode");
            assert_eq!(again, pages);
        }
    }
});
