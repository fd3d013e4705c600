//! Order statistics over repeated runs.

/// The median of `xs` (mean of the two middle values for an even count);
/// `None` when empty. NaNs are ignored.
pub fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Smallest and largest of `xs` (NaNs ignored).
pub fn range(xs: &[f64]) -> Option<(f64, f64)> {
    let v = xs.iter().copied().filter(|x| !x.is_nan());
    v.fold(None, |acc, x| match acc {
        None => Some((x, x)),
        Some((lo, hi)) => Some((lo.min(x), hi.max(x))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn range_ignores_nan() {
        assert_eq!(range(&[2.0, f64::NAN, -1.0, 7.5]), Some((-1.0, 7.5)));
        assert_eq!(range(&[]), None);
    }
}
