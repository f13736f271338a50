//! Intl.DateTimeFormat's formatting: ICU4X's semantic skeletons (a field set, a length, a
//! time precision, a zone style) in the Gregorian calendar. The JS side maps ECMA-402's
//! dateStyle/timeStyle and component options onto a [`Spec`] and refuses combinations that
//! have no skeleton; the hour cycle arrives as the locale's `-u-hc` keyword. Time zones:
//! UTC only (the VM's own zone); the JS side refuses the others.

use super::parts::{collect, flat};
use super::{locale, throw, IntlError};
use icu_calendar::cal::Gregorian;
use icu_datetime::fieldsets::builder::{DateFields, FieldSetBuilder, ZoneStyle};
use icu_datetime::fieldsets::enums::CompositeFieldSet;
use icu_datetime::options::{Alignment, Length, SubsecondDigits, TimePrecision, YearStyle};
use icu_datetime::{parts as p, DateTimeFormatterPreferences, FixedCalendarDateTimeFormatter};
use icu_time::zone::{models::AtTime, TimeZoneInfo, UtcOffset, ZoneNameTimestamp};
use icu_time::{Time, ZonedDateTime};
use rquickjs::{Ctx, Function, Result};

/// What to format, in ICU4X's terms (names as the JS side passes them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Spec {
    /// "" (no date) or a field set: "D", "MD", "YMD", "DE", "MDE", "YMDE", "E", "M", "YM", "Y".
    pub date: String,
    /// "short" | "medium" | "long".
    pub length: String,
    /// "" (no time), "hour", "minute", "second", or "1".."3" fractional second digits.
    pub time: String,
    /// "" (no zone), "short", "long", "shortOffset", "longOffset", "shortGeneric", "longGeneric".
    pub zone: String,
    /// "" (default), "auto", "full", "era".
    pub year: String,
    /// Whether numeric fields are padded to two digits (ECMA-402 "2-digit").
    pub column: bool,
}

fn unsupported(spec: &Spec) -> IntlError {
    IntlError::UnsupportedFields(format!("{spec:?}"))
}

/// The ICU4X field set for `spec`.
pub fn field_set(spec: &Spec) -> std::result::Result<CompositeFieldSet, IntlError> {
    let mut b = FieldSetBuilder::new();
    b.length = Some(match spec.length.as_str() {
        "short" => Length::Short,
        "long" => Length::Long,
        _ => Length::Medium,
    });
    b.date_fields = match spec.date.as_str() {
        "" => None,
        "D" => Some(DateFields::D),
        "MD" => Some(DateFields::MD),
        "YMD" => Some(DateFields::YMD),
        "DE" => Some(DateFields::DE),
        "MDE" => Some(DateFields::MDE),
        "YMDE" => Some(DateFields::YMDE),
        "E" => Some(DateFields::E),
        "M" => Some(DateFields::M),
        "YM" => Some(DateFields::YM),
        "Y" => Some(DateFields::Y),
        _ => return Err(unsupported(spec)),
    };
    b.time_precision = match spec.time.as_str() {
        "" => None,
        "hour" => Some(TimePrecision::Hour),
        "minute" => Some(TimePrecision::Minute),
        "second" => Some(TimePrecision::Second),
        "1" => Some(TimePrecision::Subsecond(SubsecondDigits::S1)),
        "2" => Some(TimePrecision::Subsecond(SubsecondDigits::S2)),
        "3" => Some(TimePrecision::Subsecond(SubsecondDigits::S3)),
        _ => return Err(unsupported(spec)),
    };
    b.zone_style = match spec.zone.as_str() {
        "" => None,
        "short" => Some(ZoneStyle::SpecificShort),
        "long" => Some(ZoneStyle::SpecificLong),
        "shortOffset" => Some(ZoneStyle::LocalizedOffsetShort),
        "longOffset" => Some(ZoneStyle::LocalizedOffsetLong),
        "shortGeneric" => Some(ZoneStyle::GenericShort),
        "longGeneric" => Some(ZoneStyle::GenericLong),
        _ => return Err(unsupported(spec)),
    };
    b.year_style = match spec.year.as_str() {
        "" => None,
        "auto" => Some(YearStyle::Auto),
        "full" => Some(YearStyle::Full),
        "era" => Some(YearStyle::WithEra),
        _ => return Err(unsupported(spec)),
    };
    if spec.column {
        b.alignment = Some(Alignment::Column);
    }
    b.build_composite().map_err(|_| unsupported(spec))
}

/// A formatter for a canonical locale tag (with `-u-hc` if any) and `spec`.
pub fn formatter(
    tag: &str,
    spec: &Spec,
) -> std::result::Result<FixedCalendarDateTimeFormatter<Gregorian, CompositeFieldSet>, IntlError> {
    let loc = locale::parse(tag)?;
    let fs = field_set(spec)?;
    let prefs = DateTimeFormatterPreferences::from(&loc);
    FixedCalendarDateTimeFormatter::try_new_unstable(&super::data::DateTimeData, prefs, fs)
        .map_err(|e| IntlError::NoData(format!("date/time formats of {tag}: {e}")))
}

/// ECMAScript's time value range: ±8.64e15 ms.
const MAX_TIME_MS: f64 = 8.64e15;

/// Formats a time value (ms since the epoch, already TimeClip'ed) in UTC as parts.
pub fn format_parts(
    f: &FixedCalendarDateTimeFormatter<Gregorian, CompositeFieldSet>,
    ms: f64,
) -> std::result::Result<Vec<(String, String)>, IntlError> {
    if !ms.is_finite() || ms.abs() > MAX_TIME_MS {
        return Err(IntlError::InvalidTime);
    }
    let ms = ms as i64;
    let iso = ZonedDateTime::from_epoch_milliseconds_and_utc_offset(ms, UtcOffset::zero());
    let zone: TimeZoneInfo<AtTime> = TimeZoneInfo::utc()
        .with_zone_name_timestamp(ZoneNameTimestamp::from_epoch_seconds(ms.div_euclid(1000)));
    let zdt = ZonedDateTime {
        date: iso.date.to_calendar(Gregorian),
        time: Time::try_new(
            iso.time.hour.number(),
            iso.time.minute.number(),
            iso.time.second.number(),
            iso.time.subsecond.number(),
        )
        .map_err(|_| IntlError::InvalidTime)?,
        zone,
    };
    let out = f.format(&zdt);
    Ok(collect(&out, |part| {
        Some(match part {
            p::ERA => "era",
            p::YEAR => "year",
            p::RELATED_YEAR => "relatedYear",
            p::YEAR_NAME => "yearName",
            p::MONTH => "month",
            p::DAY => "day",
            p::WEEKDAY => "weekday",
            p::DAY_PERIOD => "dayPeriod",
            p::HOUR => "hour",
            p::MINUTE => "minute",
            p::SECOND => "second",
            p::TIME_ZONE_NAME => "timeZoneName",
            _ => return None,
        })
    }))
}

/// `__native.intlDateTimeFormat(tag, [date, length, time, zone, year, column])`: the
/// function formatting a time value to flat parts.
pub fn js_date_time_format<'js>(
    ctx: Ctx<'js>,
    tag: String,
    spec: Vec<String>,
) -> Result<Function<'js>> {
    let [date, length, time, zone, year, column] = &spec[..] else {
        return Err(throw(
            &ctx,
            IntlError::UnsupportedFields(format!("{spec:?}")),
        ));
    };
    let spec = Spec {
        date: date.clone(),
        length: length.clone(),
        time: time.clone(),
        zone: zone.clone(),
        year: year.clone(),
        column: column == "column",
    };
    let f = formatter(&tag, &spec).map_err(|e| throw(&ctx, e))?;
    Function::new(ctx, move |ctx: Ctx<'js>, ms: f64| -> Result<Vec<String>> {
        format_parts(&f, ms).map(flat).map_err(|e| throw(&ctx, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-05T14:03:09.045Z
    const T: f64 = 1704463389045.0;

    fn fmt(tag: &str, date: &str, length: &str, time: &str, zone: &str, year: &str) -> String {
        let spec = Spec {
            date: date.into(),
            length: length.into(),
            time: time.into(),
            zone: zone.into(),
            year: year.into(),
            column: false,
        };
        let f = formatter(tag, &spec).unwrap();
        format_parts(&f, T)
            .unwrap()
            .into_iter()
            .map(|p| p.1)
            .collect()
    }

    #[test]
    fn styles_match_v8() {
        assert_eq!(
            fmt("en", "YMD", "short", "second", "", "full"),
            "1/5/2024, 2:03:09\u{202f}PM"
        );
        assert_eq!(
            fmt("en", "YMDE", "long", "second", "long", ""),
            "Friday, January 5, 2024 at 2:03:09\u{202f}PM Coordinated Universal Time"
        );
        assert_eq!(fmt("en", "YMD", "medium", "", "", ""), "Jan 5, 2024");
        assert_eq!(fmt("en-u-hc-h23", "", "short", "minute", "", ""), "14:03");
    }

    #[test]
    fn bad_input_is_refused() {
        let spec = Spec {
            date: "YD".into(),
            ..Spec::default()
        };
        assert!(formatter("en", &spec).is_err());
        let ok = Spec {
            date: "YMD".into(),
            length: "short".into(),
            ..Spec::default()
        };
        let f = formatter("en", &ok).unwrap();
        assert_eq!(format_parts(&f, f64::NAN), Err(IntlError::InvalidTime));
        assert_eq!(format_parts(&f, 8.7e15), Err(IntlError::InvalidTime));
    }
}
