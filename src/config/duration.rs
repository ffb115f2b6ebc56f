//! Durations as Istio accepts them: protobuf JSON (`"10s"`, `"0.25s"`) and Go's `time.ParseDuration`
//! form (`"250ms"`, `"1m30s"`, `"10m"`).

use std::time::Duration;

/// Parses `"10s"`, `"250ms"`, `"1.5s"`, `"1m30s"`, `"2h"`. Negative or unit-less values are errors.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?} has no unit (use e.g. \"10s\" or \"250ms\")"))?;
        if number_len == 0 {
            return Err(format!(
                "{text:?} is not a duration (use e.g. \"10s\" or \"250ms\")"
            ));
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "{text:?} has an unknown unit {unit:?} (ns, us, ms, s, m, h)"
                ))
            }
        };
        total_nanos +=
            scaled(number, unit_nanos).ok_or_else(|| format!("{text:?} is not a duration"))?;
        rest = next;
    }
    u64::try_from(total_nanos / 1_000_000_000)
        .map(|secs| Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
        .map_err(|_| format!("{text:?} is too long"))
}

fn scaled(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(unit_nanos)?;
    let mut scale = unit_nanos;
    for digit in frac.chars().take(18) {
        scale /= 10;
        value = value.checked_add(u128::from(digit.to_digit(10)?) * scale)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_and_go_forms_parse() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("250ms", Duration::from_millis(250)),
            ("0.5s", Duration::from_millis(500)),
            ("1.25s", Duration::from_millis(1250)),
            ("1m30s", Duration::from_secs(90)),
            ("10m", Duration::from_secs(600)),
            ("2h", Duration::from_secs(7200)),
            ("0", Duration::ZERO),
            ("1500us", Duration::from_micros(1500)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_errors() {
        for text in ["", "10", "s", "-1s", "1x", "1..5s", "abc", "1s2"] {
            assert!(parse_duration(text).is_err(), "{text} should be rejected");
        }
    }
}
