//! im2col: the patches a convolution sees, as rows of a matrix.
//!
//! Built from `pad` + strided `unfold` windows + `permute` + `reshape`; burn's `unfold4d` is a
//! convolution with a one-hot kernel (cost O(C²k⁴) per position) and was 2.6× slower here.

use burn::tensor::backend::Backend;
use burn::tensor::ops::PadMode;
use burn::tensor::{Slice, Tensor};

/// The geometry of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zero padding before (top, left).
    pub padding_start: [usize; 2],
    /// Zero padding after (bottom, right).
    pub padding_end: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvGeometry {
    /// Output spatial size for an input of `[h, w]`.
    pub fn output_size(&self, input: [usize; 2]) -> [usize; 2] {
        let mut out = [0; 2];
        for i in 0..2 {
            let padded = input[i] + self.padding_start[i] + self.padding_end[i];
            let reach = self.dilation[i] * (self.kernel[i] - 1) + 1;
            out[i] = if padded >= reach {
                (padded - reach) / self.stride[i] + 1
            } else {
                0
            };
        }
        out
    }
}

/// `[N, C, H, W]` → `[N, Ho·Wo, C·kh·kw]`, features ordered (channel, row, column) like the
/// flattened weight `[C_out, C_in/groups, kh, kw]`.
pub(crate) fn im2col<B: Backend>(x: Tensor<B, 4>, geo: &ConvGeometry) -> Tensor<B, 3> {
    let [n, c, _, _] = x.dims();
    let [ph0, pw0] = geo.padding_start;
    let [ph1, pw1] = geo.padding_end;
    let x = if ph0 + ph1 + pw0 + pw1 > 0 {
        x.pad((pw0, pw1, ph0, ph1), PadMode::Constant(0.0))
    } else {
        x
    };
    let [kh, kw] = geo.kernel;
    let [dh, dw] = geo.dilation;
    let reach = [dh * (kh - 1) + 1, dw * (kw - 1) + 1];
    let windows: Tensor<B, 5> = x.unfold(2, reach[0], geo.stride[0]);
    let windows: Tensor<B, 6> = windows.unfold(3, reach[1], geo.stride[1]);
    let windows = if dh > 1 || dw > 1 {
        let full = Slice::new(0, None, 1);
        windows.slice([
            full,
            full,
            full,
            full,
            Slice::new(0, None, dh as isize),
            Slice::new(0, None, dw as isize),
        ])
    } else {
        windows
    };
    let [_, _, ho, wo, _, _] = windows.dims();
    windows
        .permute([0, 2, 3, 1, 4, 5])
        .reshape([n, ho * wo, c * kh * kw])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::PaddedConvOptions;
    use burn::tensor::{Distribution, TensorData};

    /// im2col · flattened weight must equal burn's own convolution.
    fn check(geo: ConvGeometry, input: [usize; 4], out_channels: usize) {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::random(input, Distribution::Normal(0.0, 1.0), &device);
        let cg = input[1] / geo.groups;
        let w = Tensor::<Flex, 4>::random(
            [out_channels, cg, geo.kernel[0], geo.kernel[1]],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let options = PaddedConvOptions::asymmetric(
            geo.stride,
            geo.padding_start,
            geo.padding_end,
            geo.dilation,
            geo.groups,
        );
        let expected = conv2d(x.clone(), w.clone(), None, options);
        let cols = im2col(x, &geo); // [N, T, C·k·k]
        let [n, t, _] = cols.dims();
        let d = cg * geo.kernel[0] * geo.kernel[1];
        let og = out_channels / geo.groups;
        let cols = cols
            .reshape([n, t, geo.groups, d])
            .permute([2, 0, 1, 3])
            .reshape([geo.groups, n * t, d]);
        let wf = w.reshape([geo.groups, og, d]).swap_dims(1, 2); // [G, d, og]
        let out = cols.matmul(wf); // [G, N·T, og]
        let [ho, wo] = geo.output_size([input[2], input[3]]);
        let got = out
            .reshape([geo.groups, n, ho, wo, og])
            .permute([1, 0, 4, 2, 3])
            .reshape([n, out_channels, ho, wo]);
        assert_eq!(got.dims(), expected.dims());
        let diff: f32 = (got - expected).abs().max().into_scalar();
        assert!(diff < 1e-4, "{geo:?}: max difference {diff}");
        let _ = TensorData::new(vec![0.0f32], [1]);
    }

    #[test]
    fn im2col_reproduces_convolution_for_every_option() {
        let base = ConvGeometry {
            kernel: [3, 3],
            stride: [1, 1],
            padding_start: [0, 0],
            padding_end: [0, 0],
            dilation: [1, 1],
            groups: 1,
        };
        check(base, [2, 3, 7, 6], 4);
        check(
            ConvGeometry {
                stride: [2, 1],
                ..base
            },
            [2, 3, 9, 8],
            5,
        );
        check(
            ConvGeometry {
                padding_start: [1, 2],
                padding_end: [1, 0],
                ..base
            },
            [1, 2, 5, 5],
            3,
        );
        check(
            ConvGeometry {
                dilation: [2, 3],
                ..base
            },
            [2, 2, 9, 10],
            2,
        );
        check(ConvGeometry { groups: 2, ..base }, [2, 4, 6, 6], 6);
        check(
            ConvGeometry {
                kernel: [8, 8],
                stride: [2, 2],
                padding_start: [3, 3],
                padding_end: [3, 3],
                ..base
            },
            [2, 1, 28, 28],
            4,
        );
        check(
            ConvGeometry {
                kernel: [1, 1],
                stride: [2, 2],
                ..base
            },
            [2, 3, 6, 6],
            2,
        );
    }
}
