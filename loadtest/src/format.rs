//! Numbers as the reports, the chart and the load labels print them.

/// A whole number without decimals, anything else with at most three: `100`, `2.5`.
pub(crate) fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        three_decimals(v)
    }
}

/// At most three decimals, without trailing zeros: `2.5`, `0.125`, `3`.
pub(crate) fn three_decimals(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats() {
        assert_eq!(trim_float(100.0), "100");
        assert_eq!(trim_float(2.5), "2.5");
        assert_eq!(three_decimals(0.1254), "0.125");
        assert_eq!(three_decimals(3.0001), "3");
    }
}
