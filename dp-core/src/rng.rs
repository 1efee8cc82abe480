//! Cryptographically secure randomness with a state that can be checkpointed.

use crate::error::{DpError, Result};
use rand::rngs::SysRng;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

/// A ChaCha20 generator seeded from the operating system, or from an explicit seed.
///
/// # Privacy
/// The default constructor [`SecureRng::from_os`] draws a 256-bit seed from the operating
/// system, so the noise and the batches cannot be predicted from anything in the program.
/// [`SecureRng::seeded`] exists for reproducible experiments and tests only: anyone who knows
/// the seed can remove the noise.
#[derive(Clone, Debug)]
pub struct SecureRng {
    rng: ChaCha20Rng,
}

/// The serializable state of a [`SecureRng`]: seed, stream and position.
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
        Ok(Self { rng })
    }

    /// Seeded explicitly, for reproducible runs. Not secure: see the type's docs.
    pub fn seeded(seed: u64) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
        }
    }

    /// The generator.
    pub fn inner(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    /// The state, to store in a checkpoint.
    pub fn state(&self) -> RngState {
        RngState {
            seed: self.rng.get_seed(),
            stream: self.rng.get_stream(),
            word_pos: self.rng.get_word_pos(),
        }
    }

    /// A generator that continues exactly where `state` was taken.
    pub fn from_state(state: &RngState) -> Self {
        let mut rng = ChaCha20Rng::from_seed(state.seed);
        rng.set_stream(state.stream);
        rng.set_word_pos(state.word_pos);
        Self { rng }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn restored_state_continues_the_same_stream() {
        let mut a = SecureRng::seeded(7);
        let _ = a.inner().next_u64();
        let state = a.state();
        let mut b = SecureRng::from_state(&state);
        assert_eq!(a.inner().next_u64(), b.inner().next_u64());
    }

    #[test]
    fn os_seeded_generators_differ() {
        let mut a = SecureRng::from_os().unwrap();
        let mut b = SecureRng::from_os().unwrap();
        assert_ne!(a.inner().next_u64(), b.inner().next_u64());
    }
}
