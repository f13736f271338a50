//! The data behind Intl.DateTimeFormat: ICU4X's compiled data, less the time zone names
//! kvmjs can never print. Only UTC is formatted, so location names, exemplar cities and
//! generic zone names (used by other zones and by the location and generic zone styles,
//! which the JS side refuses) are left out of the binary: the compiled data of a marker is
//! linked only where something loads it.

use icu_datetime::provider::names::{
    DatetimeNamesDayperiodV1, DatetimeNamesMonthGregorianV1, DatetimeNamesWeekdayV1,
    DatetimeNamesYearGregorianV1,
};
use icu_datetime::provider::semantic_skeletons::{
    DatetimePatternsDateGregorianV1, DatetimePatternsGlueV1, DatetimePatternsTimeV1,
};
use icu_datetime::provider::time_zones::{
    TimezoneNamesCitiesOverrideV1, TimezoneNamesCitiesRootV1, TimezoneNamesEssentialsV1,
    TimezoneNamesGenericLongV1, TimezoneNamesGenericShortV1, TimezoneNamesLocationsOverrideV1,
    TimezoneNamesLocationsRootV1, TimezoneNamesSpecificLongV1, TimezoneNamesSpecificShortV1,
    TimezoneNamesStandardLongV1,
};
use icu_decimal::provider::{DecimalDigitsV1, DecimalSymbolsV1};
use icu_provider::prelude::*;
use icu_time::provider::TimezonePeriodsV1;

/// ICU4X's compiled data for the Gregorian date/time formatter, without the zone names
/// that only non-UTC zones or refused styles need.
pub struct DateTimeData;

macro_rules! from_baked {
    ($baked:path: $($m:ty),+) => {$(
        impl DataProvider<$m> for DateTimeData {
            fn load(&self, req: DataRequest) -> Result<DataResponse<$m>, DataError> {
                $baked.load(req)
            }
        }
    )+};
}

macro_rules! empty {
    ($($m:ty),+) => {$(
        impl DataProvider<$m> for DateTimeData {
            fn load(&self, _req: DataRequest) -> Result<DataResponse<$m>, DataError> {
                Ok(DataResponse {
                    payload: DataPayload::from_owned(Default::default()),
                    metadata: Default::default(),
                })
            }
        }
    )+};
}

macro_rules! left_out {
    ($($m:ty),+) => {$(
        impl DataProvider<$m> for DateTimeData {
            fn load(&self, req: DataRequest) -> Result<DataResponse<$m>, DataError> {
                Err(DataErrorKind::MarkerNotFound.with_req(<$m as DataMarker>::INFO, req))
            }
        }
    )+};
}

from_baked!(icu_datetime::provider::Baked:
    DatetimeNamesYearGregorianV1, DatetimeNamesMonthGregorianV1, DatetimeNamesWeekdayV1,
    DatetimeNamesDayperiodV1, DatetimePatternsDateGregorianV1, DatetimePatternsTimeV1,
    DatetimePatternsGlueV1, TimezoneNamesEssentialsV1, TimezoneNamesStandardLongV1, TimezoneNamesSpecificLongV1,
    TimezoneNamesSpecificShortV1);
from_baked!(icu_time::provider::Baked: TimezonePeriodsV1);
from_baked!(icu_decimal::provider::Baked: DecimalSymbolsV1, DecimalDigitsV1);
// The specific long style ("Coordinated Universal Time") loads the zones' location names
// as a fallback for zones without a name of their own; UTC has one (and no location), so
// the formatter gets an empty table instead of 1.5 MB of city and country names.
empty!(
    TimezoneNamesLocationsOverrideV1,
    TimezoneNamesLocationsRootV1
);
left_out!(
    TimezoneNamesCitiesOverrideV1,
    TimezoneNamesCitiesRootV1,
    TimezoneNamesGenericLongV1,
    TimezoneNamesGenericShortV1
);

#[cfg(test)]
mod tests {
    use super::*;
    use icu_locale::locale;

    #[test]
    fn kept_empty_and_left_out_markers() {
        let loc = DataLocale::from(&locale!("en"));
        let req = DataRequest {
            id: DataIdentifierBorrowed::for_locale(&loc),
            ..Default::default()
        };
        let essentials: Result<DataResponse<TimezoneNamesEssentialsV1>, _> = DateTimeData.load(req);
        assert!(essentials.is_ok());
        let locations: DataResponse<TimezoneNamesLocationsRootV1> = DateTimeData.load(req).unwrap();
        assert!(locations.payload.get().locations.is_empty());
        let cities: Result<DataResponse<TimezoneNamesCitiesRootV1>, _> = DateTimeData.load(req);
        assert_eq!(cities.unwrap_err().kind, DataErrorKind::MarkerNotFound);
    }
}
