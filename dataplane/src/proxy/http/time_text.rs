//! Times as HTTP writes them: `Date` headers (RFC 9110 IMF-fixdate, cached per second on each
//! worker since every response carries one) and access logs' %START_TIME% (RFC 3339, UTC,
//! milliseconds).

use http::HeaderValue;
use std::cell::RefCell;
use std::time::{Duration, SystemTime};

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's
/// civil_from_days).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

/// `2026-12-01T17:40:00.123Z`, as Envoy writes %START_TIME%.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = since_epoch(t);
    let secs = d.as_secs() as i64;
    let (year, month, day) = civil(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// `Tue, 01 Dec 2026 17:40:00 GMT`.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = since_epoch(t).as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let (year, month, day) = civil(days);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

thread_local! {
    static DATE: RefCell<(u64, HeaderValue)> = const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
}

/// The `Date` header value for now, formatted at most once a second per worker.
pub fn date_header() -> HeaderValue {
    let now = SystemTime::now();
    let sec = since_epoch(now).as_secs();
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != sec {
            *d = (
                sec,
                HeaderValue::from_str(&http_date(now)).unwrap_or(HeaderValue::from_static("")),
            );
        }
        d.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_146_800_123);
        assert_eq!(rfc3339_millis(t), "2026-12-01T17:40:00.123Z");
        assert_eq!(http_date(t), "Tue, 01 Dec 2026 17:40:00 GMT");
        assert_eq!(
            http_date(SystemTime::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }
}
