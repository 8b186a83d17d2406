//! What the CPU we run on can do: detected once at run time (never assumed at compile time), and
//! the one place every kernel asks before it picks an instruction set.
//!
//! Setting `MLVEC_NO_AVX512` (to anything) before the first kernel runs hides the whole AVX-512
//! family from every kernel, so the AVX2 paths can be measured and tested on an AVX-512 machine.
//! [`features`] then reports what the kernels actually use.

use std::sync::OnceLock;

/// The SIMD extensions this CPU has and the kernels may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub sse4_2: bool,
    pub avx: bool,
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub popcnt: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512vnni: bool,
    pub avx512bf16: bool,
    pub avx512vpopcntdq: bool,
    /// aarch64's Advanced SIMD (always there on that target).
    pub neon: bool,
}

impl Features {
    /// Ask the CPU.
    fn probe() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            Features {
                sse4_2: has!("sse4.2"),
                avx: has!("avx"),
                avx2: has!("avx2"),
                fma: has!("fma"),
                f16c: has!("f16c"),
                popcnt: has!("popcnt"),
                avx512f: has!("avx512f"),
                avx512bw: has!("avx512bw"),
                avx512vl: has!("avx512vl"),
                avx512vnni: has!("avx512vnni"),
                avx512bf16: has!("avx512bf16"),
                avx512vpopcntdq: has!("avx512vpopcntdq"),
                neon: false,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Features {
            neon: cfg!(target_arch = "aarch64"),
            ..Features::default()
        }
    }

    /// The same set with every AVX-512 extension cleared.
    pub fn without_avx512(self) -> Self {
        Features {
            avx512f: false,
            avx512bw: false,
            avx512vl: false,
            avx512vnni: false,
            avx512bf16: false,
            avx512vpopcntdq: false,
            ..self
        }
    }

    /// AVX2 with FMA: what every 256-bit float kernel needs.
    pub fn avx2_fma(&self) -> bool {
        self.avx2 && self.fma
    }

    /// Names of the extensions present, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.sse4_2, "sse4.2"),
            (self.avx, "avx"),
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.f16c, "f16c"),
            (self.avx512f, "avx512f"),
            (self.avx512bw, "avx512bw"),
            (self.avx512vl, "avx512vl"),
            (self.avx512vnni, "avx512vnni"),
            (self.avx512bf16, "avx512bf16"),
            (self.avx512vpopcntdq, "avx512vpopcntdq"),
            (self.popcnt, "popcnt"),
            (self.neon, "neon"),
        ]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect()
    }
}

/// The features every kernel may use (detected on first call, `MLVEC_NO_AVX512` applied).
#[inline]
pub fn detected() -> &'static Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    FEATURES.get_or_init(|| {
        let f = Features::probe();
        if std::env::var_os("MLVEC_NO_AVX512").is_some() {
            f.without_avx512()
        } else {
            f
        }
    })
}

/// Names of the SIMD extensions the kernels use on this CPU.
pub fn features() -> Vec<&'static str> {
    detected().names()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hiding_avx512_keeps_the_rest() {
        let all = Features {
            avx2: true,
            fma: true,
            avx512f: true,
            avx512bw: true,
            avx512vpopcntdq: true,
            popcnt: true,
            ..Features::default()
        };
        let some = all.without_avx512();
        assert_eq!(some.names(), ["avx2", "fma", "popcnt"]);
        assert!(some.avx2_fma() && !some.avx512f);
        // What the kernels are told is what a probe found, less what the environment hides.
        let d = *detected();
        let probed = Features::probe();
        assert!(d == probed || d == probed.without_avx512());
    }
}
