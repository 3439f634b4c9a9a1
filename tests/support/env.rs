//! Process-wide environment variables in tests: `std::env::set_var` affects every test thread, so
//! any test that sets or depends on variables (IDENTITY_ENDPOINT, SSL_CERT_FILE, ...) holds
//! [`ENV_LOCK`] while it does.

/// Serialises tests that read or write process environment variables.
pub static ENV_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
