//! What a recorded layer is, for the fast path's checks and their error messages.

use super::LayerData;
use burn::tensor::backend::Backend;

impl<B: Backend> LayerData<B> {
    /// The DP-aware layer type that recorded this entry.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Linear { .. } => "Linear",
            Self::Conv { .. } => "Conv2d",
            Self::WsConv { .. } => "WsConv2d",
            Self::Affine { .. } => "GroupNorm",
            Self::Gain { .. } => "ScalarGain",
        }
    }

    /// The shape of the input as the layer got it (for GroupNorm and ScalarGain, the
    /// recorded `[N, C, S]` / `[N, 1, F]` view of it: the leading dimension is the same).
    pub(crate) fn input_dims(&self) -> Vec<usize> {
        match self {
            Self::Linear { shape, .. } => shape.clone(),
            Self::Conv { input, .. } | Self::WsConv { input, .. } => input.dims().to_vec(),
            Self::Affine { normalized, .. } => normalized.dims().to_vec(),
            Self::Gain { input, .. } => input.dims().to_vec(),
        }
    }

    /// The leading dimension of the recorded input: the rows the per-example computation
    /// reads as examples × views.
    pub(crate) fn rows(&self) -> usize {
        match self {
            Self::Linear { input, .. }
            | Self::Affine {
                normalized: input, ..
            } => input.dims()[0],
            Self::Conv { input, .. } | Self::WsConv { input, .. } => input.dims()[0],
            Self::Gain { input, .. } => input.dims()[0],
        }
    }
}
