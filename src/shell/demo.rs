//! `demo`: the real pipeline against the simulated tenant (crate `fake-tenant`) on loopback,
//! exported into a local folder. Builds without the `demo` feature say so instead.

#[cfg(feature = "demo")]
use std::sync::Arc;

#[cfg(feature = "demo")]
use time::OffsetDateTime;

use super::CommandError;
use crate::cli::DemoArgs;
#[cfg(feature = "demo")]
use {
    super::{cancel_on_ctrl_c, holder, report, Progress},
    crate::config::{Overrides, Settings},
    crate::credential::TokenProvider,
    crate::graph::client::GraphClient,
    crate::run::{self, Deps, Observer, RunRequest},
    crate::sink::local::LocalSink,
};

/// A build without the `demo` feature (the Functions package) has no simulated tenant.
#[cfg(not(feature = "demo"))]
pub(super) async fn demo(_args: DemoArgs) -> Result<(), CommandError> {
    Err(CommandError::Config(
        "this build of signin-export has no demo: it was built without the `demo` feature \
         (the Azure Functions package leaves the simulated tenant out). Build the CLI with \
         default features (`cargo install --path .` or `cargo run -- demo`) to try it."
            .into(),
    ))
}

#[cfg(feature = "demo")]
pub(super) async fn demo(args: DemoArgs) -> Result<(), CommandError> {
    use fake_tenant::fake_graph::FakeGraph;
    use fake_tenant::tenant::{generate, TenantSpec};

    let now = OffsetDateTime::now_utc();
    // Whole hours: repeating the demo within the hour serves the same tenant, so the second run
    // shows the exactly-once behaviour (nothing new to write).
    let end = now
        .replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(now);
    let signins = generate(&TenantSpec {
        users: args.users,
        days: args.days,
        seed: args.seed,
        end,
    });
    let total = signins.len();
    let fake = FakeGraph::new(signins);
    let addr = fake
        .spawn()
        .await
        .map_err(|e| CommandError::Failed(format!("could not start the simulated tenant: {e}")))?;

    // The demo reads nothing from the environment: it must behave the same on every machine.
    let mut overrides = Overrides::default();
    overrides
        .set("SIGNINS_GRAPH_ENDPOINT", Some(format!("http://{addr}")))
        .set("SIGNINS_GRAPH_VERSION", Some("beta".into()))
        .set(
            "SIGNINS_EVENT_TYPES",
            Some("interactiveUser,nonInteractiveUser".into()),
        )
        .set("SIGNINS_PRESET", Some(args.preset.clone()))
        .set("SIGNINS_DESTINATION", Some(args.out.display().to_string()))
        .set("SIGNINS_LOOKBACK", Some(format!("{}d", args.days)))
        // The simulated tenant never updates a sign-in after publishing it.
        .set("SIGNINS_SETTLE", Some("0s".into()))
        // Nor does it throttle: no need to pace the demo to Graph's budget.
        .set("SIGNINS_GRAPH_RATE", Some("1000/1s".into()))
        .set("SIGNINS_AUTH", Some("managed-identity".into()));
    let settings = Settings::load(&overrides, |_| None)?;
    let tokens = TokenProvider::fixed(crate::config::Secret::new(
        fake.mint_token("https://graph.microsoft.com"),
    ));
    let graph = GraphClient::new(&settings.graph, tokens)
        .map_err(|e| CommandError::Failed(e.to_string()))?;
    let base = args.out.join(settings.preset.as_str());
    let progress = Progress::new();
    let deps = Deps {
        graph,
        sink: Arc::new(LocalSink::new(&base)),
        observer: progress.clone().map(|p| p as Arc<dyn Observer>),
        clock: run::Clock::System,
        archive: None,
    };
    eprintln!(
        "Simulated tenant: {} users, {total} sign-ins over {} days, Graph on http://{addr}",
        args.users, args.days
    );
    let request = RunRequest {
        holder: holder("signin-export demo"),
        ..RunRequest::default()
    };
    let started = std::time::Instant::now();
    let outcome = run::run_with(&settings, &deps, request, cancel_on_ctrl_c()).await;
    if let Some(progress) = progress {
        progress.finish();
    }
    report(outcome, None, started)?;
    eprintln!(
        "Report: {}\nDaily files: {}\nOpen latest.csv in Power BI Desktop (Get data → Text/CSV) or Excel.",
        base.join(crate::sink::LATEST_FILE).display(),
        base.join("daily").display()
    );
    Ok(())
}
