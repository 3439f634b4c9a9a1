//! Transforms between the Graph source and the CSV encoder: filters (presets) and flattening.

pub mod filter;
pub mod flatten;
