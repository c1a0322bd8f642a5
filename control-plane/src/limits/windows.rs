//! Quota windows (SPEC §4): for each cost limit, the instant its window
//! starts and how it resets, on a given clock. Fixed windows follow the
//! wall clock of the configured time zone (daily at `daily_reset_time`,
//! weekly on Monday 00:00, monthly on the 1st 00:00); rolling ones trail the
//! clock by their length.
//!
//! Across a daylight-saving change a local reset time that does not exist
//! (the clock jumps over it) happens when the clock resumes, as many minutes
//! after the jump as the time was after the old hour; one that exists twice
//! (the clock goes back) happens the first time.

use chrono::{
    DateTime, Datelike, Days, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;

pub const FIVE_HOURS: TimeDelta = TimeDelta::hours(5);
pub const ONE_DAY: TimeDelta = TimeDelta::hours(24);

/// How a window resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Never: the lifetime total (since `cost_reset_at`).
    Never,
    /// A fixed window ends at this instant.
    At(DateTime<Utc>),
    /// A rolling window: each charge leaves it this long after it was made.
    Rolling(TimeDelta),
    /// A fixed 5 h window is not running: the next charge starts one.
    NextCharge,
}

/// The spend a limit counts is what was charged from `start` (`None`: ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Option<DateTime<Utc>>,
    pub reset: Reset,
}

/// `limit_total_usd`: everything since `cost_reset_at`.
pub fn total(cost_reset_at: Option<DateTime<Utc>>) -> Window {
    Window {
        start: cost_reset_at,
        reset: Reset::Never,
    }
}

/// `limit_5h_usd`, `rolling`: the last five hours.
pub fn five_hours_rolling(now: DateTime<Utc>) -> Window {
    rolling(now, FIVE_HOURS)
}

/// `limit_5h_usd`, `fixed`: five hours from the charge that opened the
/// window (`opened`, the first charge after the previous window ended).
pub fn five_hours_fixed(opened: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Window {
    match opened {
        Some(start) if start <= now && now < start + FIVE_HOURS => Window {
            start: Some(start),
            reset: Reset::At(start + FIVE_HOURS),
        },
        _ => Window {
            start: Some(now),
            reset: Reset::NextCharge,
        },
    }
}

/// Where a fixed 5 h window stands after a charge at `at`: a charge after
/// the window `opened` ended opens a new one; any other (inside it, or a
/// late one from an earlier window) leaves it.
pub fn five_hours_opened_by(opened: Option<DateTime<Utc>>, at: DateTime<Utc>) -> DateTime<Utc> {
    match opened {
        Some(start) if at < start + FIVE_HOURS => start,
        _ => at,
    }
}

/// `limit_daily_usd`, `rolling`: the last 24 hours.
pub fn daily_rolling(now: DateTime<Utc>) -> Window {
    rolling(now, ONE_DAY)
}

/// `limit_daily_usd`, `fixed`: since the latest `reset_time` (local time
/// in `tz`) at or before `now`, until the next.
pub fn daily_fixed(tz: Tz, reset_time: NaiveTime, now: DateTime<Utc>) -> Window {
    let today = now.with_timezone(&tz).date_naive();
    let mut day = today;
    let mut start = instant(tz, day.and_time(reset_time));
    if start > now {
        day = today.pred_opt().unwrap_or(today);
        start = instant(tz, day.and_time(reset_time));
    }
    let next = day.succ_opt().unwrap_or(day);
    fixed(start, instant(tz, next.and_time(reset_time)))
}

/// `limit_weekly_usd`: since Monday 00:00 in `tz`.
pub fn weekly(tz: Tz, now: DateTime<Utc>) -> Window {
    let today = now.with_timezone(&tz).date_naive();
    let monday = today - Days::new(u64::from(today.weekday().num_days_from_monday()));
    fixed(midnight(tz, monday), midnight(tz, monday + Days::new(7)))
}

/// `limit_monthly_usd`: since the 1st 00:00 in `tz`.
pub fn monthly(tz: Tz, now: DateTime<Utc>) -> Window {
    let today = now.with_timezone(&tz).date_naive();
    let first = today.with_day(1).unwrap_or(today);
    let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
    fixed(midnight(tz, first), midnight(tz, next))
}

fn rolling(now: DateTime<Utc>, length: TimeDelta) -> Window {
    Window {
        start: Some(now - length),
        reset: Reset::Rolling(length),
    }
}

fn fixed(start: DateTime<Utc>, end: DateTime<Utc>) -> Window {
    Window {
        start: Some(start),
        reset: Reset::At(end),
    }
}

fn midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    instant(tz, day.and_time(NaiveTime::MIN))
}

/// The instant a local wall-clock time in `tz` names (see the module doc
/// for the two daylight-saving cases).
pub fn instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: read the time with the offset in force before it.
            // Gaps last hours and zones change offset months apart, so a
            // day earlier is before the gap.
            let before = tz
                .offset_from_utc_datetime(&(local - ONE_DAY))
                .fix()
                .local_minus_utc();
            (local - TimeDelta::seconds(i64::from(before))).and_utc()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| unreachable!("{s}: {e}"))
            .with_timezone(&Utc)
    }

    fn tz(name: &str) -> Tz {
        name.parse().unwrap_or_else(|e| unreachable!("{name}: {e}"))
    }

    fn hhmm(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap_or_else(|e| unreachable!("{s}: {e}"))
    }

    fn at(start: &str, end: &str) -> Window {
        Window {
            start: Some(utc(start)),
            reset: Reset::At(utc(end)),
        }
    }

    #[test]
    fn total_counts_since_the_reset() {
        assert_eq!(
            total(None),
            Window {
                start: None,
                reset: Reset::Never
            }
        );
        let reset = utc("2026-03-01T10:00:00Z");
        assert_eq!(total(Some(reset)).start, Some(reset));
    }

    #[test]
    fn rolling_windows_trail_the_clock() {
        let now = utc("2026-03-01T10:30:00Z");
        assert_eq!(
            five_hours_rolling(now),
            Window {
                start: Some(utc("2026-03-01T05:30:00Z")),
                reset: Reset::Rolling(FIVE_HOURS)
            }
        );
        assert_eq!(
            daily_rolling(now),
            Window {
                start: Some(utc("2026-02-28T10:30:00Z")),
                reset: Reset::Rolling(ONE_DAY)
            }
        );
    }

    #[test]
    fn fixed_five_hours_runs_from_the_opening_charge() {
        let opened = utc("2026-03-01T08:10:00Z");
        let cases = [
            // (now, window)
            (
                "2026-03-01T08:10:00Z",
                at("2026-03-01T08:10:00Z", "2026-03-01T13:10:00Z"),
            ),
            (
                "2026-03-01T13:09:59Z",
                at("2026-03-01T08:10:00Z", "2026-03-01T13:10:00Z"),
            ),
        ];
        for (now, want) in cases {
            assert_eq!(five_hours_fixed(Some(opened), utc(now)), want, "{now}");
        }
        // Ended, or never opened: nothing counts until the next charge.
        for (opened, now) in [
            (Some(opened), utc("2026-03-01T13:10:00Z")),
            (None, utc("2026-03-01T09:00:00Z")),
        ] {
            assert_eq!(
                five_hours_fixed(opened, now),
                Window {
                    start: Some(now),
                    reset: Reset::NextCharge
                }
            );
        }
    }

    #[test]
    fn a_charge_opens_a_fixed_window_only_when_none_runs() {
        let opened = utc("2026-03-01T08:10:00Z");
        let inside = utc("2026-03-01T12:00:00Z");
        let after = utc("2026-03-01T13:10:00Z");
        assert_eq!(five_hours_opened_by(Some(opened), inside), opened);
        assert_eq!(five_hours_opened_by(Some(opened), after), after);
        assert_eq!(five_hours_opened_by(None, inside), inside);
        // A late charge from before the window changes nothing.
        let late = utc("2026-03-01T07:00:00Z");
        assert_eq!(five_hours_opened_by(Some(opened), late), opened);
    }

    #[test]
    fn daily_at_midnight_in_utc() {
        let utc_tz = tz("UTC");
        for (now, window) in [
            (
                "2026-03-01T00:00:00Z",
                at("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"),
            ),
            (
                "2026-03-01T23:59:59Z",
                at("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"),
            ),
            // Month and year ends.
            (
                "2026-02-28T12:00:00Z",
                at("2026-02-28T00:00:00Z", "2026-03-01T00:00:00Z"),
            ),
            (
                "2026-12-31T12:00:00Z",
                at("2026-12-31T00:00:00Z", "2027-01-01T00:00:00Z"),
            ),
        ] {
            assert_eq!(
                daily_fixed(utc_tz, hhmm("00:00"), utc(now)),
                window,
                "{now}"
            );
        }
    }

    #[test]
    fn daily_at_18_00_in_shanghai() {
        // Asia/Shanghai is UTC+8 all year: 18:00 there is 10:00 UTC.
        let shanghai = tz("Asia/Shanghai");
        for (now, window) in [
            // 17:59 local: still the window that began yesterday at 18:00.
            (
                "2026-03-01T09:59:00Z",
                at("2026-02-28T10:00:00Z", "2026-03-01T10:00:00Z"),
            ),
            // 18:00 local: a new window.
            (
                "2026-03-01T10:00:00Z",
                at("2026-03-01T10:00:00Z", "2026-03-02T10:00:00Z"),
            ),
            // 02:00 local the next day (18:00 UTC, still the 1st in UTC).
            (
                "2026-03-01T18:00:00Z",
                at("2026-03-01T10:00:00Z", "2026-03-02T10:00:00Z"),
            ),
        ] {
            assert_eq!(
                daily_fixed(shanghai, hhmm("18:00"), utc(now)),
                window,
                "{now}"
            );
        }
        // Midnight in Shanghai is 16:00 UTC the day before.
        assert_eq!(
            daily_fixed(shanghai, hhmm("00:00"), utc("2026-03-01T15:00:00Z")),
            at("2026-02-28T16:00:00Z", "2026-03-01T16:00:00Z")
        );
    }

    #[test]
    fn daily_across_daylight_saving_changes() {
        let new_york = tz("America/New_York");
        // 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT; that day is
        // 23 hours long. Midnight resets: EST midnight (05:00 UTC) on the
        // 8th, EDT midnight (04:00 UTC) on the 9th.
        assert_eq!(
            daily_fixed(new_york, hhmm("00:00"), utc("2026-03-08T12:00:00Z")),
            at("2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z")
        );
        // 02:30 does not exist on the 8th: the reset happens at 03:30 EDT
        // (07:30 UTC), half an hour after the jump.
        assert_eq!(
            daily_fixed(new_york, hhmm("02:30"), utc("2026-03-08T07:10:00Z")),
            at("2026-03-07T07:30:00Z", "2026-03-08T07:30:00Z")
        );
        assert_eq!(
            daily_fixed(new_york, hhmm("02:30"), utc("2026-03-08T07:30:00Z")),
            at("2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z")
        );
        // 2026-11-01: clocks go back from 02:00 EDT to 01:00 EST; 01:30
        // happens twice and the reset takes the first (05:30 UTC). That
        // day is 25 hours long.
        assert_eq!(
            daily_fixed(new_york, hhmm("01:30"), utc("2026-11-01T06:00:00Z")),
            at("2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z")
        );
        assert_eq!(
            daily_fixed(new_york, hhmm("00:00"), utc("2026-11-01T12:00:00Z")),
            at("2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z")
        );
    }

    #[test]
    fn weekly_starts_on_monday() {
        let utc_tz = tz("UTC");
        // 2026-03-02 is a Monday.
        for now in [
            "2026-03-02T00:00:00Z",
            "2026-03-05T12:00:00Z",
            "2026-03-08T23:59:59Z",
        ] {
            assert_eq!(
                weekly(utc_tz, utc(now)),
                at("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z"),
                "{now}"
            );
        }
        assert_eq!(
            weekly(utc_tz, utc("2026-03-01T23:59:59Z")),
            at("2026-02-23T00:00:00Z", "2026-03-02T00:00:00Z")
        );
        // A week across the year end.
        assert_eq!(
            weekly(utc_tz, utc("2027-01-01T08:00:00Z")),
            at("2026-12-28T00:00:00Z", "2027-01-04T00:00:00Z")
        );
        // Monday 00:00 in Berlin (UTC+1 in winter) is Sunday 23:00 UTC.
        assert_eq!(
            weekly(tz("Europe/Berlin"), utc("2026-03-01T23:30:00Z")),
            at("2026-03-01T23:00:00Z", "2026-03-08T23:00:00Z")
        );
        // The week of the spring change in Berlin (2026-03-29) is an hour
        // shorter: it ends at 22:00 UTC, Monday 00:00 CEST.
        assert_eq!(
            weekly(tz("Europe/Berlin"), utc("2026-03-25T12:00:00Z")),
            at("2026-03-22T23:00:00Z", "2026-03-29T22:00:00Z")
        );
    }

    #[test]
    fn monthly_starts_on_the_first() {
        let utc_tz = tz("UTC");
        for (now, window) in [
            (
                "2026-02-01T00:00:00Z",
                at("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"),
            ),
            (
                "2026-02-28T23:59:59Z",
                at("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"),
            ),
            // A leap year's February.
            (
                "2028-02-29T12:00:00Z",
                at("2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"),
            ),
            (
                "2026-12-15T00:00:00Z",
                at("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            ),
        ] {
            assert_eq!(monthly(utc_tz, utc(now)), window, "{now}");
        }
        // In Shanghai the month starts 8 hours before UTC's.
        assert_eq!(
            monthly(tz("Asia/Shanghai"), utc("2026-02-28T16:00:00Z")),
            at("2026-02-28T16:00:00Z", "2026-03-31T16:00:00Z")
        );
        // New York: March begins in EST and ends in EDT.
        assert_eq!(
            monthly(tz("America/New_York"), utc("2026-03-15T12:00:00Z")),
            at("2026-03-01T05:00:00Z", "2026-04-01T04:00:00Z")
        );
    }
}
