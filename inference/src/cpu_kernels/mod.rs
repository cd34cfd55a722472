//! CPU kernels that replace candle's generic ones where a small model spends its time.
//!
//! [`matmul::PackedMatrix`] repacks Q4_0/Q4_1/Q8_0 projection weights at load ([`quant`], then interleaved
//! in groups of 8 rows by [`tile`]) and multiplies them with int8-quantized activations using
//! [`tile_simd`]'s kernels, chosen at run time by CPU feature detection with a scalar fallback, on the
//! spinning thread pool of [`pool`]. Only CPU models use them; on CUDA the model keeps candle's QMatMul.

pub mod attention;
#[cfg(target_arch = "x86_64")]
mod attention_avx2;
pub mod elementwise;
#[cfg(target_arch = "x86_64")]
mod exp_avx2;
pub mod matmul;
pub mod pool;
pub mod quant;
pub mod tile;
pub mod tile_pair;
pub mod tile_simd;
