//! Weights interleaved in groups of [`LANES`] rows, and the tile kernel that multiplies one group with up
//! to [`MAX_TOKENS`] quantized activation rows.
//!
//! Within a group, each 32-byte vector holds 4 consecutive quantized values of every row of the group
//! (row `r` in bytes `4r..4r + 4`). Broadcasting 4 activation bytes and one `vpdpbusd` (or `maddubs`)
//! then accumulates 4 products per row in each of the 8 int32 lanes, so a lane is a weight row and a
//! block's integer dots of 8 rows land in one vector. The float work (scale by `d_w · d_a`, add the
//! offset term `m_w · s_a`) is then one convert and two FMAs per block for 8 rows and one token, instead
//! of per row; and a block's weights are unpacked once for all the tokens of a tile. Outputs of a tile
//! are 8 consecutive features of each token, stored straight into the token-major result.
//!
//! Both GGML types take one form: a 4-bit value is `d·q + m` (`q` in `0..16`, two values a byte: low
//! nibbles are values `4k..4k + 4` of a block, high nibbles `16 + 4k..`); an 8-bit value is stored
//! unsigned, `u = q + 128`, with `m = -128·d`, so `d·u + m = d·q` and one unsigned×signed instruction
//! serves both (the activations' block sums must then be exact, [`super::quant::BlockSum::Exact`], as
//! Q8_0's are: the offset term cancels `128·Σq`). [`tile_scalar`] is the portable reference the SIMD
//! kernels ([`super::tile_simd`]) are held to in tests.

use half::f16;

use super::quant::{ActRow, BLOCK, Packed4, Packed8};

/// Weight rows per group: the int32 lanes of a 256-bit vector.
pub const LANES: usize = 8;

/// Activation rows one tile call takes at most.
pub const MAX_TOKENS: usize = 8;

/// How the quantized values of a [`Tiled`] matrix are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    /// Two 4-bit values a byte (from Q4_0 or Q4_1).
    Four,
    /// One offset 8-bit value a byte (from Q8_0).
    Eight,
}

impl Bits {
    /// Bytes of one block of one group.
    pub const fn group_block_bytes(self) -> usize {
        match self {
            Self::Four => LANES * 16,
            Self::Eight => LANES * BLOCK,
        }
    }
}

/// A weight matrix in groups of [`LANES`] rows; the last group is padded with zero rows.
#[derive(Debug, Clone)]
pub struct Tiled {
    /// Value storage.
    pub bits: Bits,
    /// Real (unpadded) rows.
    pub rows: usize,
    /// Blocks per row.
    pub blocks: usize,
    /// Scale per row and block, `[group, block, lane]`, as f16 (GGML's own precision: exact, and a sixth
    /// fewer bytes to stream than f32 when decoding is bound by memory).
    pub d: Vec<f16>,
    /// Offset per row and block, `[group, block, lane]` (4-bit only; for 8-bit it is `-128·d`).
    pub m: Vec<f16>,
    /// Quantized values, [`Bits::group_block_bytes`] per group and block.
    pub qs: Vec<u8>,
}

impl Tiled {
    /// Interleaves `rows` rows of 4-bit blocks.
    pub fn from_packed4(p: &Packed4, rows: usize) -> Self {
        let blocks = p.d.len() / rows.max(1);
        let mut t = Self::zeroed(Bits::Four, rows, blocks);
        for r in 0..rows {
            for b in 0..blocks {
                let (src, (g, lane)) = (r * blocks + b, (r / LANES, r % LANES));
                let at = t.scale_index(g, b, lane);
                // Exact: both came from f16 (Q4_0's `m = -8·d` too; `PackedMatrix::from_qtensor` leaves tensors
                // whose `m` would overflow f16 on candle).
                t.d[at] = f16::from_f32(p.d[src]);
                t.m[at] = f16::from_f32(p.m[src]);
                let base = (g * blocks + b) * Bits::Four.group_block_bytes();
                for (i, &byte) in p.qs[src * 16..src * 16 + 16].iter().enumerate() {
                    t.qs[base + (i / 4) * 32 + lane * 4 + i % 4] = byte;
                }
            }
        }
        t
    }

    /// Interleaves `rows` rows of 8-bit blocks, offsetting the values to unsigned.
    pub fn from_packed8(p: &Packed8, rows: usize) -> Self {
        let blocks = p.d.len() / rows.max(1);
        let mut t = Self::zeroed(Bits::Eight, rows, blocks);
        for r in 0..rows {
            for b in 0..blocks {
                let (src, (g, lane)) = (r * blocks + b, (r / LANES, r % LANES));
                let at = t.scale_index(g, b, lane);
                t.d[at] = f16::from_f32(p.d[src]);
                let base = (g * blocks + b) * Bits::Eight.group_block_bytes();
                for (i, &q) in p.qs[src * BLOCK..(src + 1) * BLOCK].iter().enumerate() {
                    t.qs[base + (i / 4) * 32 + lane * 4 + i % 4] = (q as i16 + 128) as u8;
                }
            }
        }
        t
    }

    fn zeroed(bits: Bits, rows: usize, blocks: usize) -> Self {
        let n = rows.div_ceil(LANES) * blocks;
        // Padding rows: zero values with d = 0 for 8-bit, so that `d·u + m` is 0 there too.
        Self {
            bits,
            rows,
            blocks,
            d: vec![f16::ZERO; n * LANES],
            m: vec![f16::ZERO; if bits == Bits::Four { n * LANES } else { 0 }],
            qs: vec![if bits == Bits::Eight { 128 } else { 0 }; n * bits.group_block_bytes()],
        }
    }

    /// Groups of [`LANES`] rows, the last one possibly padded.
    pub fn groups(&self) -> usize {
        self.rows.div_ceil(LANES)
    }

    fn scale_index(&self, g: usize, b: usize, lane: usize) -> usize {
        (g * self.blocks + b) * LANES + lane
    }

    /// The unsigned stored value `q` (4-bit) or `u` (8-bit) of row `r` at column `c`.
    pub fn stored(&self, r: usize, c: usize) -> u8 {
        let (g, lane, b, j) = (r / LANES, r % LANES, c / BLOCK, c % BLOCK);
        let base = (g * self.blocks + b) * self.bits.group_block_bytes();
        match self.bits {
            Bits::Four => {
                let i = j % 16;
                let byte = self.qs[base + (i / 4) * 32 + lane * 4 + i % 4];
                if j < 16 { byte & 0x0F } else { byte >> 4 }
            }
            Bits::Eight => self.qs[base + (j / 4) * 32 + lane * 4 + j % 4],
        }
    }

    /// The dequantized weight at row `r`, column `c` (reference code and tests).
    pub fn value(&self, r: usize, c: usize) -> f32 {
        let at = self.scale_index(r / LANES, c / BLOCK, r % LANES);
        self.d[at].to_f32() * self.stored(r, c) as f32 + self.offset(r, c / BLOCK)
    }

    /// The offset `m` of row `r` in block `b`.
    pub fn offset(&self, r: usize, b: usize) -> f32 {
        let at = self.scale_index(r / LANES, b, r % LANES);
        match self.bits {
            Bits::Four => self.m[at].to_f32(),
            Bits::Eight => -128.0 * self.d[at].to_f32(),
        }
    }

    /// One group's slices: `(d, m, qs)`, the scales and offsets `[block, lane]` (`m` empty for 8-bit).
    #[inline]
    pub fn group(&self, g: usize) -> (&[f16], &[f16], &[u8]) {
        self.span(g..g + 1)
    }

    /// [`Self::group`] for consecutive groups: their scales, offsets and values, each one slice.
    #[inline]
    pub fn span(&self, groups: std::ops::Range<usize>) -> (&[f16], &[f16], &[u8]) {
        let (n, bytes) = (
            self.blocks * LANES,
            self.blocks * self.bits.group_block_bytes(),
        );
        let (a, b) = (groups.start, groups.end);
        let m = match self.bits {
            Bits::Four => &self.m[a * n..b * n],
            Bits::Eight => &[],
        };
        (&self.d[a * n..b * n], m, &self.qs[a * bytes..b * bytes])
    }
}

/// `out[t][lane] = Σ_c W[8g + lane, c] · acts[t][c]` for group `g`, the portable reference: per block an
/// exact integer dot, scaled by `d_w · d_a`, plus `m_w · s_a` for 4-bit weights (for 8-bit ones the
/// integer dot is taken over the signed values, which is the same sum).
pub fn tile_scalar(w: &Tiled, g: usize, acts: &[ActRow<'_>], out: &mut [[f32; LANES]]) {
    for (a, o) in acts.iter().zip(out.iter_mut()) {
        for (lane, o) in o.iter_mut().enumerate() {
            let r = g * LANES + lane;
            let mut sum = 0f32;
            for b in 0..w.blocks {
                let at = w.scale_index(g, b, lane);
                let aq = &a.qs[b * BLOCK..(b + 1) * BLOCK];
                let sumi: i32 = (0..BLOCK)
                    .map(|j| {
                        let q = w.stored(r, b * BLOCK + j) as i32;
                        let q = if w.bits == Bits::Eight { q - 128 } else { q };
                        q * aq[j] as i32
                    })
                    .sum();
                sum += w.d[at].to_f32() * a.d[b] * sumi as f32;
                if w.bits == Bits::Four {
                    sum += w.m[at].to_f32() * a.s[b];
                }
            }
            *o = sum;
        }
    }
}

/// A [`Tiled`] matrix of random Q4_1 (`Bits::Four`) or Q8_0 (`Bits::Eight`) blocks, for kernel tests.
#[cfg(test)]
pub(crate) fn random_tiled(
    rng: &mut rand::rngs::StdRng,
    bits: Bits,
    rows: usize,
    blocks: usize,
) -> Tiled {
    use super::quant::{Packed4, Packed8};
    use rand::Rng;
    let mut raw = Vec::new();
    for _ in 0..rows * blocks {
        raw.extend(f16::from_f32(rng.random_range(0.001..0.05)).to_le_bytes());
        match bits {
            Bits::Four => {
                raw.extend(f16::from_f32(rng.random_range(-0.4..0.0)).to_le_bytes());
                raw.extend((0..16).map(|_| rng.random::<u8>()));
            }
            // The extremes included: the AVX2 8-bit dot must not saturate.
            Bits::Eight => raw.extend((0..32).map(|_| rng.random_range(-127i8..=127) as u8)),
        }
    }
    match bits {
        Bits::Four => Tiled::from_packed4(&Packed4::from_q4_1(&raw), rows),
        Bits::Eight => Tiled::from_packed8(&Packed8::from_q8_0(&raw), rows),
    }
}

/// `tokens` rows of random activations over `blocks` blocks, quantized with the block sum that `bits`
/// weights pair with (8-bit weights need exact sums: their offset cancels `128·Σq`), for kernel tests.
#[cfg(test)]
pub(crate) fn random_acts(
    rng: &mut rand::rngs::StdRng,
    bits: Bits,
    blocks: usize,
    tokens: usize,
) -> super::quant::QuantizedRows {
    use super::quant::{BlockSum, QuantizedRows};
    use rand::Rng;
    let x: Vec<f32> = (0..tokens * blocks * BLOCK)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let sum = match bits {
        Bits::Four => BlockSum::Half,
        Bits::Eight => BlockSum::Exact,
    };
    QuantizedRows::quantize(&x, blocks * BLOCK, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaving_keeps_every_value_in_place() {
        let (rows, blocks) = (11, 2);
        let mut raw = Vec::new();
        for i in 0..rows * blocks {
            raw.extend(f16::from_f32(0.25).to_le_bytes());
            raw.extend(f16::from_f32(-(i as f32)).to_le_bytes());
            raw.extend((0..16u8).map(|j| (j + i as u8) & 0x0F | ((15 - j) << 4)));
        }
        let p = Packed4::from_q4_1(&raw);
        let t = Tiled::from_packed4(&p, rows);
        assert_eq!(t.groups(), 2);
        for r in 0..rows {
            for c in 0..blocks * BLOCK {
                assert_eq!(t.value(r, c), p.value(r * blocks + c / BLOCK, c % BLOCK));
            }
        }
        let raw8: Vec<u8> = (0..rows * blocks)
            .flat_map(|i| {
                let mut b = f16::from_f32(0.5).to_le_bytes().to_vec();
                b.extend((0..32).map(|j| (j as i8 - 16 + i as i8) as u8));
                b
            })
            .collect();
        let p8 = Packed8::from_q8_0(&raw8);
        let t8 = Tiled::from_packed8(&p8, rows);
        for r in 0..rows {
            for c in 0..blocks * BLOCK {
                assert_eq!(t8.value(r, c), p8.value(r * blocks + c / BLOCK, c % BLOCK));
            }
        }
        assert_eq!(t8.value(rows, 0), 0.0, "padding rows are zero");
    }
}
