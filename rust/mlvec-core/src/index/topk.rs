//! Bounded top-k selection: a min-heap of the k best (score, payload) pairs seen so far
//! (the payload is a slot number, or a packed (list, position) pair).
//!
//! Ties are broken towards the smaller slot number, so results are deterministic whatever the
//! order in which candidates arrive (parallel scans merge heaps in any order).

/// The k best `(score, slot)` pairs, higher score first.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    // Min-heap by (score, -slot): the root is the worst kept candidate.
    heap: Vec<(f32, u64)>,
}

#[inline]
fn worse(a: (f32, u64), b: (f32, u64)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 > b.1)
}

impl TopK {
    /// An empty selection of at most `k` entries.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: Vec::with_capacity(k),
        }
    }

    /// The score a candidate must beat to enter (−inf while fewer than k are held).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap[0].0
        }
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// The most entries it keeps (k).
    pub fn capacity(&self) -> usize {
        self.k
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Offer a candidate.
    #[inline]
    pub fn push(&mut self, score: f32, slot: impl Into<u64>) {
        let e = (score, slot.into());
        if self.heap.len() < self.k {
            self.heap.push(e);
            let mut i = self.heap.len() - 1;
            while i > 0 {
                let p = (i - 1) / 2;
                if worse(self.heap[i], self.heap[p]) {
                    self.heap.swap(i, p);
                    i = p;
                } else {
                    break;
                }
            }
        } else if self.k > 0 && worse(self.heap[0], e) {
            self.heap[0] = e;
            self.sift_down(0);
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && worse(self.heap[l], self.heap[m]) {
                m = l;
            }
            if r < n && worse(self.heap[r], self.heap[m]) {
                m = r;
            }
            if m == i {
                break;
            }
            self.heap.swap(i, m);
            i = m;
        }
    }

    /// Merge another selection into this one.
    pub fn merge(&mut self, other: TopK) {
        for (s, i) in other.heap {
            self.push(s, i);
        }
    }

    /// The held entries, best first.
    pub fn into_sorted(mut self) -> Vec<(f32, u64)> {
        self.heap.sort_by(|a, b| {
            b.0.partial_cmp(&a.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.1.cmp(&b.1))
        });
        self.heap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best() {
        let scores: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1009) as f32).collect();
        let mut t = TopK::new(10);
        for (i, &s) in scores.iter().enumerate() {
            t.push(s, i as u32);
        }
        let mut want: Vec<(f32, u64)> = scores.iter().enumerate().map(|(i, &s)| (s, i as u64)).collect();
        want.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
        want.truncate(10);
        assert_eq!(t.into_sorted(), want);
    }

    #[test]
    fn ties_prefer_small_slots() {
        let mut t = TopK::new(2);
        for i in (0..5u32).rev() {
            t.push(1.0, i);
        }
        assert_eq!(t.into_sorted(), vec![(1.0, 0), (1.0, 1)]);
    }
}
