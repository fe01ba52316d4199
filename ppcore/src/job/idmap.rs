//! Maps keyed by job id, with a hash cheaper than std's SipHash.
//!
//! Every job passes through such a map on each side of a link (the client's
//! ledger, the node's credit window), and SipHash was a tenth of the link
//! threads' time with no-op jobs. The hash here is two multiplications with
//! a per-map random seed (folded 128-bit products, as foldhash does for
//! integers): a peer that picks the ids cannot tell which of them collide.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A map keyed by job id.
pub(crate) type IdMap<V> = HashMap<u64, V, IdHash>;

/// Odd constants with well-mixed bits (digits of pi).
const MIX: u64 = 0x243f_6a88_85a3_08d3;
const MIX2: u64 = 0x1319_8a2e_0370_7345;

/// Builds the hashers of one [`IdMap`], all with the same random seed.
#[derive(Clone, Debug)]
pub(crate) struct IdHash {
    seed: u64,
}

impl Default for IdHash {
    fn default() -> Self {
        // std's per-map random keys, drawn once for this map.
        let seed = std::collections::hash_map::RandomState::new().hash_one(MIX);
        IdHash { seed }
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            seed: self.seed,
            hash: 0,
        }
    }
}

/// The hasher of an [`IdMap`]: made for one `u64`; other input is folded in
/// eight bytes at a time, so it still hashes correctly, only less cheaply.
#[derive(Debug)]
pub(crate) struct IdHasher {
    seed: u64,
    hash: u64,
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a).wrapping_mul(u128::from(b));
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.hash = fold_mul(self.hash ^ n ^ self.seed, MIX);
    }

    fn finish(&self) -> u64 {
        // A second round spreads the input over the top bits as well, where
        // hashbrown takes its tags.
        fold_mul(self.hash, MIX2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_a_row_land_in_different_buckets_and_maps_differ_in_seed() {
        let (a, b) = (IdHash::default(), IdHash::default());
        assert_ne!(a.seed, b.seed, "each map draws its own seed");
        // hashbrown takes the bucket from the low bits and a tag from the
        // top seven: both must vary over ids in a row.
        let hashes: Vec<u64> = (0..1024u64).map(|id| a.hash_one(id)).collect();
        let low: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 1023).collect();
        let top: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(
            low.len() > 500,
            "only {} of 1024 low-bit buckets used",
            low.len()
        );
        // About eight ids per tag: a good hash leaves none unused.
        assert!(top.len() >= 120, "only {} of 128 tags used", top.len());
    }

    #[test]
    fn a_map_keyed_by_id_finds_what_it_holds() {
        let mut map = IdMap::default();
        for id in (0..10_000u64).map(|i| i.wrapping_mul(0x9e37_79b9)) {
            map.insert(id, id + 1);
        }
        for id in (0..10_000u64).map(|i| i.wrapping_mul(0x9e37_79b9)) {
            assert_eq!(map.remove(&id), Some(id + 1));
        }
        assert!(map.is_empty());
    }
}
