//! The timestamp formats GitLab's webhooks and API use, to Unix seconds — without a date crate,
//! since these four shapes are all the collector reads:
//! - `2016-08-12 15:23:28 UTC` (pipeline events, `object_attributes.created_at`, builds)
//! - `2021-04-28 21:50:00 +0200` (deployment events, `status_changed_at`)
//! - `2016-08-12T17:23:21+02:00` (push events `commits[].timestamp`, pipeline `commit.timestamp`)
//! - `2024-01-01T10:00:00.123Z` (REST API)

/// Parses one of the formats above; `None` for anything else.
pub fn parse(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.len() < 19 {
        return None;
    }
    let b = t.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = t.get(from..from + len)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || !(b[10] == b' ' || b[10] == b'T') || b[13] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &t[19..];
    let mut fraction = 0.0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        fraction = format!("0.{}", &frac[..digits]).parse().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest.trim() {
        "" | "Z" | "UTC" => 0,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let h: i64 = digits[..2].parse().ok()?;
            let m: i64 = digits[2..].parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    #[allow(clippy::cast_precision_loss)]
    let seconds = (days * 86_400 + hour * 3600 + minute * 60 + second - offset) as f64;
    Some(seconds + fraction)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (GitLab's pipeline-event format), for
/// recorded test streams and the API stand-in.
pub fn format_gitlab(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_formats() {
        assert_eq!(parse("1970-01-01 00:00:00 UTC"), Some(0.0));
        assert_eq!(parse("2016-08-12 15:23:28 UTC"), Some(1_471_015_408.0));
        assert_eq!(parse("2016-08-12T17:23:21+02:00"), Some(1_471_015_401.0));
        assert_eq!(parse("2021-04-28 21:50:00 +0200"), Some(1_619_639_400.0));
        assert_eq!(parse("2024-01-01T10:00:00.250Z"), Some(1_704_103_200.25));
        assert_eq!(parse("2024-02-29T00:00:00Z"), Some(1_709_164_800.0));
        for bad in [
            "",
            "yesterday",
            "2024-13-01 00:00:00 UTC",
            "2024-01-01 00:00:00 CEST",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn format_round_trips() {
        for t in [0, 1_471_015_408, 1_709_164_800, 1_800_000_123] {
            #[allow(clippy::cast_precision_loss)]
            let expected = t as f64;
            assert_eq!(parse(&format_gitlab(t)), Some(expected));
        }
    }
}
