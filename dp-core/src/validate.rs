//! Refuses models whose layers mix examples.

use crate::error::{DpError, OffendingLayer, Result};
use burn::module::{Module, ModuleVisitor};
use burn::tensor::backend::Backend;

/// Module type names that mix examples, with the reason.
const CROSS_EXAMPLE: &[(&str, &str)] = &[(
    "BatchNorm",
    "normalizes with statistics of the whole batch, so each example's output depends on the \
     other examples: per-example gradients are undefined and clipping no longer bounds one \
     example's influence (use GroupNorm)",
)];

#[derive(Default)]
struct Finder {
    path: Vec<String>,
    found: Vec<OffendingLayer>,
}

impl<B: Backend> ModuleVisitor<B> for Finder {
    /// burn calls this with the field being entered and the type of the struct that holds
    /// it, so a cross-example module shows up when its own fields are entered.
    fn enter_module(&mut self, name: &str, container: &str) {
        let type_name = container
            .strip_prefix("Struct:")
            .or_else(|| container.strip_prefix("Enum:"));
        if let Some(type_name) = type_name {
            if let Some((kind, reason)) = CROSS_EXAMPLE.iter().find(|(k, _)| type_name.contains(k))
            {
                let path = self.path.join(".");
                if self.found.last().is_none_or(|l| l.path != path) {
                    self.found.push(OffendingLayer {
                        path,
                        kind: (*kind).to_string(),
                        reason: (*reason).to_string(),
                    });
                }
            }
        }
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
}

/// Checks that no layer of `model` mixes examples; lists every offending layer at once.
///
/// ```
/// use burn::backend::Flex;
/// use dp_core::layers::GroupNormConfig;
/// let norm = GroupNormConfig::new(2, 4).init::<Flex>(&Default::default())?;
/// dp_core::validate_model(&norm)?;
/// # Ok::<(), dp_core::DpError>(())
/// ```
pub fn validate_model<B: Backend, M: Module<B>>(model: &M) -> Result<()> {
    let mut finder = Finder::default();
    model.visit(&mut finder);
    if finder.found.is_empty() {
        Ok(())
    } else {
        Err(DpError::CrossExampleLayers(finder.found))
    }
}
