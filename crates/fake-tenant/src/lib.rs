//! The simulated tenant and the strict fake Graph / Entra / managed-identity service that serves
//! it: the `demo` command and every integration test run the real pipeline against these.

pub mod diagnostic;
pub mod entra;
pub mod fake_graph;
pub mod odata;
pub mod schema;
pub mod tenant;

pub use fake_graph::{
    FakeGraph, Faults, GraphDenial, RecordedRequest, RetryAfter, GRAPH_RESOURCE, STORAGE_RESOURCE,
};
pub use odata::ApiVersion;
pub use tenant::{generate, signins, TenantSpec};
