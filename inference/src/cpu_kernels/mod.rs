//! CPU kernels that replace candle's generic ones where a small model spends its time.
//!
//! [`matmul::PackedMatrix`] repacks Q4_0/Q4_1/Q8_0 projection weights at load ([`quant`]) and multiplies
//! them with int8-quantized activations using [`dot`]'s SIMD kernels, chosen at run time by CPU feature
//! detection with a scalar fallback. Only CPU models use them; on CUDA the model keeps candle's QMatMul.

pub mod attention;
pub mod dot;
pub mod matmul;
pub mod quant;
