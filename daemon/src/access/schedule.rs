//! Weekly time windows, evaluated on local wall-clock time that the caller
//! computes in the site's time zone (so daylight-saving changes are the
//! caller's `chrono-tz` conversion, not arithmetic here).

/// Local wall-clock time: weekday (0 = Monday) and minute of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub weekday: u8,
    pub minute: u16,
}

/// One weekly window: the days it starts on (bit 0 = Monday) and
/// `[from, to)` in minutes. When `to <= from` the window runs past midnight
/// into the next day (22:00-06:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub days: u8,
    pub from: u16,
    pub to: u16,
}

pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The most windows a schedule holds (a holder's or a role's).
pub const MAX_WINDOWS: usize = 16;

impl Window {
    pub fn contains(&self, t: LocalTime) -> bool {
        let today = self.days & (1 << t.weekday) != 0;
        if self.from < self.to {
            return today && t.minute >= self.from && t.minute < self.to;
        }
        let yesterday = self.days & (1 << ((t.weekday + 6) % 7)) != 0;
        (today && t.minute >= self.from) || (yesterday && t.minute < self.to)
    }
}

/// A holder's weekly schedule; empty means at any time.
pub fn allows(windows: &[Window], t: LocalTime) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(t))
}

/// Parses `HH:MM` (00:00 to 24:00) into minutes.
pub fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// Formats minutes as `HH:MM`.
pub fn format_hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Parses a day name (`mon`..`sun`, or `daily`, `weekdays`, `weekends`) into a mask.
pub fn parse_days(s: &str) -> Option<u8> {
    match s {
        "daily" | "all" => Some(0x7f),
        "weekdays" => Some(0x1f),
        "weekends" => Some(0x60),
        d => DAY_NAMES.iter().position(|n| *n == d).map(|i| 1u8 << i),
    }
}

/// The local weekday and minute of `ms` in `tz`, and the local day number
/// (days since 0001-01-01) that the daily lockout cap counts by. `chrono-tz`
/// applies daylight-saving rules, so 02:30 on a spring-forward night never
/// occurs and 01:30 on a fall-back night occurs twice, as on the wall.
pub fn local(tz: chrono_tz::Tz, ms: i64) -> (LocalTime, i32) {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().with_timezone(&tz);
    let lt =
        LocalTime { weekday: t.weekday().num_days_from_monday() as u8, minute: (t.hour() * 60 + t.minute()) as u16 };
    (lt, t.date_naive().num_days_from_ce())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(weekday: u8, hhmm: &str) -> LocalTime {
        LocalTime { weekday, minute: parse_hhmm(hhmm).unwrap() }
    }

    #[test]
    fn day_window() {
        let w = Window { days: 0x1f, from: 7 * 60, to: 21 * 60 };
        assert!(w.contains(t(0, "07:00")));
        assert!(w.contains(t(4, "20:59")));
        assert!(!w.contains(t(4, "21:00")));
        assert!(!w.contains(t(5, "12:00")));
        assert!(!w.contains(t(0, "06:59")));
    }

    #[test]
    fn overnight_window_belongs_to_the_day_it_starts() {
        let w = Window { days: 1 << 4, from: 22 * 60, to: 6 * 60 }; // Friday night
        assert!(w.contains(t(4, "23:30")));
        assert!(w.contains(t(5, "05:59")));
        assert!(!w.contains(t(5, "06:00")));
        assert!(!w.contains(t(4, "05:00")));
        assert!(!w.contains(t(5, "23:00")));
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("7:00"), None);
        assert_eq!(parse_hhmm("12:60"), None);
        assert_eq!(parse_days("sun"), Some(64));
        assert_eq!(parse_days("weekends"), Some(0x60));
        assert_eq!(parse_days("sunday"), None);
        assert!(allows(&[], t(3, "03:00")));
    }
}
