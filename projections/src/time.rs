//! RFC 3339 timestamps for serde, written by hand: the same text as chrono's own `Serialize`
//! (`2026-11-24T15:22:13.123456Z`, fractional digits in groups of three as needed), without its
//! cost.
//!
//! chrono serializes a `DateTime` through `Serializer::collect_str`, which serde_json runs through
//! its string-escaping writer one fragment at a time (each `-`, `:` and digit pair is a separate
//! write). Under HTTP load that was ~3.5% of the server's CPU (perf: `write_rfc3339`,
//! `format_escaped_str_contents`, `Formatter::write_char`): every answer carries the item's
//! timestamps and every event its own. Here the text is built in a stack buffer and handed to the
//! serializer once. Years outside 0–9999 and leap seconds, which this does not write, fall back to
//! chrono, so the output is always chrono's; a test compares them.
//!
//! Reading back, the form written here (`YYYY-MM-DDTHH:MM:SS[.fff[fff[fff]]]Z`) is parsed by hand
//! too: chrono's parser was ~45% of decoding an item event, which the read models do for every
//! event appended. Any other text (offsets, lowercase, chrono's relaxed forms) and anything out
//! of range goes to chrono's own `Deserialize`, so what is accepted, and every error, is chrono's.
//!
//! Use as `#[serde(with = "crate::time::rfc3339")]`, or `crate::time::rfc3339_option` (with
//! `default`) for an `Option`.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// The longest text written here: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub(crate) const LONGEST: usize = 30;

/// `at` as RFC 3339 text in `buffer`, its length; `None` for what only chrono writes (years
/// outside 0–9999, leap seconds).
pub(crate) fn write(at: &DateTime<Utc>, buffer: &mut [u8; LONGEST]) -> Option<usize> {
    // The fields as chrono holds them, read once from the UTC date-time (its `DateTime` accessors
    // would each shift to the offset again): the date as year and ordinal day, the time as
    // seconds of the day and nanoseconds.
    let naive = at.naive_utc();
    let (date, time) = (naive.date(), naive.time());
    let nanos = time.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let (year, month, day) = (date.year(), date.month(), date.day());
    let second_of_day = time.num_seconds_from_midnight();
    if !(0..=9999).contains(&year) {
        return None;
    }
    *buffer = *b"0000-00-00T00:00:00.000000000Z";
    // 0..=9999, checked above.
    put_digits(&mut buffer[0..4], year.unsigned_abs());
    put_digits(&mut buffer[5..7], month);
    put_digits(&mut buffer[8..10], day);
    put_digits(&mut buffer[11..13], second_of_day / 3_600);
    put_digits(&mut buffer[14..16], second_of_day / 60 % 60);
    put_digits(&mut buffer[17..19], second_of_day % 60);
    let (fraction_digits, fraction) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (3, nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        (6, nanos / 1_000)
    } else {
        (9, nanos)
    };
    let mut end = 19;
    if fraction_digits > 0 {
        put_digits(&mut buffer[20..20 + fraction_digits], fraction);
        end = 20 + fraction_digits;
    }
    buffer[end] = b'Z';
    Some(end + 1)
}

/// `value` in decimal, zero-padded to fill `out`.
fn put_digits(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// `#[serde(with = "crate::time::rfc3339")]` for a `DateTime<Utc>`.
pub mod rfc3339 {
    use super::{LONGEST, write};
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; LONGEST];
        match write(at, &mut buffer) {
            // Only ASCII digits and separators were written.
            Some(length) => serializer.serialize_str(
                std::str::from_utf8(&buffer[..length]).expect("ASCII digits and separators"),
            ),
            None => at.serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        deserializer.deserialize_str(TimestampVisitor)
    }

    /// Takes the text borrowed (no copy) whether or not the deserializer can lend it for `'de`.
    struct TimestampVisitor;

    impl<'de> serde::de::Visitor<'de> for TimestampVisitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("an RFC 3339 date and time")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<DateTime<Utc>, E> {
            use serde::de::IntoDeserializer;
            match super::parse(text) {
                Some(at) => Ok(at),
                None => DateTime::<Utc>::deserialize(text.into_deserializer()),
            }
        }
    }
}

/// `#[serde(default, with = "crate::time::rfc3339_option")]` for an `Option<DateTime<Utc>>`
/// (`null` when `None`; a missing field reads as `None`, as serde does for a plain `Option`).
pub mod rfc3339_option {
    use chrono::{DateTime, Utc};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        at: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::rfc3339::serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        deserializer.deserialize_option(OptionVisitor)
    }

    struct OptionVisitor;

    impl<'de> serde::de::Visitor<'de> for OptionVisitor {
        type Value = Option<DateTime<Utc>>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("an RFC 3339 date and time or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            super::rfc3339::deserialize(deserializer).map(Some)
        }
    }
}

/// The form [`write`] produces, `YYYY-MM-DDTHH:MM:SS[.fff[fff[fff]]]Z`, as a UTC time; `None` for
/// any other text and for fields out of range (a leap second, February 30th), which the caller
/// hands to chrono.
fn parse(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    let fraction_digits = match bytes.len() {
        20 => 0,
        24 => 3,
        27 => 6,
        30 => 9,
        _ => return None,
    };
    let separators_hold = bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && bytes[bytes.len() - 1] == b'Z'
        && (fraction_digits == 0 || bytes[19] == b'.');
    if !separators_hold {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        bytes[range].iter().try_fold(0i64, |value, byte| {
            byte.is_ascii_digit()
                .then(|| value * 10 + i64::from(byte - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let fraction = if fraction_digits == 0 {
        0
    } else {
        number(20..20 + fraction_digits)?
    };
    let leap_year = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap_year => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Howard Hinnant's `days_from_civil` (public domain, http://howardhinnant.github.io/date_algorithms.html).
    let (shifted_year, shifted_month) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year.rem_euclid(400);
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let nanos = fraction * 10i64.pow(9 - fraction_digits as u32);
    DateTime::from_timestamp(
        days * 86_400 + hour * 3_600 + minute * 60 + second,
        nanos as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, TimeZone};
    use proptest::prelude::*;

    fn chrono_text(at: &DateTime<Utc>) -> String {
        serde_json::to_string(at).unwrap()
    }

    fn ours(at: &DateTime<Utc>) -> String {
        #[derive(serde::Serialize)]
        struct Wrapped(#[serde(with = "rfc3339")] DateTime<Utc>);
        serde_json::to_string(&Wrapped(*at)).unwrap()
    }

    #[test]
    fn every_fraction_width_is_written_as_chrono_writes_it() {
        let second = Utc.with_ymd_and_hms(2026, 11, 24, 9, 5, 7).unwrap();
        for nanos in [0, 120_000_000, 123_456_000, 123_456_789, 1, 999_999_999] {
            let at = second + chrono::Duration::nanoseconds(nanos);
            assert_eq!(ours(&at), chrono_text(&at), "nanos {nanos}");
        }
        assert_eq!(
            ours(&second),
            "\"2026-11-24T09:05:07Z\"",
            "the plain form, checked by eye as well"
        );
    }

    #[test]
    fn calendar_edges_are_written_as_chrono_writes_them() {
        let edges = [
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(1900, 3, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2000, 2, 29, 12, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(2024, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()
                + chrono::Duration::nanoseconds(999_999_999),
        ];
        for at in edges {
            assert_eq!(ours(&at), chrono_text(&at));
        }
    }

    #[test]
    fn years_outside_four_digits_fall_back_to_chrono() {
        let far = Utc.with_ymd_and_hms(12_345, 1, 2, 3, 4, 5).unwrap();
        let before = Utc.with_ymd_and_hms(-44, 3, 15, 12, 0, 0).unwrap();
        assert_eq!(ours(&far), chrono_text(&far));
        assert_eq!(ours(&before), chrono_text(&before));
    }

    #[test]
    fn an_option_reads_back_missing_and_null_as_none() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Holder {
            #[serde(default, with = "rfc3339_option")]
            at: Option<DateTime<Utc>>,
        }
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let text = serde_json::to_string(&Holder { at: Some(at) }).unwrap();
        assert_eq!(text, r#"{"at":"2026-01-02T03:04:05Z"}"#);
        assert_eq!(serde_json::from_str::<Holder>(&text).unwrap().at, Some(at));
        assert_eq!(
            serde_json::from_str::<Holder>(r#"{"at":null}"#).unwrap().at,
            None
        );
        assert_eq!(serde_json::from_str::<Holder>("{}").unwrap().at, None);
    }

    fn read_ours(text: &str) -> Result<DateTime<Utc>, String> {
        #[derive(serde::Deserialize)]
        struct Wrapped(#[serde(with = "rfc3339")] DateTime<Utc>);
        serde_json::from_str::<Wrapped>(text)
            .map(|wrapped| wrapped.0)
            .map_err(|error| error.to_string())
    }

    fn read_chrono(text: &str) -> Result<DateTime<Utc>, String> {
        serde_json::from_str::<DateTime<Utc>>(text).map_err(|error| error.to_string())
    }

    #[test]
    fn other_forms_and_bad_dates_read_as_chrono_reads_them() {
        for text in [
            r#""2026-11-24T15:22:13Z""#,
            r#""2026-11-24T15:22:13.5Z""#,
            r#""2026-11-24t15:22:13z""#,
            r#""2026-11-24 15:22:13Z""#,
            r#""2026-11-24T15:22:13+01:00""#,
            r#""2026-11-24T15:22:13.123456789-07:30""#,
            r#""2024-02-29T00:00:00Z""#,
            r#""2026-02-29T00:00:00Z""#,
            r#""2026-04-31T00:00:00Z""#,
            r#""2026-13-01T00:00:00Z""#,
            r#""2026-11-24T24:00:00Z""#,
            r#""2016-12-31T23:59:60Z""#,
            r#""2026-11-24T15:22:1xZ""#,
            r#""yesterday""#,
            "17",
            r#""2026-11-24T15:22:13\u005a""#,
        ] {
            assert_eq!(read_ours(text).ok(), read_chrono(text).ok(), "{text}");
            assert_eq!(
                read_ours(text).is_err(),
                read_chrono(text).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn an_option_reads_a_timestamp_or_null() {
        #[derive(serde::Deserialize)]
        struct Holder {
            #[serde(default, with = "rfc3339_option")]
            at: Option<DateTime<Utc>>,
        }
        let read = |text: &str| serde_json::from_str::<Holder>(text).map(|holder| holder.at);
        assert_eq!(
            read(r#"{"at":"2026-01-02T03:04:05.006Z"}"#).unwrap(),
            Some(
                Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
                    + chrono::Duration::milliseconds(6)
            )
        );
        assert!(read(r#"{"at":"2026-02-30T03:04:05Z"}"#).is_err());
        assert!(read(r#"{"at":5}"#).is_err());
    }

    proptest! {
        #[test]
        fn any_timestamp_is_written_as_chrono_writes_it(
            seconds in -62_000_000_000i64..300_000_000_000,
            nanos in prop_oneof![Just(0u32), 0u32..1_000, (0u32..1_000).prop_map(|n| n * 1_000_000), (0u32..1_000_000).prop_map(|n| n * 1_000), 0u32..1_000_000_000],
        ) {
            let at = Utc.timestamp_opt(seconds, nanos).unwrap();
            prop_assert_eq!(ours(&at), chrono_text(&at));
            prop_assert_eq!(ours(&at), format!("\"{}\"", at.to_rfc3339_opts(SecondsFormat::AutoSi, true)));
            prop_assert_eq!(read_ours(&ours(&at)), read_chrono(&ours(&at)));
            prop_assert_eq!(read_ours(&ours(&at)), Ok(at));
        }
    }
}
