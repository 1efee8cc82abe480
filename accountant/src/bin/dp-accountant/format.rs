//! How numbers are printed: one rule for people, one for JSON.

use serde_json::{json, Value};

/// A number for people: the shortest digits that round-trip, in scientific notation when it
/// is below 1e-3 or at least 1e9 in magnitude (δ = 1e-300 prints as `1e-300`, not 300
/// digits), and ∞ for an infinite value.
pub fn human(x: f64) -> String {
    if x.is_infinite() {
        return if x > 0.0 { "∞" } else { "-∞" }.into();
    }
    let magnitude = x.abs();
    if magnitude != 0.0 && !(1e-3..1e9).contains(&magnitude) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// A real for JSON: a number when finite, otherwise `null` (JSON has no infinity), so a field
/// never switches between a number and a string.
pub fn json_real(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_values_print_in_scientific_notation() {
        assert_eq!(human(1e-300), "1e-300");
        assert_eq!(human(1e-5), "1e-5");
        assert_eq!(human(2.5e12), "2.5e12");
        assert_eq!(human(0.01), "0.01");
        assert_eq!(human(9.889562), "9.889562");
        assert_eq!(human(0.0), "0");
        assert_eq!(human(f64::INFINITY), "∞");
        for x in [1e-300, 1.234_567_890_123e-7, 5e300, 0.1 + 0.2] {
            assert_eq!(human(x).parse::<f64>().unwrap(), x, "round trip of {x}");
        }
    }

    #[test]
    fn json_reals_are_numbers_or_null() {
        assert_eq!(json_real(1.5), json!(1.5));
        assert_eq!(json_real(f64::INFINITY), Value::Null);
        assert_eq!(json_real(f64::NAN), Value::Null);
    }
}
