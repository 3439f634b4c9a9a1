//! `check`: the settings, a Graph token, a one-row read of the sign-in log and a write probe of
//! the destination, each with a plain-words explanation when it fails.

use super::{load_settings, CommandError};
use crate::cli::CommonArgs;
use crate::credential::TokenProvider;
use crate::graph::client::GraphClient;

pub(super) async fn check(args: CommonArgs) -> Result<(), CommandError> {
    let settings = load_settings(&args, None)?;
    println!("Settings:");
    for (name, value) in settings.describe() {
        println!("  {name} = {value}");
    }
    let mut failures = 0;
    let mut step = |name: &str, result: Result<String, String>| match result {
        Ok(detail) => println!("[ ok ] {name}: {detail}"),
        Err(explanation) => {
            failures += 1;
            println!("[FAIL] {name}: {explanation}");
        }
    };

    let tokens = match TokenProvider::new(&settings.graph.auth) {
        Ok(tokens) => tokens,
        Err(e) => {
            step("credential", Err(e.to_string()));
            return Err(CommandError::Failed("check failed".into()));
        }
    };
    step(
        "Graph token",
        tokens
            .token()
            .await
            .map(|_| "acquired".to_string())
            .map_err(|e| e.to_string()),
    );
    match GraphClient::new(&settings.graph, tokens.clone()) {
        Ok(graph) => step(
            "Graph sign-in logs",
            graph
                .probe()
                .await
                .map(|rows| format!("readable ({rows} row returned for $top=1)"))
                .map_err(|e| e.to_string()),
        ),
        Err(e) => step("Graph sign-in logs", Err(e.to_string())),
    }
    match crate::sink::open(&settings.destination, settings.preset, &tokens) {
        Ok(sink) => step(
            "destination",
            sink.probe()
                .await
                .map(|()| format!("{} is writable", sink.describe()))
                .map_err(|e| e.to_string()),
        ),
        Err(e) => step("destination", Err(e.to_string())),
    }
    if failures > 0 {
        return Err(CommandError::Failed(format!(
            "{failures} check(s) failed; see above"
        )));
    }
    Ok(())
}
