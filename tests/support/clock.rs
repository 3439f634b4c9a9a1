//! The instant tests run at. Tests never read the wall clock for their data: tenants end at
//! [`now`], in-process runs use a fixed [`Clock`] at that instant, and the binary under test
//! (a debug build) is given it in `SIGNINS_TEST_CLOCK`. `SIGNINS_TEST_NOW` (RFC 3339) pins
//! another instant: `scripts/test.sh` runs the date-sensitive tests again just before and just
//! after a UTC midnight.

use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::OffsetDateTime;

use signin_export::run::Clock;

/// The default instant: mid-morning, off the hour, so no slice boundary falls on it.
pub const DEFAULT_NOW: OffsetDateTime = datetime!(2026-11-30 10:17:42 UTC);

/// The instant the tests run at (whole seconds).
pub fn now() -> OffsetDateTime {
    match std::env::var("SIGNINS_TEST_NOW") {
        Ok(text) => OffsetDateTime::parse(text.trim(), &Rfc3339)
            .unwrap_or_else(|e| panic!("SIGNINS_TEST_NOW={text:?} is not RFC 3339: {e}")),
        Err(_) => DEFAULT_NOW,
    }
    .replace_nanosecond(0)
    .expect("whole seconds")
}

/// The run clock of in-process runs.
pub fn clock() -> Clock {
    Clock::Fixed(now())
}

/// The environment that pins the binary under test to [`now`].
pub fn env() -> (String, String) {
    (
        "SIGNINS_TEST_CLOCK".to_string(),
        now().format(&Rfc3339).expect("RFC 3339"),
    )
}
