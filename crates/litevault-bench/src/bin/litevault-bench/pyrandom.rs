//! Python's `random.Random` (MT19937 seeded from an integer) for the calls
//! the export benchmark's generator makes: `random()`, `getrandbits(k)`,
//! `randrange(n)`, `choice(seq)` and `randbytes(n)`, each consuming the
//! generator exactly as CPython 3 does, so a seed gives the very values the
//! Python generator gave. Pure.

const N: usize = 624;
const M: usize = 397;

/// The generator.
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl PyRandom {
    /// `random.Random(seed)` for a seed below 2^32.
    pub fn new(seed: u32) -> PyRandom {
        let mut r = PyRandom {
            mt: [0; N],
            index: N,
        };
        r.init_by_array(&[seed]);
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
        }
        self.mt[0] = 0x8000_0000;
    }

    fn genrand_u32(&mut self) -> u32 {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        let mag = |y: u32| if y & 1 == 1 { 0x9908_b0df } else { 0 };
        if self.index >= N {
            for k in 0..N {
                let y = (self.mt[k] & UPPER) | (self.mt[(k + 1) % N] & LOWER);
                self.mt[k] = self.mt[(k + M) % N] ^ (y >> 1) ^ mag(y);
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `random()`: a float in [0, 1) with 53 random bits.
    pub fn random(&mut self) -> f64 {
        let a = (self.genrand_u32() >> 5) as f64;
        let b = (self.genrand_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `getrandbits(k)` for k up to 128.
    pub fn getrandbits(&mut self, k: u32) -> u128 {
        assert!(k <= 128, "getrandbits: at most 128 bits here");
        let (mut out, mut left, mut shift) = (0u128, k, 0);
        while left > 0 {
            let mut r = self.genrand_u32();
            if left < 32 {
                r >>= 32 - left;
            }
            out |= (r as u128) << shift;
            shift += 32;
            left = left.saturating_sub(32);
        }
        out
    }

    /// `randrange(n)`: uniform in [0, n), by rejection of `bit_length(n)`
    /// random bits.
    pub fn randrange(&mut self, n: u64) -> u64 {
        assert!(n > 0, "randrange: an empty range");
        let k = 64 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k) as u64;
            if r < n {
                return r;
            }
        }
    }

    /// `randrange(start, stop)`.
    pub fn randrange_from(&mut self, start: u64, stop: u64) -> u64 {
        start + self.randrange(stop - start)
    }

    /// `choice(seq)`.
    pub fn choice<'a, T>(&mut self, seq: &'a [T]) -> &'a T {
        &seq[self.randrange(seq.len() as u64) as usize]
    }

    /// `randbytes(n)`: `getrandbits(8 n)` as little-endian bytes.
    pub fn randbytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let r = self.genrand_u32();
            if left >= 4 {
                out.extend_from_slice(&r.to_le_bytes());
                left -= 4;
            } else {
                let r = r >> (32 - 8 * left as u32);
                out.extend_from_slice(&r.to_le_bytes()[..left]);
                left = 0;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by CPython 3.11 for random.Random(20261128):
    // [r.random() for _ in range(2)], r.getrandbits(128), r.randrange(1000),
    // r.randbytes(6).hex(), r.choice("abcdefg").
    #[test]
    fn the_same_values_as_cpython() {
        let mut r = PyRandom::new(20261128);
        assert_eq!(r.random(), PY_RANDOM_0);
        assert_eq!(r.random(), PY_RANDOM_1);
        assert_eq!(format!("{:032x}", r.getrandbits(128)), PY_BITS_128);
        assert_eq!(r.randrange(1000), PY_RANDRANGE_1000);
        let hex: String = r.randbytes(6).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, PY_RANDBYTES_6);
        assert_eq!(*r.choice(&['a', 'b', 'c', 'd', 'e', 'f', 'g']), PY_CHOICE);
    }

    const PY_RANDOM_0: f64 = 0.46093399162990467;
    const PY_RANDOM_1: f64 = 0.734035878518862;
    const PY_BITS_128: &str = "03aa3897fcf4c6b6186c39e8c7bb69f6";
    const PY_RANDRANGE_1000: u64 = 655;
    const PY_RANDBYTES_6: &str = "8c74d464e963";
    const PY_CHOICE: char = 'c';
}
