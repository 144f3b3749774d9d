//! A small count-min sketch of how often each key was *inserted* into its shard.
//!
//! Every insert the shard stores counts (a fill after a miss, a set, a replacement, a hot
//! mirror); reads do not. With the cache filled on misses this approximates how often a key
//! was missed: the history S3-FIFO's ghost does not keep. It decides whether a key coming
//! back from the ghost may displace a main-queue entry (TinyLFU-style admission), which
//! keeps a loop slightly larger than the cache from churning the main queue.
//!
//! Only the write path (an insert, under the shard's write lock) touches it, so a read hit
//! stays a read. Counters saturate at 15 and are halved after every `sample` additions,
//! so old popularity fades.

#[derive(Debug)]
pub(super) struct Sketch {
    counters: Vec<u8>,
    mask: usize,
    additions: usize,
    sample: usize,
}

const ROWS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x27D4_EB2F_1656_67C5,
];

impl Sketch {
    /// A sketch for about `entries` resident entries.
    pub(super) fn new(entries: usize) -> Self {
        // Capped (16 MiB of counters per shard) so that a huge configured capacity does not
        // allocate up front what it may never use.
        let len = (entries.clamp(16, 1 << 23) * 2).next_power_of_two();
        Sketch {
            counters: vec![0; len],
            mask: len - 1,
            additions: 0,
            sample: len * 5,
        }
    }

    #[inline]
    fn index(&self, hash: u64, row: u64) -> usize {
        ((hash ^ (hash >> 29)).wrapping_mul(row) >> 32) as usize & self.mask
    }

    pub(super) fn increment(&mut self, hash: u64) {
        for row in ROWS {
            let i = self.index(hash, row);
            let c = &mut self.counters[i];
            *c = (*c + 1).min(15);
        }
        self.additions += 1;
        if self.additions >= self.sample {
            for c in &mut self.counters {
                *c /= 2;
            }
            self.additions /= 2;
        }
    }

    pub(super) fn estimate(&self, hash: u64) -> u8 {
        ROWS.iter()
            .map(|&row| self.counters[self.index(hash, row)])
            .min()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ages() {
        let mut s = Sketch::new(4096);
        for _ in 0..5 {
            s.increment(42);
        }
        assert_eq!(s.estimate(42), 5);
        assert_eq!(s.estimate(7), 0);
        // Enough additions of another key to halve every counter twice.
        for _ in 0..2 * s.sample {
            s.increment(0xdead_beef);
        }
        assert!(s.estimate(42) <= 1, "old counts fade");
        assert!(s.estimate(0xdead_beef) >= 7);
    }
}
