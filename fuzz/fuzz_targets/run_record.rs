//! `run.json`'s reader (`examples::train::parse_run_record`) on arbitrary bytes; a record that
//! parses must write back to bytes that parse to the same record (a resume relies on it).
#![no_main]

use examples::train::parse_run_record;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let source = Path::new("fuzz-input");
    if let Ok(record) = parse_run_record(source, data) {
        let bytes = record.to_bytes().expect("a parsed record serializes");
        let again = parse_run_record(source, &bytes).expect("a written record parses");
        assert_eq!(again, record, "run.json does not round-trip");
    }
});
