//! The CUDA sources, embedded at build time, and the kernels each one defines.

/// Headers the kernel files include by name.
pub const HEADERS: &[(&str, &str)] = &[
    ("common.cuh", include_str!("../../../cuda_kernels/common.cuh")),
    (
        "maxsim_pair.cuh",
        include_str!("../../../cuda_kernels/maxsim_pair.cuh"),
    ),
];

/// One compilation unit: file name, source and the `extern "C"` kernels it must define.
pub struct Unit {
    pub file: &'static str,
    pub source: &'static str,
    pub kernels: &'static [&'static str],
}

pub const UNITS: &[Unit] = &[
    Unit {
        file: "maxsim.cu",
        source: include_str!("../../../cuda_kernels/maxsim.cu"),
        kernels: &[
            "maxsim_fwd_f32",
            "maxsim_fwd_f16",
            "maxsim_fwd_bf16",
            "maxsim_fwd_cols_f32",
            "maxsim_fwd_cols_f16",
            "maxsim_fwd_cols_bf16",
            "maxsim_bwd_gather_f32",
            "maxsim_bwd_gather_f16",
            "maxsim_bwd_gather_bf16",
            "maxsim_bwd_scatter_det_f32",
            "maxsim_bwd_scatter_det_f16",
            "maxsim_bwd_scatter_det_bf16",
            "maxsim_bwd_scatter_atomic_f32",
            "maxsim_bwd_scatter_atomic_f16",
            "maxsim_bwd_scatter_atomic_bf16",
        ],
    },
    Unit {
        file: "filip.cu",
        source: include_str!("../../../cuda_kernels/filip.cu"),
        kernels: &["filip_fwd_f32", "filip_fwd_f16", "filip_fwd_bf16"],
    },
    Unit {
        file: "contrastive.cu",
        source: include_str!("../../../cuda_kernels/contrastive.cu"),
        kernels: &[
            "clip_lse_partials_f32",
            "clip_lse_partials_f16",
            "clip_lse_partials_bf16",
            "clip_grad_f32",
            "clip_grad_f16",
            "clip_grad_bf16",
            "siglip_fwd_f32",
            "siglip_fwd_f16",
            "siglip_fwd_bf16",
            "siglip_bwd_f32",
            "siglip_bwd_f16",
            "siglip_bwd_bf16",
        ],
    },
    Unit {
        file: "quant.cu",
        source: include_str!("../../../cuda_kernels/quant.cu"),
        kernels: &["pq_scan", "hamming_scan", "select_k"],
    },
];

/// Every kernel name, in unit order.
pub fn kernel_names() -> Vec<&'static str> {
    UNITS.iter().flat_map(|u| u.kernels.iter().copied()).collect()
}
