//! Which sign-ins to keep: presets, their server-side OData clauses and the client-side match.

/// A named selection of sign-ins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    ExchangeActiveSync,
    Exchange,
    LegacyAuth,
    All,
}

impl Preset {
    /// The name used in settings and in the destination layout (`<prefix>/<preset>/`).
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::ExchangeActiveSync => "exchange-activesync",
            Preset::Exchange => "exchange",
            Preset::LegacyAuth => "legacy-auth",
            Preset::All => "all",
        }
    }
}
