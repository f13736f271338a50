//! Locale identifiers per ECMA-402: canonicalization (ICU4X's LocaleCanonicalizer with the
//! CLDR alias data) and which locales kvmjs supports: those for which ICU4X's compiled data
//! holds locale-specific data, i.e. whose fallback chain ends in a real locale, not root.

use super::{throw, IntlError};
use icu_datetime::provider::names::DatetimeNamesMonthGregorianV1;
use icu_datetime::provider::Baked as DatetimeBaked;
use icu_decimal::provider::{Baked, DecimalSymbolsV1};
use icu_locale::{Locale, LocaleCanonicalizer};
use icu_plurals::provider::{Baked as PluralsBaked, PluralsCardinalV1};
use icu_provider::prelude::*;
use rquickjs::{Ctx, Result};

/// Parses `tag` as a BCP 47 language tag; `_` separators (which ICU4X tolerates) and
/// anything else ECMA-402 does not call structurally valid are refused.
pub fn parse(tag: &str) -> std::result::Result<Locale, IntlError> {
    let invalid = || IntlError::InvalidTag(tag.to_string());
    if tag.is_empty() || tag.contains('_') || !tag.is_ascii() {
        return Err(invalid());
    }
    Locale::try_from_str(tag).map_err(|_| invalid())
}

/// ECMA-402 CanonicalizeUnicodeLocaleId: case, order and CLDR aliases ("iw" -> "he").
pub fn canonicalize(tag: &str) -> std::result::Result<String, IntlError> {
    let mut loc = parse(tag)?;
    LocaleCanonicalizer::new_extended().canonicalize(&mut loc);
    Ok(loc.to_string())
}

/// Whether ICU4X has data for `tag` (a canonical tag without a Unicode extension) other
/// than the root locale's: its language is known to the compiled data.
pub fn supported(tag: &str) -> bool {
    let Ok(loc) = parse(tag) else { return false };
    if loc.id.language.is_unknown() {
        return false;
    }
    let dl = DataLocale::from(&loc);
    let req = DataRequest {
        id: DataIdentifierBorrowed::for_locale(&dl),
        ..Default::default()
    };
    // Data equal to its parent's is left out of the compiled data (en's decimal symbols are
    // root's, ja's plural rules are root's), so any of a few services counts.
    // An exact match leaves `locale` unset; a fallback names where it landed.
    let real = |l: Option<DataLocale>| l.is_none_or(|l| !l.is_unknown());
    DataProvider::<DecimalSymbolsV1>::load(&Baked, req).is_ok_and(|r| real(r.metadata.locale))
        || DataProvider::<PluralsCardinalV1>::load(&PluralsBaked, req)
            .is_ok_and(|r| real(r.metadata.locale))
        || {
            // Month names are keyed by their length as well ("5": wide).
            let req = DataRequest {
                id: DataIdentifierBorrowed::for_marker_attributes_and_locale(
                    DataMarkerAttributes::from_str_or_panic("5"),
                    &dl,
                ),
                ..Default::default()
            };
            DataProvider::<DatetimeNamesMonthGregorianV1>::load(&DatetimeBaked, req)
                .is_ok_and(|r| real(r.metadata.locale))
        }
}

pub fn js_canonicalize(ctx: Ctx<'_>, tag: String) -> Result<String> {
    canonicalize(&tag).map_err(|e| throw(&ctx, e))
}

pub fn js_supported(tag: String) -> bool {
    supported(&tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(canonicalize("EN-us").unwrap(), "en-US");
        assert_eq!(canonicalize("zh-hant-tw").unwrap(), "zh-Hant-TW");
        assert_eq!(canonicalize("iw").unwrap(), "he");
        assert_eq!(canonicalize("en-u-kn-true").unwrap(), "en-u-kn");
        assert!(canonicalize("en_US").is_err());
        assert!(canonicalize("").is_err());
        assert!(canonicalize("x").is_err());
    }

    #[test]
    fn supported_locales() {
        let many = [
            "en",
            "en-US",
            "en-GB",
            "fr",
            "de-CH",
            "zh-Hant-TW",
            "ja",
            "zh",
            "ko",
            "th",
            "vi",
            "id",
            "es",
            "pt-BR",
            "it",
            "ru",
            "ar",
            "hi",
            "he",
            "tr",
            "pl",
            "nl",
            "sv",
            "uk",
            "ms",
            "fa",
        ];
        for l in many {
            assert!(supported(l), "{l}");
        }
        for l in ["xx", "und", "zz-ZZ"] {
            assert!(!supported(l), "{l}");
        }
    }
}
