//! Numbers from users, checked: seconds and counts parsed for command lines
//! with clear errors instead of panics, and deadlines that cannot overflow.

use std::time::{Duration, Instant};

/// The longest time any option takes: a week. Longer is surely a mistake
/// (and `Instant` arithmetic past it is where panics live).
pub const MAX_SECS: u64 = 7 * 24 * 3600;

/// `now + d`, or the furthest deadline that can be represented (a `d` too
/// large to add means "never" in practice), never a panic.
pub fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// `d`, at most [`MAX_SECS`].
pub fn cap(d: Duration) -> Duration {
    d.min(Duration::from_secs(MAX_SECS))
}

/// Parses a number of seconds (fractions allowed) for a command line: finite,
/// above zero and at most [`MAX_SECS`].
pub fn parse_secs(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_SECS as f64 {
        return Err(format!(
            "{text} seconds is out of range: give more than 0 and at most {MAX_SECS} (a week)"
        ));
    }
    Ok(secs)
}

/// Parses a whole number of seconds from 0 to [`MAX_SECS`].
pub fn parse_whole_secs(text: &str) -> Result<u64, String> {
    let secs: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of seconds"))?;
    if secs > MAX_SECS {
        return Err(format!(
            "{secs} seconds is out of range: at most {MAX_SECS} (a week)"
        ));
    }
    Ok(secs)
}

/// The most threads a worker count may ask for.
pub const MAX_WORKERS: usize = 4096;

/// Parses a worker count from 1 to [`MAX_WORKERS`] (`allow_zero`: from 0).
pub fn parse_workers(text: &str, allow_zero: bool) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    let min = usize::from(!allow_zero);
    if n < min || n > MAX_WORKERS {
        return Err(format!(
            "{n} workers is out of range: give {min} to {MAX_WORKERS}"
        ));
    }
    Ok(n)
}

/// The most any count option (connections, jobs) may ask for.
pub const MAX_COUNT: usize = 1 << 20;

/// Parses a count from 1 to [`MAX_COUNT`], for a command line.
pub fn parse_count(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if n == 0 || n > MAX_COUNT {
        return Err(format!("{n} is out of range: give 1 to {MAX_COUNT}"));
    }
    Ok(n)
}

/// The most bytes a size option may ask for: 1 PiB.
pub const MAX_BYTES: u64 = 1 << 50;

/// Parses a size in bytes, with an optional binary suffix (`K`, `M`, `G`,
/// `T`, also written `KiB`...): whole, at least 1 KiB and at most
/// [`MAX_BYTES`].
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let shift = match suffix.trim().to_ascii_uppercase().trim_end_matches("IB") {
        "" | "B" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{text:?} is not a size (like 512M, 4G or 1048576)")),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 512M, 4G or 1048576)"))?;
    match n.checked_mul(1 << shift) {
        Some(bytes) if (1 << 10..=MAX_BYTES).contains(&bytes) => Ok(bytes),
        _ => Err(format!(
            "{text} is out of range: give 1K to {} bytes (1 PiB)",
            MAX_BYTES
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_that_would_panic_later_are_refused_now() {
        for bad in ["-1", "nan", "inf", "1e300", "1e19", "0", "", "x", "604801"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_secs("0.25"), Ok(0.25));
        assert_eq!(parse_secs("604800"), Ok(604800.0));
        assert!(parse_whole_secs("18446744073709551615").is_err());
        assert!(parse_whole_secs("-3").is_err());
        assert_eq!(parse_whole_secs("0"), Ok(0));
        let err = parse_secs("nan").unwrap_err();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn worker_counts_are_bounded() {
        assert!(parse_workers("1000000000", true).is_err());
        assert!(parse_workers("0", false).is_err());
        assert_eq!(parse_workers("0", true), Ok(0));
        assert_eq!(parse_workers("8", false), Ok(8));
    }

    #[test]
    fn counts_and_sizes_are_bounded_and_readable() {
        for bad in ["0", "-1", "1e9", "x", "", "2000000"] {
            assert!(parse_count(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_count("64"), Ok(64));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        for bad in [
            "0",
            "-1G",
            "1.5G",
            "nan",
            "inf",
            "18446744073709551615G",
            "2P",
            "12",
            "",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deadlines_never_overflow() {
        let now = Instant::now();
        assert!(deadline(now, Duration::MAX) > now + Duration::from_secs(MAX_SECS));
        assert_eq!(
            deadline(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(cap(Duration::MAX), Duration::from_secs(MAX_SECS));
    }
}
