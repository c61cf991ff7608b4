//! Kubernetes resource quantities (`250m`, `1.5`, `128Mi`, `1G`, `2e3`): parsed as
//! k8s.io/apimachinery's `ParseQuantity` does, with its errors, and read as integers.

/// The regular expression kube-apiserver names when a quantity does not parse.
pub const QUANTITY_REGEX: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// Why a text is not a quantity, worded as `resource.ParseQuantity`'s errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// `ErrFormatWrong`.
    #[error("quantities must match the regular expression '{QUANTITY_REGEX}'")]
    FormatWrong,
    /// `ErrSuffix`.
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// `ErrNumeric`.
    #[error("unable to parse numeric part of quantity")]
    Numeric,
}

/// A parsed quantity: `digits` × 10^`exp10` × 2^`exp2`, negative when `negative`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    /// The significant digits, without leading zeros (empty for zero).
    digits: String,
    exp10: i64,
    exp2: u32,
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Quantity {
    /// Parses `text` as kube's `ParseQuantity` (its scanner, suffixes and errors).
    ///
    /// # Errors
    /// [`QuantityError::FormatWrong`] for text outside the regular expression (`1Qi`, `""`, `1.2.3`),
    /// [`QuantityError::Suffix`] for an unknown suffix made of suffix letters (`1ii`, `1Mk`),
    /// [`QuantityError::Numeric`] for a number part that is not a number (`1.2.`… `+.`).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        if text.is_empty() {
            return Err(QuantityError::FormatWrong);
        }
        let b = text.as_bytes();
        let end = b.len();
        let mut pos = 0;
        let mut negative = false;
        match b[0] {
            b'-' => {
                negative = true;
                pos = 1;
            }
            b'+' => pos = 1,
            _ => {}
        }
        let number_start = pos;
        while pos < end && b[pos] == b'0' {
            pos += 1;
        }
        let num_start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let num = &text[num_start..pos];
        let mut denom = "";
        if pos < end && b[pos] == b'.' {
            pos += 1;
            let start = pos;
            while pos < end && b[pos].is_ascii_digit() {
                pos += 1;
            }
            denom = &text[start..pos];
        }
        let has_digits = text[number_start..pos].bytes().any(|d| d.is_ascii_digit());
        let suffix_start = pos;
        while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
            pos += 1;
        }
        if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
            pos += 1;
        }
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos < end {
            return Err(QuantityError::FormatWrong);
        }
        let (exp10, exp2) = interpret_suffix(&text[suffix_start..]).ok_or(QuantityError::Suffix)?;
        // kube reads a number with no digits (`+`, `.`, `Mi`) as zero on its fast path; only below
        // nano scale does it parse the number part as a decimal, which then fails.
        if !has_digits && exp2 == 0 && exp10 < -9 {
            return Err(QuantityError::Numeric);
        }
        let mut digits = format!("{num}{denom}");
        let leading = digits.bytes().take_while(|&d| d == b'0').count();
        digits.drain(..leading);
        let mut exp10 = exp10 - denom.len() as i64;
        let trailing = digits.bytes().rev().take_while(|&d| d == b'0').count();
        digits.truncate(digits.len() - trailing);
        exp10 += trailing as i64;
        if digits.is_empty() {
            exp10 = 0;
        }
        Ok(Self {
            negative: negative && !digits.is_empty(),
            digits,
            exp10,
            exp2,
        })
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The quantity times `unit`, rounded up (away from zero for positive values, as kube's `Value`
    /// and `MilliValue` do), saturating at the bounds of `i64`.
    pub fn scaled(&self, unit: i64) -> i64 {
        if self.digits.is_empty() {
            return 0;
        }
        let mut exp10 = self.exp10;
        let mut v: u128 = 0;
        for d in self.digits.bytes() {
            let Some(next) = v
                .checked_mul(10)
                .and_then(|x| x.checked_add(u128::from(d - b'0')))
            else {
                return self.saturated();
            };
            v = next;
        }
        v = match v.checked_mul(u128::from(unit.unsigned_abs())) {
            Some(x) => x,
            None => return self.saturated(),
        };
        for _ in 0..self.exp2 {
            v = match v.checked_mul(2) {
                Some(x) => x,
                None => return self.saturated(),
            };
        }
        while exp10 > 0 {
            v = match v.checked_mul(10) {
                Some(x) => x,
                None => return self.saturated(),
            };
            exp10 -= 1;
        }
        if exp10 < -40 {
            // Far below one: rounds up to one unit, or (negative) towards zero.
            return i64::from(!self.negative);
        }
        while exp10 < 0 {
            let rem = !v.is_multiple_of(10);
            v = v / 10 + u128::from(rem && !self.negative);
            exp10 += 1;
        }
        let v = i64::try_from(v).unwrap_or(i64::MAX);
        if self.negative { -v } else { v }
    }

    fn saturated(&self) -> i64 {
        if self.negative { i64::MIN } else { i64::MAX }
    }
}

/// A suffix as (power of ten, power of two): kube's `quantitySuffixer.interpret`.
fn interpret_suffix(s: &str) -> Option<(i64, u32)> {
    let decimal = match s {
        "" => Some(0),
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(e) = decimal {
        return Some((e, 0));
    }
    let binary = match s {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(e) = binary {
        return Some((0, e));
    }
    // `e<int32>` / `E<int32>`.
    let rest = s.strip_prefix(['e', 'E']).filter(|r| !r.is_empty())?;
    let e: i32 = rest.parse().ok()?;
    Some((i64::from(e), 0))
}

/// CPU in millicores; `None` when the text is not a quantity or is negative.
pub fn cpu_millis(q: &str) -> Option<i64> {
    Quantity::parse(q.trim())
        .ok()
        .filter(|q| !q.is_negative())
        .map(|q| q.scaled(1000))
}

/// Memory (or any plain count) in bytes/units, rounded up; `None` when the text is not a quantity or
/// is negative.
pub fn value(q: &str) -> Option<i64> {
    Quantity::parse(q.trim())
        .ok()
        .filter(|q| !q.is_negative())
        .map(|q| q.scaled(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_quantities() {
        assert_eq!(cpu_millis("250m"), Some(250));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.5"), Some(500));
        assert_eq!(cpu_millis("1n"), Some(1));
        assert_eq!(value("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(value("1.5Gi"), Some(3 * 512 * 1024 * 1024));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(value("1E"), Some(1_000_000_000_000_000_000));
        assert_eq!(value("2e3"), Some(2000));
        assert_eq!(value("12E-1"), Some(2));
        assert_eq!(value("+.5k"), Some(500));
        assert_eq!(value("1."), Some(1));
        assert_eq!(value("0"), Some(0));
        assert_eq!(value("000"), Some(0));
        assert_eq!(value("100Ei"), Some(i64::MAX));
        assert_eq!(value("lots"), None);
        assert_eq!(value("-1"), None);
    }

    #[test]
    fn rejects_as_parse_quantity_does() {
        let err = |s: &str| Quantity::parse(s).err();
        for bad in ["1Qi", "", "1.2.3", "1 Mi", "1Mi ", "0x10", "1KiB"] {
            assert_eq!(err(bad), Some(QuantityError::FormatWrong), "{bad:?}");
        }
        for bad in ["1ii", "1Mk", "1e", "--1", "1e99999999999", "1mi"] {
            assert_eq!(err(bad), Some(QuantityError::Suffix), "{bad:?}");
        }
        for bad in ["e-10", "+.e-10"] {
            assert_eq!(err(bad), Some(QuantityError::Numeric), "{bad:?}");
        }
        // What kube's fast path reads as zero.
        for zero in ["+", "-", ".", "Mi", "0e-10"] {
            assert_eq!(
                Quantity::parse(zero).map(|q| q.scaled(1)),
                Ok(0),
                "{zero:?}"
            );
        }
        assert_eq!(Quantity::parse("1e-2000000000").map(|q| q.scaled(1)), Ok(1));
        assert_eq!(
            QuantityError::FormatWrong.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert!(Quantity::parse("-1").is_ok_and(|q| q.is_negative()));
        assert!(Quantity::parse("-0").is_ok_and(|q| !q.is_negative()));
    }
}
