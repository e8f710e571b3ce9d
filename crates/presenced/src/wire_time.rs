//! Converts Microsoft Graph's time formats on the wire into the model's
//! millisecond [`Instant`] and [`Duration`], and back.
//!
//! Graph uses four textual forms that presenced has to understand:
//!
//! - `Edm.Duration` (for example `expirationDuration`), which is ISO 8601
//!   (`PT5M`, `PT1H30M`, `P1D`). The official Python Graph SDK does not send
//!   ISO 8601 for a `datetime.timedelta`: it serializes it with Python's
//!   `str(timedelta)`, which gives `0:05:00` or `1 day, 0:00:00`. Both forms
//!   are accepted by [`parse_duration`].
//! - `dateTimeTimeZone` (for example `statusMessage.expiryDateTime`), a local
//!   date and time without an offset plus a Windows or IANA time zone name,
//!   read by [`parse_date_time_time_zone`].
//! - `Edm.DateTimeOffset` (for example `publishedDateTime`), RFC 3339 with an
//!   offset, read by [`parse_instant`] and written by [`format_instant`] with
//!   the seven fractional digits Graph uses.
//! - The `dateTime` half of a `dateTimeTimeZone` in UTC, written by
//!   [`format_date_time`].
//!
//! The model counts whole milliseconds, so finer precision is dropped: a
//! duration is truncated toward zero, and an instant is truncated to the
//! millisecond it falls in (toward the past, which is the same as dropping the
//! extra digits of the wall-clock reading).
//!
//! Calendar and time-zone work (civil date-times, the IANA database, daylight
//! saving) is done by `jiff`, whose bundled time zone database means no system
//! tz files are needed. Every error is a complete sentence that names the
//! field and says what to send instead, because it is shown to API callers.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use presence_core::{Duration, Instant};

/// Nanoseconds in one millisecond, the model's unit.
const NANOSECONDS_PER_MILLISECOND: u128 = 1_000_000;
/// Nanoseconds in one second.
const NANOSECONDS_PER_SECOND: u128 = 1_000_000_000;
/// Nanoseconds in one minute.
const NANOSECONDS_PER_MINUTE: u128 = 60 * NANOSECONDS_PER_SECOND;
/// Nanoseconds in one hour.
const NANOSECONDS_PER_HOUR: u128 = 60 * NANOSECONDS_PER_MINUTE;
/// Nanoseconds in one day, which always counts as 24 hours here.
const NANOSECONDS_PER_DAY: u128 = 24 * NANOSECONDS_PER_HOUR;
/// Nanoseconds in one week, which always counts as 7 days of 24 hours here.
const NANOSECONDS_PER_WEEK: u128 = 7 * NANOSECONDS_PER_DAY;

/// The longest piece of caller input repeated back inside an error message,
/// in characters, so that a huge bad value cannot make a huge error.
const LONGEST_ECHOED_INPUT_CHARACTERS: usize = 64;

/// The duration forms listed in every duration error message.
const ACCEPTED_DURATION_FORMS: &str = "ISO 8601 such as 'PT5M', 'PT1H30M' or 'P1D', \
     or Python's timedelta text such as '0:05:00' or '1 day, 0:00:00'";

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

/// Parses a duration sent as an ISO 8601 `Edm.Duration` or as the text of a
/// Python `datetime.timedelta`.
///
/// ISO 8601 forms are `[+|-]P[nY][nM][nW][nD][T[nH][nM][nS]]`, in upper or
/// lower case, such as `PT5M`, `PT1H30M`, `PT0.5S`, `P1D` or `P1DT2H`. The
/// last number may have a fraction, written with `.` or `,` (`PT1.5H`,
/// `P0.5D`). Days count as 24 hours and weeks are accepted as 7 such days.
/// Years and months are refused, because their length depends on the calendar
/// date they start from; zero years or months (`P0Y0M1D`) are allowed.
///
/// Python forms are what `str(timedelta)` prints: `H:MM:SS`, optionally with
/// microseconds (`0:05:00.500000`) and a day count (`1 day, 0:00:00`,
/// `2 days, 3:04:05`). Python writes a negative timedelta as a negative day
/// count plus a positive time (`-1 day, 23:55:00` is minus five minutes), and
/// that is how it is read. As small leniencies, hours may exceed 23, the
/// fraction may have one to any number of digits, and a bare time may carry a
/// leading `-` (`-0:05:00`), which Python itself never prints.
///
/// A negative duration is returned as a negative [`Duration`], not refused, so
/// that the caller can report it with its own range message. Precision beyond
/// a millisecond is truncated toward zero (`PT0.0009S` is zero). A duration
/// too large for the model's milliseconds is refused with a message.
///
/// `field` names the field in error messages, such as `expirationDuration`.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, String> {
    parse_duration_text(text.trim()).map_err(|problem| problem.into_message(field, text))
}

/// Why a duration text was refused; turned into a sentence by
/// [`DurationProblem::into_message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DurationProblem {
    /// The text is empty or only white space.
    Empty,
    /// The text looks like neither ISO 8601 nor a Python timedelta.
    UnrecognizedForm,
    /// The text is a plain number, which has no unit.
    NumberWithoutUnit,
    /// The text starts like one of the accepted forms but breaks its rules;
    /// the string says how, as a clause that fits after a colon.
    Malformed(&'static str),
    /// The text counts years or months, whose length is not fixed.
    CalendarUnits,
    /// The text is well formed but longer than the model can represent.
    TooLarge,
}

impl DurationProblem {
    /// Writes the complete sentence shown to the caller for this problem.
    fn into_message(self, field: &str, text: &str) -> String {
        let shown_text = quote_caller_input(text);
        match self {
            DurationProblem::Empty => {
                format!("{field} is empty. Use {ACCEPTED_DURATION_FORMS}.")
            }
            DurationProblem::UnrecognizedForm => {
                format!("{field} {shown_text} is not a duration. Use {ACCEPTED_DURATION_FORMS}.")
            }
            DurationProblem::NumberWithoutUnit => format!(
                "{field} {shown_text} is a number without a unit. Give the unit in ISO 8601, \
                 such as 'PT300S' for 300 seconds or 'PT5M' for 5 minutes."
            ),
            DurationProblem::Malformed(reason) => format!(
                "{field} {shown_text} is not a valid duration: {reason}. \
                 Use {ACCEPTED_DURATION_FORMS}."
            ),
            DurationProblem::CalendarUnits => format!(
                "{field} {shown_text} counts years or months, which have no fixed length. \
                 Give weeks, days, hours, minutes or seconds instead, such as 'P30D' or 'PT4H'; \
                 minutes go after the 'T', as in 'PT5M'."
            ),
            DurationProblem::TooLarge => format!(
                "{field} {shown_text} is too large a duration to represent. \
                 Use a shorter one, such as 'P7D'."
            ),
        }
    }
}

/// Decides which of the accepted forms `trimmed_text` is written in and
/// parses it.
fn parse_duration_text(trimmed_text: &str) -> Result<Duration, DurationProblem> {
    if trimmed_text.is_empty() {
        return Err(DurationProblem::Empty);
    }
    if trimmed_text.contains(':') {
        return parse_python_timedelta_text(trimmed_text);
    }
    let (_, unsigned_text) = split_leading_sign(trimmed_text);
    if unsigned_text.starts_with(['P', 'p']) {
        return parse_iso_8601_duration(trimmed_text);
    }
    if is_plain_decimal_number(unsigned_text) {
        return Err(DurationProblem::NumberWithoutUnit);
    }
    Err(DurationProblem::UnrecognizedForm)
}

/// Splits an optional leading `+` or `-` from `text`, returning whether the
/// sign was negative and the rest of the text.
fn split_leading_sign(text: &str) -> (bool, &str) {
    if let Some(rest) = text.strip_prefix('-') {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix('+') {
        (false, rest)
    } else {
        (false, text)
    }
}

/// Whether `text` is digits with at most one decimal point, like `300` or
/// `1.5`, which callers sometimes send meaning seconds or minutes.
fn is_plain_decimal_number(text: &str) -> bool {
    let mut seen_digit = false;
    let mut seen_decimal_point = false;
    for character in text.chars() {
        match character {
            '0'..='9' => seen_digit = true,
            '.' if !seen_decimal_point => seen_decimal_point = true,
            _ => return false,
        }
    }
    seen_digit
}

/// A unit of an ISO 8601 duration, in the order the standard requires them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum IsoDurationUnit {
    Years,
    Months,
    Weeks,
    Days,
    Hours,
    Minutes,
    Seconds,
}

impl IsoDurationUnit {
    /// The unit a designator letter stands for, which depends on whether it
    /// comes before the `T` (date units) or after it (time units).
    fn from_designator(designator: char, is_in_time_part: bool) -> Option<IsoDurationUnit> {
        match (designator.to_ascii_uppercase(), is_in_time_part) {
            ('Y', false) => Some(IsoDurationUnit::Years),
            ('M', false) => Some(IsoDurationUnit::Months),
            ('W', false) => Some(IsoDurationUnit::Weeks),
            ('D', false) => Some(IsoDurationUnit::Days),
            ('H', true) => Some(IsoDurationUnit::Hours),
            ('M', true) => Some(IsoDurationUnit::Minutes),
            ('S', true) => Some(IsoDurationUnit::Seconds),
            _ => None,
        }
    }

    /// The fixed length of one unit in nanoseconds, or `None` for years and
    /// months, which have no fixed length.
    fn nanoseconds(self) -> Option<u128> {
        match self {
            IsoDurationUnit::Years | IsoDurationUnit::Months => None,
            IsoDurationUnit::Weeks => Some(NANOSECONDS_PER_WEEK),
            IsoDurationUnit::Days => Some(NANOSECONDS_PER_DAY),
            IsoDurationUnit::Hours => Some(NANOSECONDS_PER_HOUR),
            IsoDurationUnit::Minutes => Some(NANOSECONDS_PER_MINUTE),
            IsoDurationUnit::Seconds => Some(NANOSECONDS_PER_SECOND),
        }
    }
}

/// One number-and-designator component of an ISO 8601 duration, such as the
/// `1.5H` of `PT1.5H`, with its digits still as text.
#[derive(Clone, Copy, Debug)]
struct IsoDurationComponent<'text> {
    unit: IsoDurationUnit,
    whole_digits: &'text str,
    fraction_digits: &'text str,
}

/// Parses an ISO 8601 duration such as `PT1H30M` or `-P1DT2H`.
///
/// This is written by hand rather than with jiff's `Span` parser, which
/// accepts the same grammar, because its errors cannot be told apart well
/// enough to say what to fix (months, a missing `T`, an overflow), and
/// because a `Span` limits each unit to about 20,000 years separately. The
/// tests check that both parsers agree on every form they both accept.
fn parse_iso_8601_duration(text: &str) -> Result<Duration, DurationProblem> {
    let (is_negative, unsigned_text) = split_leading_sign(text);
    let Some(body) = unsigned_text.strip_prefix(['P', 'p']) else {
        return Err(DurationProblem::UnrecognizedForm);
    };
    if body.is_empty() {
        return Err(DurationProblem::Malformed(
            "nothing follows the 'P', which must be followed by a number and a unit",
        ));
    }
    let (date_part, time_part) = match body.find(['T', 't']) {
        Some(index) => (&body[..index], Some(&body[index + 1..])),
        None => (body, None),
    };
    let mut components = Vec::new();
    scan_iso_8601_components(date_part, false, &mut components)?;
    if let Some(time_part) = time_part {
        if time_part.is_empty() {
            return Err(DurationProblem::Malformed(
                "a 'T' must be followed by hours, minutes or seconds, as in 'PT30M'",
            ));
        }
        scan_iso_8601_components(time_part, true, &mut components)?;
    }
    if components
        .windows(2)
        .any(|pair| pair[0].unit >= pair[1].unit)
    {
        return Err(DurationProblem::Malformed(
            "each unit may appear once, in the order Y, M, W, D, then T, H, M, S",
        ));
    }
    let components_before_last = components.len().saturating_sub(1);
    if components[..components_before_last]
        .iter()
        .any(|component| !component.fraction_digits.is_empty())
    {
        return Err(DurationProblem::Malformed(
            "only the last number may have a fraction, as in 'PT1H30.5M'",
        ));
    }

    let mut total_nanoseconds: u128 = 0;
    for component in &components {
        let Some(unit_nanoseconds) = component.unit.nanoseconds() else {
            let has_nonzero_digit = component
                .whole_digits
                .bytes()
                .chain(component.fraction_digits.bytes())
                .any(|digit| digit != b'0');
            if has_nonzero_digit {
                return Err(DurationProblem::CalendarUnits);
            }
            continue;
        };
        let whole_count = parse_decimal_digits(component.whole_digits)?;
        let component_nanoseconds = whole_count
            .checked_mul(unit_nanoseconds)
            .and_then(|whole_nanoseconds| {
                whole_nanoseconds.checked_add(fraction_of_unit_in_nanoseconds(
                    component.fraction_digits,
                    unit_nanoseconds,
                ))
            })
            .ok_or(DurationProblem::TooLarge)?;
        total_nanoseconds = total_nanoseconds
            .checked_add(component_nanoseconds)
            .ok_or(DurationProblem::TooLarge)?;
    }
    duration_from_nanoseconds_magnitude(total_nanoseconds, is_negative)
}

/// Splits one side of an ISO 8601 duration (before or after the `T`) into its
/// components, appending them to `components`.
fn scan_iso_8601_components<'text>(
    part: &'text str,
    is_in_time_part: bool,
    components: &mut Vec<IsoDurationComponent<'text>>,
) -> Result<(), DurationProblem> {
    let mut rest = part;
    while !rest.is_empty() {
        let whole_length = rest.bytes().take_while(u8::is_ascii_digit).count();
        if whole_length == 0 {
            return Err(DurationProblem::Malformed(
                "each unit letter must follow a number without a sign or spaces, as in 'PT30M'",
            ));
        }
        let whole_digits = &rest[..whole_length];
        rest = &rest[whole_length..];

        let mut fraction_digits = "";
        if let Some(after_decimal_point) = rest.strip_prefix(['.', ',']) {
            let fraction_length = after_decimal_point
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if fraction_length == 0 {
                return Err(DurationProblem::Malformed(
                    "a decimal point must be followed by digits, as in 'PT0.5S'",
                ));
            }
            fraction_digits = &after_decimal_point[..fraction_length];
            rest = &after_decimal_point[fraction_length..];
        }

        let Some(designator) = rest.chars().next() else {
            return Err(DurationProblem::Malformed(
                "every number needs a unit letter after it, as in 'PT30M'",
            ));
        };
        let Some(unit) = IsoDurationUnit::from_designator(designator, is_in_time_part) else {
            if !is_in_time_part && matches!(designator.to_ascii_uppercase(), 'H' | 'S') {
                return Err(DurationProblem::Malformed(
                    "hours, minutes and seconds go after a 'T', as in 'PT1H' or 'PT30S'",
                ));
            }
            return Err(DurationProblem::Malformed(
                "the unit letters are Y, M, W and D before the 'T', and H, M and S after it",
            ));
        };
        rest = &rest[designator.len_utf8()..];
        components.push(IsoDurationComponent {
            unit,
            whole_digits,
            fraction_digits,
        });
    }
    Ok(())
}

/// Reads ASCII digits as a number, refusing one too large for `u128` as
/// [`DurationProblem::TooLarge`]. Callers have already checked the digits.
fn parse_decimal_digits(digits: &str) -> Result<u128, DurationProblem> {
    digits.bytes().try_fold(0_u128, |value, digit| {
        value
            .checked_mul(10)
            .and_then(|shifted| shifted.checked_add(u128::from(digit - b'0')))
            .ok_or(DurationProblem::TooLarge)
    })
}

/// The length in nanoseconds of the fraction `0.<fraction_digits>` of a unit
/// that is `unit_nanoseconds` long, truncated to a whole nanosecond.
///
/// Only the first 18 digits are used: beyond them the fraction of even a
/// week is far below a nanosecond, and 18 digits keep the product well
/// within `u128`.
fn fraction_of_unit_in_nanoseconds(fraction_digits: &str, unit_nanoseconds: u128) -> u128 {
    const MOST_FRACTION_DIGITS_USED: usize = 18;
    let used_digits = &fraction_digits[..fraction_digits.len().min(MOST_FRACTION_DIGITS_USED)];
    let mut numerator: u128 = 0;
    let mut denominator: u128 = 1;
    for digit in used_digits.bytes() {
        numerator = numerator * 10 + u128::from(digit - b'0');
        denominator *= 10;
    }
    numerator * unit_nanoseconds / denominator
}

/// Turns a length in nanoseconds and a sign into whole milliseconds,
/// truncating toward zero and refusing a length that does not fit in the
/// model's `i64` milliseconds.
fn duration_from_nanoseconds_magnitude(
    nanoseconds: u128,
    is_negative: bool,
) -> Result<Duration, DurationProblem> {
    let milliseconds = i64::try_from(nanoseconds / NANOSECONDS_PER_MILLISECOND)
        .map_err(|_| DurationProblem::TooLarge)?;
    Ok(Duration::from_millis(if is_negative {
        -milliseconds
    } else {
        milliseconds
    }))
}

/// What a Python time text must look like, used in error messages.
const PYTHON_CLOCK_SHAPE: &str = "the time must be written H:MM:SS or H:MM:SS.ffffff, \
     with minutes and seconds from 00 to 59, as in '0:05:00'";

/// Parses the text Python's `str(timedelta)` prints, such as `0:05:00`,
/// `0:05:00.500000`, `1 day, 0:00:00` or `-1 day, 23:55:00`.
///
/// No crate parses this format (it is Python's display form, not a standard),
/// so it is written by hand here. The value is the day count times 24 hours
/// plus the time, so Python's normalized negatives come out right:
/// `-1 day, 23:55:00` is -24 hours + 23 h 55 min = minus five minutes.
fn parse_python_timedelta_text(text: &str) -> Result<Duration, DurationProblem> {
    let (day_count, clock_text) = match text.split_once(',') {
        Some((day_text, clock_text)) => (
            Some(parse_python_day_count(day_text.trim())?),
            clock_text.trim(),
        ),
        None => (None, text),
    };
    // A leading `-` on a bare time is a leniency: Python never prints one.
    let (is_clock_negated, unsigned_clock_text) = match (day_count, clock_text.strip_prefix('-')) {
        (None, Some(rest)) => (true, rest),
        _ => (false, clock_text),
    };
    let clock_nanoseconds = i128::try_from(parse_python_clock(unsigned_clock_text)?)
        .map_err(|_| DurationProblem::TooLarge)?;
    let day_nanoseconds = day_count
        .unwrap_or(0)
        .checked_mul(NANOSECONDS_PER_DAY as i128)
        .ok_or(DurationProblem::TooLarge)?;
    let total_nanoseconds = if is_clock_negated {
        -clock_nanoseconds
    } else {
        day_nanoseconds
            .checked_add(clock_nanoseconds)
            .ok_or(DurationProblem::TooLarge)?
    };
    duration_from_nanoseconds_magnitude(total_nanoseconds.unsigned_abs(), total_nanoseconds < 0)
}

/// Parses the `1 day` or `-2 days` before the comma of a Python timedelta
/// text into a signed day count.
fn parse_python_day_count(day_text: &str) -> Result<i128, DurationProblem> {
    const DAY_COUNT_SHAPE: &str =
        "the part before the comma must be a day count such as '1 day', '2 days' or '-1 day'";
    let lowercase_day_text = day_text.to_ascii_lowercase();
    let count_text = lowercase_day_text
        .strip_suffix("days")
        .or_else(|| lowercase_day_text.strip_suffix("day"))
        .ok_or(DurationProblem::Malformed(DAY_COUNT_SHAPE))?
        .trim_end();
    let (is_negative, digits) = split_leading_sign(count_text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(DurationProblem::Malformed(DAY_COUNT_SHAPE));
    }
    let magnitude =
        i128::try_from(parse_decimal_digits(digits)?).map_err(|_| DurationProblem::TooLarge)?;
    Ok(if is_negative { -magnitude } else { magnitude })
}

/// Parses Python's `H:MM:SS[.ffffff]` into nanoseconds. Hours may have any
/// number of digits; minutes and seconds must have two and be below 60. The
/// fraction may have any number of digits, of which the first nine are used.
fn parse_python_clock(clock_text: &str) -> Result<u128, DurationProblem> {
    let malformed = DurationProblem::Malformed(PYTHON_CLOCK_SHAPE);
    let mut fields = clock_text.split(':');
    let (Some(hours_text), Some(minutes_text), Some(seconds_text), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed);
    };
    let (whole_seconds_text, fraction_text) = match seconds_text.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return Err(malformed),
        None => (seconds_text, ""),
    };
    let is_all_digits = |text: &str| text.bytes().all(|byte| byte.is_ascii_digit());
    if hours_text.is_empty()
        || !is_all_digits(hours_text)
        || minutes_text.len() != 2
        || !is_all_digits(minutes_text)
        || whole_seconds_text.len() != 2
        || !is_all_digits(whole_seconds_text)
        || !is_all_digits(fraction_text)
    {
        return Err(malformed);
    }
    let hours = parse_decimal_digits(hours_text)?;
    let minutes = parse_decimal_digits(minutes_text)?;
    let seconds = parse_decimal_digits(whole_seconds_text)?;
    if minutes >= 60 || seconds >= 60 {
        return Err(malformed);
    }
    let fraction_nanoseconds =
        fraction_of_unit_in_nanoseconds(fraction_text, NANOSECONDS_PER_SECOND);
    hours
        .checked_mul(NANOSECONDS_PER_HOUR)
        .and_then(|hour_nanoseconds| {
            hour_nanoseconds.checked_add(
                minutes * NANOSECONDS_PER_MINUTE
                    + seconds * NANOSECONDS_PER_SECOND
                    + fraction_nanoseconds,
            )
        })
        .ok_or(DurationProblem::TooLarge)
}

// ---------------------------------------------------------------------------
// Time zones
// ---------------------------------------------------------------------------

/// Windows time zone ids and the IANA zone each stands for: every
/// territory "001" (the golden zone) mapping of the CLDR table
/// `common/supplemental/windowsZones.xml`, in its order (west to east).
///
/// The IANA names are CLDR's, some of which are older aliases of today's
/// canonical names (`Asia/Calcutta` for `Asia/Kolkata`, `Europe/Kiev` for
/// `Europe/Kyiv`); jiff's database knows both, and a test checks that every
/// name here resolves.
const WINDOWS_TIME_ZONE_TO_IANA: &[(&str, &str)] = &[
    ("Dateline Standard Time", "Etc/GMT+12"),
    ("UTC-11", "Etc/GMT+11"),
    ("Aleutian Standard Time", "America/Adak"),
    ("Hawaiian Standard Time", "Pacific/Honolulu"),
    ("Marquesas Standard Time", "Pacific/Marquesas"),
    ("Alaskan Standard Time", "America/Anchorage"),
    ("UTC-09", "Etc/GMT+9"),
    ("Pacific Standard Time (Mexico)", "America/Tijuana"),
    ("UTC-08", "Etc/GMT+8"),
    ("Pacific Standard Time", "America/Los_Angeles"),
    ("US Mountain Standard Time", "America/Phoenix"),
    ("Mountain Standard Time (Mexico)", "America/Mazatlan"),
    ("Mountain Standard Time", "America/Denver"),
    ("Yukon Standard Time", "America/Whitehorse"),
    ("Central America Standard Time", "America/Guatemala"),
    ("Central Standard Time", "America/Chicago"),
    ("Easter Island Standard Time", "Pacific/Easter"),
    ("Central Standard Time (Mexico)", "America/Mexico_City"),
    ("Canada Central Standard Time", "America/Regina"),
    ("SA Pacific Standard Time", "America/Bogota"),
    ("Eastern Standard Time (Mexico)", "America/Cancun"),
    ("Eastern Standard Time", "America/New_York"),
    ("Haiti Standard Time", "America/Port-au-Prince"),
    ("Cuba Standard Time", "America/Havana"),
    ("US Eastern Standard Time", "America/Indianapolis"),
    ("Turks And Caicos Standard Time", "America/Grand_Turk"),
    ("Paraguay Standard Time", "America/Asuncion"),
    ("Atlantic Standard Time", "America/Halifax"),
    ("Venezuela Standard Time", "America/Caracas"),
    ("Central Brazilian Standard Time", "America/Cuiaba"),
    ("SA Western Standard Time", "America/La_Paz"),
    ("Pacific SA Standard Time", "America/Santiago"),
    ("Newfoundland Standard Time", "America/St_Johns"),
    ("Tocantins Standard Time", "America/Araguaina"),
    ("E. South America Standard Time", "America/Sao_Paulo"),
    ("SA Eastern Standard Time", "America/Cayenne"),
    ("Argentina Standard Time", "America/Buenos_Aires"),
    ("Greenland Standard Time", "America/Godthab"),
    ("Montevideo Standard Time", "America/Montevideo"),
    ("Magallanes Standard Time", "America/Punta_Arenas"),
    ("Saint Pierre Standard Time", "America/Miquelon"),
    ("Bahia Standard Time", "America/Bahia"),
    ("UTC-02", "Etc/GMT+2"),
    ("Azores Standard Time", "Atlantic/Azores"),
    ("Cape Verde Standard Time", "Atlantic/Cape_Verde"),
    ("UTC", "Etc/UTC"),
    ("GMT Standard Time", "Europe/London"),
    ("Greenwich Standard Time", "Atlantic/Reykjavik"),
    ("Sao Tome Standard Time", "Africa/Sao_Tome"),
    ("Morocco Standard Time", "Africa/Casablanca"),
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Central Europe Standard Time", "Europe/Budapest"),
    ("Romance Standard Time", "Europe/Paris"),
    ("Central European Standard Time", "Europe/Warsaw"),
    ("W. Central Africa Standard Time", "Africa/Lagos"),
    ("Jordan Standard Time", "Asia/Amman"),
    ("GTB Standard Time", "Europe/Bucharest"),
    ("Middle East Standard Time", "Asia/Beirut"),
    ("Egypt Standard Time", "Africa/Cairo"),
    ("E. Europe Standard Time", "Europe/Chisinau"),
    ("Syria Standard Time", "Asia/Damascus"),
    ("West Bank Standard Time", "Asia/Hebron"),
    ("South Africa Standard Time", "Africa/Johannesburg"),
    ("FLE Standard Time", "Europe/Kiev"),
    ("Israel Standard Time", "Asia/Jerusalem"),
    ("South Sudan Standard Time", "Africa/Juba"),
    ("Kaliningrad Standard Time", "Europe/Kaliningrad"),
    ("Sudan Standard Time", "Africa/Khartoum"),
    ("Libya Standard Time", "Africa/Tripoli"),
    ("Namibia Standard Time", "Africa/Windhoek"),
    ("Arabic Standard Time", "Asia/Baghdad"),
    ("Turkey Standard Time", "Europe/Istanbul"),
    ("Arab Standard Time", "Asia/Riyadh"),
    ("Belarus Standard Time", "Europe/Minsk"),
    ("Russian Standard Time", "Europe/Moscow"),
    ("E. Africa Standard Time", "Africa/Nairobi"),
    ("Iran Standard Time", "Asia/Tehran"),
    ("Arabian Standard Time", "Asia/Dubai"),
    ("Astrakhan Standard Time", "Europe/Astrakhan"),
    ("Azerbaijan Standard Time", "Asia/Baku"),
    ("Russia Time Zone 3", "Europe/Samara"),
    ("Mauritius Standard Time", "Indian/Mauritius"),
    ("Saratov Standard Time", "Europe/Saratov"),
    ("Georgian Standard Time", "Asia/Tbilisi"),
    ("Volgograd Standard Time", "Europe/Volgograd"),
    ("Caucasus Standard Time", "Asia/Yerevan"),
    ("Afghanistan Standard Time", "Asia/Kabul"),
    ("West Asia Standard Time", "Asia/Tashkent"),
    ("Ekaterinburg Standard Time", "Asia/Yekaterinburg"),
    ("Pakistan Standard Time", "Asia/Karachi"),
    ("Qyzylorda Standard Time", "Asia/Qyzylorda"),
    ("India Standard Time", "Asia/Calcutta"),
    ("Sri Lanka Standard Time", "Asia/Colombo"),
    ("Nepal Standard Time", "Asia/Katmandu"),
    ("Central Asia Standard Time", "Asia/Bishkek"),
    ("Bangladesh Standard Time", "Asia/Dhaka"),
    ("Omsk Standard Time", "Asia/Omsk"),
    ("Myanmar Standard Time", "Asia/Rangoon"),
    ("SE Asia Standard Time", "Asia/Bangkok"),
    ("Altai Standard Time", "Asia/Barnaul"),
    ("W. Mongolia Standard Time", "Asia/Hovd"),
    ("North Asia Standard Time", "Asia/Krasnoyarsk"),
    ("N. Central Asia Standard Time", "Asia/Novosibirsk"),
    ("Tomsk Standard Time", "Asia/Tomsk"),
    ("China Standard Time", "Asia/Shanghai"),
    ("North Asia East Standard Time", "Asia/Irkutsk"),
    ("Singapore Standard Time", "Asia/Singapore"),
    ("W. Australia Standard Time", "Australia/Perth"),
    ("Taipei Standard Time", "Asia/Taipei"),
    ("Ulaanbaatar Standard Time", "Asia/Ulaanbaatar"),
    ("Aus Central W. Standard Time", "Australia/Eucla"),
    ("Transbaikal Standard Time", "Asia/Chita"),
    ("Tokyo Standard Time", "Asia/Tokyo"),
    ("North Korea Standard Time", "Asia/Pyongyang"),
    ("Korea Standard Time", "Asia/Seoul"),
    ("Yakutsk Standard Time", "Asia/Yakutsk"),
    ("Cen. Australia Standard Time", "Australia/Adelaide"),
    ("AUS Central Standard Time", "Australia/Darwin"),
    ("E. Australia Standard Time", "Australia/Brisbane"),
    ("AUS Eastern Standard Time", "Australia/Sydney"),
    ("West Pacific Standard Time", "Pacific/Port_Moresby"),
    ("Tasmania Standard Time", "Australia/Hobart"),
    ("Vladivostok Standard Time", "Asia/Vladivostok"),
    ("Lord Howe Standard Time", "Australia/Lord_Howe"),
    ("Bougainville Standard Time", "Pacific/Bougainville"),
    ("Russia Time Zone 10", "Asia/Srednekolymsk"),
    ("Magadan Standard Time", "Asia/Magadan"),
    ("Norfolk Standard Time", "Pacific/Norfolk"),
    ("Sakhalin Standard Time", "Asia/Sakhalin"),
    ("Central Pacific Standard Time", "Pacific/Guadalcanal"),
    ("Russia Time Zone 11", "Asia/Kamchatka"),
    ("New Zealand Standard Time", "Pacific/Auckland"),
    ("UTC+12", "Etc/GMT-12"),
    ("Fiji Standard Time", "Pacific/Fiji"),
    ("Chatham Islands Standard Time", "Pacific/Chatham"),
    ("UTC+13", "Etc/GMT-13"),
    ("Tonga Standard Time", "Pacific/Tongatapu"),
    ("Samoa Standard Time", "Pacific/Apia"),
    ("Line Islands Standard Time", "Pacific/Kiritimati"),
];

/// The IANA zone name for a Windows time zone id, compared without regard
/// to ASCII case, or `None` if `windows_time_zone_id` is not one.
fn iana_name_for_windows_time_zone(windows_time_zone_id: &str) -> Option<&'static str> {
    WINDOWS_TIME_ZONE_TO_IANA
        .iter()
        .find(|(windows_id, _)| windows_id.eq_ignore_ascii_case(windows_time_zone_id))
        .map(|(_, iana_name)| *iana_name)
}

/// Resolves the `timeZone` of a `dateTimeTimeZone`: absent, empty and `UTC`
/// (in any case) mean UTC; otherwise a Windows time zone id or an IANA name,
/// both compared without regard to case.
fn resolve_time_zone(field: &str, time_zone_name: Option<&str>) -> Result<TimeZone, String> {
    let trimmed_name = time_zone_name.map_or("", str::trim);
    if trimmed_name.is_empty() || trimmed_name.eq_ignore_ascii_case("UTC") {
        return Ok(TimeZone::UTC);
    }
    let iana_name = iana_name_for_windows_time_zone(trimmed_name).unwrap_or(trimmed_name);
    TimeZone::get(iana_name).map_err(|_| {
        format!(
            "{field}.timeZone {} is not a known time zone. Use a Windows time zone name such as \
             'Pacific Standard Time' or 'W. Europe Standard Time', an IANA name such as \
             'Europe/Berlin', or 'UTC'.",
            quote_caller_input(trimmed_name)
        )
    })
}

// ---------------------------------------------------------------------------
// Date-times and instants
// ---------------------------------------------------------------------------

/// Parses Graph's `dateTimeTimeZone` complex type into an instant.
///
/// `date_time` is a local date and time without an offset, such as
/// `2022-10-18T17:05:33.2079781` (up to nine fractional digits; Graph sends
/// seven), read in `time_zone`. A date alone (`2022-10-18`) means midnight.
/// `time_zone` may be absent or empty (meaning UTC), `UTC` in any case, an
/// IANA name such as `Europe/Berlin`, or a Windows time zone id such as
/// `Pacific Standard Time`, all compared without regard to case. A local time
/// that daylight saving skips or repeats is resolved as jiff's (and
/// Temporal's) "compatible" disambiguation does: a skipped time is read with
/// the offset from before the gap, so it lands after the gap, and a repeated
/// time takes the earlier of its two instants.
///
/// As a leniency, a `date_time` that carries `Z` or an offset (the .NET SDK's
/// `DateTimeTimeZone.FromDateTimeOffset` writes one) is taken as that absolute
/// instant, and `time_zone` is then only checked to be a known zone.
///
/// `field` names the `dateTimeTimeZone` itself, such as
/// `statusMessage.expiryDateTime`; messages speak of `<field>.dateTime` and
/// `<field>.timeZone`. The instant is truncated to the millisecond.
pub fn parse_date_time_time_zone(
    field: &str,
    date_time: &str,
    time_zone: Option<&str>,
) -> Result<Instant, String> {
    let resolved_time_zone = resolve_time_zone(field, time_zone)?;
    let trimmed_date_time = date_time.trim();
    if let Ok(timestamp) = trimmed_date_time.parse::<Timestamp>() {
        return Ok(instant_from_timestamp(timestamp));
    }
    let civil_date_time: DateTime = trimmed_date_time.parse().map_err(|_| {
        format!(
            "{field}.dateTime {} is not a date and time. Use the form '2026-10-18T17:05:33' \
             (optionally with up to seven fractional digits) and give the time zone in \
             {field}.timeZone.",
            quote_caller_input(date_time)
        )
    })?;
    let timestamp = resolved_time_zone
        .to_ambiguous_timestamp(civil_date_time)
        .compatible()
        .map_err(|_| {
            format!(
                "{field}.dateTime {} cannot be placed in its time zone because it is at the \
                 edge of the supported range of years -9999 to 9999. Use a nearer date.",
                quote_caller_input(date_time)
            )
        })?;
    Ok(instant_from_timestamp(timestamp))
}

/// Parses an `Edm.DateTimeOffset`: an RFC 3339 / ISO 8601 timestamp with
/// `Z` or a numeric offset, such as `2026-08-27T09:14:22.9410000Z` or
/// `2026-08-27T11:14:22+02:00`, with up to nine fractional digits (Graph
/// sends seven). The instant is truncated to the millisecond. A timestamp
/// without an offset is refused, since it names no single instant.
///
/// `field` names the field in error messages.
pub fn parse_instant(field: &str, text: &str) -> Result<Instant, String> {
    let trimmed_text = text.trim();
    match trimmed_text.parse::<Timestamp>() {
        Ok(timestamp) => Ok(instant_from_timestamp(timestamp)),
        Err(_) if trimmed_text.parse::<DateTime>().is_ok() => Err(format!(
            "{field} {} has no offset from UTC. Write it with a time and 'Z' for UTC or an \
             offset such as '+02:00', as in '2026-10-18T17:05:33Z'.",
            quote_caller_input(text)
        )),
        Err(_) => Err(format!(
            "{field} {} is not a date and time with an offset. Use RFC 3339 such as \
             '2026-10-18T17:05:33Z' or '2026-10-18T19:05:33.1234567+02:00'.",
            quote_caller_input(text)
        )),
    }
}

/// Formats an instant the way Graph writes an `Edm.DateTimeOffset`: UTC,
/// exactly seven fractional digits, and `Z`, as in
/// `2026-08-27T09:14:22.9410000Z`.
///
/// Instants beyond jiff's range (years -9999 to 9999) are clamped to its
/// ends; no real instant is that far away.
pub fn format_instant(instant: Instant) -> String {
    let mut text = format_date_time(instant);
    text.push('Z');
    text
}

/// Formats an instant as the `dateTime` of a `dateTimeTimeZone` in UTC: like
/// [`format_instant`] but without the `Z`, as in
/// `2026-08-27T09:14:22.9410000`.
pub fn format_date_time(instant: Instant) -> String {
    let utc_date_time = TimeZone::UTC.to_datetime(timestamp_from_instant(instant));
    let year = utc_date_time.year();
    // RFC 3339 has four-digit years; outside them use ISO 8601's expanded
    // form with a sign and six digits, as jiff does.
    let year_text = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+07}")
    };
    format!(
        "{year_text}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}0000",
        utc_date_time.month(),
        utc_date_time.day(),
        utc_date_time.hour(),
        utc_date_time.minute(),
        utc_date_time.second(),
        utc_date_time.millisecond(),
    )
}

/// The millisecond a timestamp falls in. This rounds toward the past (it
/// floors), unlike jiff's `as_millisecond`, which rounds toward 1970, so that
/// `1969-12-31T23:59:59.9995Z` stays in its second.
fn instant_from_timestamp(timestamp: Timestamp) -> Instant {
    let milliseconds = timestamp
        .as_nanosecond()
        .div_euclid(NANOSECONDS_PER_MILLISECOND as i128);
    // jiff's whole range is about ±3.2e14 ms, far inside i64; the fallback
    // only keeps this total without an unwrap.
    let clamped_milliseconds =
        i64::try_from(milliseconds).unwrap_or(if milliseconds < 0 { i64::MIN } else { i64::MAX });
    Instant::from_unix_millis(clamped_milliseconds)
}

/// The timestamp for an instant, clamped to jiff's range.
fn timestamp_from_instant(instant: Instant) -> Timestamp {
    let milliseconds = instant.as_unix_millis();
    Timestamp::from_millisecond(milliseconds).unwrap_or(if milliseconds < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Quotes caller input for an error message: in single quotes, cut to
/// [`LONGEST_ECHOED_INPUT_CHARACTERS`] characters with `…` after a cut, and
/// with control characters escaped so a message stays on one line.
fn quote_caller_input(text: &str) -> String {
    let mut quoted = String::from("'");
    for (index, character) in text.chars().enumerate() {
        if index == LONGEST_ECHOED_INPUT_CHARACTERS {
            quoted.push('…');
            break;
        }
        if character.is_control() {
            quoted.extend(character.escape_default());
        } else {
            quoted.push(character);
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SpanRelativeTo;
    use jiff::fmt::temporal::SpanParser;

    const FIELD: &str = "expirationDuration";

    fn duration_millis(text: &str) -> i64 {
        match parse_duration(FIELD, text) {
            Ok(duration) => duration.as_millis(),
            Err(message) => panic!("{text:?} should parse, but: {message}"),
        }
    }

    fn duration_error(text: &str) -> String {
        match parse_duration(FIELD, text) {
            Ok(duration) => panic!("{text:?} should be refused, but gave {duration:?}"),
            Err(message) => {
                assert!(message.contains(FIELD), "{message}");
                assert!(message.ends_with('.'), "not a sentence: {message}");
                message
            }
        }
    }

    const SECOND: i64 = 1_000;
    const MINUTE: i64 = 60 * SECOND;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn iso_8601_durations_graph_documents() {
        assert_eq!(duration_millis("PT5M"), 5 * MINUTE);
        assert_eq!(duration_millis("PT1H"), HOUR);
        assert_eq!(duration_millis("PT4H"), 4 * HOUR);
        assert_eq!(duration_millis("PT1H30M"), 90 * MINUTE);
        assert_eq!(duration_millis("PT90S"), 90 * SECOND);
        assert_eq!(duration_millis("PT0.5S"), 500);
        assert_eq!(duration_millis("P1D"), DAY);
        assert_eq!(duration_millis("P1DT2H"), DAY + 2 * HOUR);
        assert_eq!(duration_millis("P0DT1H"), HOUR);
        assert_eq!(duration_millis("PT1H2M3.456S"), HOUR + 2 * MINUTE + 3_456);
        assert_eq!(duration_millis("PT0S"), 0);
        assert_eq!(duration_millis("P0D"), 0);
    }

    #[test]
    fn iso_8601_durations_in_lower_case_and_with_spaces_around() {
        assert_eq!(duration_millis("pt5m"), 5 * MINUTE);
        assert_eq!(duration_millis("p1dt2h"), DAY + 2 * HOUR);
        assert_eq!(duration_millis("Pt1h30M"), 90 * MINUTE);
        assert_eq!(duration_millis("  PT5M\n"), 5 * MINUTE);
    }

    #[test]
    fn iso_8601_weeks_count_as_seven_days() {
        assert_eq!(duration_millis("P1W"), 7 * DAY);
        assert_eq!(duration_millis("P2W3DT4H"), 17 * DAY + 4 * HOUR);
    }

    #[test]
    fn iso_8601_fractions_are_allowed_on_the_last_number() {
        assert_eq!(duration_millis("PT1.5H"), 90 * MINUTE);
        assert_eq!(duration_millis("PT0,5S"), 500);
        assert_eq!(duration_millis("P0.5D"), 12 * HOUR);
        assert_eq!(duration_millis("PT1H30.5M"), 90 * MINUTE + 30 * SECOND);
        assert_eq!(duration_millis("PT0.0000001S"), 0);
    }

    #[test]
    fn iso_8601_zero_years_and_months_are_allowed() {
        assert_eq!(duration_millis("P0Y0M1D"), DAY);
        assert_eq!(duration_millis("P0Y0MT1H"), HOUR);
        assert_eq!(duration_millis("P0.0Y"), 0);
    }

    #[test]
    fn iso_8601_signs_are_read_and_negatives_returned() {
        assert_eq!(duration_millis("-PT5M"), -5 * MINUTE);
        assert_eq!(duration_millis("-P1DT1H"), -(DAY + HOUR));
        assert_eq!(duration_millis("+PT5M"), 5 * MINUTE);
        assert_eq!(duration_millis("-PT0S"), 0);
    }

    #[test]
    fn sub_millisecond_precision_is_truncated_toward_zero() {
        assert_eq!(duration_millis("PT0.0009S"), 0);
        assert_eq!(duration_millis("-PT0.0009S"), 0);
        assert_eq!(duration_millis("PT1.2345678S"), 1_234);
        assert_eq!(duration_millis("-PT1.2349S"), -1_234);
        assert_eq!(duration_millis("0:00:01.999999"), 1_999);
        assert_eq!(duration_millis("-1 day, 23:59:59.999500"), 0);
        assert_eq!(duration_millis("-1 day, 23:59:58.999500"), -1_000);
    }

    #[test]
    fn iso_8601_parsing_agrees_with_jiff_wherever_both_accept() {
        for text in [
            "PT5M",
            "PT1H",
            "PT1H30M",
            "PT90S",
            "PT0.5S",
            "PT0,25S",
            "P1D",
            "P1DT2H",
            "P0DT1H",
            "P1W",
            "P3W2DT1H2M3.004005006S",
            "PT1.5H",
            "PT2.25M",
            "-PT5M",
            "+P2D",
            "pt12h",
            "P7304484D",
            "PT631107417600S",
            "PT0.000999999S",
            "-PT0.000999999S",
        ] {
            let span = SpanParser::new()
                .parse_span(text)
                .unwrap_or_else(|error| panic!("jiff refuses {text:?}: {error}"));
            let jiff_duration = span
                .to_duration(SpanRelativeTo::days_are_24_hours())
                .unwrap_or_else(|error| panic!("jiff cannot convert {text:?}: {error}"));
            let jiff_millis =
                i64::try_from(jiff_duration.as_nanos() / 1_000_000).expect("fits in i64");
            assert_eq!(duration_millis(text), jiff_millis, "{text}");
        }
    }

    #[test]
    fn python_timedelta_text_the_sdk_sends() {
        assert_eq!(duration_millis("0:05:00"), 5 * MINUTE);
        assert_eq!(duration_millis("1:00:00"), HOUR);
        assert_eq!(duration_millis("4:00:00"), 4 * HOUR);
        assert_eq!(duration_millis("0:00:30"), 30 * SECOND);
        assert_eq!(duration_millis("23:59:59"), DAY - SECOND);
        assert_eq!(duration_millis("0:05:00.500000"), 5 * MINUTE + 500);
        assert_eq!(duration_millis("1 day, 0:00:00"), DAY);
        assert_eq!(
            duration_millis("2 days, 3:04:05"),
            2 * DAY + 3 * HOUR + 4 * MINUTE + 5 * SECOND
        );
        assert_eq!(duration_millis("7 days, 0:00:00"), 7 * DAY);
    }

    #[test]
    fn python_negative_timedelta_text_is_a_negative_day_count_plus_a_time() {
        assert_eq!(duration_millis("-1 day, 23:55:00"), -5 * MINUTE);
        assert_eq!(duration_millis("-1 day, 0:00:00"), -DAY);
        assert_eq!(duration_millis("-2 days, 23:00:00"), -(DAY + HOUR));
        assert_eq!(duration_millis("-1 day, 23:59:59.500000"), -500);
    }

    #[test]
    fn python_timedelta_text_leniencies() {
        assert_eq!(duration_millis("-0:05:00"), -5 * MINUTE);
        assert_eq!(duration_millis("36:00:00"), 36 * HOUR);
        assert_eq!(duration_millis("0:00:00.5"), 500);
        assert_eq!(duration_millis("1 DAY, 1:00:00"), DAY + HOUR);
        assert_eq!(duration_millis("1 days,0:00:00"), DAY);
        assert_eq!(duration_millis("+1 day, 0:00:00"), DAY);
    }

    #[test]
    fn python_largest_timedelta_fits() {
        // Python's `str(timedelta.max)`.
        assert_eq!(
            duration_millis("999999999 days, 23:59:59.999999"),
            999_999_999 * DAY + DAY - 1
        );
        // Python's `str(timedelta.min)`.
        assert_eq!(
            duration_millis("-999999999 days, 0:00:00"),
            -999_999_999 * DAY
        );
    }

    #[test]
    fn unrecognized_duration_forms_list_the_accepted_forms() {
        for text in ["5m", "1h", "one hour", "5 minutes", "T5M", "x"] {
            let message = duration_error(text);
            assert!(message.contains("'PT5M'"), "{message}");
            assert!(message.contains("'0:05:00'"), "{message}");
        }
        let message = duration_error("1h");
        assert!(
            message.starts_with("expirationDuration '1h' is not a duration."),
            "{message}"
        );
    }

    #[test]
    fn empty_durations_are_refused() {
        assert!(duration_error("").contains("is empty"));
        assert!(duration_error("   ").contains("is empty"));
    }

    #[test]
    fn plain_numbers_are_refused_with_a_unit_hint() {
        for text in ["300", "1.5", "-5"] {
            let message = duration_error(text);
            assert!(message.contains("without a unit"), "{message}");
            assert!(message.contains("'PT300S'"), "{message}");
        }
    }

    #[test]
    fn years_and_months_are_refused_as_having_no_fixed_length() {
        for text in ["P1Y", "P2M", "P1Y2M3D", "P5M", "p1m", "P0.5Y", "-P1M"] {
            let message = duration_error(text);
            assert!(message.contains("no fixed length"), "{text}: {message}");
        }
        // "P5M" is five months; the message says where minutes go.
        assert!(duration_error("P5M").contains("'PT5M'"));
    }

    #[test]
    fn malformed_iso_8601_durations_say_what_is_wrong() {
        let cases = [
            ("P", "nothing follows the 'P'"),
            ("PT", "a 'T' must be followed"),
            ("P1DT", "a 'T' must be followed"),
            ("P1H", "go after a 'T'"),
            ("P30S", "go after a 'T'"),
            ("PT5", "needs a unit letter"),
            ("PT5X", "unit letters"),
            ("PT1D", "unit letters"),
            ("PT30M1H", "in the order"),
            ("PT1H1H", "in the order"),
            ("P1D2W", "in the order"),
            ("PT1.5H30M", "only the last number"),
            ("PT1.S", "followed by digits"),
            ("PT.5S", "must follow a number"),
            ("P-1D", "must follow a number"),
            ("P1D T2H", "must follow a number"),
            ("PTM", "must follow a number"),
            ("--PT5M", "not a duration"),
        ];
        for (text, expected) in cases {
            let message = duration_error(text);
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn malformed_python_timedelta_text_says_what_is_wrong() {
        let clock_cases = [
            "1:60:00",
            "1:00:60",
            "0:5:00",
            "0:05:0",
            "1:00",
            "1:00:00:00",
            "a:b:c",
            ":05:00",
            "0:05:00.",
            "0:05:00.5x",
            "1 day 0:00:00",
            "1 day, -0:05:00",
            "0:-5:00",
        ];
        for text in clock_cases {
            let message = duration_error(text);
            assert!(message.contains("H:MM:SS"), "{text}: {message}");
        }
        for text in [
            "1 week, 0:00:00",
            "x days, 1:00:00",
            "day, 1:00:00",
            "1.5 days, 0:00:00",
        ] {
            let message = duration_error(text);
            assert!(message.contains("day count"), "{text}: {message}");
        }
    }

    #[test]
    fn huge_durations_are_refused_without_panicking() {
        for text in [
            "P99999999999999999D",
            "PT99999999999999999999999999999999999999999999S",
            "P9999999999999999999999999999999999W",
            "-P99999999999999999D",
            "PT9223372036854775808S",
            "99999999999999999999999 days, 0:00:00",
            "999999999999999999999999999999999999999999 days, 0:00:00",
            "99999999999999999999999:00:00",
            "9999999999999999999999999999999999999999999:00:00",
        ] {
            let message = duration_error(text);
            assert!(message.contains("too large"), "{text}: {message}");
        }
        // The largest representable duration still parses.
        assert_eq!(duration_millis("PT9223372036854775.807S"), i64::MAX);
        assert_eq!(duration_millis("-PT9223372036854775.807S"), -i64::MAX);
    }

    #[test]
    fn long_and_odd_input_is_shortened_and_escaped_in_messages() {
        let long_text = "x".repeat(500);
        let message = duration_error(&long_text);
        assert!(
            message.contains(&format!("'{}…'", "x".repeat(64))),
            "{message}"
        );
        assert!(message.len() < 400, "{message}");
        let message = duration_error("PT5M\u{0}");
        assert!(!message.contains('\u{0}'), "{message}");
        let message = duration_error("🕐🕑");
        assert!(message.contains("'🕐🕑'"), "{message}");
    }

    fn instant_at(text: &str) -> Instant {
        parse_instant("test", text).unwrap_or_else(|message| panic!("{message}"))
    }

    fn local(date_time: &str, time_zone: Option<&str>) -> String {
        match parse_date_time_time_zone("statusMessage.expiryDateTime", date_time, time_zone) {
            Ok(instant) => format_instant(instant),
            Err(message) => panic!("{date_time:?} in {time_zone:?}: {message}"),
        }
    }

    #[test]
    fn date_time_without_a_time_zone_is_utc() {
        assert_eq!(
            local("2022-10-18T17:05:33.2079781", None),
            "2022-10-18T17:05:33.2070000Z"
        );
        assert_eq!(
            local("2022-10-18T17:05:33", Some("")),
            "2022-10-18T17:05:33.0000000Z"
        );
        assert_eq!(
            local("2022-10-18T17:05:33", Some("  ")),
            "2022-10-18T17:05:33.0000000Z"
        );
        assert_eq!(
            local("2022-10-18T17:05:33", Some("UTC")),
            "2022-10-18T17:05:33.0000000Z"
        );
        assert_eq!(
            local("2022-10-18T17:05:33", Some("utc")),
            "2022-10-18T17:05:33.0000000Z"
        );
        assert_eq!(
            local("2022-10-18T17:05:33", Some("Etc/UTC")),
            "2022-10-18T17:05:33.0000000Z"
        );
    }

    #[test]
    fn date_time_variants_jiff_accepts() {
        assert_eq!(local("2022-10-18", None), "2022-10-18T00:00:00.0000000Z");
        assert_eq!(
            local("2022-10-18 17:05:33", None),
            "2022-10-18T17:05:33.0000000Z"
        );
        assert_eq!(
            local("2022-10-18T17:05", None),
            "2022-10-18T17:05:00.0000000Z"
        );
        assert_eq!(
            local(" 2022-10-18T17:05:33 ", None),
            "2022-10-18T17:05:33.0000000Z"
        );
    }

    #[test]
    fn windows_time_zones_follow_daylight_saving() {
        let pacific = Some("Pacific Standard Time");
        assert_eq!(
            local("2026-07-01T12:00:00", pacific),
            "2026-07-01T19:00:00.0000000Z"
        );
        assert_eq!(
            local("2026-01-15T12:00:00", pacific),
            "2026-01-15T20:00:00.0000000Z"
        );
        let western_europe = Some("W. Europe Standard Time");
        assert_eq!(
            local("2026-07-01T12:00:00", western_europe),
            "2026-07-01T10:00:00.0000000Z"
        );
        assert_eq!(
            local("2026-01-15T12:00:00", western_europe),
            "2026-01-15T11:00:00.0000000Z"
        );
        let british = Some("GMT Standard Time");
        assert_eq!(
            local("2026-07-01T12:00:00", british),
            "2026-07-01T11:00:00.0000000Z"
        );
        assert_eq!(
            local("2026-01-15T12:00:00", british),
            "2026-01-15T12:00:00.0000000Z"
        );
        let sydney = Some("AUS Eastern Standard Time");
        assert_eq!(
            local("2026-01-15T12:00:00", sydney),
            "2026-01-15T01:00:00.0000000Z"
        );
        assert_eq!(
            local("2026-07-01T12:00:00", sydney),
            "2026-07-01T02:00:00.0000000Z"
        );
    }

    #[test]
    fn windows_time_zones_without_daylight_saving() {
        assert_eq!(
            local("2026-07-01T12:00:00", Some("India Standard Time")),
            "2026-07-01T06:30:00.0000000Z"
        );
        assert_eq!(
            local("2026-07-01T12:00:00", Some("Tokyo Standard Time")),
            "2026-07-01T03:00:00.0000000Z"
        );
        assert_eq!(
            local("2026-07-01T12:00:00", Some("Nepal Standard Time")),
            "2026-07-01T06:15:00.0000000Z"
        );
        assert_eq!(
            local("2026-07-01T12:00:00", Some("US Mountain Standard Time")),
            "2026-07-01T19:00:00.0000000Z"
        );
        assert_eq!(
            local("2026-07-01T12:00:00", Some("UTC-11")),
            "2026-07-01T23:00:00.0000000Z"
        );
        assert_eq!(
            local("2026-07-01T12:00:00", Some("UTC+12")),
            "2026-07-01T00:00:00.0000000Z"
        );
    }

    #[test]
    fn time_zone_names_are_compared_without_regard_to_case() {
        let expected = "2026-07-01T19:00:00.0000000Z";
        for name in [
            "pacific standard time",
            "PACIFIC STANDARD TIME",
            " Pacific Standard Time ",
            "America/Los_Angeles",
            "america/los_angeles",
        ] {
            assert_eq!(local("2026-07-01T12:00:00", Some(name)), expected, "{name}");
        }
    }

    #[test]
    fn iana_time_zones() {
        assert_eq!(
            local("2026-07-01T12:00:00", Some("Europe/Berlin")),
            "2026-07-01T10:00:00.0000000Z"
        );
        assert_eq!(
            local("2026-01-01T12:00:00.2079781", Some("Europe/Berlin")),
            "2026-01-01T11:00:00.2070000Z"
        );
        assert_eq!(
            local("2026-07-01T12:00:00", Some("Asia/Kolkata")),
            "2026-07-01T06:30:00.0000000Z"
        );
    }

    #[test]
    fn skipped_local_times_land_after_the_gap() {
        // 02:30 does not exist in Los Angeles on 2026-03-08; read with the
        // offset before the gap (-08:00) it is 03:30 daylight time.
        assert_eq!(
            local("2026-03-08T02:30:00", Some("Pacific Standard Time")),
            "2026-03-08T10:30:00.0000000Z"
        );
        // 02:30 does not exist in Berlin on 2026-03-29.
        assert_eq!(
            local("2026-03-29T02:30:00", Some("W. Europe Standard Time")),
            "2026-03-29T01:30:00.0000000Z"
        );
    }

    #[test]
    fn repeated_local_times_take_the_earlier_instant() {
        // 01:30 happens twice in Los Angeles on 2026-11-01; the first is
        // daylight time (-07:00).
        assert_eq!(
            local("2026-11-01T01:30:00", Some("Pacific Standard Time")),
            "2026-11-01T08:30:00.0000000Z"
        );
        // 02:30 happens twice in Berlin on 2026-10-25; the first is +02:00.
        assert_eq!(
            local("2026-10-25T02:30:00", Some("Europe/Berlin")),
            "2026-10-25T00:30:00.0000000Z"
        );
    }

    #[test]
    fn date_time_with_an_offset_is_taken_as_that_instant() {
        assert_eq!(
            local("2026-01-01T12:00:00Z", Some("Tokyo Standard Time")),
            "2026-01-01T12:00:00.0000000Z"
        );
        assert_eq!(
            local("2026-01-01T12:00:00.0000000Z", None),
            "2026-01-01T12:00:00.0000000Z"
        );
        assert_eq!(
            local("2026-01-01T12:00:00+02:00", Some("Pacific Standard Time")),
            "2026-01-01T10:00:00.0000000Z"
        );
    }

    #[test]
    fn bad_date_times_name_the_date_time_field() {
        for text in [
            "tomorrow",
            "",
            "2026-13-01T00:00:00",
            "2026-02-30T00:00:00",
            "17:05:33",
        ] {
            let message = parse_date_time_time_zone("statusMessage.expiryDateTime", text, None)
                .expect_err(text);
            assert!(
                message.starts_with("statusMessage.expiryDateTime.dateTime "),
                "{message}"
            );
            assert!(message.contains("'2026-10-18T17:05:33'"), "{message}");
        }
    }

    #[test]
    fn unknown_time_zones_name_the_time_zone_field_and_value() {
        for zone in [
            "Mars/Olympus",
            "Pacific Time",
            "PST",
            "+02:00",
            "Europe/../etc",
        ] {
            for date_time in ["2026-01-01T00:00:00", "2026-01-01T00:00:00Z"] {
                let message = parse_date_time_time_zone(
                    "statusMessage.expiryDateTime",
                    date_time,
                    Some(zone),
                )
                .expect_err(zone);
                assert!(
                    message.starts_with("statusMessage.expiryDateTime.timeZone "),
                    "{message}"
                );
                assert!(message.contains(&format!("'{zone}'")), "{message}");
                assert!(message.contains("Windows"), "{message}");
                assert!(message.contains("IANA"), "{message}");
            }
        }
    }

    #[test]
    fn every_windows_time_zone_resolves_in_jiff() {
        assert!(WINDOWS_TIME_ZONE_TO_IANA.len() >= 135);
        for (windows_id, iana_name) in WINDOWS_TIME_ZONE_TO_IANA {
            assert!(
                TimeZone::get(iana_name).is_ok(),
                "{windows_id} maps to {iana_name}, which jiff does not know"
            );
            assert!(
                resolve_time_zone("test", Some(windows_id)).is_ok(),
                "{windows_id}"
            );
        }
    }

    #[test]
    fn windows_time_zone_ids_are_unique_without_regard_to_case() {
        for (index, (windows_id, _)) in WINDOWS_TIME_ZONE_TO_IANA.iter().enumerate() {
            assert_eq!(
                WINDOWS_TIME_ZONE_TO_IANA
                    .iter()
                    .position(|(other, _)| other.eq_ignore_ascii_case(windows_id)),
                Some(index),
                "{windows_id} appears twice"
            );
        }
    }

    #[test]
    fn the_most_used_windows_time_zones_are_present() {
        for windows_id in [
            "Pacific Standard Time",
            "Mountain Standard Time",
            "Central Standard Time",
            "Eastern Standard Time",
            "Atlantic Standard Time",
            "Newfoundland Standard Time",
            "Alaskan Standard Time",
            "Hawaiian Standard Time",
            "Canada Central Standard Time",
            "GMT Standard Time",
            "W. Europe Standard Time",
            "Romance Standard Time",
            "Central Europe Standard Time",
            "Central European Standard Time",
            "FLE Standard Time",
            "GTB Standard Time",
            "Russian Standard Time",
            "Turkey Standard Time",
            "Israel Standard Time",
            "Arabian Standard Time",
            "India Standard Time",
            "China Standard Time",
            "Tokyo Standard Time",
            "Korea Standard Time",
            "Singapore Standard Time",
            "SE Asia Standard Time",
            "AUS Eastern Standard Time",
            "E. Australia Standard Time",
            "Cen. Australia Standard Time",
            "W. Australia Standard Time",
            "Tasmania Standard Time",
            "New Zealand Standard Time",
            "E. South America Standard Time",
            "South Africa Standard Time",
        ] {
            assert!(
                iana_name_for_windows_time_zone(windows_id).is_some(),
                "{windows_id}"
            );
        }
    }

    #[test]
    fn format_instant_writes_seven_fractional_digits_and_z() {
        let instant = Instant::from_unix_millis(1_787_822_062_941);
        assert_eq!(format_instant(instant), "2026-08-27T09:14:22.9410000Z");
        assert_eq!(format_date_time(instant), "2026-08-27T09:14:22.9410000");
        assert_eq!(
            format_instant(Instant::EPOCH),
            "1970-01-01T00:00:00.0000000Z"
        );
        assert_eq!(
            format_instant(Instant::from_unix_millis(-1)),
            "1969-12-31T23:59:59.9990000Z"
        );
        assert_eq!(
            format_instant(Instant::from_unix_millis(-62_135_596_800_000)),
            "0001-01-01T00:00:00.0000000Z"
        );
    }

    #[test]
    fn format_instant_clamps_instants_beyond_jiffs_range() {
        assert_eq!(
            format_instant(Instant::from_unix_millis(i64::MAX)),
            "9999-12-30T22:00:00.9990000Z"
        );
        assert_eq!(
            format_instant(Instant::from_unix_millis(i64::MIN)),
            "-009999-01-02T01:59:59.0000000Z"
        );
    }

    #[test]
    fn parse_instant_reads_z_and_offsets() {
        let expected = Instant::from_unix_millis(1_787_822_062_941);
        assert_eq!(instant_at("2026-08-27T09:14:22.9410000Z"), expected);
        assert_eq!(instant_at("2026-08-27T09:14:22.941Z"), expected);
        assert_eq!(instant_at("2026-08-27T09:14:22.9419999Z"), expected);
        assert_eq!(instant_at("2026-08-27T11:14:22.941+02:00"), expected);
        assert_eq!(instant_at("2026-08-27T01:14:22.941-08:00"), expected);
        assert_eq!(instant_at("2026-08-27t09:14:22.941z"), expected);
        assert_eq!(instant_at(" 2026-08-27T09:14:22.941Z "), expected);
        assert_eq!(instant_at("1970-01-01T00:00:00Z"), Instant::EPOCH);
    }

    #[test]
    fn parse_instant_truncates_toward_the_past() {
        assert_eq!(
            instant_at("1969-12-31T23:59:59.9995Z"),
            Instant::from_unix_millis(-1)
        );
        assert_eq!(instant_at("1970-01-01T00:00:00.0009Z"), Instant::EPOCH);
    }

    #[test]
    fn format_and_parse_round_trip() {
        for millis in [
            0,
            1,
            -1,
            1_787_822_062_941,
            253_402_127_999_999,
            -62_135_596_800_000,
        ] {
            let instant = Instant::from_unix_millis(millis);
            assert_eq!(instant_at(&format_instant(instant)), instant, "{millis}");
            assert_eq!(
                parse_date_time_time_zone("test", &format_date_time(instant), None),
                Ok(instant),
                "{millis}"
            );
        }
    }

    #[test]
    fn parse_instant_refuses_text_without_an_offset() {
        for text in ["2026-01-01T00:00:00", "2026-01-01"] {
            let message = parse_instant("expirationDateTime", text).expect_err(text);
            assert!(message.starts_with("expirationDateTime "), "{message}");
            assert!(message.contains("no offset"), "{message}");
        }
    }

    #[test]
    fn parse_instant_refuses_other_text() {
        for text in ["", "now", "2026-01-01T25:00:00Z", "1787822062941", "PT5M"] {
            let message = parse_instant("expirationDateTime", text).expect_err(text);
            assert!(message.starts_with("expirationDateTime "), "{message}");
            assert!(message.contains("RFC 3339"), "{message}");
        }
    }
}
