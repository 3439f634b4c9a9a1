//! The one integration-test binary: shared helpers in `support`, one module per topic.

mod architecture;
mod blob_pipeline;
mod blob_sink;
mod cli;
mod docs;
mod fake_graph;
mod graph;
mod handler;
mod infra;
mod infra_schema;
mod pipeline;
mod powerquery;
mod records;
mod support;
