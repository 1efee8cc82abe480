//! Private training end to end: settings, the loop, evaluation, checkpoints and reports.

mod classifier;
mod config;
mod run;

pub use classifier::Classifier;
pub use config::{Finetune, Length, NfNetVariant, Overrides, RunConfig};
pub use run::{
    evaluate, pretrained_nfnet, read_run_record, train, DeviceChoice, Outcome, RunRecord,
    TrainOptions,
};
