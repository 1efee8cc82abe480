//! The privacy journal reader (`dp_core::journal::parse_journal`) on arbitrary bytes, and, for
//! a journal that parses, the accountant it would rebuild (counts that overflow must be errors).
#![no_main]

use dp_core::journal::parse_journal;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = parse_journal(Path::new("fuzz-input"), data) {
        let _ = body.ledger.total_count();
        // RDP restores in closed form (a PLD restore of a huge count is a long computation,
        // not a reader's concern).
        if matches!(body.accountant, dp_accountant::AccountantConfig::Rdp(_)) {
            if let Ok(accountant) = body.accountant.restore(body.relation, &body.ledger) {
                let _ = accountant.epsilon(1e-5);
            }
        }
    }
});
