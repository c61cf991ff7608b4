//! CronJob schedules as kube reads them: the grammar, error wording and time arithmetic of
//! `github.com/robfig/cron/v3`'s `ParseStandard` and `Schedule.Next`, which kube-apiserver validates
//! `spec.schedule` with and the cronjob controller schedules by.
//!
//! A schedule is five fields — minute, hour, day of month, month, day of week — each a comma-separated list
//! of `*` (or `?`), a number or name (`jan`…`dec`, `sun`…`sat`, any case), a range `a-b`, each with an
//! optional `/step` (`a/step` means `a-max/step`); or one of the descriptors `@yearly` (`@annually`),
//! `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly` and `@every <Go duration>`. A `TZ=<zone>` or
//! `CRON_TZ=<zone>` prefix names the time zone (the controller writes one for `spec.timeZone`); without
//! one, times are the local time of the process (kube's `time.Local`). When day of month and day of week
//! are both restricted a day matching either runs; when either is `*` both must match.
//!
//! Times are found as robfig's `Next` finds them, field by field in the zone's wall-clock time, so
//! daylight-saving changes behave as in kube: a time in a skipped hour does not run that day, and a time in
//! a repeated hour runs in both (see the tests).
//!
//! ```
//! use herd_api::cron;
//! let every_quarter = cron::parse("TZ=UTC */15 * * * *").unwrap();
//! let at: jiff::Timestamp = "2026-12-07T10:07:00Z".parse().unwrap();
//! assert_eq!(every_quarter.next(at).unwrap().to_string(), "2026-12-07T10:15:00Z");
//! assert_eq!(
//!     cron::parse("61 * * * *").unwrap_err().to_string(),
//!     "end of range (61) above maximum (59): 61"
//! );
//! ```

use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp};

/// Why a schedule does not parse, in robfig/cron's words (kube puts them in its 422 and its events).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    /// From a `TZ=`/`CRON_TZ=` prefix; `None`: the process's local time zone.
    zone: Option<TimeZone>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Spec(Spec),
    /// `@every`: a fixed delay, whole seconds, at least one.
    Every(Duration),
}

/// The bit sets of a five-field schedule (robfig's `SpecSchedule`; its seconds are always 0).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

/// Set when a field was `*` or `?` (robfig's `starBit`): such a day field does not widen the other.
const STAR: u64 = 1 << 63;

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
/// Names start at the field's minimum: `jan` is 1.
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
/// `sun` is 0.
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Go's `time.LoadLocation`: `""` and `UTC` are UTC, `Local` the process's zone, anything else an IANA
/// name as the time zone database spells it (case matters, as on a file system).
///
/// # Errors
/// Go's message: `unknown time zone NAME`, or `time: invalid location name`.
pub fn load_location(name: &str) -> Result<TimeZone, String> {
    match name {
        "" | "UTC" => return Ok(TimeZone::UTC),
        "Local" => return Ok(TimeZone::system()),
        _ => {}
    }
    if name.contains("..") || name.starts_with('/') || name.starts_with('\\') {
        return Err("time: invalid location name".into());
    }
    match jiff::tz::db().get(name) {
        Ok(tz) if tz.iana_name() == Some(name) => Ok(tz),
        _ => Err(format!("unknown time zone {name}")),
    }
}

/// robfig/cron's `ParseStandard`.
///
/// # Errors
/// [`ScheduleError`] with robfig's message for the first thing wrong.
pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
    if spec.is_empty() {
        return Err(ScheduleError("empty spec string".into()));
    }
    let mut spec = spec;
    let mut zone = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or_default();
        // robfig slices up to the first space (a prefix without one is out of its bounds; here the
        // remainder names the zone and the schedule is empty).
        let end = spec.find(' ').unwrap_or(spec.len());
        let name = spec.get(eq + 1..end).unwrap_or_default();
        zone = Some(
            load_location(name)
                .map_err(|e| ScheduleError(format!("provided bad location {name}: {e}")))?,
        );
        spec = spec[end..].trim();
    }
    if spec.starts_with('@') {
        return descriptor(spec).map(|kind| Schedule { kind, zone });
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(ScheduleError(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        )));
    }
    let spec = Spec {
        minute: field(fields[0], &MINUTES)?,
        hour: field(fields[1], &HOURS)?,
        dom: field(fields[2], &DOM)?,
        month: field(fields[3], &MONTHS)?,
        dow: field(fields[4], &DOW)?,
    };
    Ok(Schedule {
        kind: Kind::Spec(spec),
        zone,
    })
}

/// robfig's `parseDescriptor`.
fn descriptor(text: &str) -> Result<Kind, ScheduleError> {
    let all = |b: &Bounds| bits(b.min, b.max, 1) | STAR;
    let at = |minute: u64, hour: u64, dom: u64, month: u64, dow: u64| {
        Kind::Spec(Spec {
            minute,
            hour,
            dom,
            month,
            dow,
        })
    };
    let first = |b: &Bounds| 1u64 << b.min;
    let (m0, h0) = (first(&MINUTES), first(&HOURS));
    Ok(match text {
        "@yearly" | "@annually" => at(m0, h0, first(&DOM), first(&MONTHS), all(&DOW)),
        "@monthly" => at(m0, h0, first(&DOM), all(&MONTHS), all(&DOW)),
        "@weekly" => at(m0, h0, all(&DOM), all(&MONTHS), first(&DOW)),
        "@daily" | "@midnight" => at(m0, h0, all(&DOM), all(&MONTHS), all(&DOW)),
        "@hourly" => at(m0, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        _ => match text.strip_prefix("@every ") {
            Some(duration) => {
                let delay = crate::duration::parse(duration).ok_or_else(|| {
                    ScheduleError(format!(
                        "failed to parse duration {text}: time: invalid duration \"{duration}\""
                    ))
                })?;
                // robfig's `Every`: at least a second, whole seconds.
                Kind::Every(Duration::from_secs(delay.as_secs().max(1)))
            }
            None => return Err(ScheduleError(format!("unrecognized descriptor: {text}"))),
        },
    })
}

/// robfig's `getField`: the union of comma-separated ranges (empty pieces are skipped).
fn field(text: &str, bounds: &Bounds) -> Result<u64, ScheduleError> {
    text.split(',')
        .filter(|r| !r.is_empty())
        .try_fold(0, |acc, r| Ok(acc | range(r, bounds)?))
}

/// robfig's `getRange`: `*`, `?`, `n`, `a-b`, each with an optional `/step`.
fn range(expr: &str, b: &Bounds) -> Result<u64, ScheduleError> {
    let err = |m: String| Err(ScheduleError(m));
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (start, end, extra) = (b.min, b.max, STAR);
    } else {
        start = int_or_name(low_and_high[0], b)?;
        end = match low_and_high.len() {
            1 => start,
            2 => int_or_name(low_and_high[1], b)?,
            _ => return err(format!("too many hyphens: {expr}")),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = number(range_and_step[1])?;
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn int_or_name(expr: &str, b: &Bounds) -> Result<u32, ScheduleError> {
    let lower = expr.to_ascii_lowercase();
    match b.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(b.min + i as u32),
        None => number(expr),
    }
}

/// robfig's `mustParseInt` over Go's `strconv.Atoi` (an optional sign, decimal digits).
fn number(expr: &str) -> Result<u32, ScheduleError> {
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScheduleError(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing \"{expr}\": invalid syntax"
        )));
    }
    let Ok(n) = expr.parse::<i64>() else {
        return Err(ScheduleError(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing \"{expr}\": value out of range"
        )));
    };
    if n < 0 {
        return Err(ScheduleError(format!(
            "negative number ({n}) not allowed: {expr}"
        )));
    }
    // Anything past a field's maximum is refused by the caller; keep it above every maximum.
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Bits `min..=max` every `step`.
fn bits(min: u32, max: u32, step: u32) -> u64 {
    (min..=max)
        .step_by(step as usize)
        .fold(0, |acc, i| acc | 1 << i)
}

impl Schedule {
    /// The zone a `TZ=`/`CRON_TZ=` prefix named, if any.
    pub fn zone(&self) -> Option<&TimeZone> {
        self.zone.as_ref()
    }

    /// robfig's `Next`: the first activation strictly after `after` (at a whole second), `None` when there
    /// is none within five years (a schedule such as `0 0 30 2 *`).
    pub fn next(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(delay) => {
                let base = after.as_second();
                let delay = i64::try_from(delay.as_secs()).ok()?;
                Timestamp::from_second(base.checked_add(delay)?).ok()
            }
            Kind::Spec(spec) => {
                let local;
                let zone = match &self.zone {
                    Some(z) => z,
                    None => {
                        local = TimeZone::system();
                        &local
                    }
                };
                spec.next(after, zone)
            }
        }
    }
}

/// One moment as the zone's wall clock shows it.
struct Wall {
    year: i16,
    month: i8,
    day: i8,
    hour: i8,
    minute: i8,
    weekday: i8,
}

fn wall(t: Timestamp, tz: &TimeZone) -> Wall {
    let z = t.to_zoned(tz.clone());
    Wall {
        year: z.year(),
        month: z.month(),
        day: z.day(),
        hour: z.hour(),
        minute: z.minute(),
        weekday: z.weekday().to_sunday_zero_offset(),
    }
}

/// Go's `time.Date` in `tz`: the civil time read with the offset in force at it, resolved as Go resolves
/// a time skipped or repeated by a daylight-saving change (the offset found at the civil time taken as
/// UTC, checked once). Days past the month's end roll over as in Go, and `month` may be 13.
fn go_date(
    year: i16,
    month: i8,
    day: i32,
    hour: i8,
    minute: i8,
    tz: &TimeZone,
) -> Option<Timestamp> {
    let (year, month) = if month > 12 {
        (year.checked_add(1)?, month - 12)
    } else {
        (year, month)
    };
    let date = Date::new(year, month, 1)
        .ok()?
        .checked_add(Span::new().try_days(i64::from(day) - 1).ok()?)
        .ok()?;
    let civil: DateTime = date.at(hour, minute, 0, 0);
    let as_utc = Offset::UTC.to_timestamp(civil).ok()?;
    let shift = |offset: Offset| SignedDuration::from_secs(i64::from(offset.seconds()));
    let guess = tz.to_offset(as_utc);
    let offset = tz.to_offset(as_utc.checked_sub(shift(guess)).ok()?);
    as_utc.checked_sub(shift(offset)).ok()
}

impl Spec {
    fn has(set: u64, value: i8) -> bool {
        u32::try_from(value).is_ok_and(|v| v < 64 && set & (1 << v) != 0)
    }

    /// robfig's `dayMatches`.
    fn day_matches(&self, w: &Wall) -> bool {
        let dom = Self::has(self.dom, w.day);
        let dow = Self::has(self.dow, w.weekday);
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// robfig's `SpecSchedule.Next`, step for step: each field in turn is moved on until it matches
    /// (resetting the smaller ones the first time anything moves), and a field that wraps around starts
    /// the check over from the month.
    fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let hour = SignedDuration::from_hours(1);
        let minute = SignedDuration::from_mins(1);
        // The next whole second.
        let mut t = Timestamp::from_second(after.as_second().checked_add(1)?).ok()?;
        let mut added = false;
        let year_limit = wall(t, tz).year + 5;
        'wrap: loop {
            let mut w = wall(t, tz);
            if w.year > year_limit {
                return None;
            }
            while !Self::has(self.month, w.month) {
                if !added {
                    added = true;
                    t = go_date(w.year, w.month, 1, 0, 0, tz)?;
                    w = wall(t, tz);
                }
                // Go's `AddDate(0, 1, 0)`.
                t = go_date(w.year, w.month + 1, w.day.into(), w.hour, w.minute, tz)?;
                w = wall(t, tz);
                if w.month == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&w) {
                if !added {
                    added = true;
                    t = go_date(w.year, w.month, w.day.into(), 0, 0, tz)?;
                    w = wall(t, tz);
                }
                // Go's `AddDate(0, 0, 1)`.
                t = go_date(w.year, w.month, i32::from(w.day) + 1, w.hour, w.minute, tz)?;
                w = wall(t, tz);
                // Midnight may not exist on a daylight-saving day: back to the hour before, or on to the
                // next midnight.
                if w.hour != 0 {
                    let shift = if w.hour > 12 {
                        24 - i64::from(w.hour)
                    } else {
                        -i64::from(w.hour)
                    };
                    t = t.checked_add(SignedDuration::from_hours(shift)).ok()?;
                    w = wall(t, tz);
                }
                if w.day == 1 {
                    continue 'wrap;
                }
            }
            while !Self::has(self.hour, w.hour) {
                if !added {
                    added = true;
                    t = go_date(w.year, w.month, w.day.into(), w.hour, 0, tz)?;
                }
                t = t.checked_add(hour).ok()?;
                w = wall(t, tz);
                if w.hour == 0 {
                    continue 'wrap;
                }
            }
            while !Self::has(self.minute, w.minute) {
                if !added {
                    added = true;
                    t = Timestamp::from_second(t.as_second().div_euclid(60) * 60).ok()?;
                }
                t = t.checked_add(minute).ok()?;
                w = wall(t, tz);
                if w.minute == 0 {
                    continue 'wrap;
                }
            }
            // The seconds field of a standard schedule is 0: on to the next minute, and check it all again.
            if t.as_second().rem_euclid(60) != 0 {
                added = true;
                t = Timestamp::from_second((t.as_second().div_euclid(60) + 1) * 60).ok()?;
                continue 'wrap;
            }
            return Some(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    fn next(spec: &str, after: &str) -> Option<Timestamp> {
        parse(spec)
            .unwrap_or_else(|e| panic!("{spec}: {e}"))
            .next(at(after))
    }

    #[test]
    fn standard_schedules_find_their_next_time() {
        let cases = [
            (
                "2012-07-09T14:45:00Z",
                "0/15 * * * *",
                "2012-07-09T15:00:00Z",
            ),
            (
                "2012-07-09T14:59:59Z",
                "0/15 * * * *",
                "2012-07-09T15:00:00Z",
            ),
            (
                "2012-07-09T15:45:00Z",
                "20-35/15 * * * *",
                "2012-07-09T16:20:00Z",
            ),
            (
                "2012-07-09T23:46:00Z",
                "*/15 * * * *",
                "2012-07-10T00:00:00Z",
            ),
            (
                "2012-07-09T23:45:00Z",
                "20-35/15 * * * *",
                "2012-07-10T00:20:00Z",
            ),
            (
                "2012-07-09T23:35:51Z",
                "20-35/15 1/2 * * *",
                "2012-07-10T01:20:00Z",
            ),
            (
                "2012-07-09T23:35:51Z",
                "20-35/15 1/2 */2 * *",
                "2012-07-11T01:20:00Z",
            ),
            (
                "2012-07-09T23:35:00Z",
                "0 0 9 Apr-Oct ?",
                "2012-08-09T00:00:00Z",
            ),
            (
                "2012-07-09T23:35:00Z",
                "0 0 */5 Apr,Aug,Oct Mon",
                "2012-08-01T00:00:00Z",
            ),
            (
                "2012-07-09T23:35:00Z",
                "0 0 */5 Oct Mon",
                "2012-10-01T00:00:00Z",
            ),
            (
                "2012-07-09T23:35:00Z",
                "0 0 * Feb Mon",
                "2013-02-04T00:00:00Z",
            ),
            (
                "2012-07-09T23:35:00Z",
                "0 0 * Feb Mon/2",
                "2013-02-01T00:00:00Z",
            ),
            ("2012-12-31T23:59:45Z", "* * * * *", "2013-01-01T00:00:00Z"),
            (
                "2012-07-09T23:35:00Z",
                "0 0 29 Feb ?",
                "2016-02-29T00:00:00Z",
            ),
            ("2026-12-07T10:00:00Z", "@hourly", "2026-12-07T11:00:00Z"),
            ("2026-12-07T10:00:00Z", "@daily", "2026-12-08T00:00:00Z"),
            ("2026-12-07T10:00:00Z", "@weekly", "2026-12-13T00:00:00Z"),
            ("2026-12-07T10:00:00Z", "@monthly", "2027-01-01T00:00:00Z"),
            ("2026-12-07T10:00:00Z", "@yearly", "2027-01-01T00:00:00Z"),
            (
                "2026-12-07T10:00:00.5Z",
                "@every 1m30s",
                "2026-12-07T10:01:30Z",
            ),
            (
                "2026-12-07T10:00:00Z",
                "@every 10ms",
                "2026-12-07T10:00:01Z",
            ),
            // Both day fields restricted: either may match; one of them `*`: both must.
            (
                "2012-06-14T12:00:00Z",
                "0 0 1,15 * Sun",
                "2012-06-15T00:00:00Z",
            ),
            (
                "2012-06-15T12:00:00Z",
                "0 0 1,15 * Sun",
                "2012-06-17T00:00:00Z",
            ),
            (
                "2012-07-09T12:00:00Z",
                "0 0 * * Mon",
                "2012-07-16T00:00:00Z",
            ),
            // `*/2` is a step, not a star: odd days or Sundays.
            (
                "2012-07-09T12:00:00Z",
                "0 0 */2 * Sun",
                "2012-07-11T00:00:00Z",
            ),
            (
                "2012-07-09T12:00:00Z",
                "0 0 */1 * Sun",
                "2012-07-15T00:00:00Z",
            ),
        ];
        for (after, spec, want) in cases {
            let spec = format!("TZ=UTC {spec}");
            assert_eq!(next(&spec, after), Some(at(want)), "{spec} after {after}");
        }
        // No such day within five years.
        assert_eq!(next("TZ=UTC 0 0 30 Feb ?", "2012-07-09T23:35:00Z"), None);
        assert_eq!(next("TZ=UTC 0 0 31 Apr ?", "2012-07-09T23:35:00Z"), None);
    }

    /// robfig's (and so kube's) daylight-saving behaviour: a time the clock skips does not run that day,
    /// a time the clock repeats runs twice, and midnights that do not exist move to the hour that does.
    #[test]
    fn daylight_saving_changes_behave_as_in_kube() {
        let ny = |spec: &str| format!("TZ=America/New_York {spec}");
        let cases = [
            // Spring forward, 2am EST -> 3am EDT.
            (
                "2012-03-11T00:00:00-05:00",
                ny("30 2 11 Mar ?"),
                "2013-03-11T02:30:00-04:00",
            ),
            (
                "2012-03-11T00:00:00-05:00",
                ny("0 * * * ?"),
                "2012-03-11T01:00:00-05:00",
            ),
            (
                "2012-03-11T01:00:00-05:00",
                ny("0 * * * ?"),
                "2012-03-11T03:00:00-04:00",
            ),
            (
                "2012-03-11T03:00:00-04:00",
                ny("0 * * * ?"),
                "2012-03-11T04:00:00-04:00",
            ),
            (
                "2012-03-11T00:00:00-05:00",
                "CRON_TZ=America/New_York 0 * * * ?".into(),
                "2012-03-11T01:00:00-05:00",
            ),
            (
                "2012-03-11T01:00:00-05:00",
                ny("0 1 * * ?"),
                "2012-03-12T01:00:00-04:00",
            ),
            (
                "2012-03-11T00:00:00-05:00",
                ny("0 2 * * ?"),
                "2012-03-12T02:00:00-04:00",
            ),
            // Fall back, 2am EDT -> 1am EST.
            (
                "2012-11-04T00:00:00-04:00",
                ny("30 2 04 Nov ?"),
                "2012-11-04T02:30:00-05:00",
            ),
            (
                "2012-11-04T01:45:00-04:00",
                ny("30 1 04 Nov ?"),
                "2012-11-04T01:30:00-05:00",
            ),
            (
                "2012-11-04T00:00:00-04:00",
                ny("0 * * * ?"),
                "2012-11-04T01:00:00-04:00",
            ),
            (
                "2012-11-04T01:00:00-04:00",
                ny("0 * * * ?"),
                "2012-11-04T01:00:00-05:00",
            ),
            (
                "2012-11-04T01:00:00-05:00",
                ny("0 * * * ?"),
                "2012-11-04T02:00:00-05:00",
            ),
            (
                "2012-11-04T00:00:00-04:00",
                ny("0 1 * * ?"),
                "2012-11-04T01:00:00-04:00",
            ),
            (
                "2012-11-04T01:00:00-04:00",
                ny("0 1 * * ?"),
                "2012-11-04T01:00:00-05:00",
            ),
            (
                "2012-11-04T01:00:00-05:00",
                ny("0 1 * * ?"),
                "2012-11-05T01:00:00-05:00",
            ),
            (
                "2012-11-04T00:00:00-04:00",
                ny("0 2 * * ?"),
                "2012-11-04T02:00:00-05:00",
            ),
            (
                "2012-11-04T02:00:00-05:00",
                ny("0 2 * * ?"),
                "2012-11-05T02:00:00-05:00",
            ),
            (
                "2012-11-04T00:00:00-04:00",
                ny("0 3 * * ?"),
                "2012-11-04T03:00:00-05:00",
            ),
            (
                "2012-11-04T00:00:00-04:00",
                ny("0 3 3 * ?"),
                "2012-12-03T03:00:00-05:00",
            ),
            // Midnight does not exist in São Paulo on its DST day.
            (
                "2018-10-17T05:00:00-04:00",
                "TZ=America/Sao_Paulo 0 9 10 * ?".into(),
                "2018-11-10T06:00:00-05:00",
            ),
            (
                "2018-02-14T05:00:00-05:00",
                "TZ=America/Sao_Paulo 0 9 22 * ?".into(),
                "2018-02-22T07:00:00-05:00",
            ),
        ];
        for (after, spec, want) in cases {
            assert_eq!(next(&spec, after), Some(at(want)), "{spec} after {after}");
        }
    }

    #[test]
    fn a_schedule_runs_in_its_time_zone() {
        let tokyo = parse("TZ=Asia/Tokyo 0 9 * * *").unwrap();
        assert_eq!(
            tokyo.zone().and_then(TimeZone::iana_name),
            Some("Asia/Tokyo")
        );
        assert_eq!(
            tokyo.next(at("2026-12-07T10:00:00Z")),
            Some(at("2026-12-08T00:00:00Z"))
        );
        let berlin = parse("TZ=Europe/Berlin 30 2 * * *").unwrap();
        // 2:30 does not exist in Berlin on 2026-03-29: the next one is the day after.
        assert_eq!(
            berlin.next(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-30T00:30:00Z"))
        );
    }

    #[test]
    fn bad_schedules_are_refused_in_robfigs_words() {
        let cases = [
            ("", "empty spec string"),
            ("foo", "expected exactly 5 fields, found 1: [foo]"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            (
                "* * * * * *",
                "expected exactly 5 fields, found 6: [* * * * * *]",
            ),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* 24 * * *", "end of range (24) above maximum (23): 24"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * 13 *", "end of range (13) above maximum (12): 13"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("1/2/3 * * * *", "too many slashes: 1/2/3"),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("*/-1 * * * *", "negative number (-1) not allowed: -1"),
            (
                "* * * foo *",
                "failed to parse int from foo: strconv.Atoi: parsing \"foo\": invalid syntax",
            ),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            (
                "@every 5",
                "failed to parse duration @every 5: time: invalid duration \"5\"",
            ),
            (
                "TZ=Mars/Olympus * * * * *",
                "provided bad location Mars/Olympus: unknown time zone Mars/Olympus",
            ),
            (
                "L * * * *",
                "failed to parse int from L: strconv.Atoi: parsing \"L\": invalid syntax",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(
                parse(spec).map(|_| ()).unwrap_err().to_string(),
                want,
                "{spec:?}"
            );
        }
        for good in [
            "*/5 * * * *",
            "0 9 * * MON-fri",
            "0 0 1,15 * ?",
            "@every 1h30m",
            "0 0 1 jan *",
        ] {
            assert!(parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn time_zones_load_as_go_loads_them() {
        assert_eq!(load_location("").unwrap().iana_name(), Some("UTC"));
        assert!(load_location("America/New_York").is_ok());
        assert_eq!(
            load_location("america/new_york").unwrap_err(),
            "unknown time zone america/new_york"
        );
        assert_eq!(
            load_location("Nowhere").unwrap_err(),
            "unknown time zone Nowhere"
        );
        assert_eq!(
            load_location("../etc/passwd").unwrap_err(),
            "time: invalid location name"
        );
    }
}
