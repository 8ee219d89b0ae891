//! RFC 3339 timestamps for serde, written by hand: the same text as chrono's own `Serialize`
//! (`2026-11-24T15:22:13.123456Z`, fractional digits in groups of three as needed), without its
//! cost.
//!
//! chrono serializes a `DateTime` through `Serializer::collect_str`, which serde_json runs through
//! its string-escaping writer one fragment at a time (each `-`, `:` and digit pair is a separate
//! write). Under HTTP load that was ~3.5% of the server's CPU (perf: `write_rfc3339`,
//! `format_escaped_str_contents`, `Formatter::write_char`): every answer carries the item's
//! timestamps and every event its own. Here the text is built in a stack buffer and handed to the
//! serializer once. Deserializing is chrono's. Years outside 0–9999 and leap seconds, which this
//! does not write, fall back to chrono, so the output is always chrono's; a test compares them.
//!
//! Use as `#[serde(with = "crate::time::rfc3339")]`, or `crate::time::rfc3339_option` (with
//! `default`) for an `Option`.

use chrono::{DateTime, SecondsFormat, Utc};

/// The longest text written here: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const LONGEST: usize = 30;

/// `at` as RFC 3339 text in `buffer`, its length; `None` for what only chrono writes (years
/// outside 0–9999, leap seconds).
fn write(at: &DateTime<Utc>, buffer: &mut [u8; LONGEST]) -> Option<usize> {
    let nanos = at.timestamp_subsec_nanos();
    if nanos >= 1_000_000_000 {
        return None;
    }
    // The calendar date from the day number by Howard Hinnant's `civil_from_days` (public
    // domain, http://howardhinnant.github.io/date_algorithms.html): a few divisions, where
    // chrono's accessors each convert the whole date-time again.
    let seconds = at.timestamp();
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    *buffer = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(&mut buffer[0..4], year as u32);
    put_digits(&mut buffer[5..7], month as u32);
    put_digits(&mut buffer[8..10], day as u32);
    put_digits(&mut buffer[11..13], (second_of_day / 3_600) as u32);
    put_digits(&mut buffer[14..16], (second_of_day / 60 % 60) as u32);
    put_digits(&mut buffer[17..19], (second_of_day % 60) as u32);
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

/// `at` as chrono writes it with `SecondsFormat::AutoSi` and `Z`.
pub fn to_rfc3339(at: &DateTime<Utc>) -> String {
    let mut buffer = [0u8; LONGEST];
    match write(at, &mut buffer) {
        Some(length) => String::from_utf8_lossy(&buffer[..length]).into_owned(),
        None => at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
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
        DateTime::<Utc>::deserialize(deserializer)
    }
}

/// `#[serde(default, with = "crate::time::rfc3339_option")]` for an `Option<DateTime<Utc>>`
/// (`null` when `None`; a missing field reads as `None`, as serde does for a plain `Option`).
pub mod rfc3339_option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

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
        Option::<DateTime<Utc>>::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
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

    proptest! {
        #[test]
        fn any_timestamp_is_written_as_chrono_writes_it(
            seconds in -62_000_000_000i64..300_000_000_000,
            nanos in prop_oneof![Just(0u32), 0u32..1_000, (0u32..1_000).prop_map(|n| n * 1_000_000), (0u32..1_000_000).prop_map(|n| n * 1_000), 0u32..1_000_000_000],
        ) {
            let at = Utc.timestamp_opt(seconds, nanos).unwrap();
            prop_assert_eq!(ours(&at), chrono_text(&at));
            prop_assert_eq!(to_rfc3339(&at), at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
    }
}
