//! Helpers shared by the integration tests: fakes, Azurite, the test CA, spawning the app.
#![allow(dead_code)]
