//! The Azure Functions custom handler (`signin-export serve`): the host's wire format in
//! [`protocol`], the routes in [`routes`], the refresh parameters in [`params`], the pipeline seam
//! in [`runner`], and the process lifecycle (bind first, SIGTERM) in [`serve`](mod@serve).

pub mod params;
pub mod protocol;
pub mod routes;
pub mod runner;
pub mod serve;

pub use routes::{app, AppState};
pub use runner::{ExportRunner, Runner};
pub use serve::{serve, serve_on, ServeError};
