//! `xs:duration` values (`OperationTimeout`, `IdleTimeOut`): parsing and formatting.
//!
//! Separate because both the parser and the shell's replies use them, and the format is its own
//! small grammar.

use std::time::Duration;

/// Parses an xs:duration such as `PT20S`, `PT180.000S`, `P0DT0H3M0S`. Years/months are refused.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut secs = 0f64;
    let mut parse_part = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let mult = units.iter().find(|(u, _)| *u == c)?.1;
                let n: f64 = num.parse().ok()?;
                secs += n * mult;
                num.clear();
            }
        }
        num.is_empty().then_some(())
    };
    parse_part(date, &[('D', 86_400.0)])?;
    parse_part(time, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)])?;
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// Formats a duration as `PT<secs>.<millis>S`.
pub fn format_duration(d: Duration) -> String {
    format!("PT{}.{:03}S", d.as_secs(), d.subsec_millis())
}
