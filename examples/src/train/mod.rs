//! Private training end to end: settings, checks before anything is charged, the loop,
//! evaluation, checkpoints and reports.

mod architecture;
mod audit;
mod classifier;
mod config;
mod devices;
mod eval;
mod fit;
mod node;
mod parallel;
mod preflight;
mod progress;
mod record;
mod run;
mod run_dir;
mod session;
mod step;

pub use architecture::{model_channels, ModelChoice};
pub use audit::{AuditConfig, CanaryAudit};
pub use classifier::Classifier;
pub use config::{
    Finetune, Length, NfNetVariant, Overrides, RunConfig, CIFAR_MEAN_STD, IMAGENET_MEAN_STD,
};
pub use devices::{DeviceList, Devices};
pub use eval::{evaluate, tensors as eval_tensors};
pub use node::{follow_node, NetworkOptions, CONNECT_FOR};
pub use progress::evaluation_line;
pub use record::{digest, parse_run_record, DataFingerprint, RunRecord};
pub use run::{
    input_shape, pretrained_nfnet, read_run_record, train, DeviceChoice, Outcome, TrainOptions,
    SEEDED_WARNING,
};
pub use run_dir::RunDir;
