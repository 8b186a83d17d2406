//! Creating and changing an index: `new`, `train`, `add`, `remove`. Validation, ids and the
//! id ↔ slot map are the index's; the [`Structure`] stores the vectors.

use super::factory::{self, CodecSpec, IndexSpec};
use super::filter::Bitmap;
use super::hnsw::{self, Hnsw, Storage};
use super::ids::SlotIds;
use super::ivf::Ivf;
use super::metric::Metric;
use super::{codec, Index, Structure, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH};
use crate::{Error, Result};
use std::collections::HashSet;
use std::sync::OnceLock;

/// The number of rows of `x` (`arg`), rejecting a ragged length and non-finite values.
pub(crate) fn check_rows(arg: &'static str, x: &[f32], d: usize) -> Result<usize> {
    if !x.len().is_multiple_of(d) {
        return Err(Error::invalid(
            arg,
            format!("{} values do not form rows of dimension {d}", x.len()),
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            arg,
            format!("row {} holds a non-finite value ({})", i / d, x[i]),
        ));
    }
    Ok(x.len() / d)
}

impl Index {
    /// A new, empty index of dimension `dim` described by `kind` (see [`factory`]).
    pub fn new(dim: usize, kind: &str, metric: Metric, seed: u64) -> Result<Self> {
        let spec = factory::parse(kind)?;
        Self::from_spec(dim, spec, metric, seed)
    }

    /// A new, empty index from a parsed description.
    pub fn from_spec(dim: usize, spec: IndexSpec, metric: Metric, seed: u64) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid("dim", "must be at least 1"));
        }
        let structure = match spec.hnsw_m {
            Some(m) => {
                let storage = match (spec.codec, spec.hnsw_rescore16) {
                    (CodecSpec::Sq8, true) => Storage::Sq8F16,
                    (CodecSpec::Sq8, false) => Storage::Sq8,
                    _ => Storage::F32,
                };
                let params = hnsw::Params {
                    m,
                    ef_construction: spec.hnsw_efc.unwrap_or(HNSW_EF_CONSTRUCTION),
                    ef_search: HNSW_EF_SEARCH,
                    seed,
                };
                Structure::Graph(Hnsw::new(dim, metric, storage, params)?)
            }
            None => {
                if let CodecSpec::Pq8 { m } | CodecSpec::Pq4 { m } = spec.codec {
                    codec::pq::Pq::check(dim, m)?;
                }
                Structure::Lists(Ivf::new(dim, metric, spec, seed))
            }
        };
        Ok(Index {
            dim,
            metric,
            spec,
            seed,
            trained: !spec.needs_training(),
            ids: SlotIds::default(),
            next_id: 0,
            id_map: OnceLock::new(),
            structure,
        })
    }

    /// Train on `x` (`[n, dim]`): the coarse quantizer and the codec of lists, the SQ8 range
    /// of a graph (a float32 graph has nothing to learn). Only an empty index can be
    /// (re)trained. On error nothing changes.
    pub fn train(&mut self, x: &[f32]) -> Result<()> {
        let n = check_rows("x", x, self.dim)?;
        if !self.is_empty() {
            return Err(Error::State(format!(
                "the index holds {} vectors; train it before adding any",
                self.len()
            )));
        }
        if n == 0 {
            return Err(Error::invalid("x", "training needs at least one vector"));
        }
        self.structure.train(x)?;
        self.trained = true;
        Ok(())
    }

    /// The slot holding `id` (a lookup map is built on first need unless ids are sequential).
    pub(crate) fn slot_of(&self, id: i64) -> Option<u32> {
        if let Some(s) = self.ids.sequential_slot(id) {
            return s;
        }
        let map = self.id_map.get_or_init(|| {
            self.ids
                .as_slice()
                .iter()
                .enumerate()
                .map(|(s, &id)| (id, s as u32))
                .collect()
        });
        map.get(&id).copied()
    }

    /// Add `x` (`[n, dim]`) with the given non-negative ids (default: sequential from one past
    /// the largest id so far). On error nothing changes.
    pub fn add(&mut self, x: &[f32], ids: Option<&[i64]>) -> Result<()> {
        let n = check_rows("x", x, self.dim)?;
        if !self.trained {
            return Err(Error::State(format!(
                "index {} must be trained before vectors are added",
                self.spec
            )));
        }
        let new_ids: Vec<i64> = match ids {
            Some(ids) => {
                if ids.len() != n {
                    return Err(Error::invalid(
                        "ids",
                        format!("{} ids for {n} vectors", ids.len()),
                    ));
                }
                if let Some(&bad) = ids.iter().find(|&&i| i < 0) {
                    return Err(Error::invalid(
                        "ids",
                        format!("ids must be non-negative, got {bad}"),
                    ));
                }
                let mut seen = HashSet::with_capacity(n);
                for &i in ids {
                    if !seen.insert(i) || self.slot_of(i).is_some() {
                        return Err(Error::invalid("ids", format!("duplicate id {i}")));
                    }
                }
                ids.to_vec()
            }
            None => (self.next_id..self.next_id + n as i64).collect(),
        };
        if self.len() + n >= u32::MAX as usize {
            return Err(Error::invalid("x", "an index holds at most 2^32 - 2 vectors"));
        }
        self.structure.check_rows(x)?;
        if n == 0 {
            return Ok(());
        }
        // Nothing below can fail: the index changes only now.
        self.structure.add(x, self.len() as u32);
        let top = new_ids.iter().copied().max().unwrap_or(-1);
        self.ids.extend(&new_ids);
        self.next_id = self.next_id.max(top + 1);
        self.id_map = OnceLock::new();
        Ok(())
    }

    /// Remove the vectors with these ids and compact the storage (lists rebuilt at their new
    /// size; a graph re-linked around the removed nodes and copied). Unknown or repeated ids
    /// are an error (and nothing is removed). Returns the number removed.
    pub fn remove(&mut self, ids: &[i64]) -> Result<usize> {
        let mut gone = Bitmap::new(self.len());
        for &i in ids {
            match self.slot_of(i) {
                None => return Err(Error::invalid("ids", format!("unknown id {i}"))),
                Some(s) => {
                    if gone.contains(s) {
                        return Err(Error::invalid("ids", format!("id {i} given twice")));
                    }
                    gone.insert(s);
                }
            }
        }
        if ids.is_empty() {
            return Ok(0);
        }
        self.structure.remove(&gone);
        let kept: Vec<i64> = (0..self.len())
            .filter(|&s| !gone.contains(s as u32))
            .map(|s| self.ids.get(s))
            .collect();
        self.ids = SlotIds::from_vec(kept);
        self.id_map = OnceLock::new();
        Ok(ids.len())
    }
}
