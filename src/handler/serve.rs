//! The `serve` process: listen on `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT` before anything
//! slow (the host polls `GET /` every 25 ms and gives up after 30 s), then load the settings, and
//! on SIGTERM/SIGINT stop taking work, cancel the running export and exit within seconds.

use std::future::{Future, IntoFuture};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::routes::{app, AppState};
use super::runner::ExportRunner;
use crate::config::Settings;
use crate::telemetry::{self, LogMode};

/// The port variable the host sets for a custom handler.
pub const PORT_VARIABLE: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";

/// How long running exports get to reach a safe point after SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);
/// How long open connections get to finish once the exports are done.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why `serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{PORT_VARIABLE} is not set: `serve` is started by the Azure Functions host (try `func start` in the app folder), or set {PORT_VARIABLE} to a free port to run it by hand")]
    PortMissing,
    #[error("{PORT_VARIABLE}='{0}' is not a port number (1-65535)")]
    PortInvalid(String),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("the HTTP server failed: {0}")]
    Server(std::io::Error),
}

/// Reads the port the host chose.
pub fn port_from(value: Option<String>) -> Result<u16, ServeError> {
    let value = value.ok_or(ServeError::PortMissing)?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ServeError::PortMissing);
    }
    match trimmed.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ServeError::PortInvalid(trimmed.chars().take(32).collect())),
    }
}

/// The entry point of `signin-export serve`. Installs the `serve` log format (one event per
/// line; warnings and errors on stderr, the rest on stdout), binds, then serves until SIGTERM.
pub async fn serve() -> Result<(), ServeError> {
    telemetry::init(LogMode::Serve);
    let port = port_from(std::env::var(PORT_VARIABLE).ok())?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|source| ServeError::Bind { port, source })?;
    tracing::info!(
        port,
        version = env!("CARGO_PKG_VERSION"),
        "signin-export custom handler listening"
    );

    let settings = Settings::from_env();
    match &settings {
        Ok(settings) => {
            for (name, value) in settings.describe() {
                tracing::info!("{name} = {value}");
            }
        }
        Err(error) => tracing::error!(
            "configuration error: {error}; every invocation will fail until the app setting is fixed"
        ),
    }
    let state = AppState::new(settings, Arc::new(ExportRunner));
    serve_on(listener, state, shutdown_signal()).await
}

/// Serves `state` on `listener` until `stop` resolves, then drains: new invocations get 503,
/// running exports are cancelled and given [`DRAIN_TIMEOUT`] to release the lock.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let close = CancellationToken::new();
    let server = axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(close.clone().cancelled_owned())
        .into_future();
    let mut server = tokio::spawn(server);

    tokio::select! {
        () = stop => {}
        result = &mut server => {
            // The server only ends by itself on an I/O error.
            return match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(ServeError::Server(error)),
                Err(join) => Err(ServeError::Server(std::io::Error::other(join.to_string()))),
            };
        }
    }

    tracing::info!(
        running = state.in_flight(),
        "shutdown requested: refusing new invocations, stopping running exports"
    );
    state.begin_shutdown();
    if tokio::time::timeout(DRAIN_TIMEOUT, state.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            running = state.in_flight(),
            "exports still running after {}s; exiting anyway (the lock expires by itself)",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    close.cancel();
    match tokio::time::timeout(CLOSE_TIMEOUT, &mut server).await {
        Ok(Ok(Err(error))) => return Err(ServeError::Server(error)),
        Ok(_) => {}
        Err(_) => server.abort(),
    }
    tracing::info!("custom handler stopped");
    Ok(())
}

/// Resolves on SIGTERM (the platform stopping the instance) or SIGINT (Ctrl-C under `func start`).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(
                    "cannot listen for SIGTERM ({error}); only Ctrl-C stops the handler"
                );
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::handler::runner::Runner;
    use crate::run::{RunError, RunOutcome, RunRequest, RunSummary};
    use async_trait::async_trait;
    use serde_json::Value;
    use tokio::sync::Notify;

    /// Runs until cancelled, then needs a moment to reach its safe point.
    struct UntilCancelled {
        started: Notify,
    }

    #[async_trait]
    impl Runner for UntilCancelled {
        async fn run(
            &self,
            _settings: &Settings,
            _request: RunRequest,
            cancel: CancellationToken,
        ) -> Result<RunOutcome, RunError> {
            self.started.notify_one();
            cancel.cancelled().await;
            // Finishing the current slice and releasing the lock takes a little while.
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err(RunError::Cancelled)
        }

        async fn last_summary(&self, _settings: &Settings) -> Result<Option<RunSummary>, RunError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn shutdown_cancels_the_running_export_refuses_new_work_and_returns() {
        let runner = Arc::new(UntilCancelled {
            started: Notify::new(),
        });
        let settings = Settings::load(&Overrides::default(), |_| None).unwrap();
        let state = AppState::new(Ok(settings), runner.clone());
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, state.clone(), async {
            let _ = stop_rx.await;
        }));
        let client = reqwest::Client::new();
        let timer = r#"{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}"#;
        let running = tokio::spawn(
            client
                .post(format!("{base}/ExportSignIns"))
                .body(timer)
                .send(),
        );
        runner.started.notified().await;
        assert_eq!(state.in_flight(), 1);

        stop_tx.send(()).unwrap();
        while !state.is_shutting_down() {
            tokio::task::yield_now().await;
        }
        // Draining: still listening, refusing new work.
        let refused = client
            .post(format!("{base}/ExportSignIns"))
            .body(timer)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 503);
        let reply: Value = refused.json().await.unwrap();
        assert!(reply["Logs"][0].as_str().unwrap().contains("shutting down"));

        let interrupted = running.await.unwrap().unwrap();
        assert_eq!(interrupted.status(), 503);
        let reply: Value = interrupted.json().await.unwrap();
        assert!(
            reply["Logs"][1].as_str().unwrap().contains("cancelled"),
            "{reply}"
        );

        let result = tokio::time::timeout(DRAIN_TIMEOUT + CLOSE_TIMEOUT, server).await;
        assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
        assert_eq!(state.in_flight(), 0);
    }

    #[test]
    fn port_errors_are_clear() {
        assert_eq!(port_from(Some(" 8080 ".into())).unwrap(), 8080);
        assert!(matches!(port_from(None), Err(ServeError::PortMissing)));
        assert!(matches!(
            port_from(Some("".into())),
            Err(ServeError::PortMissing)
        ));
        for bad in ["0", "65536", "http", "-1"] {
            let err = port_from(Some(bad.into())).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("{PORT_VARIABLE}='{bad}'")),
                "{err}"
            );
        }
        assert!(ServeError::PortMissing.to_string().contains("func start"));
    }
}
