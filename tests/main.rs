//! The one integration-test binary: shared helpers in `support`, one module per topic.

mod architecture;
mod archive;
mod blob_pipeline;
mod blob_sink;
mod cli;
mod diagnostic;
mod docs;
mod fake_graph;
mod graph;
mod handler;
mod infra;
mod infra_schema;
mod pipeline;
mod powerbi;
mod powerquery;
mod progress;
mod records;
mod summaries;
mod support;
