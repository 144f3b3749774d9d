//! Consistent hashing with virtual nodes: which node owns a key.
//!
//! Every node places `vnodes` points on a 64-bit circle at `hash("{node}#{i}")`; a key
//! belongs to the first point at or after `hash(key)`. Adding or removing one node moves
//! only the keys between its points and their predecessors (about 1/n of the keys).
//!
//! The default hash is FNV-1a 64 followed by the MurmurHash3 finaliser: specified here,
//! stable across processes, versions, platforms and languages, because every node of a
//! cluster (a Python service beside a Node one) must agree on owners. Tests inject their
//! own hash to assert exact owners.
//!
//! A `Ring` is immutable; the cluster swaps in a new one atomically when membership
//! changes, so reading it takes no lock.

use std::fmt;

/// Default number of points each node places on the ring. 128 keeps the share of each of
/// 3–20 nodes within a few percent of fair while a ring of 20 nodes is only 2560 points.
pub const DEFAULT_VNODES: usize = 128;

/// A ring hash function.
pub type HashFn = fn(&[u8]) -> u64;

/// FNV-1a 64 with the MurmurHash3 64-bit finaliser (FNV alone clusters short keys).
pub fn default_hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// An immutable consistent-hash ring over node names (their advertised addresses).
#[derive(Clone)]
pub struct Ring {
    /// Sorted by hash; the `u32` indexes `nodes`.
    points: Vec<(u64, u32)>,
    nodes: Vec<String>,
    hash: HashFn,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("nodes", &self.nodes)
            .field("points", &self.points.len())
            .finish()
    }
}

impl Ring {
    /// A ring over `nodes` (duplicates ignored) with [`DEFAULT_VNODES`] and the default hash.
    pub fn new<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Ring::with_hash(nodes, DEFAULT_VNODES, default_hash)
    }

    /// A ring with `vnodes` points per node (at least 1) and hash function `hash`.
    pub fn with_hash<I, S>(nodes: I, vnodes: usize, hash: HashFn) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: Vec<String> = nodes.into_iter().map(Into::into).collect();
        names.sort();
        names.dedup();
        let vnodes = vnodes.max(1);
        let mut points = Vec::with_capacity(names.len() * vnodes);
        for (i, n) in names.iter().enumerate() {
            for v in 0..vnodes {
                points.push((hash(format!("{n}#{v}").as_bytes()), i as u32));
            }
        }
        // Ties (astronomically rare) break by node name so every node builds the same ring.
        points.sort_unstable();
        Ring {
            points,
            nodes: names,
            hash,
        }
    }

    /// The nodes, sorted.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Each node's share of the hash space (the keys it owns), in [`Ring::nodes`] order;
    /// the shares add up to 1.
    pub fn shares(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.nodes.len()];
        let n = self.points.len();
        for (i, &(h, _)) in self.points.iter().enumerate() {
            // A point owns the arc from the previous point (exclusive) to itself.
            let prev = if i == 0 {
                self.points[n - 1].0
            } else {
                self.points[i - 1].0
            };
            let arc = h.wrapping_sub(prev);
            let owner = self.points[i].1 as usize;
            out[owner] += if n == 1 { u64::MAX as f64 } else { arc as f64 };
        }
        let total: f64 = out.iter().sum();
        if total > 0.0 {
            out.iter_mut().for_each(|s| *s /= total);
        }
        out
    }

    /// Whether the ring has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn first_point(&self, key: &[u8]) -> usize {
        let h = (self.hash)(key);
        let i = self.points.partition_point(|p| p.0 < h);
        if i == self.points.len() { 0 } else { i }
    }

    /// The node that owns `key`, or `None` for an empty ring.
    pub fn owner(&self, key: &[u8]) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        Some(&self.nodes[self.points[self.first_point(key)].1 as usize])
    }

    /// Up to `n` distinct nodes for `key`, the owner first, then the next distinct nodes
    /// clockwise (replica candidates).
    pub fn owners(&self, key: &[u8], n: usize) -> Vec<&str> {
        let n = n.min(self.nodes.len());
        let mut out: Vec<&str> = Vec::with_capacity(n);
        if n == 0 {
            return out;
        }
        let start = self.first_point(key);
        for step in 0..self.points.len() {
            let node = &self.nodes[self.points[(start + step) % self.points.len()].1 as usize];
            if !out.contains(&node.as_str()) {
                out.push(node);
                if out.len() == n {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys and vnode labels that are decimal numbers hash to themselves.
    fn identity(data: &[u8]) -> u64 {
        let s = std::str::from_utf8(data).unwrap();
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        digits.parse().unwrap()
    }

    #[test]
    fn exact_owners_with_an_identity_hash() {
        // Nodes "2", "4", "6" with 3 vnodes: points 20,21,22 / 40,41,42 / 60,61,62.
        let ring = Ring::with_hash(["6", "4", "2"], 3, identity);
        for (key, owner) in [
            ("2", "2"),
            ("11", "2"),
            ("23", "4"),
            ("27", "4"),
            ("43", "6"),
            ("63", "2"),
        ] {
            assert_eq!(ring.owner(key.as_bytes()), Some(owner), "key {key}");
        }
        assert_eq!(ring.owners(b"23", 2), vec!["4", "6"]);
        assert_eq!(ring.owners(b"63", 5), vec!["2", "4", "6"]);
        // Adding node 8 (80..82) takes only the keys past 62.
        let bigger = Ring::with_hash(["6", "4", "2", "8"], 3, identity);
        assert_eq!(bigger.owner(b"63"), Some("8"));
        assert_eq!(bigger.owner(b"27"), Some("4"));
    }

    #[test]
    fn empty_ring_has_no_owner() {
        let ring = Ring::new(Vec::<String>::new());
        assert!(ring.is_empty());
        assert_eq!(ring.owner(b"k"), None);
        assert!(ring.owners(b"k", 3).is_empty());
    }

    #[test]
    fn default_hash_is_stable_and_balanced() {
        // The hash is part of the protocol (every node, in every language, must agree):
        // these values must never change.
        assert_eq!(default_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(default_hash(b"meshcache"), 0xe34f_138c_ade1_6f95);
        assert_eq!(default_hash(b"127.0.0.1:7000#0"), 0xd65f_a4ca_5d4f_beaf);
        let nodes = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"];
        let ring = Ring::new(nodes);
        let mut counts = std::collections::HashMap::new();
        for i in 0..30_000 {
            *counts
                .entry(ring.owner(format!("key-{i}").as_bytes()).unwrap())
                .or_insert(0) += 1;
        }
        for n in nodes {
            let share = counts[n] as f64 / 30_000.0;
            assert!((0.25..0.42).contains(&share), "{n} owns {share}");
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let before = Ring::new(["a", "b", "c", "d"]);
        let after = Ring::new(["a", "b", "c"]);
        for i in 0..5_000 {
            let k = format!("k{i}");
            let (o1, o2) = (
                before.owner(k.as_bytes()).unwrap(),
                after.owner(k.as_bytes()).unwrap(),
            );
            if o1 != "d" {
                assert_eq!(o1, o2, "key {k} moved although its owner stayed");
            }
        }
    }
}
