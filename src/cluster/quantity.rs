//! Kubernetes resource quantities (`1500m`, `4`, `16Gi`, `16000000Ki`, `2e3`) as plain numbers.

/// CPU in millicores.
pub fn millis(text: &str) -> Option<u64> {
    match text.strip_suffix('m') {
        Some(millis) => millis.parse().ok(),
        None => text.parse::<f64>().ok().map(|cores| (cores * 1000.0).round() as u64),
    }
}

/// Memory or storage in bytes.
pub fn bytes(text: &str) -> Option<u64> {
    const SUFFIXES: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| (n * *factor as f64) as u64);
        }
    }
    text.parse::<f64>().ok().map(|n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(millis("1500m"), Some(1500));
        assert_eq!(millis("4"), Some(4000));
        assert_eq!(millis("0.5"), Some(500));
        assert_eq!(bytes("16Gi"), Some(16 << 30));
        assert_eq!(bytes("16000000Ki"), Some(16_000_000 << 10));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("2e3"), Some(2000));
        assert_eq!(bytes("lots"), None);
    }
}
