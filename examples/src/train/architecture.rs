//! Architectures by name on the command line (`--model`), for data no preset was made for,
//! and what input each takes.

use super::config::NfNetVariant;
use crate::presets::ModelKind;
use dp_models::ScatterHead;

/// An architecture picked on the command line (`--model`), for data no preset was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelChoice {
    /// The network.
    pub kind: ModelKind,
    /// The pretrained NFNet's variant (`nfnet-f0` …).
    pub nfnet_variant: Option<NfNetVariant>,
}

impl std::str::FromStr for ModelChoice {
    type Err = String;

    /// `cnn`, `wrnD-W` (e.g. `wrn16-4`, `wrn40-4`), `nfnet-f0` … `nfnet-f3`, `nfnet-tiny`,
    /// or `scatternet-linear`, `scatternet-cnn` (28×28 grayscale), `scatternet-linear-rgb`,
    /// `scatternet-cnn-rgb` (32×32 colour).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "unknown model {s:?}: choose cnn, wrn16-4, wrn40-4 (any wrnDEPTH-WIDTH), \
                 nfnet-f0 … nfnet-f3 (pretrained, with --checkpoint), scatternet-linear, \
                 scatternet-cnn (28×28 grayscale), scatternet-linear-rgb or scatternet-cnn-rgb \
                 (32×32 colour)"
            )
        };
        let plain = |kind| ModelChoice {
            kind,
            nfnet_variant: None,
        };
        if s == "cnn" {
            return Ok(plain(ModelKind::TanhCnn));
        }
        let scatter = |head, channels| plain(ModelKind::ScatterNet { head, channels });
        match s {
            "scatternet-linear" => return Ok(scatter(ScatterHead::Linear, 1)),
            "scatternet-cnn" => return Ok(scatter(ScatterHead::CnnGray, 1)),
            "scatternet-linear-rgb" => return Ok(scatter(ScatterHead::Linear, 3)),
            "scatternet-cnn-rgb" => return Ok(scatter(ScatterHead::CnnColor, 3)),
            _ => {}
        }
        if let Some(rest) = s.strip_prefix("wrn") {
            let (depth, width) = rest.split_once('-').ok_or_else(bad)?;
            let (depth, width): (usize, usize) = (
                depth.parse().map_err(|_| bad())?,
                width.parse().map_err(|_| bad())?,
            );
            if depth < 10 || (depth - 4) % 6 != 0 || width == 0 {
                return Err(format!(
                    "{s}: a WideResNet's depth is 6n + 4 (10, 16, 22, 28, 40, …) and its width \
                     at least 1"
                ));
            }
            return Ok(plain(ModelKind::WideResNet { depth, width }));
        }
        let variant = match s {
            "nfnet" | "nfnet-f0" => NfNetVariant::F0,
            "nfnet-f1" => NfNetVariant::F1,
            "nfnet-f2" => NfNetVariant::F2,
            "nfnet-f3" => NfNetVariant::F3,
            "nfnet-tiny" => NfNetVariant::Tiny,
            _ => return Err(bad()),
        };
        Ok(ModelChoice {
            kind: ModelKind::NfNet,
            nfnet_variant: Some(variant),
        })
    }
}

impl ModelChoice {
    /// The preset whose recipe (batch, learning rate, C, K, ε, …) a run of this model on
    /// other data starts from.
    pub fn recipe(self) -> &'static str {
        match self.kind {
            ModelKind::TanhCnn => "fmnist-cnn-eps3",
            ModelKind::WideResNet { .. } => "cifar10-wrn16-4-eps8",
            ModelKind::NfNet => "nfnet-finetune",
            ModelKind::ScatterNet { head, channels } => match (head, channels) {
                (ScatterHead::Linear, 1) => "fmnist-scatternet-linear-eps3",
                (ScatterHead::Linear, _) => "cifar10-scatternet-linear-eps3",
                (ScatterHead::CnnColor, _) => "cifar10-scatternet-cnn-eps3",
                (ScatterHead::CnnGray, _) => "fmnist-scatternet-cnn-eps3",
            },
        }
    }
}

/// The channels a model takes.
pub fn model_channels(model: ModelKind) -> usize {
    match model {
        ModelKind::TanhCnn => 1,
        ModelKind::WideResNet { .. } | ModelKind::NfNet => 3,
        ModelKind::ScatterNet { channels, .. } => channels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_to_architectures_and_bad_ones_say_what_is_accepted() {
        let parse = |s: &str| s.parse::<ModelChoice>();
        assert_eq!(parse("cnn").unwrap().kind, ModelKind::TanhCnn);
        assert_eq!(
            parse("wrn40-4").unwrap().kind,
            ModelKind::WideResNet {
                depth: 40,
                width: 4
            }
        );
        let f2 = parse("nfnet-f2").unwrap();
        assert_eq!(
            (f2.kind, f2.nfnet_variant),
            (ModelKind::NfNet, Some(NfNetVariant::F2))
        );
        assert_eq!(
            parse("nfnet").unwrap().nfnet_variant,
            Some(NfNetVariant::F0)
        );
        for bad in ["wrn16", "wrn16-x", "resnet50", "nfnet-f9", ""] {
            assert!(parse(bad).unwrap_err().contains("choose cnn"), "{bad}");
        }
        for bad in ["wrn12-4", "wrn4-2", "wrn16-0"] {
            assert!(parse(bad).unwrap_err().contains("6n + 4"), "{bad}");
        }
        assert_eq!(parse("wrn16-4").unwrap().recipe(), "cifar10-wrn16-4-eps8");
        assert_eq!(model_channels(ModelKind::TanhCnn), 1);
        let rgb = parse("scatternet-cnn-rgb").unwrap();
        assert_eq!(
            rgb.kind,
            ModelKind::ScatterNet {
                head: ScatterHead::CnnColor,
                channels: 3
            }
        );
        assert_eq!(model_channels(rgb.kind), 3);
        assert_eq!(rgb.recipe(), "cifar10-scatternet-cnn-eps3");
        assert_eq!(
            parse("scatternet-linear").unwrap().recipe(),
            "fmnist-scatternet-linear-eps3"
        );
        assert!(parse("scatternet")
            .unwrap_err()
            .contains("scatternet-linear"));
    }
}
