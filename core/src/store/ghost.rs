//! S3-FIFO's ghost: a bounded FIFO of the hashes of keys recently evicted from a small queue.

use std::collections::VecDeque;

use hashbrown::HashTable;

/// Ghost FIFO: hashes of keys recently evicted from the small queue. A key that comes
/// back while its ghost is remembered goes straight to the main queue.
#[derive(Debug, Default)]
pub(super) struct Ghost {
    order: VecDeque<u64>,
    /// hash -> number of times it is in `order` (hash collisions and re-evictions).
    counts: HashTable<(u64, u32)>,
}

impl Ghost {
    pub(super) fn contains_and_remove(&mut self, hash: u64) -> bool {
        // The FIFO keeps its copy; the count decides membership.
        match self.counts.find_entry(hash, |e| e.0 == hash) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn push(&mut self, hash: u64, cap: usize) {
        self.order.push_back(hash);
        match self.counts.find_mut(hash, |e| e.0 == hash) {
            Some(e) => e.1 += 1,
            None => {
                self.counts.insert_unique(hash, (hash, 1), |e| e.0);
            }
        }
        while self.order.len() > cap.max(1) {
            let Some(old) = self.order.pop_front() else { break };
            if let Ok(mut e) = self.counts.find_entry(old, |e| e.0 == old) {
                if e.get().1 <= 1 {
                    e.remove();
                } else {
                    e.get_mut().1 -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_hash_until_it_is_asked_for() {
        let mut g = Ghost::default();
        g.push(7, 16);
        assert!(!g.contains_and_remove(8));
        assert!(g.contains_and_remove(7));
        assert!(!g.contains_and_remove(7), "asking consumes the ghost");
    }

    #[test]
    fn forgets_the_oldest_beyond_its_cap() {
        let mut g = Ghost::default();
        for h in 1..=5 {
            g.push(h, 3);
        }
        assert!(!g.contains_and_remove(1) && !g.contains_and_remove(2));
        assert!((3..=5).all(|h| g.contains_and_remove(h)));
    }
}
