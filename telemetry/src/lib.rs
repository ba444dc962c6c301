//! The node's meters: lock-free [`Counter`]s, [`Gauge`]s, [`LabeledCounter`]s and
//! [`Histogram`]s that the broker and the bridge update on their hot paths, and
//! [`Exposition`], which renders them in the Prometheus text format (version 0.0.4).
//!
//! Every node owns its meters (no global registry), so several nodes in one process (the
//! end-to-end tests) never mix their figures. Updates are single relaxed atomic operations.
//!
//! Layout:
//! - `meters.rs`: [`Counter`], [`Gauge`], [`LabeledCounter`], [`Histogram`] and its
//!   [`HistogramSnapshot`] (with quantile estimates for the dashboard)
//! - `exposition.rs`: [`Exposition`], the text-format writer

mod exposition;
mod meters;

pub use exposition::Exposition;
pub use meters::{Counter, Gauge, Histogram, HistogramSnapshot, LabeledCounter, LATENCY_BUCKETS};
