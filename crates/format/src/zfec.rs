//! Erasure coding that gives the same bytes as zfec 1.6 (Tahoe's codec,
//! `allmydata/codec.py`), written here because the `zfec-rs` crate is
//! GPL-3.0 and steward is MIT.
//!
//! zfec is Luigi Rizzo's Reed-Solomon code over GF(2^8) with the primitive
//! polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d). For `k` of `m` it builds
//! an `m × k` Vandermonde matrix whose row 0 is `[1, 0, …, 0]` (the point
//! 0) and whose row `r ≥ 1` is `[α^((r-1)·c)]` for columns `c` (the point
//! `α^(r-1)`, α = 2), then multiplies it by the inverse of its top `k × k`
//! part, which makes the code systematic: blocks `0..k` are the input
//! blocks themselves and block `i ≥ k` is row `i` of that matrix applied
//! byte-wise to the input blocks. Decoding from any `k` distinct blocks
//! inverts the `k × k` matrix of their rows. Both results are unique (field
//! arithmetic is exact), so any correct inversion gives zfec's bytes.
//!
//! All blocks of one encoding have the same length; callers pad the last
//! segment with zeros to a multiple of `k` first, as Tahoe does.

use std::sync::OnceLock;

/// The largest `m` zfec supports (the field has 256 elements).
pub const MAX_SHARES: usize = 256;

struct Tables {
    exp: [u8; 510],
    /// `mul[a][b] = a·b`.
    mul: Vec<[u8; 256]>,
    inv: [u8; 256],
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut exp = [0u8; 510];
        let mut log = [0u16; 256];
        let mut x: u16 = 1;
        for (i, e) in exp.iter_mut().enumerate().take(255) {
            *e = x as u8;
            log[x as usize] = i as u16;
            x <<= 1;
            if x & 0x100 != 0 {
                x ^= 0x11d;
            }
        }
        for i in 255..510 {
            exp[i] = exp[i - 255];
        }
        let mut mul = vec![[0u8; 256]; 256];
        for a in 1..256usize {
            for b in 1..256usize {
                mul[a][b] = exp[log[a] as usize + log[b] as usize];
            }
        }
        let mut inv = [0u8; 256];
        for a in 1..256usize {
            inv[a] = exp[255 - log[a] as usize];
        }
        Tables { exp, mul, inv }
    })
}

fn mul(a: u8, b: u8) -> u8 {
    tables().mul[a as usize][b as usize]
}

/// `out ^= c · data`, byte-wise.
fn add_mul(out: &mut [u8], c: u8, data: &[u8]) {
    match c {
        0 => {}
        1 => out.iter_mut().zip(data).for_each(|(o, d)| *o ^= d),
        _ => {
            let row = &tables().mul[c as usize];
            out.iter_mut()
                .zip(data)
                .for_each(|(o, d)| *o ^= row[*d as usize]);
        }
    }
}

/// Inverts the `n × n` matrix `a` (row-major) in place by Gauss-Jordan
/// elimination. `false` if it is singular.
fn invert(a: &mut [u8], n: usize) -> bool {
    let t = tables();
    let mut inv = vec![0u8; n * n];
    for i in 0..n {
        inv[i * n + i] = 1;
    }
    for col in 0..n {
        let Some(pivot) = (col..n).find(|&r| a[r * n + col] != 0) else {
            return false;
        };
        if pivot != col {
            for j in 0..n {
                a.swap(pivot * n + j, col * n + j);
                inv.swap(pivot * n + j, col * n + j);
            }
        }
        let p = t.inv[a[col * n + col] as usize];
        for j in 0..n {
            a[col * n + j] = mul(a[col * n + j], p);
            inv[col * n + j] = mul(inv[col * n + j], p);
        }
        for r in 0..n {
            let f = a[r * n + col];
            if r != col && f != 0 {
                for j in 0..n {
                    a[r * n + j] ^= mul(f, a[col * n + j]);
                    inv[r * n + j] ^= mul(f, inv[col * n + j]);
                }
            }
        }
    }
    a.copy_from_slice(&inv);
    true
}

/// Why blocks cannot be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FecError {
    /// Not `1 <= k <= m <= 256`.
    #[error("bad erasure-coding parameters {k}-of-{m}: need 1 <= k <= m <= 256")]
    BadParameters {
        /// Blocks needed.
        k: usize,
        /// Blocks made.
        m: usize,
    },
    /// Fewer than `k` distinct block numbers, or a number not below `m`.
    #[error("cannot decode {k}-of-{m} from blocks {given:?}: need {k} distinct numbers below {m}")]
    BadBlockNumbers {
        /// Blocks needed.
        k: usize,
        /// Blocks made.
        m: usize,
        /// The block numbers given.
        given: Vec<usize>,
    },
    /// Blocks of different lengths.
    #[error("blocks of different lengths cannot be coded together")]
    UnequalLengths,
}

/// A `k`-of-`m` code (zfec's `fec_t`).
#[derive(Clone, Debug)]
pub struct Fec {
    k: usize,
    m: usize,
    /// Rows `k..m` of the systematic encoding matrix, `(m - k) × k`.
    parity: Vec<u8>,
}

impl Fec {
    /// A `k`-of-`m` code, `1 <= k <= m <= 256`.
    pub fn new(k: usize, m: usize) -> Result<Fec, FecError> {
        if k == 0 || k > m || m > MAX_SHARES {
            return Err(FecError::BadParameters { k, m });
        }
        let t = tables();
        let row = |r: usize| -> Vec<u8> {
            if r == 0 {
                let mut v = vec![0u8; k];
                v[0] = 1;
                v
            } else {
                (0..k).map(|c| t.exp[((r - 1) * c) % 255]).collect()
            }
        };
        let mut top: Vec<u8> = (0..k).flat_map(row).collect();
        assert!(invert(&mut top, k), "a Vandermonde matrix is invertible");
        let mut parity = vec![0u8; (m - k) * k];
        for i in k..m {
            let v = row(i);
            for c in 0..k {
                let mut acc = 0u8;
                for (j, vj) in v.iter().enumerate() {
                    acc ^= mul(*vj, top[j * k + c]);
                }
                parity[(i - k) * k + c] = acc;
            }
        }
        Ok(Fec { k, m, parity })
    }

    /// Blocks needed to decode.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Blocks made.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Row `index` of the encoding matrix.
    fn row(&self, index: usize) -> Vec<u8> {
        if index < self.k {
            let mut v = vec![0u8; self.k];
            v[index] = 1;
            v
        } else {
            self.parity[(index - self.k) * self.k..(index - self.k + 1) * self.k].to_vec()
        }
    }

    /// Block number `index` (below `m`) of the encoding of the `k` equally
    /// long `primary` blocks (zfec's `Encoder.encode(primary, [index])`).
    pub fn encode_block(&self, primary: &[&[u8]], index: usize) -> Result<Vec<u8>, FecError> {
        if primary.len() != self.k || index >= self.m {
            return Err(FecError::BadBlockNumbers {
                k: self.k,
                m: self.m,
                given: vec![index],
            });
        }
        let len = primary[0].len();
        if primary.iter().any(|b| b.len() != len) {
            return Err(FecError::UnequalLengths);
        }
        if index < self.k {
            return Ok(primary[index].to_vec());
        }
        let mut out = vec![0u8; len];
        for (c, coef) in self.row(index).into_iter().enumerate() {
            add_mul(&mut out, coef, primary[c]);
        }
        Ok(out)
    }

    /// All `m` blocks of the encoding of `primary`.
    pub fn encode(&self, primary: &[&[u8]]) -> Result<Vec<Vec<u8>>, FecError> {
        (0..self.m).map(|i| self.encode_block(primary, i)).collect()
    }

    /// The `k` primary blocks from any `k` blocks `(number, data)` with
    /// distinct numbers (zfec's `Decoder.decode`); extra blocks beyond the
    /// first `k` are ignored, as Tahoe drops them.
    pub fn decode(&self, blocks: &[(usize, &[u8])]) -> Result<Vec<Vec<u8>>, FecError> {
        let given: Vec<usize> = blocks.iter().map(|b| b.0).collect();
        let bad = || FecError::BadBlockNumbers {
            k: self.k,
            m: self.m,
            given: given.clone(),
        };
        if blocks.len() < self.k {
            return Err(bad());
        }
        let blocks = &blocks[..self.k];
        let len = blocks[0].1.len();
        if blocks.iter().any(|b| b.1.len() != len) {
            return Err(FecError::UnequalLengths);
        }
        if blocks.iter().any(|b| b.0 >= self.m) {
            return Err(bad());
        }
        let mut matrix: Vec<u8> = blocks.iter().flat_map(|b| self.row(b.0)).collect();
        if !invert(&mut matrix, self.k) {
            return Err(bad());
        }
        let mut out = Vec::with_capacity(self.k);
        for j in 0..self.k {
            if let Some(b) = blocks.iter().find(|b| b.0 == j) {
                out.push(b.1.to_vec());
                continue;
            }
            let mut o = vec![0u8; len];
            for (i, b) in blocks.iter().enumerate() {
                add_mul(&mut o, matrix[j * self.k + i], b.1);
            }
            out.push(o);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field() {
        let t = tables();
        assert_eq!(t.exp[8], 0x1d);
        for a in 1..=255u8 {
            assert_eq!(mul(a, t.inv[a as usize]), 1);
        }
    }

    #[test]
    fn round_trip_every_subset_small() {
        let fec = Fec::new(3, 5).unwrap();
        let data: Vec<Vec<u8>> = (0..3).map(|i| vec![i as u8 * 40 + 1; 4]).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let enc = fec.encode(&refs).unwrap();
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let got = fec
                        .decode(&[(c, &enc[c]), (a, &enc[a]), (b, &enc[b])])
                        .unwrap();
                    assert_eq!(got, data);
                }
            }
        }
        assert!(fec
            .decode(&[(0, &enc[0]), (0, &enc[0]), (1, &enc[1])])
            .is_err());
        assert!(fec.decode(&[(0, &enc[0]), (1, &enc[1])]).is_err());
        assert!(Fec::new(0, 1).is_err());
        assert!(Fec::new(3, 257).is_err());
        assert!(Fec::new(4, 3).is_err());
    }
}
