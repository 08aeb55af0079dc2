//! Text forms inside CLIXML: `_xHHHH_` escaping and XmlConvert's DT, TS and Db/Sg formats.
//!
//! Escaping (MS-PSRP 2.2.5.1.1, PowerShell `serialization.cs` EncodeString): on top of XML's
//! `&lt;` `&gt;` `&amp;` (and `&quot;` in attributes), every UTF-16 code unit that XML cannot
//! carry or would normalise is written `_xHHHH_` with upper-case hex: U+0000–U+001F,
//! U+007F–U+009F, each half of a surrogate pair (non-BMP characters become two escapes),
//! U+FFFE/U+FFFF, and an underscore that starts `_x`/`_X` (so literal `_x…` text survives).
//! Decoding turns every `_xHHHH_` back into its code unit and pairs surrogates; a lone
//! surrogate cannot live in a Rust string and becomes U+FFFD.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Ticks (100 ns) per second, minute, hour, day.
const TICKS_PER_SECOND: i128 = 10_000_000;
const TICKS_PER_MINUTE: i128 = 60 * TICKS_PER_SECOND;
const TICKS_PER_HOUR: i128 = 60 * TICKS_PER_MINUTE;
const TICKS_PER_DAY: i128 = 24 * TICKS_PER_HOUR;

fn push_unit_escape(out: &mut String, unit: u16) {
    out.push_str("_x");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[usize::from((unit >> shift) & 0xF)] as char);
    }
    out.push('_');
}

/// Bytes that may start something to escape: XML specials, `_`, C0 controls and DEL, and
/// the UTF-8 lead bytes of C1 controls (C2), U+FFFE/U+FFFF (EF) and non-BMP characters
/// (F0–F4). Every other byte is copied as is.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[0x7F] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t[b'"' as usize] = true;
    t[b'_' as usize] = true;
    t[0xC2] = true;
    t[0xEF] = true;
    let mut lead = 0xF0;
    while lead <= 0xF4 {
        t[lead] = true;
        lead += 1;
    }
    t
};

/// Appends `s` escaped for element text (`attr` false) or a double-quoted attribute.
pub(super) fn escape_into(out: &mut String, s: &str, attr: bool) {
    let bytes = s.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Bytes that never need an escape: the common case, one table lookup each.
        while i < bytes.len() && !SPECIAL[usize::from(bytes[i])] {
            i += 1;
        }
        let Some(&b) = bytes.get(i) else {
            break;
        };
        let (len, unit_escape): (usize, Option<&[u16]>) = match b {
            b'<' | b'>' | b'&' => (1, None),
            b'"' if attr => (1, None),
            b'"' => {
                i += 1;
                continue;
            }
            b'_' => {
                if matches!(bytes.get(i + 1), Some(b'x' | b'X')) {
                    (1, Some(&[0x5F]))
                } else {
                    i += 1;
                    continue;
                }
            }
            0x00..=0x1F | 0x7F => {
                out.push_str(&s[copied..i]);
                push_unit_escape(out, u16::from(b));
                i += 1;
                copied = i;
                continue;
            }
            0xC2 if matches!(bytes.get(i + 1), Some(0x80..=0x9F)) => {
                out.push_str(&s[copied..i]);
                push_unit_escape(out, u16::from(bytes[i + 1]));
                i += 2;
                copied = i;
                continue;
            }
            0xEF if bytes.get(i + 1) == Some(&0xBF)
                && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)) =>
            {
                out.push_str(&s[copied..i]);
                push_unit_escape(out, 0xFFC0 | (u16::from(bytes[i + 2]) & 0x3F));
                i += 3;
                copied = i;
                continue;
            }
            0xF0..=0xF4 => {
                out.push_str(&s[copied..i]);
                let c = s[i..].chars().next().expect("a char starts at a lead byte");
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_unit_escape(out, *unit);
                }
                i += c.len_utf8();
                copied = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[copied..i]);
        match (b, unit_escape) {
            (_, Some(units)) => units.iter().for_each(|u| push_unit_escape(out, *u)),
            (b'<', None) => out.push_str("&lt;"),
            (b'>', None) => out.push_str("&gt;"),
            (b'&', None) => out.push_str("&amp;"),
            (b'"', None) => out.push_str("&quot;"),
            _ => unreachable!("only the cases above produce an escape"),
        }
        i += len;
        copied = i;
    }
    out.push_str(&s[copied..]);
}

/// A member name (`N` attribute) as it goes on the wire, `_xHHHH_`-escaped and XML-escaped.
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    escape_into(&mut out, name, true);
    out
}

fn hex_unit(h: &[u8]) -> Option<u16> {
    let mut v = 0u16;
    for &c in h {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u16::from(d);
    }
    Some(v)
}

/// Decodes `_xHHHH_` escapes (the XML entities must already be resolved).
pub fn decode_name(s: &str) -> String {
    if !s.contains("_x") && !s.contains("_X") {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut i = 0;
    let escape_at = |i: usize| -> Option<u16> {
        if bytes.len() >= i + 7
            && bytes[i] == b'_'
            && matches!(bytes[i + 1], b'x' | b'X')
            && bytes[i + 6] == b'_'
        {
            hex_unit(&bytes[i + 2..i + 6])
        } else {
            None
        }
    };
    while i < bytes.len() {
        let Some(unit) = escape_at(i) else {
            i += 1;
            continue;
        };
        out.push_str(&s[copied..i]);
        i += 7;
        match unit {
            0xD800..=0xDBFF => match escape_at(i) {
                Some(low @ 0xDC00..=0xDFFF) => {
                    let c =
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                    out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                    i += 7;
                }
                _ => out.push('\u{FFFD}'),
            },
            0xDC00..=0xDFFF => out.push('\u{FFFD}'),
            _ => out.push(char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}')),
        }
        copied = i;
    }
    out.push_str(&s[copied..]);
    out
}

fn push_padded(out: &mut String, value: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut v = value;
    let mut n = 0;
    loop {
        buf[9 - n] = b'0' + (v % 10) as u8;
        v /= 10;
        n += 1;
        if v == 0 {
            break;
        }
    }
    for _ in n..width {
        out.push('0');
    }
    out.push_str(std::str::from_utf8(&buf[10 - n..]).expect("ASCII digits"));
}

/// Appends a `DT` value: `yyyy-MM-ddTHH:mm:ss.fffffff` (7 fractional digits), then `Z` when
/// `utc` (a UTC-kind value; `dt` is then at offset 0) or the offset `±hh:mm`.
pub(super) fn push_datetime(out: &mut String, dt: &DateTime<FixedOffset>, utc: bool) {
    let local = dt.naive_local();
    let year = local.year();
    if year < 0 {
        out.push('-');
    }
    push_padded(out, year.unsigned_abs(), 4);
    out.push('-');
    push_padded(out, local.month(), 2);
    out.push('-');
    push_padded(out, local.day(), 2);
    out.push('T');
    push_padded(out, local.hour(), 2);
    out.push(':');
    push_padded(out, local.minute(), 2);
    out.push(':');
    push_padded(out, local.second(), 2);
    out.push('.');
    push_padded(out, (local.nanosecond() % 1_000_000_000) / 100, 7);
    if utc {
        out.push('Z');
        return;
    }
    let offset = dt.offset().local_minus_utc();
    out.push(if offset < 0 { '-' } else { '+' });
    let minutes = offset.unsigned_abs() / 60;
    push_padded(out, minutes / 60, 2);
    out.push(':');
    push_padded(out, minutes % 60, 2);
}

/// A `DT` value's text.
pub fn format_datetime(dt: &DateTime<FixedOffset>) -> String {
    let mut out = String::with_capacity(33);
    push_datetime(&mut out, dt, false);
    out
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |v, d| v * 10 + u32::from(d - b'0')))
}

/// Parses a `DT` value: ISO 8601 with 0–9+ fractional digits (beyond 7 are dropped) and `Z`,
/// `±hh:mm` or no zone (Unspecified, read as UTC).
///
/// # Errors
/// A reason text when it is not such a date.
pub fn parse_datetime(text: &str) -> Result<DateTime<FixedOffset>, String> {
    let s = text.trim().as_bytes();
    let bad = || format!("expected yyyy-MM-ddTHH:mm:ss[.fffffff][Z|±hh:mm], got {text:?}");
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if s[13] != b':' || s[16] != b':' {
        return Err(bad());
    }
    let field = |r: std::ops::Range<usize>| digits(&s[r]).ok_or_else(bad);
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    let mut i = 19;
    let mut nanos = 0u32;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(s[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
        nanos = nanos / 100 * 100;
    }
    let offset_seconds = match &s[i..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2]).ok_or_else(bad)?;
            let m = digits(&[*m1, *m2]).ok_or_else(bad)?;
            let secs = i32::try_from(h * 3600 + m * 60).map_err(|_| bad())?;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return Err(bad()),
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(bad)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos).ok_or_else(bad)?;
    let offset = FixedOffset::east_opt(offset_seconds).ok_or_else(bad)?;
    NaiveDateTime::new(date, time)
        .and_local_timezone(offset)
        .single()
        .ok_or_else(bad)
}

/// Appends a `TS` value (ticks) as an xs:duration the way .NET's XmlConvert writes it:
/// `P14D`, `PT1H30M`, `PT9.0269026S`, `-PT1H`, `PT0S`.
pub(super) fn push_duration(out: &mut String, ticks: i64) {
    if ticks < 0 {
        out.push('-');
    }
    let t = ticks.unsigned_abs();
    let day = TICKS_PER_DAY as u64;
    let (days, rest) = (t / day, t % day);
    let (hours, rest) = (rest / TICKS_PER_HOUR as u64, rest % TICKS_PER_HOUR as u64);
    let (minutes, rest) = (
        rest / TICKS_PER_MINUTE as u64,
        rest % TICKS_PER_MINUTE as u64,
    );
    let (seconds, fraction) = (
        rest / TICKS_PER_SECOND as u64,
        rest % TICKS_PER_SECOND as u64,
    );
    out.push('P');
    if days > 0 {
        let _ = write!(out, "{days}D");
    }
    if hours == 0 && minutes == 0 && seconds == 0 && fraction == 0 {
        if days == 0 {
            out.push_str("T0S");
        }
        return;
    }
    out.push('T');
    if hours > 0 {
        let _ = write!(out, "{hours}H");
    }
    if minutes > 0 {
        let _ = write!(out, "{minutes}M");
    }
    if seconds > 0 || fraction > 0 {
        let _ = write!(out, "{seconds}");
        if fraction > 0 {
            let mut f = format!("{fraction:07}");
            while f.ends_with('0') {
                f.pop();
            }
            out.push('.');
            out.push_str(&f);
        }
        out.push('S');
    }
}

/// A `TS` value's text.
pub fn format_duration(ticks: i64) -> String {
    let mut out = String::with_capacity(16);
    push_duration(&mut out, ticks);
    out
}

/// Parses an xs:duration into ticks. Years count 365 days and months 30, as .NET does.
///
/// # Errors
/// A reason text when it is not a duration or does not fit a TimeSpan.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("expected an xs:duration such as P1DT2H3M4.5S, got {text:?}");
    let s = text.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let s = s.strip_prefix('P').ok_or_else(bad)?.as_bytes();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: i128 = 0;
    let mut in_time = false;
    let mut seen_any = false;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'T' {
            if in_time {
                return Err(bad());
            }
            in_time = true;
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        let whole = &s[start..i];
        let mut fraction: &[u8] = &[];
        if i < s.len() && s[i] == b'.' {
            i += 1;
            let fstart = i;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            fraction = &s[fstart..i];
        }
        if whole.is_empty() && fraction.is_empty() || whole.len() > 20 || i >= s.len() {
            return Err(bad());
        }
        let n: i128 = std::str::from_utf8(whole)
            .ok()
            .filter(|w| !w.is_empty())
            .map_or(Ok(0), str::parse)
            .map_err(|_| bad())?;
        let unit = match (in_time, s[i]) {
            (false, b'Y') => 365 * TICKS_PER_DAY,
            (false, b'M') => 30 * TICKS_PER_DAY,
            (false, b'D') => TICKS_PER_DAY,
            (true, b'H') => TICKS_PER_HOUR,
            (true, b'M') => TICKS_PER_MINUTE,
            (true, b'S') => TICKS_PER_SECOND,
            _ => return Err(bad()),
        };
        if !fraction.is_empty() && unit != TICKS_PER_SECOND {
            return Err(bad());
        }
        i += 1;
        total = n
            .checked_mul(unit)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(bad)?;
        let mut scale = TICKS_PER_SECOND / 10;
        for d in fraction {
            total += i128::from(d - b'0') * scale;
            scale /= 10;
        }
        seen_any = true;
        if total > i128::from(i64::MAX) + 1 {
            return Err(bad());
        }
    }
    if !seen_any {
        return Err(bad());
    }
    let total = if negative { -total } else { total };
    i64::try_from(total).map_err(|_| bad())
}

/// Appends a `Db` value in a form both .NET (`XmlConvert.ToDouble`) and Python read back to
/// the same bits: shortest round-trip digits, `E+NN` exponent for very large or small values,
/// `INF`, `-INF`, `NaN`.
pub(super) fn push_double(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "INF" } else { "-INF" });
    } else if v == 0.0 || (1e-5..1e15).contains(&v.abs()) {
        let _ = write!(out, "{v}");
    } else {
        push_exponent(out, &format!("{v:e}"));
    }
}

/// Appends an `Sg` value (see [`push_double`]; shortest digits of the `f32`).
pub(super) fn push_float(out: &mut String, v: f32) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "INF" } else { "-INF" });
    } else if v == 0.0 || (1e-5..1e7).contains(&v.abs()) {
        let _ = write!(out, "{v}");
    } else {
        push_exponent(out, &format!("{v:e}"));
    }
}

/// Rust's `1.5e20` → .NET's `1.5E+20`.
fn push_exponent(out: &mut String, rust: &str) {
    let (mantissa, exp) = rust.split_once('e').expect("{:e} always has an exponent");
    out.push_str(mantissa);
    out.push('E');
    if !exp.starts_with('-') {
        out.push('+');
    }
    out.push_str(exp);
}

/// A `Db` value's text.
pub fn format_double(v: f64) -> String {
    let mut out = String::with_capacity(24);
    push_double(&mut out, v);
    out
}

/// Parses `Sg` text directly as `f32` (no double rounding through `f64`).
pub(super) fn parse_float(text: &str) -> Option<f32> {
    let t = text.trim();
    match t {
        "INF" | "+INF" => Some(f32::INFINITY),
        "-INF" => Some(f32::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

/// Parses `Db`/`Sg` text (`1.5`, `1E+20`, `INF`, `-INF`, `NaN`, also `Infinity`).
pub(super) fn parse_double(text: &str) -> Option<f64> {
    let t = text.trim();
    match t {
        "INF" | "+INF" => Some(f64::INFINITY),
        "-INF" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, s, false);
        out
    }

    #[test]
    fn escapes_what_the_reference_lists() {
        assert_eq!(
            esc("R&D _xmas list \u{7}"),
            "R&amp;D _x005F_xmas list _x0007_"
        );
        assert_eq!(esc("a\r\nb\tc"), "a_x000D__x000A_b_x0009_c");
        assert_eq!(
            esc("\u{7F}\u{85}\u{9F}\u{A0}"),
            "_x007F__x0085__x009F_\u{A0}"
        );
        assert_eq!(esc("😀"), "_xD83D__xDE00_");
        assert_eq!(esc("\u{FFFE}\u{FFFF}\u{FFFD}"), "_xFFFE__xFFFF_\u{FFFD}");
        assert_eq!(esc("_X1 _ x_"), "_x005F_X1 _ x_");
        assert_eq!(esc("<a>\"q\""), "&lt;a&gt;\"q\"");
        assert_eq!(encode_name("a\"b"), "a&quot;b");
        assert_eq!(esc("plain é ü 中"), "plain é ü 中");
    }

    #[test]
    fn decodes_escapes_and_pairs_surrogates() {
        assert_eq!(decode_name("_x005F_xmas _x0007_"), "_xmas \u{7}");
        assert_eq!(decode_name("_xD83D__xDE00_"), "😀");
        assert_eq!(decode_name("_xd83d__xde00_"), "😀");
        assert_eq!(decode_name("lone _xD83D_ x"), "lone \u{FFFD} x");
        assert_eq!(decode_name("_xDE00_"), "\u{FFFD}");
        assert_eq!(decode_name("_x12_ _xZZZZ_ _x0041"), "_x12_ _xZZZZ_ _x0041");
        assert_eq!(decode_name("_x0041__x0042_"), "AB");
    }

    #[test]
    fn datetimes_use_seven_digits_and_offset() {
        let dt = parse_datetime("2024-05-21T14:03:11.1234567+00:00").unwrap();
        assert_eq!(format_datetime(&dt), "2024-05-21T14:03:11.1234567+00:00");
        let dt = parse_datetime("2024-04-10T08:56:22Z").unwrap();
        assert_eq!(format_datetime(&dt), "2024-04-10T08:56:22.0000000+00:00");
        let dt = parse_datetime("2024-04-10T08:56:22.5-07:30").unwrap();
        assert_eq!(format_datetime(&dt), "2024-04-10T08:56:22.5000000-07:30");
        assert_eq!(
            dt.timestamp(),
            parse_datetime("2024-04-10T16:26:22.5Z")
                .unwrap()
                .timestamp()
        );
        let dt = parse_datetime("2024-04-10T08:56:22.123456789").unwrap();
        assert_eq!(format_datetime(&dt), "2024-04-10T08:56:22.1234567+00:00");
        for bad in [
            "",
            "2024-04-10",
            "2024-13-10T00:00:00Z",
            "2024-04-10T25:00:00Z",
            "2024-04-10T00:00:00+1:00",
            "2024-04-10T00:00:00.Z",
            "x024-04-10T00:00:00Z",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_follow_xmlconvert() {
        let cases = [
            (0, "PT0S"),
            (14 * 864_000_000_000, "P14D"),
            (90 * 600_000_000, "PT1H30M"),
            (90_269_026, "PT9.0269026S"),
            (-36_000_000_000, "-PT1H"),
            (5_000_000, "PT0.5S"),
            (864_000_000_000 + 1, "P1DT0.0000001S"),
        ];
        for (ticks, text) in cases {
            assert_eq!(format_duration(ticks), text);
            assert_eq!(parse_duration(text), Ok(ticks), "{text}");
        }
        assert_eq!(parse_duration("P1Y"), Ok(365 * 864_000_000_000));
        assert_eq!(parse_duration("P1M"), Ok(30 * 864_000_000_000));
        assert_eq!(parse_duration(&format_duration(i64::MIN)), Ok(i64::MIN));
        assert_eq!(parse_duration(&format_duration(i64::MAX)), Ok(i64::MAX));
        for bad in [
            "",
            "P",
            "PT",
            "1D",
            "P1H",
            "PT1D",
            "P1.5D",
            "PT1H1",
            "P99999999999999999999999D",
            "PTT1S",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn doubles_round_trip_in_dotnet_form() {
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(1e20), "1E+20");
        assert_eq!(format_double(1.25e-7), "1.25E-7");
        assert_eq!(format_double(f64::INFINITY), "INF");
        assert_eq!(format_double(f64::NEG_INFINITY), "-INF");
        assert_eq!(format_double(f64::NAN), "NaN");
        assert_eq!(format_double(-0.0), "-0");
        for v in [
            0.1,
            1.0 / 3.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            123_456_789.125,
            -2.5e300,
        ] {
            assert_eq!(parse_double(&format_double(v)), Some(v));
        }
        assert_eq!(parse_double("1E+20"), Some(1e20));
        assert!(parse_double("NaN").unwrap().is_nan());
    }
}
