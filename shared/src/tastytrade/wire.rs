//! Deserializers for the broker's loose encodings (reference §4.8).
//!
//! Decimals arrive as strings, as bare numbers or as `"NaN"`; ids and epoch times as numbers or
//! strings; some dates malformed. Each helper here accepts every form seen and maps the
//! meaningless ones to `None`, so one odd field never costs us the row. Bare numbers reach us
//! with their digits intact (serde_json's `arbitrary_precision`), never through `f64`.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `"1878.858"`, `40`, `"1.68074"`, `"NaN"`, `null`, absent.
pub fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_decimal(&s).map_err(D::Error::custom),
        Some(Value::Number(n)) => parse_decimal(&n.to_string()).map_err(D::Error::custom),
        Some(other) => Err(D::Error::custom(format!(
            "expected a decimal, found {other}"
        ))),
    }
}

/// Parses a decimal as the broker writes it; the non-numbers it uses become `None`.
pub fn parse_decimal(raw: &str) -> Result<Option<Decimal>, String> {
    let s = raw.trim();
    if s.is_empty()
        || ["nan", "infinity", "-infinity", "+infinity"].contains(&s.to_ascii_lowercase().as_str())
    {
        return Ok(None);
    }
    let parsed = if s.contains(['e', 'E']) {
        Decimal::from_scientific(s)
    } else {
        Decimal::from_str(s)
    };
    parsed
        .map(Some)
        .map_err(|e| format!("{s:?} is not a decimal: {e}"))
}

/// An integer id sent as a number or as a string (the SPEC types some ids as strings).
pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    optional_id(d)?.ok_or_else(|| D::Error::custom("missing id"))
}

pub fn optional_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not an i64 id"))),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{s:?} is not an id"))),
        Some(other) => Err(D::Error::custom(format!("expected an id, found {other}"))),
    }
}

/// An ISO 8601 date-time with an offset, or epoch milliseconds (order `updated-at`), as a
/// number or a string of digits.
pub fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(DateTime::from_timestamp_millis)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not epoch milliseconds"))),
        Some(Value::String(s)) => parse_timestamp(&s).map_err(D::Error::custom),
        Some(other) => Err(D::Error::custom(format!(
            "expected a timestamp, found {other}"
        ))),
    }
}

pub fn parse_timestamp(raw: &str) -> Result<Option<DateTime<Utc>>, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .map(Some)
            .ok_or_else(|| format!("{s:?} is not epoch milliseconds"));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| format!("{s:?} is not a timestamp: {e}"))
}

/// The net-liq history's `time`, `"2023-06-08 13:30:00+00"` (reference §4.8.4): not ISO 8601,
/// and its offset has hours only. An ISO 8601 one is read too, should the broker mend it.
pub fn net_liq_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let raw = String::deserialize(d)?;
    let s = raw.trim();
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%#z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| D::Error::custom(format!("{s:?} is not a net-liq time")))
}

/// A `YYYY-MM-DD` date. A malformed one (a fixture has `"2021-03-82680"`) becomes `None`:
/// these are informational dates, and the row matters more than the field.
pub fn lenient_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok(),
        _ => None,
    })
}

/// A boolean the SPEC sometimes types as a string.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => Some(b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "decimal")]
        d: Option<Decimal>,
        #[serde(default, deserialize_with = "timestamp")]
        t: Option<DateTime<Utc>>,
    }

    fn probe(json: &str) -> Probe {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn decimals_parse_from_strings_and_bare_numbers_exactly() {
        assert_eq!(
            probe(r#"{"d":"432279.2338"}"#).d,
            Some(Decimal::from_str("432279.2338").unwrap())
        );
        assert_eq!(
            probe(r#"{"d":1.68074}"#).d,
            Some(Decimal::from_str("1.68074").unwrap())
        );
        assert_eq!(probe(r#"{"d":40}"#).d, Some(Decimal::from(40)));
        // 0.1 + 0.2 through f64 would not be exactly 0.3; through digits it is.
        assert_eq!(
            probe(r#"{"d":0.30000000000000004}"#).d.unwrap().to_string(),
            "0.30000000000000004"
        );
    }

    #[test]
    fn nan_null_and_absent_decimals_are_none() {
        assert_eq!(probe(r#"{"d":"NaN"}"#).d, None);
        assert_eq!(probe(r#"{"d":null}"#).d, None);
        assert_eq!(probe("{}").d, None);
    }

    #[test]
    fn garbage_decimal_is_an_error() {
        assert!(serde_json::from_str::<Probe>(r#"{"d":"12,5"}"#).is_err());
    }

    #[test]
    fn timestamps_accept_offsets_and_epoch_milliseconds() {
        let z = probe(r#"{"t":"2024-01-15T14:30:00.000Z"}"#).t.unwrap();
        let offset = probe(r#"{"t":"2024-01-15T14:30:00+00:00"}"#).t.unwrap();
        let millis = probe(r#"{"t":1705329000000}"#).t.unwrap();
        let millis_text = probe(r#"{"t":"1705329000000"}"#).t.unwrap();
        assert_eq!(z, offset);
        assert_eq!(z, millis);
        assert_eq!(z, millis_text);
    }

    #[test]
    fn net_liq_times_read_the_brokers_hour_offset_and_iso_8601() {
        #[derive(Deserialize)]
        struct Bar {
            #[serde(deserialize_with = "net_liq_time")]
            time: DateTime<Utc>,
        }
        let bar = |json: &str| serde_json::from_str::<Bar>(json).map(|b| b.time);
        let expected = DateTime::parse_from_rfc3339("2023-06-08T13:30:00Z").unwrap();

        assert_eq!(
            bar(r#"{"time":"2023-06-08 13:30:00+00"}"#).unwrap(),
            expected
        );
        assert_eq!(
            bar(r#"{"time":"2023-06-08 15:30:00+02"}"#).unwrap(),
            expected
        );
        assert_eq!(bar(r#"{"time":"2023-06-08T13:30:00Z"}"#).unwrap(), expected);
        assert!(bar(r#"{"time":"2023-06-08"}"#).is_err());
    }
}
