//! Allow-lists for filtered search: a bitmap over internal slots, built per call from user ids.

/// A set of allowed slots.
#[derive(Clone, Debug)]
pub struct Bitmap {
    words: Vec<u64>,
    count: usize,
}

impl Bitmap {
    /// An empty set over `n` slots.
    pub fn new(n: usize) -> Self {
        Bitmap {
            words: vec![0; n.div_ceil(64)],
            count: 0,
        }
    }

    pub fn insert(&mut self, slot: u32) {
        let (w, b) = (slot as usize / 64, slot % 64);
        if self.words[w] & (1 << b) == 0 {
            self.words[w] |= 1 << b;
            self.count += 1;
        }
    }

    #[inline]
    pub fn contains(&self, slot: u32) -> bool {
        let w = slot as usize / 64;
        w < self.words.len() && self.words[w] & (1 << (slot % 64)) != 0
    }

    /// Number of allowed slots.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The allowed slots in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &bits)| {
            let mut b = bits;
            std::iter::from_fn(move || {
                if b == 0 {
                    return None;
                }
                let t = b.trailing_zeros();
                b &= b - 1;
                Some(w as u32 * 64 + t)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_semantics() {
        let mut b = Bitmap::new(200);
        for s in [3u32, 64, 199, 3] {
            b.insert(s);
        }
        assert_eq!(b.count(), 3);
        assert!(b.contains(64) && !b.contains(65) && !b.contains(1000));
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![3, 64, 199]);
    }
}
