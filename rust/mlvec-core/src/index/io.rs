//! Persistence: a small self-describing container of named arrays, and buffers that are either
//! owned or memory-mapped from such a file.
//!
//! File layout (all integers little-endian; see docs/index-format.md):
//!
//! ```text
//! 0   8  magic  b"MLVECIDX"
//! 8   4  format version (u32, currently 2; version 1 stored binary codes one after another)
//! 12  4  reserved (0)
//! 16  8  header length H (u64)
//! 24  H  JSON header: {"meta": {...}, "arrays": [{"name", "dtype", "shape", "offset", "nbytes"}]}
//! ..     zero padding; every array starts at a multiple of 64 bytes
//! ..     array data
//! end-12 4  CRC-32 of every byte before it
//! end-8  8  b"MLVECEND"
//! ```
//!
//! Writes go to a temporary file in the destination folder, are fsynced, then renamed over the
//! destination, so a crash never leaves a half-written index under the final name.

use crate::{Error, Result};
use memmap2::Mmap;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

pub const MAGIC: &[u8; 8] = b"MLVECIDX";
pub const END: &[u8; 8] = b"MLVECEND";
pub const VERSION: u32 = 2;
const ALIGN: usize = 64;

/// Element types that may be viewed directly in a file's bytes.
pub trait Pod: Copy + Default + Send + Sync + 'static {
    const DTYPE: &'static str;
}
impl Pod for u8 {
    const DTYPE: &'static str = "u8";
}
impl Pod for u16 {
    const DTYPE: &'static str = "u16";
}
impl Pod for u32 {
    const DTYPE: &'static str = "u32";
}
impl Pod for i64 {
    const DTYPE: &'static str = "i64";
}
impl Pod for f32 {
    const DTYPE: &'static str = "f32";
}

/// An array that is owned, or a read-only view into a mapped file (copied on first write).
#[derive(Clone, Debug)]
pub enum Buf<T: Pod> {
    Owned(Vec<T>),
    Mapped {
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
}

impl<T: Pod> Default for Buf<T> {
    fn default() -> Self {
        Buf::Owned(Vec::new())
    }
}

impl<T: Pod> Buf<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            Buf::Owned(v) => v,
            Buf::Mapped { map, offset, len } => {
                // SAFETY: offsets are validated to lie inside the map and to be 64-byte aligned
                // (the map itself is page aligned); T is plain old data.
                unsafe { std::slice::from_raw_parts(map.as_ptr().add(*offset) as *const T, *len) }
            }
        }
    }

    /// Owned, mutable access (copies a mapped view once).
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let Buf::Mapped { .. } = self {
            *self = Buf::Owned(self.as_slice().to_vec());
        }
        match self {
            Buf::Owned(v) => v,
            Buf::Mapped { .. } => unreachable!(),
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held in memory (mapped views count 0: the OS pages them in and out).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Buf::Owned(v) => v.capacity() * std::mem::size_of::<T>(),
            Buf::Mapped { .. } => 0,
        }
    }

    /// Bytes this array accounts for in an index's size: the allocation when owned (capacity
    /// included), the mapped length otherwise.
    pub fn held_bytes(&self) -> usize {
        match self {
            Buf::Owned(_) => self.heap_bytes(),
            Buf::Mapped { len, .. } => len * std::mem::size_of::<T>(),
        }
    }

    pub fn is_mapped(&self) -> bool {
        matches!(self, Buf::Mapped { .. })
    }
}

fn as_bytes<T: Pod>(s: &[T]) -> &[u8] {
    // SAFETY: T is plain old data without padding.
    unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, std::mem::size_of_val(s)) }
}

/// Collects named arrays and writes them atomically.
#[derive(Default)]
pub struct Writer<'a> {
    arrays: Vec<(String, &'static str, Vec<usize>, &'a [u8])>,
}

impl<'a> Writer<'a> {
    pub fn add<T: Pod>(&mut self, name: impl Into<String>, shape: Vec<usize>, data: &'a [T]) {
        self.arrays.push((name.into(), T::DTYPE, shape, as_bytes(data)));
    }

    /// Write everything with `meta` as the header's `"meta"` object.
    pub fn write(&self, path: &Path, meta: Value) -> Result<()> {
        self.write_as(path, meta, VERSION)
    }

    /// [`Writer::write`] with an explicit format version (tests write older versions).
    pub(crate) fn write_as(&self, path: &Path, meta: Value, version: u32) -> Result<()> {
        // Header offsets depend on the header's own length: iterate until it is stable.
        let mut hlen_guess = 256usize;
        let (header, data_start) = loop {
            let start = (24 + hlen_guess).div_ceil(ALIGN) * ALIGN;
            let mut off = start;
            let mut table = Vec::new();
            for (name, dtype, shape, bytes) in &self.arrays {
                table.push(serde_json::json!({
                    "name": name, "dtype": dtype, "shape": shape, "offset": off, "nbytes": bytes.len()
                }));
                off = (off + bytes.len()).div_ceil(ALIGN) * ALIGN;
            }
            let mut h = serde_json::to_vec(&serde_json::json!({"meta": meta, "arrays": table}))
                .map_err(|e| Error::Format(format!("cannot encode the header: {e}")))?;
            if h.len() <= hlen_guess {
                h.resize(hlen_guess, b' ');
                break (h, start);
            }
            hlen_guess = h.len().next_power_of_two();
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let fname = path
            .file_name()
            .ok_or_else(|| Error::invalid("path", format!("{} names no file", path.display())))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            fname.to_string_lossy(),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let result = (|| -> Result<()> {
            let f = std::fs::File::create(&tmp)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let mut crc = crc32fast::Hasher::new();
            let mut pos = 0usize;
            let mut put = |w: &mut std::io::BufWriter<std::fs::File>, b: &[u8]| -> Result<()> {
                crc.update(b);
                w.write_all(b)?;
                pos += b.len();
                Ok(())
            };
            put(&mut w, MAGIC)?;
            put(&mut w, &version.to_le_bytes())?;
            put(&mut w, &0u32.to_le_bytes())?;
            put(&mut w, &(header.len() as u64).to_le_bytes())?;
            put(&mut w, &header)?;
            let zeros = [0u8; ALIGN];
            let mut at = 24 + header.len();
            put(&mut w, &zeros[..data_start - at])?;
            at = data_start;
            for (_, _, _, bytes) in &self.arrays {
                put(&mut w, bytes)?;
                at += bytes.len();
                let pad = at.div_ceil(ALIGN) * ALIGN - at;
                put(&mut w, &zeros[..pad])?;
                at += pad;
            }
            let sum = crc.finalize();
            w.write_all(&sum.to_le_bytes())?;
            w.write_all(END)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, path)?;
            // Make the rename itself durable.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// An opened, validated file: its header and its arrays (owned copies or mapped views).
pub struct Reader {
    pub meta: Value,
    /// The file's format version (1 ..= [`VERSION`]).
    pub version: u32,
    data: Arc<Mmap>,
    table: Vec<(String, String, Vec<usize>, usize, usize)>,
    mmap: bool,
}

impl Reader {
    /// Open and validate `path`: magic, version, footer, checksum, header and array bounds.
    pub fn open(path: &Path, mmap: bool) -> Result<Self> {
        let file = std::fs::File::open(path)?;
        // SAFETY: the file is opened read-only; mlvec never writes a file in place (saves
        // replace it by rename), so the mapping stays valid while the index lives.
        let map = unsafe { Mmap::map(&file)? };
        let n = map.len();
        let what = path.display();
        if n < 24 + 12 || &map[..8] != MAGIC {
            if n >= 8 && &map[..8] == MAGIC {
                return Err(Error::Format(format!(
                    "{what}: truncated mlvec index file ({n} bytes)"
                )));
            }
            return Err(Error::Format(format!(
                "{what}: not an mlvec index file (bad magic)"
            )));
        }
        let version = u32::from_le_bytes(map[8..12].try_into().expect("4 bytes"));
        if version > VERSION {
            return Err(Error::Format(format!(
                "{what}: index format version {version} is newer than this mlvec reads (up to {VERSION}); upgrade mlvec"
            )));
        }
        if version == 0 {
            return Err(Error::Format(format!("{what}: invalid index format version 0")));
        }
        if &map[n - 8..] != END {
            return Err(Error::Format(format!(
                "{what}: truncated mlvec index file (end marker missing; {n} bytes)"
            )));
        }
        let stored = u32::from_le_bytes(map[n - 12..n - 8].try_into().expect("4 bytes"));
        let actual = crc32fast::hash(&map[..n - 12]);
        if stored != actual {
            return Err(Error::Format(format!(
                "{what}: corrupted mlvec index file (checksum {actual:08x} != stored {stored:08x})"
            )));
        }
        let hlen = u64::from_le_bytes(map[16..24].try_into().expect("8 bytes")) as usize;
        if 24 + hlen > n - 12 {
            return Err(Error::Format(format!(
                "{what}: header length {hlen} exceeds the file"
            )));
        }
        let header: Value = serde_json::from_slice(&map[24..24 + hlen])
            .map_err(|e| Error::Format(format!("{what}: unreadable header: {e}")))?;
        let bad = |m: &str| Error::Format(format!("{what}: bad header: {m}"));
        let mut table = Vec::new();
        for a in header["arrays"].as_array().ok_or_else(|| bad("no array table"))? {
            let name = a["name"]
                .as_str()
                .ok_or_else(|| bad("array without name"))?
                .to_string();
            let dtype = a["dtype"]
                .as_str()
                .ok_or_else(|| bad("array without dtype"))?
                .to_string();
            let shape: Vec<usize> = a["shape"]
                .as_array()
                .ok_or_else(|| bad("array without shape"))?
                .iter()
                .map(|v| v.as_u64().map(|x| x as usize))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("bad shape"))?;
            let off = a["offset"].as_u64().ok_or_else(|| bad("array without offset"))? as usize;
            let nb = a["nbytes"].as_u64().ok_or_else(|| bad("array without nbytes"))? as usize;
            if !off.is_multiple_of(ALIGN) || off.checked_add(nb).is_none_or(|e| e > n - 12) {
                return Err(bad(&format!("array {name} lies outside the file")));
            }
            table.push((name, dtype, shape, off, nb));
        }
        Ok(Reader {
            meta: header["meta"].clone(),
            version,
            data: Arc::new(map),
            table,
            mmap,
        })
    }

    /// The array `name` of element type `T` with `expect` elements (`None`: any count).
    pub fn array<T: Pod>(&self, name: &str, expect: Option<usize>) -> Result<Buf<T>> {
        let (_, dtype, _, off, nb) = self
            .table
            .iter()
            .find(|t| t.0 == name)
            .ok_or_else(|| Error::Format(format!("index file lacks the array {name:?}")))?;
        if dtype != T::DTYPE || nb % std::mem::size_of::<T>() != 0 {
            return Err(Error::Format(format!(
                "array {name:?}: dtype {dtype} ({nb} bytes), expected {}",
                T::DTYPE
            )));
        }
        let len = nb / std::mem::size_of::<T>();
        if let Some(e) = expect {
            if e != len {
                return Err(Error::Format(format!(
                    "array {name:?}: {len} elements, expected {e}"
                )));
            }
        }
        let view = Buf::Mapped {
            map: self.data.clone(),
            offset: *off,
            len,
        };
        Ok(if self.mmap {
            view
        } else {
            Buf::Owned(view.as_slice().to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("mlvec-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.mlvec");
        let a: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let b: Vec<i64> = vec![-1, 5, 7];
        let mut w = Writer::default();
        w.add("a", vec![10, 10], &a);
        w.add("b", vec![3], &b);
        w.write(&p, serde_json::json!({"x": 1})).unwrap();
        for mmap in [false, true] {
            let r = Reader::open(&p, mmap).unwrap();
            assert_eq!(r.meta["x"], 1);
            assert_eq!(r.array::<f32>("a", Some(100)).unwrap().as_slice(), &a[..]);
            assert_eq!(r.array::<i64>("b", None).unwrap().as_slice(), &b[..]);
            assert!(r.array::<u8>("a", None).is_err());
        }
        let bytes = std::fs::read(&p).unwrap();
        let mut bad = bytes.clone();
        bad[200] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(Reader::open(&p, false), Err(Error::Format(_))));
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(Reader::open(&p, false), Err(Error::Format(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
