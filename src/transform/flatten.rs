//! Flattening: one sign-in's nested JSON → one row of CSV cells, for a chosen list of columns.

/// The chosen, ordered output columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns(Vec<String>);
