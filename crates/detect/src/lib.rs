//! kubeward's detections.
//!
//! - [`clusterrole_pod_write`]: the rule `clusterrole-pod-write`, built on the `rbac` crate's
//!   single definition of pod write.
//! - [`alert`]: the alert model.
//! - [`explain`]: the words and commands in an alert.
//! - [`suppress`]: built-in and user suppressions (YAML config).
//! - [`engine`]: per-chunk work and the in-order collector.
//! - [`change`] and [`state`]: stateful detection (`--state`): RBAC changes read on every
//!   core, applied in order to a persisted model by one tracker, and the rules that need it.

#![warn(missing_docs)]

pub mod alert;
pub mod change;
pub mod clusterrole_pod_write;
pub mod engine;
pub mod explain;
pub mod state;
pub mod suppress;

pub use alert::{Alert, Severity};
pub use engine::{ChunkReport, Collector, Engine, EngineOptions, Output, Tally, Unwrapped};
pub use state::{Reported, StateError, Tracker, TrackerStats};
pub use suppress::{Config, ConfigError, Suppressions};
