//! What the CPU we run on can do, detected at run time (never assumed at compile time).

/// Names of the SIMD extensions the kernels can use that this CPU has.
pub fn features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(if std::arch::is_x86_feature_detected!($f) { out.push($f); })*};
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16",
            "avx512vpopcntdq",
            "popcnt"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        out.push("neon");
    }
    out
}
