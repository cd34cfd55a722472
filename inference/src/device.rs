//! Which device the model runs on: CUDA device 0 when the crate is built with the `cuda` feature,
//! else the CPU; `ANSHIN_DEVICE=cpu|cuda` overrides it (tests, benchmarks, and a CUDA build that
//! should still run on the CPU).
//!
//! On CUDA, quantized weights are dequantized and multiplied in f32 (cuBLAS, no TF32): the same math as
//! the f32 reference (`inference/scripts/reference_forward.py`), and on the H100 the SmolLM2 golden test
//! passes this way (largest logit gap to llama.cpp 1.06). `ANSHIN_CUDA_INT8_MATMUL=1` uses candle's int8
//! kernels instead (activations quantized to 8 bits per block of 32, like llama.cpp's CUDA backend): they
//! land on the other side of the exact logits from llama.cpp's CPU kernels and miss the golden tolerance
//! (26.44 against llama.cpp's 24.33 and the exact 25.24 on one prompt), and were no faster for this model
//! (docs/inference.md, "GPU").

use candle_core::Device;

/// Environment variable that picks the device: `cpu` or `cuda` (CUDA device 0).
pub const DEVICE_ENV: &str = "ANSHIN_DEVICE";

/// Environment variable: `1` makes CUDA matmuls quantize activations to int8 instead of dequantizing
/// weights to f32.
pub const CUDA_INT8_MATMUL_ENV: &str = "ANSHIN_CUDA_INT8_MATMUL";

/// Errors choosing a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// `ANSHIN_DEVICE` names something other than `cpu` or `cuda`.
    #[error("{DEVICE_ENV}={0:?} is not a device: use `cpu` or `cuda`")]
    Unknown(String),
    /// CUDA was asked for, but this binary was built without the `cuda` feature.
    #[error(
        "{DEVICE_ENV}=cuda but this binary was built without CUDA: rebuild with `--features cuda` \
         (see docs/inference.md, \"GPU\")"
    )]
    NotBuilt,
    /// The CUDA driver or device could not be opened.
    #[error("cannot open CUDA device 0 (is the NVIDIA driver loaded and a GPU visible?): {0}")]
    Cuda(#[source] candle_core::Error),
}

/// The device named by `ANSHIN_DEVICE`, else the build's default (CUDA with the `cuda` feature).
pub fn from_env() -> Result<Device, DeviceError> {
    match std::env::var(DEVICE_ENV) {
        Ok(name) => named(&name),
        Err(_) if cfg!(feature = "cuda") => named("cuda"),
        Err(_) => Ok(Device::Cpu),
    }
}

/// The device called `name` (`cpu` or `cuda`).
pub fn named(name: &str) -> Result<Device, DeviceError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(),
        other => Err(DeviceError::Unknown(other.to_string())),
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device, DeviceError> {
    let int8 = std::env::var(CUDA_INT8_MATMUL_ENV).is_ok_and(|v| v == "1");
    candle_core::quantized::cuda::set_force_dmmv(!int8);
    candle_core::cuda_backend::set_gemm_reduced_precision_f32(false);
    Device::new_cuda(0).map_err(DeviceError::Cuda)
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuilt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(matches!(named("cpu"), Ok(Device::Cpu)));
        let err = named("tpu").expect_err("not a device").to_string();
        assert!(err.contains("use `cpu` or `cuda`"), "{err}");
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(named("cuda"), Err(DeviceError::NotBuilt)));
    }
}
