//! Packed matmul timing alone, on SmolLM2-135M's projection shapes with random Q4_1 (layers) and Q8_0
//! (tied output) weights: the fastest and the median µs per call for 1, 4, 8, 16 and 256 tokens. For before/after checks of
//! `cpu_kernels`; `forward_bench` times the whole model.
//!
//! `cargo run --release -p anshin-inference --example matmul_bench [REPEATS]`

use std::time::Instant;

use anshin_inference::cpu_kernels::matmul::PackedMatrix;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

fn main() -> anyhow::Result<()> {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let shapes = [
        ("q/o 576x576", 576, 576, GgmlDType::Q4_1),
        ("k/v 192x576", 192, 576, GgmlDType::Q4_1),
        ("gate/up 1536x576", 1536, 576, GgmlDType::Q4_1),
        ("down 576x1536", 576, 1536, GgmlDType::Q4_1),
        ("lm_head 49152x576", 49152, 576, GgmlDType::Q8_0),
    ];
    for (name, rows, cols, dtype) in shapes {
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 1000.0)
            .collect();
        let qt = QTensor::quantize(&Tensor::from_vec(w, (rows, cols), &Device::Cpu)?, dtype)?;
        let m = PackedMatrix::from_qtensor(&qt)?
            .ok_or_else(|| anyhow::anyhow!("{dtype:?} not packed"))?;
        for tokens in [1, 4, 8, 12, 16, 256] {
            let x: Vec<f32> = (0..tokens * cols)
                .map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0)
                .collect();
            let mut dst = vec![0f32; tokens * rows];
            // Fewer repeats for the big ones: about the same time per line.
            let n = (repeats * 16 / tokens.max(16) / (rows / 576).max(1)).max(3);
            m.matmul(&x, &mut dst);
            // Each call timed alone: the minimum is the kernel's speed, the median what a loaded
            // machine leaves of it.
            let mut us: Vec<f64> = (0..n)
                .map(|_| {
                    let t = Instant::now();
                    m.matmul(&x, &mut dst);
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            us.sort_by(f64::total_cmp);
            let (min, median) = (us[0], us[n / 2]);
            let gmac = (rows * cols * tokens) as f64 / min / 1e3;
            println!(
                "{name:>18} tokens {tokens:>3}: min {min:>9.1} µs ({gmac:>6.1} GMAC/s), median {median:>9.1} µs"
            );
        }
    }
    Ok(())
}
