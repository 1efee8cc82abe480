//! Hooks for tests that check the privacy plumbing from outside (feature `test-hooks`, which
//! only test builds enable): the seeds of the process's OS-seeded generators, to search run
//! files for them, and a witness log of charged steps for crash tests. Nothing here is written
//! anywhere unless a test asks for it.

use std::io::Write;
use std::sync::Mutex;

static OS_SEEDS: Mutex<Vec<[u8; 32]>> = Mutex::new(Vec::new());

/// The environment variable naming a file to which every charged step appends its 0-based
/// number on a line of its own, right after the charge is committed to the journal.
pub const CHARGE_LOG_ENV: &str = "DP_CORE_TEST_CHARGE_LOG";

pub(crate) fn record_os_seed(seed: [u8; 32]) {
    if let Ok(mut seeds) = OS_SEEDS.lock() {
        seeds.push(seed);
    }
}

/// The 32-byte seeds of every generator this process seeded from the operating system.
pub fn os_seeds() -> Vec<[u8; 32]> {
    OS_SEEDS.lock().map(|s| s.clone()).unwrap_or_default()
}

pub(crate) fn record_charge(step: u64) {
    let Ok(path) = std::env::var(CHARGE_LOG_ENV) else {
        return;
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(mut file) = file {
        let _ = writeln!(file, "{step}");
    }
}

/// Every way the 32 seed bytes could be spelled in a file: raw (and its first half), hex in
/// either case, and as a JSON array with or without spaces.
fn seed_forms(seed: &[u8; 32]) -> Vec<Vec<u8>> {
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let json = format!(
        "[{}]",
        seed.iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let spaced = json.replace(',', ", ");
    vec![
        seed.to_vec(),
        seed[..16].to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        json.into_bytes(),
        spaced.into_bytes(),
    ]
}

/// The files under `dir` (recursively) that hold any of `seeds` in any of the spellings above.
pub fn files_holding_seeds(dir: &std::path::Path, seeds: &[[u8; 32]]) -> Vec<std::path::PathBuf> {
    let forms: Vec<Vec<u8>> = seeds.iter().flat_map(seed_forms).collect();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        if path.is_dir() {
            found.extend(files_holding_seeds(&path, seeds));
        } else if let Ok(bytes) = std::fs::read(&path) {
            let holds = forms
                .iter()
                .any(|form| bytes.windows(form.len()).any(|w| w == form.as_slice()));
            if holds {
                found.push(path);
            }
        }
    }
    found
}

/// A bug planted into the production code for a test of the privacy audit. Only builds with
/// the `test-hooks` feature contain the hooks; no production flag turns noise or clipping off.
/// The audit catches the first three at a claim of ε = 2 (tests/tests/audit.rs); a doubled
/// sampling rate is beyond what one-run bounds see there (README, "Privacy audit").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// No noise is added (σ is still charged).
    NoNoise,
    /// Per-example gradients are not clipped.
    NoClipping,
    /// Noise is drawn with σ/2 while σ is charged.
    HalfNoise,
    /// The Poisson sampler draws at twice the sampling rate it reports (and is charged for).
    DoubleSamplingRate,
    /// Every data-parallel peer adds the noise (W times its variance), not peer 0 alone.
    NoisePerPeer,
}

thread_local! {
    static PLANTED: std::cell::Cell<Option<PlantedBug>> = const { std::cell::Cell::new(None) };
}

/// Plants `bug` (or removes it, with `None`) for the code this thread runs.
pub fn plant(bug: Option<PlantedBug>) {
    PLANTED.with(|p| p.set(bug));
}

pub(crate) fn planted() -> Option<PlantedBug> {
    PLANTED.with(std::cell::Cell::get)
}
