//! User ids by slot.
//!
//! Most indexes are filled without explicit ids, so slot `s` holds id `s`: [`SlotIds::Sequential`]
//! then stores nothing (8 bytes per vector saved, which for an SQ8 code of 128 bytes is 6 % of the
//! index). The first id that breaks the pattern (an explicit id, or a removal that is not at the
//! end) switches to a stored array; a stored array that turns out to be the identity switches
//! back.

use super::io::Buf;
use std::borrow::Cow;

#[derive(Debug)]
pub enum SlotIds {
    /// Slot `s` holds id `s`, for `s < n`.
    Sequential(usize),
    /// Any ids (owned or memory-mapped).
    Stored(Buf<i64>),
}

impl Default for SlotIds {
    fn default() -> Self {
        SlotIds::Sequential(0)
    }
}

impl SlotIds {
    /// From ids by slot, stored only when they are not the identity.
    pub fn from_buf(buf: Buf<i64>) -> Self {
        if is_identity(buf.as_slice()) {
            SlotIds::Sequential(buf.len())
        } else {
            SlotIds::Stored(buf)
        }
    }

    pub fn from_vec(ids: Vec<i64>) -> Self {
        Self::from_buf(Buf::Owned(ids))
    }

    pub fn len(&self) -> usize {
        match self {
            SlotIds::Sequential(n) => *n,
            SlotIds::Stored(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of slot `s` (`s < len`).
    #[inline]
    pub fn get(&self, s: usize) -> i64 {
        match self {
            SlotIds::Sequential(_) => s as i64,
            SlotIds::Stored(b) => b.as_slice()[s],
        }
    }

    /// The slot of `id` when the ids are sequential (`None`: not sequential, look it up).
    pub fn sequential_slot(&self, id: i64) -> Option<Option<u32>> {
        match self {
            SlotIds::Sequential(n) => Some((id >= 0 && (id as usize) < *n).then_some(id as u32)),
            SlotIds::Stored(_) => None,
        }
    }

    /// All ids by slot.
    pub fn as_slice(&self) -> Cow<'_, [i64]> {
        match self {
            SlotIds::Sequential(n) => Cow::Owned((0..*n as i64).collect()),
            SlotIds::Stored(b) => Cow::Borrowed(b.as_slice()),
        }
    }

    /// Append the ids of new slots.
    pub fn extend(&mut self, new: &[i64]) {
        match self {
            SlotIds::Sequential(n) if continues_identity(*n, new) => *n += new.len(),
            SlotIds::Sequential(n) => {
                let mut v: Vec<i64> = (0..*n as i64).collect();
                v.extend_from_slice(new);
                *self = SlotIds::Stored(Buf::Owned(v));
            }
            SlotIds::Stored(b) => b.to_mut().extend_from_slice(new),
        }
    }

    /// Heap bytes held (a mapped array counts too: it is part of the index).
    pub fn bytes(&self) -> usize {
        match self {
            SlotIds::Sequential(_) => 0,
            SlotIds::Stored(b) => 8 * b.len(),
        }
    }
}

fn continues_identity(n: usize, new: &[i64]) -> bool {
    new.iter().enumerate().all(|(i, &id)| id == (n + i) as i64)
}

fn is_identity(ids: &[i64]) -> bool {
    continues_identity(0, ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_until_broken_and_back() {
        let mut ids = SlotIds::default();
        ids.extend(&[0, 1, 2]);
        assert!(matches!(ids, SlotIds::Sequential(3)));
        assert_eq!(ids.sequential_slot(2), Some(Some(2)));
        assert_eq!(ids.sequential_slot(3), Some(None));
        assert_eq!(ids.sequential_slot(-1), Some(None));
        ids.extend(&[3, 10]);
        assert!(matches!(ids, SlotIds::Stored(_)));
        assert_eq!(ids.as_slice().as_ref(), &[0, 1, 2, 3, 10]);
        assert_eq!((ids.get(4), ids.len(), ids.bytes()), (10, 5, 40));
        assert_eq!(ids.sequential_slot(10), None);
        let back = SlotIds::from_vec(vec![0, 1, 2, 3]);
        assert!(matches!(back, SlotIds::Sequential(4)));
        assert_eq!(back.bytes(), 0);
        assert_eq!(back.as_slice().as_ref(), &[0, 1, 2, 3]);
    }
}
