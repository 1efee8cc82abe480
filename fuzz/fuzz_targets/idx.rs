//! The IDX reader (`parse_idx_images`, `parse_idx_labels`) on arbitrary bytes.
//!
//! The first input byte picks the encoding: odd = gzip the rest first (so the fuzzer explores
//! the IDX layer behind a valid gzip stream), even = the rest as it is (raw IDX, or broken gzip).
#![no_main]

use examples::data::{parse_idx_images, parse_idx_labels};
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::path::Path;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 1 {
        gzip(rest)
    } else {
        rest.to_vec()
    };
    let source = Path::new("fuzz-input");
    if let Ok((pixels, [n, h, w])) = parse_idx_images(&bytes, source) {
        let expected = n.checked_mul(h).and_then(|nh| nh.checked_mul(w));
        assert_eq!(Some(pixels.len()), expected, "{n}×{h}×{w} images");
    }
    if let Ok(labels) = parse_idx_labels(&bytes, source) {
        // The one header size is the label count; checked on the raw form only (cheap).
        if mode & 1 == 0 && !bytes.starts_with(&[0x1f, 0x8b]) {
            let n = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
            assert_eq!(labels.len(), n);
        }
    }
});
