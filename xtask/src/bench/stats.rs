//! Median with min and max over rounds, and ratios between configurations of one run.

use serde_json::{Value, json};

/// The spread of one metric over the rounds of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no samples or a non-finite one (a failed measurement is never averaged in).
    pub fn of(samples: &[f64]) -> Option<Self> {
        let sorted = sorted(samples)?;
        let n = sorted.len();
        let mid = n / 2;
        let median = if n % 2 == 1 {
            sorted.get(mid).copied()?
        } else {
            (sorted.get(mid - 1).copied()? + sorted.get(mid).copied()?) / 2.0
        };
        Some(Self {
            median,
            min: sorted.first().copied()?,
            max: sorted.last().copied()?,
        })
    }

    pub fn to_json(self) -> Value {
        json!({ "median": self.median, "min": self.min, "max": self.max })
    }
}

/// The first and third quartiles of `samples` (linear between the two nearest, as a spreadsheet's
/// QUARTILE does): the middle half of them lies between. `None` as for [`Spread::of`].
pub fn quartiles(samples: &[f64]) -> Option<(f64, f64)> {
    let sorted = sorted(samples)?;
    let at = |q: f64| {
        let pos = q * (sorted.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        let (a, b) = (sorted.get(lo).copied()?, sorted.get(hi).copied()?);
        Some(a + (b - a) * (pos - pos.floor()))
    };
    Some((at(0.25)?, at(0.75)?))
}

/// A 95 % confidence interval for the median of the population `samples` come from, from their
/// order statistics (the binomial method, which assumes nothing about the distribution): between
/// the k-th smallest and the k-th largest sample, for the largest k with at most 2.5 % chance of
/// fewer than k samples on either side of the median. `None` below six samples, too few for one,
/// and as for [`Spread::of`].
pub fn median_interval(samples: &[f64]) -> Option<(f64, f64)> {
    let sorted = sorted(samples)?;
    let n = sorted.len();
    // P(X < k) for X ~ Binomial(n, 1/2), summed term by term in logarithms (2^-n underflows).
    let mut ln_term = -(n as f64) * std::f64::consts::LN_2;
    let mut below = 0.0;
    let mut k = 0;
    while k < n / 2 {
        let next = below + ln_term.exp();
        if next > 0.025 {
            break;
        }
        below = next;
        ln_term += ((n - k) as f64).ln() - ((k + 1) as f64).ln();
        k += 1;
    }
    if k == 0 {
        return None;
    }
    Some((sorted.get(k - 1).copied()?, sorted.get(n - k).copied()?))
}

/// `samples` in order, or `None` for none or a non-finite one (a failed measurement is never
/// counted in).
fn sorted(samples: &[f64]) -> Option<Vec<f64>> {
    if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(sorted)
}

/// `a / b`, or `None` when `b` is not a positive number (no ratio to a failed base).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts_with_min_and_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert_eq!(Spread::of(&[7.0]).unwrap().median, 7.0);
    }

    #[test]
    fn no_spread_of_nothing_or_of_a_failed_sample() {
        assert!(Spread::of(&[]).is_none());
        assert!(Spread::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn quartiles_bound_the_middle_half() {
        assert_eq!(quartiles(&[1.0, 2.0, 3.0, 4.0, 5.0]), Some((2.0, 4.0)));
        assert_eq!(quartiles(&[4.0, 1.0, 3.0, 2.0]), Some((1.75, 3.25)));
        assert_eq!(quartiles(&[7.0]), Some((7.0, 7.0)));
        assert_eq!(quartiles(&[]), None);
        assert_eq!(quartiles(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn the_median_s_interval_is_between_the_binomial_ranks() {
        let ranks: Vec<f64> = (1..=100).map(f64::from).collect();
        // The textbook ranks for 100 samples: the 40th and the 61st.
        assert_eq!(median_interval(&ranks), Some((40.0, 61.0)));
        // Six samples: the whole range (a 97 % interval); five are too few.
        assert_eq!(median_interval(&ranks[..6]), Some((1.0, 6.0)));
        assert_eq!(median_interval(&ranks[..5]), None);
        // 2000 samples: 2^-2000 underflows, the logarithms do not.
        let many: Vec<f64> = (1..=2000).map(f64::from).collect();
        let (lo, hi) = median_interval(&many).unwrap();
        assert!(
            lo > 950.0 && lo < 1000.0 && hi > 1001.0 && hi < 1051.0,
            "{lo} {hi}"
        );
        assert_eq!(lo + hi, 2001.0);
        assert_eq!(median_interval(&[1.0, 2.0, 3.0, 4.0, 5.0, f64::NAN]), None);
    }

    #[test]
    fn ratios_refuse_a_zero_base() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(f64::INFINITY, 2.0), None);
    }
}
