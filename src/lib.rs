//! signin-export: Microsoft Graph sign-in logs → filtered, flattened, Power BI-ready CSV in a
//! local folder or Azure Blob Storage.
//!
//! The crate is one pipeline, `credential → graph source → transform → CSV → sink`, orchestrated
//! by [`run`], with two thin shells around it (the CLI in [`shell`] and the Azure Functions custom
//! handler in [`handler`]). Dependencies point one way; `docs/ARCHITECTURE.md` has the picture and
//! the rule, and `tests/architecture.rs` keeps it true.
//!
//! | stage | module |
//! |---|---|
//! | settings, validated once | [`config`] |
//! | tokens: managed identity, client secret, certificate | [`credential`] |
//! | Graph source: query, pager, throttling, row stream | [`graph`] |
//! | diagnostic-settings source: the Entra export in Storage, read line by line | [`diagnostic`] |
//! | filters (presets) and flattening | [`transform`] |
//! | CSV encoding | [`csv`] |
//! | the map-ready summaries (places, devices) from the CSV rows | [`summary`] |
//! | sinks: local folder, Blob Storage | [`sink`] |
//! | watermark, overlap ids, commit protocol, run summary | [`state`] |
//! | the run: plan, slices, latest.csv and the summaries, one report of its outcome | [`run`] |
//! | what each CLI command does | [`shell`] (arguments in [`cli`]) |
//! | the Functions custom handler | [`handler`] |
//!
//! The simulated tenant and the fake Graph / Entra / managed-identity service live in the
//! workspace crate `fake-tenant` (dev-dependency, and the CLI's `demo` feature).

pub mod cli;
pub mod config;
pub mod credential;
pub mod csv;
pub mod diagnostic;
pub mod graph;
pub mod handler;
pub mod run;
pub mod shell;
pub mod sink;
pub mod state;
pub mod summary;
pub mod telemetry;
pub mod transform;
