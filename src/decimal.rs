//! Decimal digits of an integer without the formatting machinery, for the
//! texts written on every request (store keys, a code format's tag).

/// The decimal digits of a `u64` (at most 20), as [`core::fmt::Display`]
/// writes them.
pub(crate) struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(n: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = n;
        loop {
            start = start.saturating_sub(1);
            if let Some(slot) = digits.get_mut(start) {
                // `rest % 10` is below 10.
                *slot = b'0'.saturating_add(u8::try_from(rest % 10).unwrap_or(0));
            }
            rest /= 10;
            if rest == 0 || start == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or_default()
    }

    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_display_writes() {
        let mut n = 1u64;
        for _ in 0..64 {
            for m in [n.saturating_sub(1), n, n.saturating_add(1)] {
                assert_eq!(Decimal::new(m).as_str(), m.to_string());
            }
            n = n.saturating_mul(3);
        }
        for m in [0, 9, 10, 99, 100, u64::MAX] {
            assert_eq!(Decimal::new(m).as_str(), m.to_string());
        }
    }
}
