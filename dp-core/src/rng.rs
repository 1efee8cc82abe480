//! Cryptographically secure randomness. Only a generator seeded explicitly can export its state.

use crate::error::{DpError, Result};
use rand::rngs::SysRng;
use rand::{SeedableRng, TryRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

/// A ChaCha20 generator seeded from the operating system, or from an explicit seed.
///
/// # Privacy
/// The default constructor [`SecureRng::from_os`] draws a 256-bit seed from the operating
/// system, so the noise and the batches cannot be predicted from anything in the program.
/// The state of such a generator is the run's secret: [`SecureRng::state`] returns `None` for
/// it, so no checkpoint or other file can hold it, and a resumed run draws fresh entropy
/// instead of replaying the stream (two continuations of one checkpoint replaying the same
/// noise would let anyone cancel it by subtracting their updates).
/// [`SecureRng::seeded`] exists for reproducible experiments and tests only: anyone who knows
/// the seed can remove the noise, and its state can be checkpointed.
#[derive(Clone, Debug)]
pub struct SecureRng {
    rng: ChaCha20Rng,
    seeded: bool,
}

/// The serializable state of a seeded [`SecureRng`]: seed, stream and position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    seed: [u8; 32],
    stream: u64,
    word_pos: u128,
}

impl SecureRng {
    /// Seeded from the operating system's entropy source.
    pub fn from_os() -> Result<Self> {
        let rng = ChaCha20Rng::try_from_rng(&mut SysRng)
            .map_err(|e| DpError::DeviceUnavailable(format!("OS entropy source: {e}")))?;
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::record_os_seed(rng.get_seed());
        Ok(Self { rng, seeded: false })
    }

    /// Seeded explicitly, for reproducible runs. Not secure: see the type's docs.
    pub fn seeded(seed: u64) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
            seeded: true,
        }
    }

    /// Keyed with a 256-bit secret that several processes share ([`crate::collective::share_key`]),
    /// so that they draw the same stream. Like [`Self::from_os`], its state is never exported
    /// ([`Self::state`] is `None`): the key must stay inside the group.
    pub fn from_shared_key(key: [u8; 32]) -> Self {
        Self {
            rng: ChaCha20Rng::from_seed(key),
            seeded: false,
        }
    }

    /// 32 bytes of the operating system's entropy: a key for [`Self::from_shared_key`].
    pub fn os_key() -> Result<[u8; 32]> {
        let mut key = [0u8; 32];
        SysRng
            .try_fill_bytes(&mut key)
            .map_err(|e| DpError::DeviceUnavailable(format!("OS entropy source: {e}")))?;
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::record_os_seed(key);
        Ok(key)
    }

    /// Whether the generator was seeded explicitly (and so is reproducible).
    pub fn is_seeded(&self) -> bool {
        self.seeded
    }

    /// The generator.
    pub fn inner(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    /// The state, to store in a checkpoint: `None` for a generator seeded from the operating
    /// system, whose state must never leave the process.
    pub fn state(&self) -> Option<RngState> {
        self.seeded.then(|| RngState {
            seed: self.rng.get_seed(),
            stream: self.rng.get_stream(),
            word_pos: self.rng.get_word_pos(),
        })
    }

    /// A seeded generator that continues exactly where `state` was taken.
    pub fn from_state(state: &RngState) -> Self {
        let mut rng = ChaCha20Rng::from_seed(state.seed);
        rng.set_stream(state.stream);
        rng.set_word_pos(state.word_pos);
        Self { rng, seeded: true }
    }
}

/// 128 random bits from the operating system as 32 hex digits: an identifier that is unique to
/// a run and reveals nothing about its noise (it is not drawn from any noise generator).
pub fn random_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| DpError::DeviceUnavailable(format!("OS entropy source: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn restored_state_continues_the_same_stream() {
        let mut a = SecureRng::seeded(7);
        let _ = a.inner().next_u64();
        let state = a.state().unwrap();
        let mut b = SecureRng::from_state(&state);
        assert!(b.is_seeded());
        assert_eq!(a.inner().next_u64(), b.inner().next_u64());
    }

    #[test]
    fn os_seeded_generators_differ_and_export_no_state() {
        let mut a = SecureRng::from_os().unwrap();
        let mut b = SecureRng::from_os().unwrap();
        assert_ne!(a.inner().next_u64(), b.inner().next_u64());
        assert!(!a.is_seeded());
        assert_eq!(a.state(), None);
    }

    #[test]
    fn random_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (random_id().unwrap(), random_id().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
