//! ECMA-402 (`Intl`) on ICU4X with its compiled data: the natives behind src/web/77_intl.js.
//! The JS side processes the options per ECMA-402; these natives resolve locales against
//! ICU4X's data and return one closure per Intl object, which owns its ICU4X formatter, so
//! nothing is built at boot and a formatter lives as long as its JS object.
//! One module per service: locales, collation, numbers (with plural rules), date/time.

pub mod collator;
pub mod data;
pub mod datetime;
pub mod locale;
pub mod number;
pub mod parts;

use rquickjs::{Ctx, Exception, Function, Object};

/// Why an Intl native refused its arguments; every variant becomes a JS RangeError.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IntlError {
    /// Not a structurally valid BCP 47 language tag.
    #[error("Incorrect locale information provided: {0}")]
    InvalidTag(String),
    /// ICU4X has no data for what was asked.
    #[error("Intl: no locale data for {0}")]
    NoData(String),
    /// A number string the decimal parser rejects (the JS side passes `String(x)`).
    #[error("Intl: cannot format the number {0}")]
    BadNumber(String),
    /// A digit option out of range (the JS side checks them first; this is the backstop).
    #[error("Intl: digit options out of range: {0}")]
    BadDigits(String),
    /// A date/time option combination ICU4X's semantic skeletons cannot express.
    #[error("Intl.DateTimeFormat: this combination of options is not supported by kvmjs: {0}")]
    UnsupportedFields(String),
    /// A time value outside ECMAScript's range.
    #[error("Invalid time value")]
    InvalidTime,
}

/// Throws `e` as a JS RangeError.
pub fn throw(ctx: &Ctx<'_>, e: IntlError) -> rquickjs::Error {
    Exception::throw_range(ctx, &e.to_string())
}

/// Adds the Intl natives to `__native`.
pub fn install<'js>(ctx: &Ctx<'js>, n: &Object<'js>) -> rquickjs::Result<()> {
    n.set(
        "intlCanonicalize",
        Function::new(ctx.clone(), locale::js_canonicalize)?,
    )?;
    n.set(
        "intlSupported",
        Function::new(ctx.clone(), locale::js_supported)?,
    )?;
    n.set(
        "intlCollator",
        Function::new(ctx.clone(), collator::js_collator)?,
    )?;
    n.set(
        "intlNumberFormat",
        Function::new(ctx.clone(), number::js_number_format)?,
    )?;
    n.set(
        "intlPluralRules",
        Function::new(ctx.clone(), number::js_plural_rules)?,
    )?;
    n.set(
        "intlDateTimeFormat",
        Function::new(ctx.clone(), datetime::js_date_time_format)?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            IntlError::InvalidTag("en_US".into()).to_string(),
            "Incorrect locale information provided: en_US"
        );
        assert_eq!(IntlError::InvalidTime.to_string(), "Invalid time value");
        assert!(IntlError::UnsupportedFields("x".into())
            .to_string()
            .contains("not supported by kvmjs"));
    }
}
