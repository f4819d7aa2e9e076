//! Units, converted in one place with one rule.
//!
//! dwr counts CPU in millicores and memory in MiB, as whole numbers, so that adding and
//! subtracting allocations is exact. People (and the HTTP API) speak in cores and GB, as
//! fractions: `0.5` cores, `0.25` GB, where 1 GB is 1024 MiB as in the original system.
//!
//! **The rule**: a fractional amount rounds *up* to the next whole millicore or MiB, for a
//! job's request and for an executor's offer alike. A job never gets less than it asked for;
//! an offer is at most one millicore or one MiB above what was written, which no job can
//! notice. Figures shown to people (utilization, observed use) round to the nearest at the
//! precision asked for ([`round_to`]).

/// Millicores per core.
pub const MILLIS_PER_CORE: u64 = 1000;

/// MiB per GB: the API's GB is binary (1 GB = 1024 MiB), as in the original system.
pub const MIB_PER_GB: u64 = 1024;

/// `amount` units of `per_unit` each, as a whole number rounded up: `None` when the amount
/// is not finite, not above 0, or too large to count exactly.
fn whole_up(amount: f64, per_unit: f64) -> Option<u64> {
    let exact = amount * per_unit;
    // A product within float noise of a whole number is that number (`0.29 * 1000` is
    // 290.00000000000006): rounding it up would add a unit nobody asked for. Noise is a few
    // units in the last place of the product, no more: a tolerance relative to the size
    // (1e-12 once) swallowed real fractions of large amounts (911063.4690003875 cores is
    // 911063469.0003875 millicores, rounded down by it).
    let nearest = exact.round();
    let whole = if (exact - nearest).abs() <= nearest * 4.0 * f64::EPSILON {
        nearest
    } else {
        exact.ceil()
    };
    // Below 2^53 every whole f64 is exact, and so is its cast.
    (amount.is_finite() && amount > 0.0 && whole <= (1u64 << 53) as f64).then_some(whole as u64)
}

/// `cores` as millicores, rounded up (`0.0001` is 1): `None` unless finite and above 0.
pub fn millicores(cores: f64) -> Option<u64> {
    whole_up(cores, MILLIS_PER_CORE as f64)
}

/// `amount` of a unit worth `mib_per_unit` MiB, as MiB rounded up: `None` unless finite and
/// above 0. `mib(0.25, MIB_PER_GB as f64)` is 256.
pub fn mib(amount: f64, mib_per_unit: f64) -> Option<u64> {
    whole_up(amount, mib_per_unit)
}

/// Millicores as cores (exact for every amount dwr can hold).
pub fn cores(millis: u64) -> f64 {
    millis as f64 / MILLIS_PER_CORE as f64
}

/// MiB as GB of 1024 MiB.
pub fn gb(mib: u64) -> f64 {
    mib as f64 / MIB_PER_GB as f64
}

/// `value` rounded to the nearest at `decimals` places (for figures shown, not counted).
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// `part` as a percent of `whole`, rounded to `decimals` places; 0 when `whole` is not
/// above 0.
pub fn percent(part: f64, whole: f64, decimals: i32) -> f64 {
    if whole > 0.0 {
        round_to(part / whole * 100.0, decimals)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fractions_round_up_and_nonsense_is_refused() {
        assert_eq!(millicores(0.5), Some(500));
        assert_eq!(millicores(0.0001), Some(1));
        assert_eq!(millicores(2.0004), Some(2001));
        assert_eq!(mib(0.25, MIB_PER_GB as f64), Some(256));
        assert_eq!(mib(1.0 / 1024.0 / 10.0, 1024.0), Some(1));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert_eq!(millicores(bad), None, "{bad}");
            assert_eq!(mib(bad, 1.0), None, "{bad}");
        }
    }

    #[test]
    fn figures_round_to_the_nearest() {
        assert_eq!(percent(1.0, 3.0, 1), 33.3);
        assert_eq!(percent(2.0, 3.0, 2), 66.67);
        assert_eq!(percent(1.0, 0.0, 1), 0.0);
        // A real fraction of a large amount is rounded up, not mistaken for noise.
        assert_eq!(millicores(911_063.469_000_387_5), Some(911_063_470));
        assert_eq!(millicores(0.29), Some(290));
        assert_eq!(round_to(12.25, 0), 12.0);
    }

    proptest! {
        /// What is shown converts back to what is counted: no request changes on a round
        /// trip through the API's units.
        #[test]
        fn whole_amounts_round_trip(millis in 1u64..=1 << 40, m in 1u64..=1 << 40) {
            prop_assert_eq!(millicores(cores(millis)), Some(millis));
            prop_assert_eq!(mib(gb(m), MIB_PER_GB as f64), Some(m));
        }

        /// Rounding never gives less than asked for, nor a whole unit more.
        #[test]
        fn rounding_is_up_by_less_than_one(cores_asked in 0.0001f64..1e6) {
            let millis = millicores(cores_asked).unwrap() as f64;
            prop_assert!(millis >= cores_asked * 1000.0);
            prop_assert!(millis < cores_asked * 1000.0 + 1.0);
        }
    }
}
