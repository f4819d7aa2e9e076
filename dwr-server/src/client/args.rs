//! Parsers for the client's argument values: memory sizes, `K=V` pairs, durations, CPUs.
//!
//! Each returns a message that names the bad value, so clap prints
//! `error: invalid value '12x' for '--memory <SIZE>': ...`.

use std::time::Duration;

use dwr_core::units::MIB_PER_GB as MIB_PER_GIB;

/// Parses a memory size with a unit into MiB: `512m`, `512MiB`, `1g`, `1.5GB`, `2Gi`, `1t`.
///
/// Units are binary and case-insensitive (`g` = `gb` = `gi` = `gib` = 1024 MiB). A bare
/// number is refused: `--memory 2` could mean 2 MiB or 2 GiB, and guessing wrong silently
/// gets a job OOM-killed or never placed. Fractions round up to a whole MiB
/// ([`dwr_core::units`]' one rule).
pub fn parse_memory_mib(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a memory size: expected a number with a unit, e.g. 512m or 2g"
        ));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a memory size: {number:?} is not a number"))?;
    let per_unit: f64 = match unit.as_str() {
        "" => {
            return Err(format!(
                "{text:?} has no unit: write {number}m for MiB or {number}g for GiB"
            ))
        }
        "k" | "kb" | "ki" | "kib" => 1.0 / 1024.0,
        "m" | "mb" | "mi" | "mib" => 1.0,
        "g" | "gb" | "gi" | "gib" => MIB_PER_GIB as f64,
        "t" | "tb" | "ti" | "tib" => (MIB_PER_GIB * MIB_PER_GIB) as f64,
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?}: use k, m, g or t (binary: 1g = 1024m)"
            ))
        }
    };
    if value <= 0.0 {
        return Err(format!("{text:?}: memory must be greater than 0"));
    }
    dwr_core::units::mib(value, per_unit).ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a CPU count (`1`, `0.5`, `2.25`): a finite number greater than 0.
pub fn parse_cpus(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of CPUs (e.g. 1, 0.5, 4)"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("{text:?}: CPUs must be greater than 0"));
    }
    Ok(value)
}

/// Parses an environment assignment `KEY=VALUE` (the value may be empty or hold `=`).
pub fn parse_env(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("{text:?} has an empty variable name"));
    }
    if key.chars().any(|c| c.is_whitespace() || c == '\0') {
        return Err(format!("variable name {key:?} must not contain blanks"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Parses a duration in seconds, optionally with a unit: `90`, `90s`, `5m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration: expected whole seconds or 30s, 5m, 2h, 1d")
    })?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?}: use s, m, h or d"
            ))
        }
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Formats MiB for people: `512m`, `1g`, `1.5g`.
pub fn format_mib(mib: f64) -> String {
    if mib >= MIB_PER_GIB as f64 {
        trim_number(mib / MIB_PER_GIB as f64) + "g"
    } else {
        trim_number(mib) + "m"
    }
}

/// A number with at most two decimals and no trailing zeros: `1`, `1.5`, `0.25`.
pub fn trim_number(x: f64) -> String {
    let text = format!("{x:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units_are_binary_and_case_insensitive() {
        for (text, mib) in [
            ("512m", 512),
            ("512MB", 512),
            ("512MiB", 512),
            ("1g", 1024),
            ("1GB", 1024),
            ("1Gi", 1024),
            ("1.5g", 1536),
            (" 2g ", 2048),
            ("0.5g", 512),
            ("1t", 1024 * 1024),
            ("2048k", 2),
            // Fractions round up, by the one rule of `dwr_core::units`.
            ("100k", 1),
            ("1.0001m", 2),
        ] {
            assert_eq!(parse_memory_mib(text), Ok(mib), "{text}");
        }
    }

    #[test]
    fn bad_memory_values_are_named() {
        for (text, says) in [
            ("2", "no unit"),
            ("12x", "unknown unit"),
            ("g", "expected a number"),
            ("", "expected a number"),
            ("1.2.3g", "not a number"),
            ("0m", "greater than 0"),
            ("99999999999999999999t", "too large"),
            ("-1g", "expected a number"),
        ] {
            let err = parse_memory_mib(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
            assert!(err.contains(&format!("{text:?}")), "names the value: {err}");
        }
    }

    #[test]
    fn env_pairs_split_at_the_first_equals() {
        assert_eq!(parse_env("A=1"), Ok(("A".into(), "1".into())));
        assert_eq!(parse_env("A="), Ok(("A".into(), "".into())));
        assert_eq!(parse_env("URL=a=b"), Ok(("URL".into(), "a=b".into())));
        for bad in ["A", "=1", "A B=1"] {
            let err = parse_env(bad).expect_err(bad);
            assert!(err.contains(bad.split('=').next().unwrap_or(bad)), "{err}");
        }
    }

    #[test]
    fn cpus_must_be_positive_numbers() {
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert_eq!(parse_cpus("4"), Ok(4.0));
        for bad in ["0", "-1", "x", "NaN", "inf"] {
            let err = parse_cpus(bad).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn durations_take_optional_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "1.5", "5w", "-3", "99999999999999999999"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_print_compactly() {
        assert_eq!(format_mib(512.0), "512m");
        assert_eq!(format_mib(1024.0), "1g");
        assert_eq!(format_mib(1536.0), "1.5g");
        assert_eq!(trim_number(2.0), "2");
        assert_eq!(trim_number(0.25), "0.25");
        assert_eq!(trim_number(0.0), "0");
    }
}
