//! FNV-1a: a cheap, stable 64-bit hash for names and seeds (never for
//! secrets or anything an attacker could exploit collisions in).

pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// SplitMix64's finalizer: every input bit moves every output bit, so
/// `mix(x) % n` of inputs that differ only slightly (counting request ids,
/// a fixed host seed) are independent draws.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_request_ids_give_independent_picks() {
        // Two equal weights: a pick is the seed's parity. Unmixed, FNV-1a of
        // "req-0", "req-1", … alternates; mixed, consecutive picks agree
        // about half the time.
        let picks: Vec<u64> = (0..10_000).map(|i| mix(fnv1a(format!("req-{i}").as_bytes()) ^ 7) % 2).collect();
        let same = picks.windows(2).filter(|w| w[0] == w[1]).count();
        assert!((4_700..=5_300).contains(&same), "{same} of 9,999 consecutive picks agree");
        let unmixed: Vec<u64> = (0..10_000).map(|i| (fnv1a(format!("req-{i}").as_bytes()) ^ 7) % 2).collect();
        let same_unmixed = unmixed.windows(2).filter(|w| w[0] == w[1]).count();
        assert!(same_unmixed < 2_000, "the test no longer shows the problem: {same_unmixed}");
    }
}
