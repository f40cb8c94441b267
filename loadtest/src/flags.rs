//! Parsing the values of command-line flags: durations and `--shape`.

use std::time::Duration;

use crate::error::LoadError;

/// Parses a duration: `10s`, `500ms`, `1.5s`, `2m`, `250us`, `1h`; a bare number is
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, LoadError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || LoadError::Invalid(format!("bad duration '{s}' (examples: 10s, 500ms, 2m)"));
    let value: f64 = num.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad())
}

/// Parses `NAME=D1,D2,...` (the `--shape` flag).
pub fn parse_shape_arg(s: &str) -> Result<(String, Vec<i64>), LoadError> {
    let bad =
        |why: &str| LoadError::Invalid(format!("bad --shape '{s}': {why} (example: input=1,16)"));
    let (name, dims) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad("no input name"));
    }
    let dims = dims
        .split(',')
        .map(|d| match d.trim().parse::<i64>() {
            Ok(v) if v >= 0 => Ok(v),
            _ => Err(bad(&format!("'{}' is not a dimension", d.trim()))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), dims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_duration("1.5s").ok(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3").ok(), Some(Duration::from_secs(3)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn shapes() {
        assert_eq!(
            parse_shape_arg("input=1,16").ok(),
            Some(("input".to_string(), vec![1, 16]))
        );
        assert!(parse_shape_arg("input").is_err());
        assert!(parse_shape_arg("input=1,-1").is_err());
        assert!(parse_shape_arg("=1").is_err());
    }
}
