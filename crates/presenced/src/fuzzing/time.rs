//! Durations (`expirationDuration`, the manual clock's `by`) and date-times
//! (a status message's `expiryDateTime`, a subscription's
//! `expirationDateTime`), as `wire_time` reads and writes them.

use presence_core::{Duration, Instant};

use super::check_refusal;
use crate::wire_time::{
    format_date_time, format_instant, parse_date_time_time_zone, parse_duration, parse_instant,
};

const FIELD: &str = "expirationDuration";
const DATE_TIME_FIELD: &str = "expiryDateTime";

/// The input as a duration: a refusal is one line that starts with the
/// field's name; a duration renders as ISO 8601 and as Python's
/// `str(timedelta)`, and each parses back to it; jiff reads ISO 8601 to the
/// same number of milliseconds wherever it accepts the text too.
pub fn duration(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let duration = match parse_duration(FIELD, &text) {
        Ok(duration) => duration,
        Err(message) => {
            check_one_line_refusal(&text, &message, FIELD);
            return;
        }
    };
    for rendered in [iso_8601(duration), python_timedelta(duration)] {
        assert_eq!(
            parse_duration(FIELD, &rendered),
            Ok(duration),
            "{text:?} parsed as {duration:?}, which renders as {rendered:?}"
        );
    }
    if let Some(jiff_millis) = jiff_duration_millis(text.trim()) {
        assert_eq!(
            duration.as_millis(),
            jiff_millis,
            "{text:?}: presenced and jiff read different durations"
        );
    }
}

/// The input as date-times: its first line as an RFC 3339 instant and, with
/// its second line as the time zone, as Graph's `dateTimeTimeZone`. What
/// parses renders back (as presenced writes date-times) and parses to the
/// same instant; its first eight bytes, as an instant in milliseconds, do
/// the same wherever jiff can represent that instant.
pub fn date_time(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (date_time, time_zone) = match text.split_once('\n') {
        Some((date_time, time_zone)) => (date_time, Some(time_zone)),
        None => (&*text, None),
    };
    match parse_instant(DATE_TIME_FIELD, date_time) {
        Ok(instant) => check_instant_round_trip(instant),
        Err(message) => check_one_line_refusal(date_time, &message, DATE_TIME_FIELD),
    }
    match parse_date_time_time_zone(DATE_TIME_FIELD, date_time, time_zone) {
        Ok(instant) => {
            let rendered = format_date_time(instant);
            assert_eq!(
                parse_date_time_time_zone(DATE_TIME_FIELD, &rendered, Some("UTC")),
                Ok(instant),
                "{date_time:?} in {time_zone:?} is {instant:?}, which renders as {rendered:?} in UTC"
            );
        }
        Err(message) => check_one_line_refusal(&text, &message, DATE_TIME_FIELD),
    }
    if let Some(bytes) = data.first_chunk::<8>() {
        let milliseconds = i64::from_le_bytes(*bytes);
        let rendered = format_instant(Instant::from_unix_millis(milliseconds));
        if jiff::Timestamp::from_millisecond(milliseconds).is_ok() {
            check_instant_round_trip(Instant::from_unix_millis(milliseconds));
        } else {
            // Outside jiff's years -9999..=9999 the instant is written as
            // the nearest one it can represent, which still parses.
            assert!(
                parse_instant(DATE_TIME_FIELD, &rendered).is_ok(),
                "{milliseconds} ms renders as {rendered:?}, which does not parse"
            );
        }
    }
}

fn check_instant_round_trip(instant: Instant) {
    let rendered = format_instant(instant);
    assert_eq!(
        parse_instant(DATE_TIME_FIELD, &rendered),
        Ok(instant),
        "{instant:?} renders as {rendered:?}"
    );
}

/// A `wire_time` refusal: a bounded message on one line (control characters
/// in the echoed input are escaped) that starts with the field's name.
fn check_one_line_refusal(input: &str, message: &str, field: &str) {
    check_refusal(input, message);
    assert!(
        message.starts_with(field),
        "{input:?}: the message does not name {field}: {message:?}"
    );
    assert!(
        !message.chars().any(char::is_control),
        "{input:?}: the message spans lines or holds control characters: {message:?}"
    );
}

/// `duration` in ISO 8601 seconds with milliseconds, as in `-PT300.250S`.
fn iso_8601(duration: Duration) -> String {
    let milliseconds = duration.as_millis();
    let magnitude = milliseconds.unsigned_abs();
    let sign = if milliseconds < 0 { "-" } else { "" };
    format!("{sign}PT{}.{:03}S", magnitude / 1_000, magnitude % 1_000)
}

/// `duration` as Python's `str(timedelta)` writes it: a day count (negative
/// for a negative duration) and a non-negative time of day, such as
/// `-1 day, 23:55:00` for minus five minutes.
fn python_timedelta(duration: Duration) -> String {
    const DAY: i64 = 86_400_000;
    let milliseconds = duration.as_millis();
    let days = milliseconds.div_euclid(DAY);
    let rest = milliseconds.rem_euclid(DAY);
    let (hours, minutes) = (rest / 3_600_000, rest / 60_000 % 60);
    let (seconds, fraction) = (rest / 1_000 % 60, rest % 1_000);
    let mut text = match days {
        0 => String::new(),
        1 | -1 => format!("{days} day, "),
        _ => format!("{days} days, "),
    };
    text.push_str(&format!("{hours}:{minutes:02}:{seconds:02}"));
    if fraction != 0 {
        text.push_str(&format!(".{:06}", fraction * 1_000));
    }
    text
}

/// jiff's reading of an ISO 8601 duration, in whole milliseconds toward
/// zero, with days of 24 hours; `None` where jiff refuses the text or it has
/// years or months.
fn jiff_duration_millis(text: &str) -> Option<i64> {
    let span = jiff::fmt::temporal::SpanParser::new()
        .parse_span(text)
        .ok()?;
    let duration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()?;
    i64::try_from(duration.as_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings_are_the_forms_graph_clients_send() {
        let cases = [
            (Duration::from_mins(5), "PT300.000S", "0:05:00"),
            (
                Duration::from_millis(-300_000),
                "-PT300.000S",
                "-1 day, 23:55:00",
            ),
            (
                Duration::from_millis(90_061_500),
                "PT90061.500S",
                "1 day, 1:01:01.500000",
            ),
            (
                Duration::from_days(-3),
                "-PT259200.000S",
                "-3 days, 0:00:00",
            ),
        ];
        for (duration, iso, python) in cases {
            assert_eq!(iso_8601(duration), iso);
            assert_eq!(python_timedelta(duration), python);
        }
    }
}
