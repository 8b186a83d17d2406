//! The index description grammar (case-insensitive, comma-separated):
//!
//! ```text
//! spec    := [ "IVF" <nlist> "," ] codec [ "," "rescore" ]
//!          | "HNSW" <M> [ "_" <efc> ] [ "," "SQ8" [ "," "rescore16" ] ]
//!                                                 HNSW graph over float32 vectors or SQ8 codes
//! codec   := "Flat"                               full-precision float32
//!          | "SQ8"                                8-bit scalar quantization
//!          | "PQ" <m> [ "x8" ]                    product quantization, m bytes per vector
//!          | "PQ" <m> "x4" [ "fs" ]               4-bit PQ fast-scan, m/2 bytes per vector
//!          | "BIN" | "RaBitQ"                     1 bit per dimension after a random rotation
//! ```
//!
//! `HNSW<M>` links each node to `M` neighbours (`2M` on the bottom layer); the optional `_<efc>`
//! sets `ef_construction`, the candidate list size while inserting (default 200: larger builds
//! slower and gives a better graph), e.g. `"HNSW32_100,SQ8"`.
//!
//! `rescore` keeps the full-precision vectors (in memory, or memory-mapped after
//! `load(mmap=True)`) and re-ranks the best quantized candidates exactly. A graph's
//! `rescore16` keeps float16 copies (2 bytes per dimension) and re-ranks the whole candidate
//! list of the walk (`ef_search` nodes) with them.
//! Examples: `"Flat"`, `"IVF1024,Flat"`, `"IVF1024,SQ8"`, `"IVF1024,PQ48x4,rescore"`,
//! `"PQ32"`, `"IVF256,BIN,rescore"`, `"HNSW16"`, `"HNSW32_100,SQ8"`.

use crate::{Error, Result};
use std::fmt;

/// How stored vectors are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecSpec {
    Flat,
    Sq8,
    /// 8-bit PQ with `m` sub-quantizers.
    Pq8 {
        m: usize,
    },
    /// 4-bit PQ fast-scan with `m` sub-quantizers.
    Pq4 {
        m: usize,
    },
    Binary,
}

/// A parsed index description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexSpec {
    /// Number of inverted lists; 0 for no coarse quantizer.
    pub nlist: usize,
    pub codec: CodecSpec,
    pub rescore: bool,
    /// `Some(M)` for graph indexes (not built by this module).
    pub hnsw_m: Option<usize>,
    /// `ef_construction` of a graph index when the description sets it (`HNSW<M>_<efc>`).
    pub hnsw_efc: Option<usize>,
    /// A graph's `rescore16`: float16 copies re-score the walk's candidates.
    pub hnsw_rescore16: bool,
}

impl IndexSpec {
    /// Whether `train` must run before `add`.
    pub fn needs_training(&self) -> bool {
        self.nlist > 0 || self.codec != CodecSpec::Flat
    }
}

fn bad(s: &str, why: impl fmt::Display) -> Error {
    Error::invalid("index_kind", format!("cannot parse {s:?}: {why}"))
}

fn num(s: &str, part: &str, digits: &str) -> Result<usize> {
    digits
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| bad(s, format!("{part:?} needs a positive number")))
}

/// Parse a description such as `"IVF1024,PQ48x4,rescore"`.
pub fn parse(s: &str) -> Result<IndexSpec> {
    let parts: Vec<String> = s.split(',').map(|p| p.trim().to_ascii_lowercase()).collect();
    let mut i = 0;
    let mut spec = IndexSpec {
        nlist: 0,
        codec: CodecSpec::Flat,
        rescore: false,
        hnsw_m: None,
        hnsw_efc: None,
        hnsw_rescore16: false,
    };
    let first = parts.first().cloned().unwrap_or_default();
    if let Some(body) = first.strip_prefix("hnsw") {
        let (m, efc) = match body.split_once('_') {
            None => (body, None),
            Some((m, efc)) => (m, Some(efc)),
        };
        spec.hnsw_m = Some(num(s, &first, m)?);
        if let Some(efc) = efc {
            spec.hnsw_efc = Some(num(s, &format!("{first} (ef_construction)"), efc)?);
        }
        match parts.get(1).map(String::as_str) {
            None => {}
            Some("sq8") => spec.codec = CodecSpec::Sq8,
            Some(p) => return Err(bad(s, format!("HNSW supports Flat or SQ8 vectors, not {p:?}"))),
        }
        match parts.get(2).map(String::as_str) {
            None => {}
            Some("rescore16") if spec.codec == CodecSpec::Sq8 => spec.hnsw_rescore16 = true,
            Some("rescore16") => {
                return Err(bad(s, "rescore16 applies to SQ8 graphs (HNSW<M>,SQ8,rescore16)"))
            }
            Some("rescore" | "refine" | "rflat") => {
                return Err(bad(
                    s,
                    "HNSW graphs re-score from float16 copies: write HNSW<M>,SQ8,rescore16",
                ))
            }
            Some(p) => return Err(bad(s, format!("unexpected part {p:?} after the HNSW codec"))),
        }
        if parts.len() > 3 {
            return Err(bad(s, "unexpected parts after the HNSW codec"));
        }
        return Ok(spec);
    }
    if let Some(n) = first.strip_prefix("ivf") {
        spec.nlist = num(s, &first, n)?;
        i = 1;
    }
    let codec = parts
        .get(i)
        .ok_or_else(|| bad(s, "missing the codec (Flat, SQ8, PQ<m>, PQ<m>x4, BIN)"))?;
    spec.codec = match codec.as_str() {
        "flat" => CodecSpec::Flat,
        "sq8" => CodecSpec::Sq8,
        "bin" | "rabitq" | "binary" => CodecSpec::Binary,
        c if c.starts_with("pq") => {
            let body = &c[2..];
            let (m, bits) = match body.split_once('x') {
                None => (body, "8"),
                Some((m, b)) => (m, b),
            };
            let m = num(s, c, m)?;
            match bits {
                "8" => CodecSpec::Pq8 { m },
                "4" | "4fs" => CodecSpec::Pq4 { m },
                _ => return Err(bad(s, format!("{c:?}: PQ codes are 8 or 4 bits"))),
            }
        }
        c => return Err(bad(s, format!("unknown codec {c:?}"))),
    };
    i += 1;
    if let Some(p) = parts.get(i) {
        if p == "rescore" || p == "refine" || p == "rflat" {
            if spec.codec == CodecSpec::Flat {
                return Err(bad(
                    s,
                    "Flat vectors are exact already; rescore applies to quantized codecs",
                ));
            }
            spec.rescore = true;
            i += 1;
        }
    }
    if i < parts.len() {
        return Err(bad(s, format!("unexpected part {:?}", parts[i])));
    }
    Ok(spec)
}

impl fmt::Display for IndexSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = self.hnsw_m {
            write!(f, "HNSW{m}")?;
            if let Some(efc) = self.hnsw_efc {
                write!(f, "_{efc}")?;
            }
            if self.codec == CodecSpec::Sq8 {
                write!(f, ",SQ8")?;
            }
            if self.hnsw_rescore16 {
                write!(f, ",rescore16")?;
            }
            return Ok(());
        }
        if self.nlist > 0 {
            write!(f, "IVF{},", self.nlist)?;
        }
        match self.codec {
            CodecSpec::Flat => write!(f, "Flat")?,
            CodecSpec::Sq8 => write!(f, "SQ8")?,
            CodecSpec::Pq8 { m } => write!(f, "PQ{m}")?,
            CodecSpec::Pq4 { m } => write!(f, "PQ{m}x4")?,
            CodecSpec::Binary => write!(f, "BIN")?,
        }
        if self.rescore {
            write!(f, ",rescore")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let s = parse("IVF1024,PQ48x4,rescore").unwrap();
        assert_eq!(s.nlist, 1024);
        assert_eq!(s.codec, CodecSpec::Pq4 { m: 48 });
        assert!(s.rescore);
        let h = parse("HNSW32_100,SQ8").unwrap();
        assert_eq!(
            (h.hnsw_m, h.hnsw_efc, h.codec),
            (Some(32), Some(100), CodecSpec::Sq8)
        );
        let h = parse("HNSW16").unwrap();
        assert_eq!((h.hnsw_m, h.hnsw_efc, h.codec), (Some(16), None, CodecSpec::Flat));
        for ok in [
            "Flat",
            "IVF16,Flat",
            "SQ8",
            "PQ8",
            "PQ8x8",
            "IVF4,BIN,rescore",
            "HNSW32",
            "HNSW16,SQ8",
            "HNSW32_100",
            "hnsw24_64,sq8",
            "HNSW32_128,SQ8,rescore16",
        ] {
            let p = parse(ok).unwrap();
            assert_eq!(parse(&p.to_string()).unwrap(), p, "{ok}");
        }
        for bad in [
            "",
            "IVF",
            "IVF0,Flat",
            "PQ0",
            "PQ8x3",
            "Flat,rescore",
            "IVF4,SQ8,junk",
            "HNSW8,PQ4",
            "HNSW16_",
            "HNSW16_0",
            "HNSW_100",
            "HNSW16_x,SQ8",
            "HNSW16_100_5",
            "HNSW16,rescore16",
            "HNSW16,SQ8,rescore",
            "HNSW16,SQ8,rescore16,x",
            "IVF4,SQ8,rescore16",
            "LSH",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
