//! Go's duration syntax (`time.ParseDuration`), which kube uses wherever a duration is text: flags,
//! the `timeout` query parameter, annotations.

use std::time::Duration;

/// A Go duration: one or more decimal numbers each with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`,
/// `h`), e.g. `300ms`, `1.5s`, `1m30s`, `2h`; `0` alone. `None` for anything else (a bare number,
/// an unknown unit, a sign, an empty text).
pub fn parse(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let number: f64 = number.parse().ok()?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(number * seconds).ok()?;
        rest = after;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_reads_them() {
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("1ns"), Some(Duration::from_nanos(1)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        for bad in ["", "30", "s", "3x", "-1s", "1d", "1s2"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
