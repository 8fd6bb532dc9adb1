//! Errors of the arithmetic layer.

/// What can go wrong in field arithmetic, encoding and sharing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// A real value is NaN or infinite and cannot be encoded.
    #[error("cannot encode a non-finite value")]
    NonFinite,
    /// A value does not fit the fixed-point range.
    #[error("value needs {bits} bits at this scale, more than the {maximum} available")]
    OutOfRange {
        /// Bits the value needs.
        bits: u32,
        /// Bits available.
        maximum: u32,
    },
    /// Fixed-point parameters that cannot work with this field.
    #[error("invalid fixed-point parameters: f = {f}, f_w = {f_w}, bound {bound_bits} bits ({reason})")]
    InvalidFixedPoint {
        /// Activation fractional bits.
        f: u32,
        /// Weight fractional bits.
        f_w: u32,
        /// Activation bound in bits, at product scale.
        bound_bits: u32,
        /// Which rule is broken.
        reason: &'static str,
    },
    /// Shares of different lengths, or no shares at all.
    #[error("shares do not match: expected {expected} elements, got {actual}")]
    ShareMismatch {
        /// Elements expected.
        expected: usize,
        /// Elements found.
        actual: usize,
    },
    /// Fewer than two parties for a sharing.
    #[error("a sharing needs at least 2 parties, got {parties}")]
    TooFewParties {
        /// Parties requested.
        parties: usize,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, FieldError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_pinned() {
        let e = FieldError::OutOfRange { bits: 70, maximum: 60 };
        assert_eq!(e.to_string(), "value needs 70 bits at this scale, more than the 60 available");
    }
}
