//! Graph's time formats on the wire, converted to and from the model's
//! millisecond [`Instant`] and [`Duration`].
//!
//! - Durations (`Edm.Duration`): ISO 8601 (`PT5M`, `PT1H30M`, `P1D`), and the
//!   forms the official Python SDK sends for a `datetime.timedelta`, because
//!   it serializes them with Python's `str()` (`1:00:00`, `1 day, 0:00:00`).
//! - `dateTimeTimeZone`: a local date-time without offset plus a Windows or
//!   IANA time zone name.
//! - `DateTimeOffset`: RFC 3339 with seven fractional digits, as Graph writes it.
//!
//! Sub-millisecond precision is truncated: the model counts milliseconds.
//! Every error is a sentence naming the field and the accepted forms.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Span, SpanRelativeTo, Timestamp};
use presence_core::{Duration, Instant};

/// Parses an ISO 8601 duration or a Python `str(timedelta)`.
///
/// Days count as 24 hours; weeks as 7 days. Years and months are refused,
/// since their length depends on a calendar date. A negative value parses
/// (as a negative duration) so that callers can say it is out of range.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let parsed = if trimmed.contains(':') {
        parse_python_timedelta(trimmed)
    } else {
        parse_iso_duration(trimmed)
    };
    parsed.map_err(|reason| {
        format!(
            "{field} '{}' is not a duration{reason}; use ISO 8601 such as PT5M, PT1H or P1D",
            crate::http::wire::truncate(text)
        )
    })
}

fn parse_iso_duration(text: &str) -> Result<Duration, String> {
    let upper = text.to_ascii_uppercase();
    if !upper.trim_start_matches(['-', '+']).starts_with('P') {
        return Err(String::new());
    }
    let span: Span = upper.parse().map_err(|_| String::new())?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err(" (years and months have no fixed length)".into());
    }
    let signed = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| " (it is too long)".to_owned())?;
    let millis = signed.as_millis();
    i64::try_from(millis)
        .map(Duration::from_millis)
        .map_err(|_| " (it is too long)".into())
}

/// Python's `str(timedelta)`: `[-]D day[s], H:MM:SS[.ffffff]` or
/// `H:MM:SS[.ffffff]`. No crate parses this format, so it is done by hand.
/// Python normalizes negatives as a negative day count plus a positive time
/// (`-1 day, 23:55:00` is minus five minutes), and so does this.
fn parse_python_timedelta(text: &str) -> Result<Duration, String> {
    let (days, clock) = match text.split_once(',') {
        Some((days, clock)) => {
            let days = days.trim();
            let count = days
                .strip_suffix(" days")
                .or_else(|| days.strip_suffix(" day"))
                .ok_or_else(String::new)?;
            let count: i64 = count.trim().parse().map_err(|_| String::new())?;
            (count, clock.trim())
        }
        None => (0, text),
    };
    let mut parts = clock.split(':');
    let (Some(hours), Some(minutes), Some(seconds), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(String::new());
    };
    let number = |part: &str| -> Result<i64, String> {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(String::new());
        }
        part.parse().map_err(|_| " (it is too long)".to_owned())
    };
    let hours = number(hours)?;
    let minutes = number(minutes)?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let seconds = number(whole)?;
    if minutes >= 60 || seconds >= 60 {
        return Err(" (minutes and seconds must be below 60)".into());
    }
    let millis_of_fraction = if fraction.is_empty() {
        0
    } else {
        if !fraction.bytes().all(|b| b.is_ascii_digit()) || fraction.len() > 9 {
            return Err(String::new());
        }
        let padded = format!("{fraction:0<3}");
        number(&padded[..3])?
    };
    let total = days
        .checked_mul(86_400_000)
        .and_then(|d| d.checked_add(hours.checked_mul(3_600_000)?))
        .and_then(|t| t.checked_add(minutes * 60_000 + seconds * 1_000 + millis_of_fraction))
        .ok_or_else(|| " (it is too long)".to_owned())?;
    Ok(Duration::from_millis(total))
}

/// Windows time zone ids and their IANA equivalents (CLDR windowsZones,
/// territory 001). Graph clients send either form.
const WINDOWS_ZONES: &[(&str, &str)] = &[
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
    ("Coordinated Universal Time", "Etc/UTC"),
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
    ("Volgograd Standard Time", "Europe/Volgograd"),
    ("Iran Standard Time", "Asia/Tehran"),
    ("Arabian Standard Time", "Asia/Dubai"),
    ("Astrakhan Standard Time", "Europe/Astrakhan"),
    ("Azerbaijan Standard Time", "Asia/Baku"),
    ("Russia Time Zone 3", "Europe/Samara"),
    ("Mauritius Standard Time", "Indian/Mauritius"),
    ("Saratov Standard Time", "Europe/Saratov"),
    ("Georgian Standard Time", "Asia/Tbilisi"),
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

/// Resolves a Windows or IANA zone name; empty and `UTC` mean UTC.
fn time_zone(field: &str, name: &str) -> Result<TimeZone, String> {
    let name = name.trim();
    if name.is_empty() || name.eq_ignore_ascii_case("UTC") {
        return Ok(TimeZone::UTC);
    }
    let iana = WINDOWS_ZONES
        .iter()
        .find(|(windows, _)| windows.eq_ignore_ascii_case(name))
        .map_or(name, |(_, iana)| *iana);
    TimeZone::get(iana).map_err(|_| {
        format!(
            "{field}.timeZone '{}' is not a known time zone; use a Windows name such as 'Pacific Standard Time', an IANA name such as 'Europe/Berlin', or 'UTC'",
            crate::http::wire::truncate(name)
        )
    })
}

/// Parses Graph's `dateTimeTimeZone`. A `dateTime` that carries `Z` or an
/// offset is taken as that absolute instant, whatever `timeZone` says
/// (Graph wants no offset there; accepting one is kinder than refusing).
pub fn parse_date_time_time_zone(
    field: &str,
    date_time: &str,
    zone: Option<&str>,
) -> Result<Instant, String> {
    if let Ok(timestamp) = date_time.trim().parse::<Timestamp>() {
        return Ok(Instant::from_unix_millis(timestamp.as_millisecond()));
    }
    let civil: DateTime = date_time.trim().parse().map_err(|_| {
        format!(
            "{field}.dateTime '{}' is not a date and time; use the form 2026-10-18T17:05:33 (no offset)",
            crate::http::wire::truncate(date_time)
        )
    })?;
    let zone = time_zone(field, zone.unwrap_or(""))?;
    let zoned = zone
        .to_ambiguous_zoned(civil)
        .compatible()
        .map_err(|error| format!("{field}.dateTime cannot be placed in that time zone: {error}"))?;
    Ok(Instant::from_unix_millis(
        zoned.timestamp().as_millisecond(),
    ))
}

/// Parses an RFC 3339 instant with `Z` or an offset (`DateTimeOffset`).
pub fn parse_instant(field: &str, text: &str) -> Result<Instant, String> {
    let timestamp: Timestamp = text.trim().parse().map_err(|_| {
        format!(
            "{field} '{}' is not a date-time with offset; use the form 2026-10-18T17:05:33Z",
            crate::http::wire::truncate(text)
        )
    })?;
    Ok(Instant::from_unix_millis(timestamp.as_millisecond()))
}

fn timestamp(instant: Instant) -> Timestamp {
    Timestamp::from_millisecond(instant.as_unix_millis()).unwrap_or(Timestamp::MAX)
}

/// `2026-08-27T09:14:22.9410000Z`: UTC with seven fractional digits, as Graph.
pub fn format_instant(instant: Instant) -> String {
    format!("{}Z", format_date_time(instant))
}

/// `2026-08-27T09:14:22.9410000`: the same without the `Z`, for a
/// `dateTimeTimeZone` in UTC.
pub fn format_date_time(instant: Instant) -> String {
    timestamp(instant)
        .strftime("%Y-%m-%dT%H:%M:%S%.7f")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(text: &str) -> i64 {
        parse_duration("expirationDuration", text)
            .expect("parses")
            .as_millis()
            / 60_000
    }

    #[test]
    fn iso_durations() {
        assert_eq!(minutes("PT5M"), 5);
        assert_eq!(minutes("PT1H"), 60);
        assert_eq!(minutes("pt1h30m"), 90);
        assert_eq!(minutes("P1D"), 1_440);
        assert_eq!(minutes("P0DT4H"), 240);
        assert_eq!(minutes("P1W"), 7 * 1_440);
        assert_eq!(
            parse_duration("by", "PT0.5S").expect("parses").as_millis(),
            500
        );
        assert_eq!(
            parse_duration("by", "-PT5M").expect("parses").as_millis(),
            -300_000
        );
    }

    #[test]
    fn python_timedelta_strings() {
        assert_eq!(minutes("0:05:00"), 5);
        assert_eq!(minutes("1:00:00"), 60);
        assert_eq!(minutes("1 day, 0:00:00"), 1_440);
        assert_eq!(minutes("2 days, 3:04:00"), 2 * 1_440 + 184);
        assert_eq!(
            parse_duration("d", "0:05:00.500000")
                .expect("parses")
                .as_millis(),
            300_500
        );
        assert_eq!(
            parse_duration("d", "-1 day, 23:55:00")
                .expect("parses")
                .as_millis(),
            -300_000
        );
    }

    #[test]
    fn bad_durations_name_the_field() {
        for bad in [
            "",
            "5m",
            "1h",
            "P1Y",
            "P2M",
            "1:60:00",
            "a:b:c",
            "PT",
            "P99999999999999D",
        ] {
            let error = parse_duration("expirationDuration", bad).expect_err(bad);
            assert!(error.contains("expirationDuration"), "{error}");
        }
    }

    #[test]
    fn windows_and_iana_zones() {
        let summer =
            parse_date_time_time_zone("e", "2026-07-01T12:00:00", Some("Pacific Standard Time"))
                .expect("parses");
        assert_eq!(format_instant(summer), "2026-07-01T19:00:00.0000000Z");
        let berlin =
            parse_date_time_time_zone("e", "2026-01-01T12:00:00.2079781", Some("Europe/Berlin"))
                .expect("parses");
        assert_eq!(format_instant(berlin), "2026-01-01T11:00:00.2070000Z");
        let utc = parse_date_time_time_zone("e", "2026-01-01T12:00:00", None).expect("parses");
        assert_eq!(format_date_time(utc), "2026-01-01T12:00:00.0000000");
        let offset =
            parse_date_time_time_zone("e", "2026-01-01T12:00:00Z", Some("Tokyo Standard Time"))
                .expect("parses");
        assert_eq!(offset, utc);
    }

    #[test]
    fn bad_date_times_and_zones_name_the_field() {
        let error = parse_date_time_time_zone("statusMessage.expiryDateTime", "tomorrow", None)
            .expect_err("bad");
        assert!(
            error.contains("statusMessage.expiryDateTime.dateTime"),
            "{error}"
        );
        let error = parse_date_time_time_zone(
            "statusMessage.expiryDateTime",
            "2026-01-01T00:00:00",
            Some("Mars/Olympus"),
        )
        .expect_err("bad zone");
        assert!(error.contains("timeZone"), "{error}");
        assert!(parse_instant("expirationDateTime", "2026-01-01").is_err());
        assert!(parse_instant("expirationDateTime", "2026-01-01T00:00:00.1234567Z").is_ok());
    }
}
