//! `xs:duration` values (`OperationTimeout`, `IdleTimeOut`) as [`Duration`]s.
//!
//! There is one xs:duration parser in the crate, [`crate::remoting::clixml::parse_duration`]
//! (CLIXML `<TS>` values use the same grammar); this is its WS-Man view: a non-negative
//! span as a `Duration`. Years count 365 days and months 30, as .NET does; a negative or
//! malformed value is `None`, so the caller falls back to its default.

use std::time::Duration;

/// Parses an xs:duration such as `PT20S`, `PT180.000S`, `P0DT0H3M0S`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let ticks = crate::remoting::clixml::parse_duration(s).ok()?;
    let ticks = u64::try_from(ticks).ok()?;
    // A tick is 100 ns.
    Some(Duration::from_secs(ticks / 10_000_000) + Duration::from_nanos(ticks % 10_000_000 * 100))
}

/// Formats a duration as `PT<secs>.<millis>S`.
pub fn format_duration(d: Duration) -> String {
    format!("PT{}.{:03}S", d.as_secs(), d.subsec_millis())
}
