//! The CIFAR-10 binary batch reader (`parse_cifar10_batch`) on arbitrary bytes.
#![no_main]

use examples::data::parse_cifar10_batch;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const RECORD: usize = 1 + 3 * 32 * 32;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = parse_cifar10_batch(data, Path::new("fuzz-input")) {
        assert_eq!(set.shape, [3, 32, 32]);
        assert_eq!(set.len() * RECORD, data.len());
        assert_eq!(set.pixels.len(), set.len() * 3072);
        assert!(set.labels.iter().all(|&l| l < 10));
        for (i, record) in data.chunks_exact(RECORD).enumerate() {
            assert_eq!(set.labels[i], record[0]);
            assert_eq!(set.image(i), &record[1..]);
        }
    }
});
