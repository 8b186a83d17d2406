//! Searching an index, and the allow-lists that filter it: validation, cosine normalisation of
//! the queries, slots turned back into ids, padding.

use super::build::check_rows;
use super::filter::Bitmap;
use super::{Index, SearchParams};
use crate::{Error, Result};

impl Index {
    /// An allow-list from user ids (ids not in the index are ignored).
    pub fn allow_ids(&self, ids: &[i64]) -> Bitmap {
        let mut b = Bitmap::new(self.len());
        for &i in ids {
            if let Some(s) = self.slot_of(i) {
                b.insert(s);
            }
        }
        b
    }

    /// An allow-list from a mask indexed by user id (`mask[id]`; ids beyond it are excluded).
    pub fn allow_mask(&self, mask: &[bool]) -> Bitmap {
        let mut b = Bitmap::new(self.len());
        for s in 0..self.len() {
            let id = self.ids.get(s);
            if (id as usize) < mask.len() && mask[id as usize] {
                b.insert(s as u32);
            }
        }
        b
    }

    /// Search `queries` (`[nq, dim]`) for the `k` best matches each. Returns row-major
    /// `[nq, k]` scores and ids, padded with `-inf` / `-1` when fewer than `k` vectors exist
    /// (or pass the filter `allow`, from [`Index::allow_ids`] or [`Index::allow_mask`]).
    /// Concurrent calls on a shared `&Index` are safe.
    pub fn search(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
        allow: Option<&Bitmap>,
    ) -> Result<(Vec<f32>, Vec<i64>)> {
        let nq = check_rows("queries", queries, self.dim)?;
        if k == 0 {
            return Err(Error::invalid("k", "must be at least 1"));
        }
        if !self.trained {
            return Err(Error::State(format!(
                "index {} must be trained before searching",
                self.spec
            )));
        }
        if params.nprobe == Some(0) {
            return Err(Error::invalid("nprobe", "must be at least 1"));
        }
        if params.ef_search == Some(0) {
            return Err(Error::invalid("ef_search", "must be at least 1"));
        }
        let q = self.metric.prepare_rows(self.dim, queries);
        let results = self.structure.search(&q, k, params, allow);
        let mut scores = vec![f32::NEG_INFINITY; nq * k];
        let mut ids = vec![-1i64; nq * k];
        for (i, r) in results.into_iter().enumerate() {
            for (j, (s, slot)) in r.into_iter().take(k).enumerate() {
                scores[i * k + j] = s;
                ids[i * k + j] = self.ids.get(slot as usize);
            }
        }
        Ok((scores, ids))
    }
}
