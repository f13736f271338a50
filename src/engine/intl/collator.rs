//! Intl.Collator's comparison: ICU4X's collator (CLDR root collation plus the locale's
//! tailoring). Numeric ordering and case-first come in as the locale's `-u-kn`/`-u-kf`
//! keywords (the JS side resolves them per ECMA-402); sensitivity and ignorePunctuation
//! map to the collation strength, case level and alternate handling.

use super::{locale, throw, IntlError};
use icu_collator::options::{AlternateHandling, CaseLevel, CollatorOptions, Strength};
use icu_collator::{Collator, CollatorBorrowed, CollatorPreferences};
use rquickjs::{Ctx, Function, Result};
use std::cmp::Ordering;

/// The collator for a (canonical, extension-carrying) locale tag and ECMA-402's
/// `sensitivity` ("base" | "accent" | "case" | "variant") and `ignorePunctuation`.
pub fn collator(
    tag: &str,
    sensitivity: &str,
    ignore_punctuation: bool,
) -> std::result::Result<CollatorBorrowed<'static>, IntlError> {
    let loc = locale::parse(tag)?;
    let mut opts = CollatorOptions::default();
    let (strength, case_level) = match sensitivity {
        "base" => (Strength::Primary, CaseLevel::Off),
        "accent" => (Strength::Secondary, CaseLevel::Off),
        "case" => (Strength::Primary, CaseLevel::On),
        "variant" => (Strength::Tertiary, CaseLevel::Off),
        other => return Err(IntlError::NoData(format!("sensitivity {other}"))),
    };
    opts.strength = Some(strength);
    opts.case_level = Some(case_level);
    if ignore_punctuation {
        opts.alternate_handling = Some(AlternateHandling::Shifted);
    }
    Collator::try_new(CollatorPreferences::from(&loc), opts)
        .map_err(|e| IntlError::NoData(format!("collation of {tag}: {e}")))
}

/// ECMA-402's compare result: -1, 0 or 1.
pub fn compare(c: &CollatorBorrowed<'_>, a: &str, b: &str) -> i32 {
    match c.compare(a, b) {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }
}

/// `__native.intlCollator(tag, sensitivity, ignorePunctuation)`: the compare function.
pub fn js_collator<'js>(
    ctx: Ctx<'js>,
    tag: String,
    sensitivity: String,
    ignore_punctuation: bool,
) -> Result<Function<'js>> {
    let c = collator(&tag, &sensitivity, ignore_punctuation).map_err(|e| throw(&ctx, e))?;
    Function::new(ctx, move |a: String, b: String| compare(&c, &a, &b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(tag: &str, sens: &str, words: &[&str]) -> Vec<String> {
        let c = collator(tag, sens, false).unwrap();
        let mut v: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| c.compare(a, b));
        v
    }

    #[test]
    fn english_order_and_options() {
        let words = ["b", "a", "B", "A", "ä", "10", "9"];
        assert_eq!(
            sorted("en", "variant", &words),
            ["10", "9", "a", "A", "ä", "b", "B"]
        );
        assert_eq!(
            sorted("en-u-kf-upper-kn", "variant", &words),
            ["9", "10", "A", "a", "ä", "B", "b"]
        );
        let c = collator("en", "variant", false).unwrap();
        assert_eq!(compare(&c, "a", "B"), -1);
        assert_eq!(
            compare(&collator("en", "base", false).unwrap(), "a", "Á"),
            0
        );
        assert_eq!(
            compare(&collator("en", "accent", false).unwrap(), "a", "á"),
            -1
        );
        assert_eq!(
            compare(&collator("en", "case", false).unwrap(), "a", "A"),
            -1
        );
        assert_eq!(
            compare(&collator("en", "base", true).unwrap(), "a-b", "ab"),
            0
        );
        assert!(collator("en", "bogus", false).is_err());
    }
}
