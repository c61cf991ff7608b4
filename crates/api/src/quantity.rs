//! Kubernetes resource quantities (`250m`, `1.5`, `128Mi`, `1G`, `2e3`) as integers.

/// CPU in millicores; `None` when the text is not a quantity.
pub fn cpu_millis(q: &str) -> Option<i64> {
    scaled(q, 1000)
}

/// Memory (or any plain count) in bytes/units, rounded up.
pub fn value(q: &str) -> Option<i64> {
    scaled(q, 1)
}

fn scaled(q: &str, unit: i64) -> Option<i64> {
    let q = q.trim();
    let suffixes: [(&str, f64); 14] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let (number, factor) = suffixes
        .iter()
        .find_map(|(s, f)| q.strip_suffix(s).map(|n| (n, *f)))
        .unwrap_or((q, 1.0));
    let n: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let v = (n * factor * unit as f64).ceil();
    (v <= i64::MAX as f64).then_some(v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_quantities() {
        assert_eq!(cpu_millis("250m"), Some(250));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.5"), Some(500));
        assert_eq!(value("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(value("2e3"), Some(2000));
        assert_eq!(value("lots"), None);
        assert_eq!(value("-1"), None);
    }
}
