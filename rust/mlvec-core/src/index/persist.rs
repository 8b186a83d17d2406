//! The file format of every kind (see `docs/index-format.md`): the shared header and ids, the
//! inverted lists with their codec's parameters, and a graph's arrays. [`io`] is the container
//! (named arrays, checksum, atomic writes, memory mapping).

use super::codec::{binary, fastscan, Codec};
use super::factory::{self, IndexSpec};
use super::hnsw::{Hnsw, HnswParts, Params, Storage};
use super::ids::SlotIds;
use super::io::{self, Buf, Reader, Writer};
use super::ivf::list::List;
use super::ivf::Ivf;
use super::metric::Metric;
use super::{Index, Structure};
use crate::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// A sub-range of a buffer (a narrower view for mapped data, a copy for owned).
fn sub<T: io::Pod>(b: &Buf<T>, start: usize, len: usize) -> Buf<T> {
    match b {
        Buf::Owned(v) => Buf::Owned(v[start..start + len].to_vec()),
        Buf::Mapped { map, offset, .. } => Buf::Mapped {
            map: map.clone(),
            offset: offset + start * std::mem::size_of::<T>(),
            len,
        },
    }
}

/// Everything a list-kind file holds, concatenated over the lists.
struct ListArrays {
    sizes: Vec<u32>,
    slots: Vec<u32>,
    codes: Vec<u8>,
    vecs: Vec<f32>,
    aux: Vec<f32>,
    norms: Vec<f32>,
}

impl ListArrays {
    fn of(lists: &[List]) -> Self {
        let cat = |f: &dyn Fn(&List) -> &[f32]| -> Vec<f32> {
            lists.iter().flat_map(|l| f(l).iter().copied()).collect()
        };
        ListArrays {
            sizes: lists.iter().map(|l| l.len() as u32).collect(),
            slots: lists.iter().flat_map(|l| l.slots.iter().copied()).collect(),
            codes: lists
                .iter()
                .flat_map(|l| l.codes.as_slice().iter().copied())
                .collect(),
            vecs: cat(&|l| l.vecs.as_slice()),
            aux: cat(&|l| l.aux.as_slice()),
            norms: cat(&|l| l.norms.as_slice()),
        }
    }

    /// Add the `list_*` arrays (empty for a graph).
    fn add<'a>(&'a self, w: &mut Writer<'a>) {
        w.add("list_sizes", vec![self.sizes.len()], &self.sizes);
        w.add("list_slots", vec![self.slots.len()], &self.slots);
        w.add("list_codes", vec![self.codes.len()], &self.codes);
        w.add("list_vecs", vec![self.vecs.len()], &self.vecs);
        w.add("list_aux", vec![self.aux.len()], &self.aux);
        w.add("list_norms", vec![self.norms.len()], &self.norms);
    }
}

/// A graph's arrays as the file stores them.
struct GraphArrays {
    parts: HnswParts,
    offsets: Vec<i64>,
    /// The one zero centroid and empty lists every graph file carries.
    centroid: Vec<f32>,
    lists: ListArrays,
}

impl GraphArrays {
    fn of(g: &Hnsw) -> Self {
        let parts = g.to_parts();
        GraphArrays {
            offsets: parts.offsets.iter().map(|&o| o as i64).collect(),
            centroid: vec![0.0; parts.dim],
            lists: ListArrays::of(&[List::default()]),
            parts,
        }
    }

    fn add<'a>(&'a self, w: &mut Writer<'a>) {
        let (p, n) = (&self.parts, self.parts.levels.len());
        w.add("hnsw_levels", vec![n], &p.levels);
        w.add("hnsw_offsets", vec![self.offsets.len()], &self.offsets);
        w.add("hnsw_neighbors", vec![p.neighbors.len()], &p.neighbors);
        match p.storage {
            Storage::F32 => w.add("vectors", vec![n, p.dim], &p.vectors),
            Storage::Sq8 | Storage::Sq8F16 => {
                w.add("hnsw_codes", vec![n, p.dim], &p.codes);
                w.add("sq8_min", vec![p.sq_min.len()], &p.sq_min);
                w.add("sq8_step", vec![p.sq_scale.len()], &p.sq_scale);
            }
        }
        if p.storage == Storage::Sq8F16 {
            // float16 bits of the re-scoring copies.
            w.add("hnsw_f16", vec![n, p.dim], &p.half);
        }
    }

    fn meta(&self) -> Value {
        let p = &self.parts;
        serde_json::json!({
            "m": p.params.m,
            "ef_construction": p.params.ef_construction,
            "ef_search": p.params.ef_search,
            "level_seed": p.params.seed,
            "entry_point": p.entry_point,
        })
    }
}

impl Index {
    /// Write the index to `path` atomically (see [`io`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let ids = self.ids.as_slice();
        let mut w = Writer::default();
        let (lists, graph);
        let mut graph_meta = Value::Null;
        match &self.structure {
            Structure::Lists(l) => {
                lists = ListArrays::of(&l.lists);
                w.add("centroids", vec![l.lists.len(), self.dim], &l.centroids);
                w.add("ids", vec![self.len()], &ids);
                lists.add(&mut w);
                l.codec.save(&mut w, self.dim);
                if let Some(raw) = &l.raw {
                    w.add("vectors", vec![self.len(), self.dim], raw.data.as_slice());
                }
            }
            Structure::Graph(g) => {
                graph = GraphArrays::of(g);
                w.add("centroids", vec![1, self.dim], &graph.centroid);
                w.add("ids", vec![self.len()], &ids);
                graph.lists.add(&mut w);
                graph.add(&mut w);
                graph_meta = graph.meta();
            }
        }
        let meta = serde_json::json!({
            "library": "mlvec",
            "kind": self.spec.to_string(),
            "dim": self.dim,
            "metric": self.metric.name(),
            "seed": self.seed,
            "trained": self.trained,
            "count": self.len(),
            "nlist": self.nlist(),
            "next_id": self.next_id,
            "hnsw": graph_meta,
        });
        w.write(path, meta)
    }

    /// Read an index written by [`Index::save`]. With `mmap`, the arrays of list kinds stay in
    /// the mapped file (copied into memory only when the index is modified); a graph is read
    /// into memory (its links are updated in place).
    pub fn load(path: &Path, mmap: bool) -> Result<Self> {
        let r = Reader::open(path, mmap)?;
        let m = &r.meta;
        let bad = |what: &str| Error::Format(format!("{}: bad header field {what:?}", path.display()));
        let kind = m["kind"].as_str().ok_or_else(|| bad("kind"))?;
        let dim = m["dim"].as_u64().ok_or_else(|| bad("dim"))? as usize;
        let metric =
            Metric::parse(m["metric"].as_str().ok_or_else(|| bad("metric"))?).map_err(|_| bad("metric"))?;
        let seed = m["seed"].as_u64().ok_or_else(|| bad("seed"))?;
        let count = m["count"].as_u64().ok_or_else(|| bad("count"))? as usize;
        let nl = m["nlist"].as_u64().ok_or_else(|| bad("nlist"))? as usize;
        let trained = m["trained"].as_bool().ok_or_else(|| bad("trained"))?;
        let next_id = m["next_id"].as_i64().ok_or_else(|| bad("next_id"))?;
        let spec = factory::parse(kind).map_err(|_| bad("kind"))?;
        let mut idx = Index::from_spec(dim, spec, metric, seed).map_err(|e| Error::Format(e.to_string()))?;
        if nl != spec.nlist.max(1) || dim == 0 {
            return Err(bad("nlist"));
        }
        idx.trained = trained;
        idx.next_id = next_id;
        let centroids = r.array::<f32>("centroids", Some(nl * dim))?;
        let mut ids = r.array::<i64>("ids", Some(count))?;
        match &mut idx.structure {
            Structure::Lists(l) => {
                l.set_centroids(centroids.as_slice().to_vec());
                load_lists(l, &r, path, trained, count)?;
            }
            Structure::Graph(g) => {
                *g = load_graph(&r, path, spec, dim, metric, count, g.storage(), &ids)?;
                // The graph owns copies of its arrays (its links are atomics), so the ids are
                // owned too.
                ids.to_mut();
            }
        }
        idx.ids = SlotIds::from_buf(ids);
        Ok(idx)
    }
}

/// The codec and inverted lists of a list-kind file.
fn load_lists(l: &mut Ivf, r: &Reader, path: &Path, trained: bool, count: usize) -> Result<()> {
    let (dim, nl) = (l.dim, l.centroids.len() / l.dim);
    if trained {
        l.codec = Codec::load(l.spec.codec, r, dim)?;
    }
    let lay = l.layout();
    let sizes = r.array::<u32>("list_sizes", Some(nl))?;
    let sizes = sizes.as_slice();
    let total: usize = sizes.iter().map(|&s| s as usize).sum();
    if total != count {
        return Err(Error::Format(format!(
            "{}: list sizes sum to {total}, header says {count} vectors",
            path.display()
        )));
    }
    // Format version 1 stored binary codes and their 3 floats one vector after another; they
    // are converted to the blocked layout on load (in memory, not mapped).
    let v1_binary = lay.binary && r.version < 2;
    let code_bytes = |n: usize| match lay.fastscan_m {
        Some(m) => fastscan::bytes_for(m, n),
        None if lay.binary && !v1_binary => binary::bytes_for(lay.code_size, n),
        None => n * lay.code_size,
    };
    let aux_len = |n: usize| {
        if lay.binary && !v1_binary {
            n * binary::EXTRA
        } else {
            n * lay.aux
        }
    };
    let slots = r.array::<u32>("list_slots", Some(count))?;
    let codes = r.array::<u8>(
        "list_codes",
        Some(sizes.iter().map(|&s| code_bytes(s as usize)).sum()),
    )?;
    let vecs = r.array::<f32>("list_vecs", Some(count * lay.vec_dim))?;
    let aux = r.array::<f32>("list_aux", Some(sizes.iter().map(|&s| aux_len(s as usize)).sum()))?;
    let norms = r.array::<f32>("list_norms", Some(if lay.norms { count } else { 0 }))?;
    if slots.as_slice().iter().any(|&s| s as usize >= count) {
        return Err(Error::Format(format!(
            "{}: a list refers to a missing vector",
            path.display()
        )));
    }
    let (mut o_s, mut o_c, mut o_a) = (0usize, 0usize, 0usize);
    l.lists = sizes
        .iter()
        .map(|&s| {
            let s = s as usize;
            let (cb, ab) = (code_bytes(s), aux_len(s));
            let (lcodes, laux) = if v1_binary {
                let (c, e) = binary::from_flat(
                    &codes.as_slice()[o_c..o_c + cb],
                    &aux.as_slice()[o_a..o_a + ab],
                    lay.code_size,
                );
                (Buf::Owned(c), Buf::Owned(e))
            } else {
                (sub(&codes, o_c, cb), sub(&aux, o_a, ab))
            };
            let list = List {
                slots: slots.as_slice()[o_s..o_s + s].to_vec(),
                codes: lcodes,
                vecs: sub(&vecs, o_s * lay.vec_dim, s * lay.vec_dim),
                aux: laux,
                norms: sub(
                    &norms,
                    if lay.norms { o_s } else { 0 },
                    if lay.norms { s } else { 0 },
                ),
            };
            o_s += s;
            o_c += cb;
            o_a += ab;
            list
        })
        .collect();
    l.count = count;
    if let Some(raw) = &mut l.raw {
        raw.data = r.array::<f32>("vectors", Some(count * dim))?;
    }
    Ok(())
}

/// The graph of an `HNSW<M>` file.
#[allow(clippy::too_many_arguments)]
fn load_graph(
    r: &Reader,
    path: &Path,
    spec: IndexSpec,
    dim: usize,
    metric: Metric,
    count: usize,
    storage: Storage,
    ids: &Buf<i64>,
) -> Result<Hnsw> {
    let m = &r.meta;
    let bad = |what: &str| Error::Format(format!("{}: bad header field \"hnsw.{what}\"", path.display()));
    let h = &m["hnsw"];
    let us = |what: &str| h[what].as_u64().map(|v| v as usize).ok_or_else(|| bad(what));
    let params = Params {
        m: us("m")?,
        ef_construction: us("ef_construction")?,
        ef_search: us("ef_search")?,
        seed: h["level_seed"].as_u64().ok_or_else(|| bad("level_seed"))?,
    };
    if Some(params.m) != spec.hnsw_m {
        return Err(bad("m"));
    }
    if spec.hnsw_efc.is_some_and(|e| e != params.ef_construction) {
        return Err(bad("ef_construction"));
    }
    let entry_point = match &h["entry_point"] {
        Value::Null => None,
        v => Some(
            v.as_u64()
                .filter(|&e| e < u32::MAX as u64)
                .ok_or_else(|| bad("entry_point"))? as u32,
        ),
    };
    let trained = m["trained"].as_bool().unwrap_or(false);
    let levels = r.array::<u8>("hnsw_levels", Some(count))?.as_slice().to_vec();
    let n_lists: usize = levels.iter().map(|&l| l as usize + 1).sum();
    let offsets = r.array::<i64>("hnsw_offsets", Some(n_lists + 1))?;
    if offsets.as_slice().iter().any(|&o| o < 0) {
        return Err(Error::Format(format!("{}: negative HNSW offset", path.display())));
    }
    // Ids name nodes here: each at most once (as every index keeps them).
    let mut seen = std::collections::HashSet::with_capacity(count);
    for &id in ids.as_slice() {
        if id < 0 {
            return Err(Error::Format(format!("{}: negative id", path.display())));
        }
        if !seen.insert(id) {
            return Err(Error::Format(format!(
                "{}: HNSW parts: id {id} appears twice",
                path.display()
            )));
        }
    }
    let (mut vectors, mut codes, mut sq_min, mut sq_scale) = (vec![], vec![], vec![], vec![]);
    let mut half = vec![];
    if storage == Storage::Sq8F16 {
        half = r.array::<u16>("hnsw_f16", Some(count * dim))?.as_slice().to_vec();
    }
    match storage {
        Storage::F32 => vectors = r.array::<f32>("vectors", Some(count * dim))?.as_slice().to_vec(),
        Storage::Sq8 | Storage::Sq8F16 => {
            codes = r
                .array::<u8>("hnsw_codes", Some(count * dim))?
                .as_slice()
                .to_vec();
            let range = if trained || count > 0 { dim } else { 0 };
            sq_min = r.array::<f32>("sq8_min", Some(range))?.as_slice().to_vec();
            sq_scale = r.array::<f32>("sq8_step", Some(range))?.as_slice().to_vec();
        }
    }
    let parts = HnswParts {
        dim,
        metric,
        storage,
        params,
        levels,
        offsets: offsets.as_slice().iter().map(|&o| o as u64).collect(),
        neighbors: r.array::<u32>("hnsw_neighbors", None)?.as_slice().to_vec(),
        vectors,
        codes,
        half,
        sq_min,
        sq_scale,
        entry_point,
    };
    Hnsw::from_parts(parts).map_err(|e| Error::Format(format!("{}: {e}", path.display())))
}
