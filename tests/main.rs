//! The one integration-test binary: shared helpers in `support`, one module per topic.

mod support;
