//! signin-export: Microsoft Graph sign-in logs → filtered, flattened, Power BI-ready CSV in a
//! local folder or Azure Blob Storage.
//!
//! The crate is one pipeline, `source → transform → encode → sink`, with two thin shells around
//! it (the CLI in [`cli`] and the Azure Functions custom handler in [`handler`]):
//!
//! | stage | module |
//! |---|---|
//! | settings, validated once | [`config`] |
//! | Graph source: auth, paging, throttling | [`graph`] |
//! | filters (presets) and flattening | [`transform`] |
//! | CSV encoding | [`csv`] |
//! | sinks: local folder, Blob Storage | [`sink`] |
//! | watermark, overlap ids, commit protocol | [`state`] |
//! | the run itself | [`pipeline`] |
//! | what each CLI command does | [`commands`] |
//! | simulated tenant (demo and tests) | [`demo`] |

pub mod cli;
pub mod commands;
pub mod config;
pub mod credential;
pub mod csv;
pub mod graph;
pub mod handler;
pub mod run;
pub mod sink;
pub mod state;
pub mod telemetry;
pub mod transform;
