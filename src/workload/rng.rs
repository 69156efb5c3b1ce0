//! [`Rng`] and [`Zipf`]: a seeded PRNG and a Zipf sampler, so that every workload replays
//! exactly without a `rand` dependency. Statistical quality only needs to make workloads look
//! real; nothing here is cryptographic.

/// SplitMix64 (Steele, Lea and Flood): one 64-bit add and a mix per draw, full period 2^64,
/// and any seed (zero included) is a good seed, which makes it handy for deriving one
/// independent stream per item from `(seed, item id)`.
///
/// The same seed gives the same `u64` stream on every machine and in every version: tests
/// whose scenarios are drawn from a seed replay exactly.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for `seed`: its first draw is the reference SplitMix64's first output
    /// for that seed.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// A generator for a sub-stream: the same `(seed, stream)` always gives the same draws,
    /// and different streams are unrelated.
    pub fn stream(seed: u64, stream: u64) -> Self {
        let mut base = Rng::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Rng::new(base.next_u64() ^ stream)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float uniform in `[0, 1)` (53 random bits).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An integer uniform in `[0, n)`; `n` must be non-zero. Lemire's multiply-shift (one
    /// draw, no division): the bias is below `n / 2^64`, nothing for the ranges of a workload.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// An integer uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// `len` random bytes: the little-endian bytes of successive draws, the last one cut.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^s`: a few prompts
/// are asked all the time, most are asked rarely, as in real assistant traffic.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// A sampler over `n` ranks (at least one) with exponent `s`.
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n.max(1));
        let mut total = 0.0;
        for rank in 0..n.max(1) {
            total += 1.0 / ((rank + 1) as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    /// Draws a rank (one draw of `rng`, by inverse CDF).
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64() {
        // First outputs of splitmix64 seeded with 1234567 (the reference C implementation).
        let mut r = Rng::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(7, 1).next_u64()).collect();
        assert!(a.iter().all(|&x| x == a[0]));
        assert_ne!(Rng::stream(7, 1).next_u64(), Rng::stream(7, 2).next_u64());
    }

    #[test]
    fn below_and_range_stay_in_bounds() {
        let mut r = Rng::new(5);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[r.below(7)] += 1;
            assert!((3..=9).contains(&r.range(3, 9)));
        }
        assert!(seen.iter().all(|&n| (850..1150).contains(&n)), "{seen:?}");
        assert_eq!(r.range(4, 4), 4);
    }

    #[test]
    fn bytes_are_the_draws_little_endian() {
        let first = Rng::new(9).next_u64().to_le_bytes();
        assert_eq!(Rng::new(9).bytes(5), first[..5]);
        assert_eq!(Rng::new(9).bytes(20).len(), 20);
    }

    #[test]
    fn zipf_favours_low_ranks() {
        let z = Zipf::new(100, 1.0);
        let mut rng = Rng::new(1);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        // P(rank 0) = 1 / H(100) = 0.193.
        assert!((18_000..20_600).contains(&counts[0]), "{}", counts[0]);
        assert!(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[99]);
    }
}
