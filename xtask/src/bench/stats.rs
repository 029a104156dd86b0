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
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
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
    if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = q * (sorted.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        let (a, b) = (sorted.get(lo).copied()?, sorted.get(hi).copied()?);
        Some(a + (b - a) * (pos - pos.floor()))
    };
    Some((at(0.25)?, at(0.75)?))
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
    fn ratios_refuse_a_zero_base() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(f64::INFINITY, 2.0), None);
    }
}
