//! Token-bucket arithmetic with continuous refill, in exact integers.
//!
//! Tokens are kept in fixed point with `interval_ns` units per token. Refilling for `e`
//! nanoseconds then adds exactly `e × limit` units: no division, so no rounding, so no drift however
//! many small refills a bucket sees (a float or a per-step-rounded bucket slowly gains or loses
//! tokens). All products fit in `u128` for the bounds the configuration enforces
//! (`limit`, `burst` ≤ 2^32, `interval_ns` < 2^64), and every operation saturates anyway so a
//! corrupt stored value can never make the filter panic.

/// How far back the wall clock may step before the bucket re-anchors its refill time to it.
/// Small backward steps are normal between workers (each reads the clock, then races on the CAS),
/// so they only mean "no refill yet"; a large one (an NTP step) would otherwise freeze refill until
/// the clock caught up again.
pub const MAX_BACKWARD_STEP_NS: u64 = 1_000_000_000;

/// A policy's rate: `limit` tokens per `interval_ns`, holding at most `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u64,
    pub interval_ns: u64,
    pub burst: u64,
}

impl Rate {
    /// Units of one token.
    pub fn one(&self) -> u128 {
        u128::from(self.interval_ns)
    }

    /// Units of a full bucket.
    pub fn capacity(&self) -> u128 {
        u128::from(self.burst).saturating_mul(self.one())
    }

    /// A bucket nobody has used yet: full, refilled up to `now`.
    pub fn full_bucket(&self, now: u64) -> Bucket {
        Bucket {
            units: self.capacity(),
            last_ns: now,
        }
    }
}

/// One key's bucket: `{tokens in fixed point, last refill time}`, stored together as one value so
/// a single CAS updates both (updating them separately hands one token to several callers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub units: u128,
    pub last_ns: u64,
}

impl Bucket {
    /// Adds the tokens earned since `last_ns`, capped at the capacity.
    pub fn refill(&mut self, rate: &Rate, now: u64) {
        if now >= self.last_ns {
            let earned = u128::from(now - self.last_ns).saturating_mul(u128::from(rate.limit));
            self.units = self.units.saturating_add(earned).min(rate.capacity());
            self.last_ns = now;
        } else if self.last_ns - now > MAX_BACKWARD_STEP_NS {
            // The clock stepped back: restart refill from the new time, granting nothing for the
            // gap. Keeping `last_ns` would stop refill until the clock passed it again.
            self.last_ns = now;
        }
        // A small step back (another worker wrote a slightly later `now`): no refill, and
        // `last_ns` never moves backwards, so the same interval is never paid for twice.
        self.units = self.units.min(rate.capacity());
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, rate: &Rate) -> bool {
        if self.units >= rate.one() && rate.burst > 0 {
            self.units -= rate.one();
            true
        } else {
            false
        }
    }

    /// Gives one token back (after another policy denied the request), capped at the capacity.
    pub fn give_back(&mut self, rate: &Rate) {
        self.units = self.units.saturating_add(rate.one()).min(rate.capacity());
    }

    /// Whole tokens left.
    pub fn remaining(&self, rate: &Rate) -> u64 {
        let whole = div_ceil_or_floor(self.units, rate.one(), false).unwrap_or(0);
        u64::try_from(whole).unwrap_or(u64::MAX)
    }

    /// Nanoseconds until one whole token is available; `None` if the bucket never refills.
    pub fn ns_until_token(&self, rate: &Rate) -> Option<u64> {
        let missing = rate.one().saturating_sub(self.units);
        ns_to_earn(missing, rate)
    }

    /// Nanoseconds until the bucket is full again; `None` if it never refills.
    pub fn ns_until_full(&self, rate: &Rate) -> Option<u64> {
        let missing = rate.capacity().saturating_sub(self.units);
        ns_to_earn(missing, rate)
    }

    /// The time at which this bucket is full again: from then on it is indistinguishable from a
    /// bucket that was never used, which is what lets its slot be reused (`u64::MAX`: never).
    pub fn full_at(&self, rate: &Rate) -> u64 {
        self.ns_until_full(rate)
            .map_or(u64::MAX, |ns| self.last_ns.saturating_add(ns))
    }
}

/// Time to earn `units` at `limit` units per nanosecond, rounded up.
fn ns_to_earn(units: u128, rate: &Rate) -> Option<u64> {
    if units == 0 {
        return Some(0);
    }
    let ns = div_ceil_or_floor(units, u128::from(rate.limit), true)?;
    Some(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// `n / d` rounded up (`ceil`) or down; `None` when `d` is 0. The values of a request nearly
/// always fit in 64 bits (a full bucket of a billion tokens a second is 10^18 units), and there
/// the division is the 64-bit one wasm has, instead of a call to the 128-bit routine of
/// `compiler_builtins` (three per request, bench/NOTEBOOK.md "Our module's cost is its code as
/// much as its instructions").
fn div_ceil_or_floor(n: u128, d: u128, ceil: bool) -> Option<u128> {
    let (quotient, remainder) = match (u64::try_from(n), u64::try_from(d)) {
        (Ok(n), Ok(d)) => (u128::from(n.checked_div(d)?), u128::from(n.checked_rem(d)?)),
        _ => (n.checked_div(d)?, n.checked_rem(d)?),
    };
    // No overflow: a quotient of u128::MAX means d = 1, so no remainder.
    Some(quotient + u128::from(ceil && remainder != 0))
}

/// Whole seconds, rounded up (header values promise "at least this long").
pub fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn rate(limit: u64, interval_ns: u64, burst: u64) -> Rate {
        Rate {
            limit,
            interval_ns,
            burst,
        }
    }

    /// Takes tokens until the bucket says no, returning how many it gave.
    fn drain(bucket: &mut Bucket, rate: &Rate) -> u64 {
        let mut n = 0;
        while bucket.try_take(rate) {
            n += 1;
        }
        n
    }

    #[test]
    fn a_new_bucket_gives_exactly_burst_tokens() {
        let r = rate(100, 60 * SEC, 100);
        let mut b = r.full_bucket(0);
        assert_eq!(drain(&mut b, &r), 100);
        assert_eq!(b.remaining(&r), 0);
    }

    #[test]
    fn refill_is_continuous_and_proportional() {
        let r = rate(100, 60 * SEC, 100);
        let mut b = r.full_bucket(0);
        drain(&mut b, &r);
        // 100 per 60 s = one token every 600 ms.
        b.refill(&r, 599_999_999);
        assert!(!b.try_take(&r), "one nanosecond short of a token");
        b.refill(&r, 600_000_000);
        assert!(b.try_take(&r));
        b.refill(&r, 600_000_000 + 30 * SEC);
        assert_eq!(b.remaining(&r), 50);
    }

    #[test]
    fn many_tiny_refills_equal_one_big_refill_exactly() {
        // 7 tokens per 13 s has no finite binary or decimal expansion per nanosecond: any rounding
        // per step would show up after a million steps.
        let r = rate(7, 13 * SEC, 1_000);
        let mut stepped = Bucket {
            units: 0,
            last_ns: 0,
        };
        let mut now = 0;
        for i in 0..1_000_000u64 {
            now += 1 + (i * 7919) % 104_729; // irregular steps
            stepped.refill(&r, now);
        }
        let mut once = Bucket {
            units: 0,
            last_ns: 0,
        };
        once.refill(&r, now);
        assert_eq!(stepped, once);
        // And the total is the exact rational value: now × 7 / 13 s tokens.
        assert_eq!(
            u128::from(stepped.remaining(&r)),
            u128::from(now) * 7 / u128::from(13 * SEC)
        );
    }

    #[test]
    fn refill_precision_over_a_month_of_saturating_traffic() {
        // A request every 0.59 s against 100/60 s (one token per 0.6 s) for 30 days: demand always
        // exceeds supply, so the bucket is never capped after the first take, and the number of
        // requests granted by time T must be exactly floor(burst + T × limit / interval).
        let r = rate(100, 60 * SEC, 100);
        let mut b = r.full_bucket(0);
        let mut granted: u128 = u128::from(b.try_take(&r));
        let step = 590_000_000u64;
        let month = 30 * 24 * 3600 * SEC;
        let mut now = 0;
        while now + step <= month {
            now += step;
            b.refill(&r, now);
            granted += u128::from(b.try_take(&r));
        }
        let expected = (r.capacity() + u128::from(now) * 100) / r.one();
        assert_eq!(granted, expected);
        assert!(granted > 4_000_000, "the run must be long enough to matter");
    }

    #[test]
    fn long_idle_fills_the_bucket_but_never_beyond_burst() {
        let r = rate(100, 60 * SEC, 100);
        let mut b = r.full_bucket(0);
        drain(&mut b, &r);
        b.refill(&r, 10 * 365 * 24 * 3600 * SEC);
        assert_eq!(b.remaining(&r), 100);
        assert_eq!(b.ns_until_full(&r), Some(0));
        // Idle for longer than u64 nanoseconds of elapsed × limit would overflow u64: still capped.
        let r = rate(u64::from(u32::MAX), u64::MAX, 5);
        let mut b = Bucket {
            units: 0,
            last_ns: 0,
        };
        b.refill(&r, u64::MAX);
        assert_eq!(b.remaining(&r), 5);
    }

    #[test]
    fn small_backward_clock_steps_grant_nothing_and_do_not_rewind() {
        let r = rate(100, 60 * SEC, 100);
        let mut b = r.full_bucket(10 * SEC);
        drain(&mut b, &r);
        b.refill(&r, 10 * SEC - 500_000_000);
        assert_eq!(b.last_ns, 10 * SEC, "last refill time must not move back");
        assert_eq!(b.units, 0);
        // Back to the original time: still nothing earned (the gap is not paid twice).
        b.refill(&r, 10 * SEC);
        assert_eq!(b.units, 0);
        b.refill(&r, 10 * SEC + 600_000_000);
        assert_eq!(b.remaining(&r), 1);
    }

    #[test]
    fn a_large_backward_step_re_anchors_without_granting_tokens() {
        let r = rate(100, 60 * SEC, 100);
        let mut b = r.full_bucket(3600 * SEC);
        drain(&mut b, &r);
        b.refill(&r, 60 * SEC); // the clock jumped back by 59 minutes
        assert_eq!(b.units, 0);
        assert_eq!(b.last_ns, 60 * SEC);
        // Refill restarts from the new time instead of freezing for 59 minutes.
        b.refill(&r, 60 * SEC + 600_000_000);
        assert_eq!(b.remaining(&r), 1);
    }

    #[test]
    fn very_long_interval() {
        // 3 per 100 years: tokens come back one every ~33 years, still exact, no overflow.
        let century = 100 * 365 * 24 * 3600 * SEC;
        let r = rate(3, century, 3);
        let mut b = r.full_bucket(0);
        assert_eq!(drain(&mut b, &r), 3);
        let third = century / 3;
        b.refill(&r, third - 1);
        assert!(!b.try_take(&r));
        b.refill(&r, third + 1);
        assert!(b.try_take(&r));
        assert_eq!(b.ns_until_full(&r).map(|ns| ns > century / 2), Some(true));
    }

    #[test]
    fn very_short_interval() {
        // One token per nanosecond with room for 10: effectively unlimited, but still counted.
        let r = rate(1, 1, 10);
        let mut b = r.full_bucket(0);
        assert_eq!(drain(&mut b, &r), 10);
        b.refill(&r, 3);
        assert_eq!(drain(&mut b, &r), 3);
        assert_eq!(b.ns_until_token(&r), Some(1));
        // A billion tokens per millisecond.
        let r = rate(1_000_000_000, 1_000_000, 1_000_000_000);
        let mut b = Bucket {
            units: 0,
            last_ns: 0,
        };
        b.refill(&r, 1_000);
        assert_eq!(b.remaining(&r), 1_000_000);
    }

    #[test]
    fn limit_zero_denies_forever_and_says_so() {
        let r = rate(0, 60 * SEC, 0);
        let mut b = r.full_bucket(0);
        assert!(!b.try_take(&r));
        b.refill(&r, u64::MAX);
        assert!(!b.try_take(&r));
        assert_eq!(b.remaining(&r), 0);
        // An empty-capacity bucket is "full": its slot can be reused at once.
        assert_eq!(b.ns_until_full(&r), Some(0));
        assert_eq!(b.ns_until_token(&r), None);
    }

    #[test]
    fn burst_above_limit_allows_a_bigger_first_burst_but_the_same_rate() {
        let r = rate(10, 10 * SEC, 50);
        let mut b = r.full_bucket(0);
        assert_eq!(drain(&mut b, &r), 50);
        // Over the next 100 s it earns 100 tokens (rate unchanged by burst).
        let mut earned = 0;
        for s in 1..=100 {
            b.refill(&r, s * SEC);
            earned += drain(&mut b, &r);
        }
        assert_eq!(earned, 100);
        b.refill(&r, 1_000 * SEC);
        assert_eq!(b.remaining(&r), 50);
    }

    #[test]
    fn waits_are_rounded_up_never_down() {
        let r = rate(100, 60 * SEC, 100);
        let mut b = r.full_bucket(0);
        drain(&mut b, &r);
        assert_eq!(b.ns_until_token(&r), Some(600_000_000));
        assert_eq!(b.ns_until_full(&r), Some(60 * SEC));
        assert_eq!(ceil_secs(600_000_000), 1);
        assert_eq!(ceil_secs(60 * SEC), 60);
        assert_eq!(ceil_secs(60 * SEC + 1), 61);
        assert_eq!(b.full_at(&r), 60 * SEC);
    }

    #[test]
    fn give_back_never_exceeds_capacity() {
        let r = rate(5, SEC, 5);
        let mut b = r.full_bucket(0);
        b.give_back(&r);
        assert_eq!(b.remaining(&r), 5);
        assert!(b.try_take(&r));
        b.give_back(&r);
        assert_eq!(b.remaining(&r), 5);
    }

    #[test]
    fn corrupt_units_above_capacity_are_clamped() {
        let r = rate(5, SEC, 5);
        let mut b = Bucket {
            units: u128::MAX,
            last_ns: 0,
        };
        b.refill(&r, 0);
        assert_eq!(b.remaining(&r), 5);
    }

    /// Generated rates and request times (proptest): the bucket never lets through more than a
    /// token bucket may, lets through every request it can, and takes any stored state.
    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn rate() -> impl Strategy<Value = Rate> {
            (0..50u64, 1..5_000_000_000u64, 0..50u64).prop_map(|(limit, interval_ns, burst)| Rate {
                limit,
                interval_ns,
                burst,
            })
        }

        /// Request times: steps forward from a start, as one worker's clock gives them.
        fn times() -> impl Strategy<Value = Vec<u64>> {
            (0..u64::MAX / 2, vec(0..2_000_000_000u64, 1..200)).prop_map(|(start, steps)| {
                steps
                    .iter()
                    .scan(start, |now, step| {
                        *now += step;
                        Some(*now)
                    })
                    .collect()
            })
        }

        proptest! {
            #[test]
            fn never_more_than_the_burst_plus_what_the_elapsed_time_earned(
                rate in rate(),
                times in times(),
            ) {
                let (first, last) = (times[0], times[times.len() - 1]);
                let mut bucket = rate.full_bucket(first);
                let mut admitted: u128 = 0;
                for &now in &times {
                    bucket.refill(&rate, now);
                    if bucket.try_take(&rate) {
                        admitted += 1;
                    }
                }
                let earned = u128::from(last - first) * u128::from(rate.limit)
                    / u128::from(rate.interval_ns);
                prop_assert!(admitted <= u128::from(rate.burst) + earned,
                    "{admitted} admitted, burst {} + earned {earned}", rate.burst);
            }

            #[test]
            fn a_request_is_refused_only_when_no_whole_token_is_left(
                rate in rate(),
                times in times(),
            ) {
                let mut bucket = rate.full_bucket(times[0]);
                for &now in &times {
                    bucket.refill(&rate, now);
                    let before = bucket.remaining(&rate);
                    let taken = bucket.try_take(&rate);
                    prop_assert_eq!(taken, before > 0 && rate.burst > 0);
                    if taken {
                        prop_assert_eq!(bucket.remaining(&rate), before - 1);
                    }
                }
            }

            #[test]
            fn divisions_on_64_bits_agree_with_128_bit_ones(
                n in prop_oneof![any::<u64>().prop_map(u128::from), any::<u128>()],
                d in prop_oneof![
                    Just(0u128),
                    any::<u64>().prop_map(u128::from),
                    any::<u128>(),
                ],
            ) {
                prop_assert_eq!(div_ceil_or_floor(n, d, false), n.checked_div(d));
                let ceil = (d != 0).then(|| n.div_ceil(d));
                prop_assert_eq!(div_ceil_or_floor(n, d, true), ceil);
            }

            #[test]
            fn any_stored_state_and_time_is_handled(
                rate in rate(),
                units in any::<u128>(),
                last_ns in any::<u64>(),
                now in any::<u64>(),
            ) {
                let mut bucket = Bucket { units, last_ns };
                bucket.refill(&rate, now);
                prop_assert!(bucket.units <= rate.capacity());
                let _ = bucket.try_take(&rate);
                bucket.give_back(&rate);
                prop_assert!(bucket.units <= rate.capacity());
                let _ = (bucket.ns_until_token(&rate), bucket.ns_until_full(&rate));
                let _ = bucket.full_at(&rate);
            }
        }
    }
}
