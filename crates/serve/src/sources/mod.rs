//! Where audit events come from: the webhook receiver and followed log files.

pub mod follow;
pub mod webhook;
