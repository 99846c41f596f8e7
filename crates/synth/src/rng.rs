//! Per-case random streams, derived from (seed, index, purpose) so that a
//! case never depends on which thread made it or on what other cases drew.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// The random stream a generation step draws from. Separate streams keep the
/// steps independent: fixing the photometric interpretation, say, leaves the
/// anatomy of a case unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// View, modality, bits, size: the acquisition plan.
    Plan,
    /// Body, lungs, bones, vessels.
    Anatomy,
    /// Whether the case is positive and where its findings go.
    Findings,
    /// Exposure, tone curve and detector noise.
    Exposure,
    /// Patient, study and UID values.
    Identity,
}

impl Purpose {
    fn tag(self) -> u8 {
        match self {
            Purpose::Plan => 1,
            Purpose::Anatomy => 2,
            Purpose::Findings => 3,
            Purpose::Exposure => 4,
            Purpose::Identity => 5,
        }
    }
}

/// The ChaCha8 stream for `purpose` of case `index` under `seed`: the key is
/// SHA-256 of (seed, purpose), the ChaCha stream number is the index.
pub(crate) fn case_rng(seed: u64, index: u64, purpose: Purpose) -> ChaCha8Rng {
    let mut hasher = Sha256::new();
    hasher.update(b"cxr-triage synth rng v1");
    hasher.update(seed.to_le_bytes());
    hasher.update([purpose.tag()]);
    let key: [u8; 32] = hasher.finalize().into();
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(index);
    rng
}

/// A 128-bit value derived from (seed, index, label), for UIDs and IDs.
pub(crate) fn derive_u128(seed: u64, index: u64, label: &str) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(b"cxr-triage synth id v1");
    hasher.update(seed.to_le_bytes());
    hasher.update(index.to_le_bytes());
    hasher.update(label.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

/// Uniform in `[lo, hi)`.
pub(crate) fn uniform<R: Rng>(rng: &mut R, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

/// Normal with the given mean and standard deviation (Box–Muller; used for
/// a few dozen shape parameters per case, never per pixel).
pub(crate) fn normal<R: Rng>(rng: &mut R, mean: f32, sd: f32) -> f32 {
    let u1 = rng.random::<f64>().max(1e-12);
    let u2 = rng.random::<f64>();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    mean + sd * z as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: u64 = case_rng(7, 3, Purpose::Anatomy).random();
        let b: u64 = case_rng(7, 3, Purpose::Anatomy).random();
        let c: u64 = case_rng(7, 4, Purpose::Anatomy).random();
        let d: u64 = case_rng(7, 3, Purpose::Plan).random();
        let e: u64 = case_rng(8, 3, Purpose::Anatomy).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_ne!(a, e);
    }
}
