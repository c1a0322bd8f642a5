//! FNV-1a: a cheap, stable 64-bit hash for names and seeds (never for
//! secrets or anything an attacker could exploit collisions in).

pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}
