//! Time zones: local wall-clock arithmetic for seasons, calendar fields and UTC offsets.
//!
//! The IANA database is compiled into the binary (jiff's bundled tzdb), so results do not
//! depend on the machine's zoneinfo files.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

/// A named IANA time zone.
#[derive(Debug, Clone)]
pub(crate) struct Zone {
    tz: TimeZone,
}

/// Calendar fields of an instant in some zone (what `hour()`, `day_of_week()`, ... return).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalFields {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    /// 0 = Sunday.
    pub weekday: u32,
    pub yday: u32,
    pub days_in_month: u32,
}

impl Zone {
    /// Looks a zone up by its IANA name (`"Europe/Paris"`, `"UTC"`).
    pub fn get(name: &str) -> Result<Zone, String> {
        TimeZone::get(name).map(|tz| Zone { tz }).map_err(|_| {
            format!("unknown time zone {name:?} (expected an IANA name such as \"Europe/Paris\")")
        })
    }

    fn ts(ms: i64) -> Option<Timestamp> {
        Timestamp::from_millisecond(ms).ok()
    }

    /// Offset from UTC at instant `ms`, in seconds.
    pub fn offset_seconds(&self, ms: i64) -> Option<i32> {
        Some(self.tz.to_offset(Self::ts(ms)?).seconds())
    }

    /// The instant with the same local wall-clock time `days` days earlier. A local time that
    /// does not exist (spring-forward gap) moves forward by the gap; an ambiguous one
    /// (fall-back fold) takes the earlier instant.
    pub fn days_earlier(&self, ms: i64, days: i64) -> Option<i64> {
        let dt: DateTime = self.tz.to_datetime(Self::ts(ms)?);
        let back = dt.checked_sub(Span::new().days(days)).ok()?;
        let ts = self.tz.to_ambiguous_timestamp(back).compatible().ok()?;
        Some(ts.as_millisecond())
    }

    /// Calendar fields of instant `ms` (whole seconds matter, as PromQL's calendar
    /// functions take seconds).
    pub fn fields(&self, ms: i64) -> Option<LocalFields> {
        let dt = self.tz.to_datetime(Self::ts(ms)?);
        Some(LocalFields {
            year: dt.year() as i64,
            month: dt.month() as u32,
            day: dt.day() as u32,
            hour: dt.hour() as u32,
            minute: dt.minute() as u32,
            weekday: dt.weekday().to_sunday_zero_offset() as u32,
            yday: dt.day_of_year() as u32,
            days_in_month: dt.days_in_month() as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const D: i64 = 86_400_000;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn same_local_time_across_dst() {
        let paris = Zone::get("Europe/Paris").unwrap();
        // 2026-03-29 is the spring-forward day in Paris (02:00 -> 03:00 local).
        let t = ms("2026-03-30T10:00:00Z"); // 12:00 CEST
        let back = paris.days_earlier(t, 1).unwrap();
        assert_eq!(back, ms("2026-03-29T10:00:00Z")); // 12:00 CEST on the 29th
        let back2 = paris.days_earlier(t, 2).unwrap();
        assert_eq!(back2, ms("2026-03-28T11:00:00Z")); // 12:00 CET: 23 h + 24 h earlier
        assert_eq!(t - back2, 47 * H);
        // A local time in the gap (02:30 on the 29th does not exist) moves forward by 1 h.
        let t = ms("2026-03-30T00:30:00Z"); // 02:30 CEST on the 30th
        assert_eq!(
            paris.days_earlier(t, 1).unwrap(),
            ms("2026-03-29T01:30:00Z")
        );
        // Fall back on 2026-10-25: 02:30 local happens twice; the earlier instant is taken.
        let t = ms("2026-10-26T01:30:00Z"); // 02:30 CET on the 26th
        assert_eq!(
            paris.days_earlier(t, 1).unwrap(),
            ms("2026-10-25T00:30:00Z")
        );
        // UTC is plain arithmetic.
        let utc = Zone::get("UTC").unwrap();
        assert_eq!(utc.days_earlier(t, 7).unwrap(), t - 7 * D);
    }

    #[test]
    fn fields_and_offsets() {
        let ny = Zone::get("America/New_York").unwrap();
        let t = ms("2026-01-01T03:30:00Z");
        let f = ny.fields(t).unwrap();
        assert_eq!(
            (f.year, f.month, f.day, f.hour, f.minute),
            (2025, 12, 31, 22, 30)
        );
        assert_eq!((f.weekday, f.yday, f.days_in_month), (3, 365, 31));
        assert_eq!(ny.offset_seconds(t), Some(-5 * 3600));
        assert_eq!(
            ny.offset_seconds(ms("2026-07-01T00:00:00Z")),
            Some(-4 * 3600)
        );
        assert!(Zone::get("Mars/Olympus_Mons").is_err());
    }
}
