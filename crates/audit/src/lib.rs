//! The Kubernetes audit log as kubeward reads it.
//!
//! - [`envelope`]: managed-cluster exports (EKS CloudWatch Logs, GKE Cloud Audit Logs, AKS
//!   diagnostic records) taken apart into native Events.
//! - [`event`]: the `audit.k8s.io` Event, borrowed from the input bytes, and record parsing
//!   (Event or EventList per record).
//! - [`framing`]: cutting inputs into chunks of whole records (JSON lines, or JSON documents
//!   spread over lines), with a cap on record size.
//! - [`input`]: files, standard input, gzip, directories, windowed memory maps.
//! - [`needle`]: finding the prefilter's needle and counting lines in one pass.
//! - [`head`]: the validating scan that keeps only a record's head (`--no-prefilter`).
//! - [`scan`]: the prefiltering line visitor and the parallel, order-keeping driver.
//! - [`time`]: RFC 3339 times, normalized so that text order is time order.

#![warn(missing_docs)]

pub mod envelope;
pub mod event;
pub mod framing;
pub mod head;
pub mod input;
pub mod needle;
pub mod scan;
pub mod time;

pub use envelope::{Cloud, HeadShape, InputFormat, Origin, Piece, Unwrapper};
pub use event::{
    parse_head, parse_record, Event, EventHead, ObjectRef, Record, RecordError, ResponseStatus,
    Text, UserInfo,
};
pub use framing::{Chunk, ChunkKind, Framing};
pub use input::{
    expand, fingerprint, fingerprint_matches, open, open_at, InputError, InputSpec, Opened,
    ReadOptions,
};
pub use needle::LineNeedle;
pub use scan::{visit_lines, Driver, LineIssue, LineStats};
