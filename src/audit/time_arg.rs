//! [`parse_time`]: the `--since` / `--until` arguments of the audit CLI.

/// Parses an RFC 3339 timestamp (`2026-11-30T04:00:00Z`,
/// `2026-11-30T05:00:00+01:00`) or a span back from `now`: a whole number
/// followed by `s`, `m`, `h`, `d` or `w` (`90s`, `30m`, `24h`, `7d`, `2w`).
///
/// # Errors
/// A message naming the accepted forms (the input is not echoed).
///
/// ```
/// use skillgate::audit::parse_time;
/// let now: jiff::Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
/// assert_eq!(parse_time("24h", now).unwrap().to_string(), "2026-11-29T12:00:00Z");
/// assert_eq!(parse_time("2026-11-30T04:00:00Z", now).unwrap().to_string(), "2026-11-30T04:00:00Z");
/// assert!(parse_time("yesterday", now).is_err());
/// ```
pub fn parse_time(arg: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    const FORMS: &str = "expected an RFC 3339 time (2026-11-30T04:00:00Z) or a span back from now (90s, 30m, 24h, 7d, 2w)";
    let arg = arg.trim();
    if let Ok(t) = arg.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let split = arg
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| FORMS.to_owned())?;
    let (n, unit) = arg.split_at(split);
    let n: i64 = n.parse().map_err(|_| FORMS.to_owned())?;
    let secs_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(FORMS.to_owned()),
    };
    let secs = n.checked_mul(secs_per).ok_or_else(|| FORMS.to_owned())?;
    jiff::SignedDuration::from_secs(secs)
        .checked_neg()
        .and_then(|d| now.checked_add(d).ok())
        .ok_or_else(|| FORMS.to_owned())
}
