//! Inverted lists: the vectors of one coarse cell, encoded by the index's codec.
//!
//! A list holds, per vector, its slot (position in the index-wide arrays), its code (layout by
//! codec: `code_size` bytes each, 32-vector blocks for fast-scan, 16-vector blocks for binary
//! codes), full-precision values for the Flat codec, per-vector floats for binary codes (blocked
//! like their codes) and, for L2, the exact squared norm.

use crate::index::codec::{binary, fastscan};
use crate::index::io::{Buf, Pod};

/// One inverted list.
#[derive(Clone, Debug, Default)]
pub struct List {
    pub slots: Vec<u32>,
    pub codes: Buf<u8>,
    pub vecs: Buf<f32>,
    pub aux: Buf<f32>,
    pub norms: Buf<f32>,
}

/// What a list stores per vector (fixed by the codec and metric).
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// Bytes per code for flat byte layouts; 0 when codes are fast-scan blocks.
    pub code_size: usize,
    /// Fast-scan sub-quantizers (`Some(m)` for 4-bit PQ).
    pub fastscan_m: Option<usize>,
    /// Floats of full-precision vector per entry (the Flat codec), else 0.
    pub vec_dim: usize,
    /// Floats per entry beside the code (binary codes).
    pub aux: usize,
    /// The squared norm of each entry (L2).
    pub norms: bool,
    /// Binary codes: codes and aux floats in [`binary`]'s 16-vector blocks.
    pub binary: bool,
}

/// One encoded vector on its way into a list.
pub struct Entry<'a> {
    pub slot: u32,
    pub code: &'a [u8],
    pub vec: &'a [f32],
    pub aux: &'a [f32],
    pub norm: f32,
}

impl List {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Make room for `extra` more entries: exactly when the list is empty (a bulk build leaves
    /// no slack), geometrically otherwise (repeated small adds stay amortized O(1) each).
    pub fn reserve(&mut self, lay: &Layout, extra: usize) {
        fn grow<T: Pod>(v: &mut Vec<T>, want: usize, exact: bool) {
            let more = want.saturating_sub(v.len());
            if exact {
                v.reserve_exact(more);
            } else {
                v.reserve(more);
            }
        }
        if extra == 0 {
            return;
        }
        let n = self.len() + extra;
        let exact = self.is_empty();
        grow(&mut self.slots, n, exact);
        let code_bytes = match lay.fastscan_m {
            Some(m) => fastscan::bytes_for(m, n),
            None if lay.binary => binary::bytes_for(lay.code_size, n),
            None => lay.code_size * n,
        };
        if code_bytes > 0 {
            grow(self.codes.to_mut(), code_bytes, exact);
        }
        if lay.vec_dim > 0 {
            grow(self.vecs.to_mut(), lay.vec_dim * n, exact);
        }
        if lay.aux > 0 && !lay.binary {
            grow(self.aux.to_mut(), lay.aux * n, exact);
        }
        if lay.norms {
            grow(self.norms.to_mut(), n, exact);
        }
    }

    /// Append one entry (infallible: validation happens before any list is touched).
    pub fn push(&mut self, lay: &Layout, e: Entry) {
        let pos = self.slots.len();
        self.slots.push(e.slot);
        if let Some(m) = lay.fastscan_m {
            fastscan::set_code(self.codes.to_mut(), m, pos, e.code);
        } else if lay.binary {
            binary::set_entry(
                self.codes.to_mut(),
                self.aux.to_mut(),
                lay.code_size,
                pos,
                e.code,
                e.aux,
            );
        } else if lay.code_size > 0 {
            self.codes.to_mut().extend_from_slice(e.code);
        }
        if lay.vec_dim > 0 {
            self.vecs.to_mut().extend_from_slice(e.vec);
        }
        if lay.aux > 0 && !lay.binary {
            self.aux.to_mut().extend_from_slice(e.aux);
        }
        if lay.norms {
            self.norms.to_mut().push(e.norm);
        }
    }

    /// The per-vector code of entry `pos` (one byte per sub-quantizer for fast-scan).
    pub fn code(&self, lay: &Layout, pos: usize, buf: &mut Vec<u8>) {
        if let Some(m) = lay.fastscan_m {
            buf.resize(m, 0);
            fastscan::get_code(self.codes.as_slice(), m, pos, buf);
        } else if lay.binary {
            buf.resize(lay.code_size, 0);
            self.binary_entry(lay, pos, buf);
        } else {
            buf.clear();
            buf.extend_from_slice(&self.codes.as_slice()[pos * lay.code_size..(pos + 1) * lay.code_size]);
        }
    }

    /// Binary codec: the code of entry `pos` (into `buf`, `code_size` bytes) and its `AUX` floats.
    pub fn binary_entry(&self, lay: &Layout, pos: usize, buf: &mut [u8]) -> [f32; binary::AUX] {
        binary::get_entry(
            self.codes.as_slice(),
            self.aux.as_slice(),
            lay.code_size,
            pos,
            buf,
        )
    }

    /// Drop the entries whose slot `gone` reports, renumbering kept slots with `renum`;
    /// storage is rebuilt at its new size, so the memory is returned.
    pub fn compact(&mut self, lay: &Layout, gone: &dyn Fn(u32) -> bool, renum: &dyn Fn(u32) -> u32) {
        let mut out = List::default();
        let mut code = Vec::new();
        for pos in 0..self.len() {
            let s = self.slots[pos];
            if gone(s) {
                continue;
            }
            if lay.code_size > 0 || lay.fastscan_m.is_some() {
                self.code(lay, pos, &mut code);
            }
            let vec = if lay.vec_dim > 0 {
                &self.vecs.as_slice()[pos * lay.vec_dim..(pos + 1) * lay.vec_dim]
            } else {
                &[]
            };
            let aux_buf;
            let aux = if lay.binary {
                aux_buf = self.binary_entry(lay, pos, &mut code);
                &aux_buf[..]
            } else if lay.aux > 0 {
                &self.aux.as_slice()[pos * lay.aux..(pos + 1) * lay.aux]
            } else {
                &[]
            };
            let norm = if lay.norms {
                self.norms.as_slice()[pos]
            } else {
                0.0
            };
            out.push(
                lay,
                Entry {
                    slot: renum(s),
                    code: &code,
                    vec,
                    aux,
                    norm,
                },
            );
        }
        out.slots.shrink_to_fit();
        for b in [&mut out.vecs, &mut out.aux, &mut out.norms] {
            b.to_mut().shrink_to_fit();
        }
        out.codes.to_mut().shrink_to_fit();
        *self = out;
    }

    /// Bytes held (mapped storage included).
    pub fn bytes(&self) -> usize {
        self.slots.capacity() * 4
            + self.codes.held_bytes()
            + self.vecs.held_bytes()
            + self.aux.held_bytes()
            + self.norms.held_bytes()
    }
}
