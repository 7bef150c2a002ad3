//! Kubernetes RBAC objects in manifest files: finding them, and judging them.
//!
//! - [`read`]: one file's roles and bindings, each with its document and line, and a reason
//!   for everything skipped (Helm templates, Kustomize patches, files that are not Kubernetes
//!   manifests or do not parse, binary and huge files). Reading never fails.
//! - [`set`]: the objects of a whole tree by identity (kind, namespace, name), so moving or
//!   splitting files changes nothing.
//! - [`eval`]: the roles that grant pod write and the bindings of such roles (`kubeward
//!   scan`), and the difference between two trees (`kubeward git`): introduced, widened,
//!   bound, aggregation label.

#![warn(missing_docs)]

pub mod eval;
pub mod read;
pub mod set;

pub use eval::{Aggregation, Change, ChangeKind, Evaluator, Finding};
pub use read::{
    is_manifest_path, read_file, Body, FileReading, Kind, ManifestObject, ObjId, Skip,
    MAX_FILE_BYTES,
};
pub use set::ManifestSet;
