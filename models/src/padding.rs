//! TensorFlow "SAME" padding, computed statically for a known input size.

/// (before, after) zero padding so that a convolution of `kernel` with `stride` and
/// `dilation` over `input` positions gives ⌈input/stride⌉ outputs; the odd extra goes after,
/// as in TensorFlow and timm's `pad_same`.
pub fn same_padding(input: usize, kernel: usize, stride: usize, dilation: usize) -> (usize, usize) {
    let output = input.div_ceil(stride);
    let needed = (output.saturating_sub(1)) * stride + (kernel - 1) * dilation + 1;
    let total = needed.saturating_sub(input);
    (total / 2, total - total / 2)
}

/// Output size of a SAME convolution.
pub fn same_output(input: usize, stride: usize) -> usize {
    input.div_ceil(stride)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        assert_eq!(same_padding(32, 3, 1, 1), (1, 1));
        assert_eq!(same_padding(32, 3, 2, 1), (0, 1));
        assert_eq!(same_padding(31, 3, 2, 1), (1, 1));
        assert_eq!(same_padding(32, 1, 2, 1), (0, 0));
        assert_eq!(same_padding(224, 3, 2, 1), (0, 1));
        assert_eq!(same_padding(10, 3, 1, 2), (2, 2));
    }
}
