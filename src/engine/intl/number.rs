//! Intl.NumberFormat's digits and Intl.PluralRules: ECMA-402's rounding (halfExpand on the
//! shortest decimal that round-trips the double, as V8's ICU does) with fixed_decimal, then
//! ICU4X's DecimalFormatter for the locale's digits, separators and grouping. Percent and
//! currency patterns are put around these parts by the JS side.

use super::parts::{collect, flat};
use super::{locale, throw, IntlError};
use fixed_decimal::{Decimal, SignDisplay, SignedRoundingMode, UnsignedRoundingMode};
use icu_decimal::options::{DecimalFormatterOptions, GroupingStrategy};
use icu_decimal::{parts as dp, DecimalFormatter, DecimalFormatterPreferences};
use icu_plurals::{PluralCategory, PluralRules, PluralRulesPreferences};
use rquickjs::{Array, Ctx, Function, Result};

/// ECMA-402's digit options after option processing. `sig` is `Some((min, max))` when
/// significant digits win (roundingPriority "auto" with significant digits set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digits {
    pub min_int: u8,
    pub min_frac: u8,
    pub max_frac: u8,
    pub sig: Option<(u8, u8)>,
}

/// Parses a JS number string (`String(x)`, possibly with an exponent, or a BigInt's digits).
pub fn parse(s: &str) -> std::result::Result<Decimal, IntlError> {
    let bad = || IntlError::BadNumber(s.to_string());
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i16>().map_err(|_| bad())?),
        None => (s, 0),
    };
    let mut d = Decimal::try_from_str(mantissa).map_err(|_| bad())?;
    d.multiply_pow10(exp);
    Ok(d)
}

/// ECMA-402 FormatNumericToString's rounding and padding (roundingMode halfExpand).
pub fn round(d: &mut Decimal, digits: Digits) -> std::result::Result<(), IntlError> {
    let half_expand = SignedRoundingMode::Unsigned(UnsignedRoundingMode::HalfExpand);
    match digits.sig {
        Some((min, max)) => {
            if min == 0 || max < min || max > 21 {
                return Err(IntlError::BadDigits(format!(
                    "significant digits {min}..{max}"
                )));
            }
            if !d.absolute.is_zero() {
                let top = d.absolute.nonzero_magnitude_start();
                d.round_with_mode(top - i16::from(max) + 1, half_expand);
            }
            d.absolute.trim_end();
            let top = if d.absolute.is_zero() {
                0
            } else {
                d.absolute.nonzero_magnitude_start()
            };
            d.absolute.pad_end(top - i16::from(min) + 1);
        }
        None => {
            if digits.max_frac < digits.min_frac || digits.max_frac > 100 {
                return Err(IntlError::BadDigits(format!(
                    "fraction digits {}..{}",
                    digits.min_frac, digits.max_frac
                )));
            }
            d.round_with_mode(-i16::from(digits.max_frac), half_expand);
            d.absolute.trim_end();
            d.absolute.pad_end(-i16::from(digits.min_frac));
        }
    }
    d.absolute.pad_start(i16::from(digits.min_int.max(1)));
    Ok(())
}

/// ECMA-402's signDisplay names.
fn sign_display(s: &str) -> SignDisplay {
    match s {
        "never" => SignDisplay::Never,
        "always" => SignDisplay::Always,
        "exceptZero" => SignDisplay::ExceptZero,
        "negative" => SignDisplay::Negative,
        _ => SignDisplay::Auto,
    }
}

/// ECMA-402's useGrouping names.
fn grouping(s: &str) -> GroupingStrategy {
    match s {
        "always" => GroupingStrategy::Always,
        "min2" => GroupingStrategy::Min2,
        "false" => GroupingStrategy::Never,
        _ => GroupingStrategy::Auto,
    }
}

/// A DecimalFormatter for a canonical locale tag (with `-u-nu` if any).
pub fn formatter(
    tag: &str,
    use_grouping: &str,
) -> std::result::Result<DecimalFormatter, IntlError> {
    let loc = locale::parse(tag)?;
    let opts: DecimalFormatterOptions = grouping(use_grouping).into();
    DecimalFormatter::try_new(DecimalFormatterPreferences::from(&loc), opts)
        .map_err(|e| IntlError::NoData(format!("numbers of {tag}: {e}")))
}

/// The formatted number as ECMA-402 parts.
pub fn format_parts(
    f: &DecimalFormatter,
    num: &str,
    digits: Digits,
    sign: &str,
) -> std::result::Result<Vec<(String, String)>, IntlError> {
    let mut d = parse(num)?;
    round(&mut d, digits)?;
    d.apply_sign_display(sign_display(sign));
    let formatted = f.format(&d);
    Ok(collect(&formatted, |p| {
        Some(match p {
            dp::INTEGER => "integer",
            dp::FRACTION => "fraction",
            dp::GROUP => "group",
            dp::DECIMAL => "decimal",
            dp::MINUS_SIGN => "minusSign",
            dp::PLUS_SIGN => "plusSign",
            _ => return None,
        })
    }))
}

fn digits_from(min_int: u8, min_frac: u8, max_frac: u8, min_sig: u8, max_sig: u8) -> Digits {
    Digits {
        min_int,
        min_frac,
        max_frac,
        sig: (min_sig > 0).then_some((min_sig, max_sig)),
    }
}

/// `__native.intlNumberFormat(tag, useGrouping)`: `format(numString, minInt, minFrac,
/// maxFrac, minSig, maxSig, signDisplay)` returning flat parts (minSig 0: fraction digits).
pub fn js_number_format<'js>(
    ctx: Ctx<'js>,
    tag: String,
    use_grouping: String,
) -> Result<Function<'js>> {
    let f = formatter(&tag, &use_grouping).map_err(|e| throw(&ctx, e))?;
    Function::new(
        ctx,
        move |ctx: Ctx<'js>, num: String, digits: Vec<u8>, sign: String| -> Result<Vec<String>> {
            let [min_int, min_frac, max_frac, min_sig, max_sig] = digits[..] else {
                return Err(throw(&ctx, IntlError::BadDigits(format!("{digits:?}"))));
            };
            let d = digits_from(min_int, min_frac, max_frac, min_sig, max_sig);
            format_parts(&f, &num, d, &sign)
                .map(flat)
                .map_err(|e| throw(&ctx, e))
        },
    )
}

/// CLDR's name of a plural category.
pub fn category_name(c: PluralCategory) -> &'static str {
    match c {
        PluralCategory::Zero => "zero",
        PluralCategory::One => "one",
        PluralCategory::Two => "two",
        PluralCategory::Few => "few",
        PluralCategory::Many => "many",
        PluralCategory::Other => "other",
    }
}

/// Plural rules for a canonical locale tag.
pub fn plural_rules(tag: &str, ordinal: bool) -> std::result::Result<PluralRules, IntlError> {
    let loc = locale::parse(tag)?;
    let prefs = PluralRulesPreferences::from(&loc);
    let r = if ordinal {
        PluralRules::try_new_ordinal(prefs)
    } else {
        PluralRules::try_new_cardinal(prefs)
    };
    r.map_err(|e| IntlError::NoData(format!("plural rules of {tag}: {e}")))
}

/// The categories in ECMA-402's order (zero, one, two, few, many, other).
pub fn categories(r: &PluralRules) -> Vec<&'static str> {
    let order = ["zero", "one", "two", "few", "many", "other"];
    let have: Vec<&str> = r.categories().map(category_name).collect();
    order.into_iter().filter(|c| have.contains(c)).collect()
}

/// Intl.PluralRules' select: the category of the number as formatted with `digits`.
pub fn select(
    r: &PluralRules,
    num: &str,
    digits: Digits,
) -> std::result::Result<&'static str, IntlError> {
    let mut d = parse(num)?;
    round(&mut d, digits)?;
    Ok(category_name(r.category_for(&d)))
}

/// `__native.intlPluralRules(tag, ordinal)`: `[categories, select(numString, digits)]`.
pub fn js_plural_rules<'js>(ctx: Ctx<'js>, tag: String, ordinal: bool) -> Result<Array<'js>> {
    let r = plural_rules(&tag, ordinal).map_err(|e| throw(&ctx, e))?;
    let cats = categories(&r);
    let sel = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, num: String, digits: Vec<u8>| -> Result<&'static str> {
            let [min_int, min_frac, max_frac, min_sig, max_sig] = digits[..] else {
                return Err(throw(&ctx, IntlError::BadDigits(format!("{digits:?}"))));
            };
            let d = digits_from(min_int, min_frac, max_frac, min_sig, max_sig);
            select(&r, &num, d).map_err(|e| throw(&ctx, e))
        },
    )?;
    let out = Array::new(ctx)?;
    out.set(0, cats)?;
    out.set(1, sel)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEC: Digits = Digits {
        min_int: 1,
        min_frac: 0,
        max_frac: 3,
        sig: None,
    };

    fn fmt(tag: &str, num: &str, digits: Digits) -> String {
        let f = formatter(tag, "auto").unwrap();
        format_parts(&f, num, digits, "auto")
            .unwrap()
            .into_iter()
            .map(|p| p.1)
            .collect()
    }

    #[test]
    fn rounding_and_grouping() {
        assert_eq!(fmt("en", "1234567.891", DEC), "1,234,567.891");
        assert_eq!(fmt("en", "1.0005", DEC), "1.001");
        assert_eq!(fmt("en", "-0", DEC), "-0");
        assert_eq!(fmt("en", "1e21", DEC), "1,000,000,000,000,000,000,000");
        assert_eq!(fmt("en", "1.5e-7", DEC), "0");
        assert_eq!(fmt("de", "1234.5", DEC), "1.234,5");
        let two = Digits {
            min_frac: 2,
            max_frac: 2,
            ..DEC
        };
        assert_eq!(fmt("en", "1.999", two), "2.00");
        let zero = Digits { max_frac: 0, ..DEC };
        assert_eq!(fmt("en", "2.5", zero), "3");
        let sig = Digits {
            sig: Some((1, 2)),
            ..DEC
        };
        assert_eq!(fmt("en", "9.96", sig), "10");
        assert_eq!(fmt("en", "0.012345", sig), "0.012");
        let int = Digits { min_int: 3, ..DEC };
        assert_eq!(fmt("en", "7", int), "007");
        assert!(parse("abc").is_err());
    }

    #[test]
    fn plural_categories() {
        let c = plural_rules("en", false).unwrap();
        assert_eq!(categories(&c), ["one", "other"]);
        assert_eq!(select(&c, "1", DEC).unwrap(), "one");
        assert_eq!(select(&c, "2", DEC).unwrap(), "other");
        let o = plural_rules("en", true).unwrap();
        assert_eq!(categories(&o), ["one", "two", "few", "other"]);
        assert_eq!(select(&o, "22", DEC).unwrap(), "two");
        assert_eq!(select(&o, "13", DEC).unwrap(), "other");
    }
}
