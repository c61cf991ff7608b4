//! The string formats kube-apiserver checks in custom objects (k8s.io/kube-openapi's `strfmt` registry as
//! `pkg/apiserver/validation/formats.go` enables it for CRDs). A format it does not know passes.

use base64::Engine as _;

/// Whether `text` is a valid `format` value.
pub fn valid(format: &str, text: &str) -> bool {
    match format {
        "date-time" | "datetime" => date_time(text),
        "date" => date(text),
        "byte" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .is_ok(),
        "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => text.parse::<ipnet::IpNet>().is_ok(),
        "mac" => mac(text),
        "uuid" => uuid(text, None),
        "uuid3" => uuid(text, Some('3')),
        "uuid4" => uuid(text, Some('4')),
        "uuid5" => uuid(text, Some('5')),
        "hostname" => hostname(text),
        "duration" => crate::duration::parse(text).is_some(),
        "k8s-short-name" => crate::validation::is_dns1123_label(text),
        "k8s-long-name" => {
            !text.is_empty()
                && text.len() <= 253
                && text.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        }
        _ => true,
    }
}

/// RFC 3339 with or without fractions, or an ISO 8601 local time (`2006-01-02T15:04:05`).
fn date_time(text: &str) -> bool {
    text.parse::<jiff::Timestamp>().is_ok()
        || text
            .parse::<jiff::civil::DateTime>()
            .is_ok_and(|_| text.len() == 19)
}

fn date(text: &str) -> bool {
    text.len() == 10 && text.parse::<jiff::civil::Date>().is_ok()
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets as hex pairs separated by `:` or `-`, or dotted quads of hex.
fn mac(text: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    for sep in [':', '-'] {
        let parts: Vec<&str> = text.split(sep).collect();
        if [6, 8, 20].contains(&parts.len()) && parts.iter().all(|p| hex(p, 2)) {
            return true;
        }
    }
    let parts: Vec<&str> = text.split('.').collect();
    [3, 4, 10].contains(&parts.len()) && parts.iter().all(|p| hex(p, 4))
}

/// kube-openapi's `UUIDPattern` family: 32 hex digits, dashes optional at the usual places, and the
/// version digit for `uuid3`/`uuid4`/`uuid5`.
fn uuid(text: &str, version: Option<char>) -> bool {
    let groups = [8, 4, 4, 4, 12];
    let mut rest = text;
    let mut digits = String::new();
    for (i, n) in groups.iter().enumerate() {
        if rest.len() < *n || !rest[..*n].bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        digits.push_str(&rest[..*n]);
        rest = &rest[*n..];
        if i < groups.len() - 1 {
            rest = rest.strip_prefix('-').unwrap_or(rest);
        }
    }
    if !rest.is_empty() {
        return false;
    }
    match version {
        None => true,
        Some(v) => {
            let d = digits.as_bytes();
            d[12] as char == v && (v == '3' || b"89abAB".contains(&d[16]))
        }
    }
}

/// RFC 1034 host names as kube-openapi's `HostnamePattern` accepts them: labels of letters, digits and
/// inner dashes, at most 63 bytes each and 255 in all, a last label of letters when there are several.
fn hostname(text: &str) -> bool {
    if text.is_empty() || text.len() > 255 {
        return false;
    }
    let labels: Vec<&str> = text.split('.').collect();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if labels.len() == 1 {
        return label_ok(labels[0]);
    }
    let (last, first) = labels.split_last().expect("two labels or more");
    first.iter().all(|l| label_ok(l))
        && (2..=63).contains(&last.chars().count())
        && last.chars().all(char::is_alphabetic)
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn formats_kube_checks() {
        let cases = [
            ("date-time", "2024-01-02T03:04:05Z", true),
            ("date-time", "2024-01-02T03:04:05.123+02:00", true),
            ("date-time", "2024-01-02T03:04:05", true),
            ("date-time", "yesterday", false),
            ("date", "2024-02-29", true),
            ("date", "2023-02-29", false),
            ("byte", "aGVyZA==", true),
            ("byte", "not base64!", false),
            ("ipv4", "10.0.0.1", true),
            ("ipv4", "10.0.0.256", false),
            ("ipv6", "fd00::1", true),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "10.0.0.0", false),
            ("mac", "00:1a:2b:3c:4d:5e", true),
            ("mac", "00:1a:2b", false),
            ("uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", true),
            ("uuid", "0f8fad5bd9cb469fa16570867728950e", true),
            ("uuid", "0f8fad5b-d9cb", false),
            ("uuid4", "0f8fad5b-d9cb-469f-a165-70867728950e", true),
            ("uuid3", "0f8fad5b-d9cb-469f-a165-70867728950e", false),
            ("hostname", "example.com", true),
            ("hostname", "-bad.com", false),
            ("duration", "1h30m", true),
            ("duration", "soon", false),
            ("k8s-short-name", "web-1", true),
            ("k8s-short-name", "Web", false),
            ("k8s-long-name", "a.b-c", true),
            ("password", "anything", true),
            ("unheard-of", "anything", true),
        ];
        for (format, text, want) in cases {
            assert_eq!(valid(format, text), want, "{format} {text:?}");
        }
    }
}
