//! A model's linear projections: candle's [`QMatMul`], or on the CPU our packed int8 kernels
//! ([`crate::cpu_kernels`]) for the GGML types they cover.

use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::{Device, Module, Result, Tensor};

use crate::cpu_kernels::matmul::PackedMatrix;

/// `y = x · Wᵀ` over the last dimension of `x`.
#[derive(Debug, Clone)]
pub enum Projection {
    /// candle's quantized or dense matmul (GPU, dense checkpoints, GGML types we do not pack).
    Candle(QMatMul),
    /// Repacked weights run by our CPU kernels.
    Packed(Arc<PackedMatrix>),
}

impl Projection {
    /// Packs `w` for our kernels when it lives on the CPU in a type they support.
    pub fn new(w: QMatMul, device: &Device) -> Result<Self> {
        if let (QMatMul::QTensor(t), true) = (&w, device.is_cpu())
            && let Some(p) = PackedMatrix::from_qtensor(t)?
        {
            return Ok(Self::Packed(Arc::new(p)));
        }
        Ok(Self::Candle(w))
    }

    /// Applies the projection.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(w) => w.forward(x),
            Self::Packed(w) => x.contiguous()?.apply_op1_no_bwd(w.as_ref()),
        }
    }
}
