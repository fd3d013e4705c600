//! Time helpers: X.509 times have one-second resolution, the library takes
//! `now` as an argument everywhere (no clock inside).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

use crate::PkiError;

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The `SystemTime` of a Unix timestamp.
pub(crate) fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Truncates to whole seconds, as X.509 stores it.
pub(crate) fn truncate(t: SystemTime) -> SystemTime {
    from_unix(unix_secs(t))
}

/// rcgen's time type, truncated to seconds.
pub(crate) fn to_offset(t: SystemTime) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix_secs(t))
        .map_err(|e| PkiError::input("time", e.to_string()))
}

/// x509-parser's time type to `SystemTime`.
pub(crate) fn from_asn1(t: x509_parser::time::ASN1Time) -> SystemTime {
    from_unix(t.timestamp())
}

/// RFC 3339 in UTC, e.g. `2026-11-25T07:43:32Z`.
pub fn fmt_time(t: SystemTime) -> String {
    match OffsetDateTime::from_unix_timestamp(unix_secs(t)) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => format!("@{}", unix_secs(t)),
    }
}

/// Parses a validity or update interval: a positive integer followed by one
/// unit, `s`, `m`, `h`, `d` or `w` (e.g. `365d`, `90d`, `12h`).
pub fn parse_duration(s: &str) -> Result<Duration, PkiError> {
    let bad = |reason: &str| PkiError::input("duration", format!("{s:?}: {reason}"));
    let s_trim = s.trim();
    let split = s_trim
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("missing unit (use s, m, h, d or w, e.g. 90d)"))?;
    let (num, unit) = s_trim.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| bad("expected a number before the unit"))?;
    let mult: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad("unknown unit (use s, m, h, d or w)")),
    };
    if n == 0 {
        return Err(bad("must be greater than zero"));
    }
    let secs = n
        .checked_mul(mult)
        .filter(|&v| v <= 100 * 366 * 86_400)
        .ok_or_else(|| bad("longer than 100 years"))?;
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("365d").unwrap().as_secs(), 365 * 86_400);
        assert_eq!(parse_duration("12h").unwrap().as_secs(), 43_200);
        assert_eq!(parse_duration("2w").unwrap().as_secs(), 14 * 86_400);
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        for bad in ["", "d", "10", "10y", "0d", "-1d", "1.5d", "999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_utc() {
        assert_eq!(fmt_time(from_unix(0)), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(from_unix(1_795_592_612)), "2026-11-25T07:43:32Z");
    }
}
