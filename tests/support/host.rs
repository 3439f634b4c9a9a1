//! An Azure Functions host emulator for the custom handler, following the host's source
//! (`src/WebJobs.Script/Workers/Http/`): unpacks `dist/signin-export.zip`, reads `host.json` and
//! every `<Function>/function.json` at the zip root, starts `defaultExecutablePath` +
//! `arguments` in the app root with the host's environment variables, polls `GET /` every 25 ms
//! for up to 30 s (any HTTP response = ready), logs stdout lines as Information and stderr lines
//! as Error (Warning when they contain "warn"), and invokes functions with the host's envelopes.
//! HTTP-trigger replies are turned into what the caller would receive, as the host does it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The host version the emulator claims in its headers.
pub const HOST_VERSION: &str = "4.1037.0.0";
/// `WorkerConstants.WorkerReadyCheckPollingIntervalMilliseconds`.
pub const READY_POLL: Duration = Duration::from_millis(25);
/// `HttpWorkerOptions.InitializationTimeout`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The deployable package built by `scripts/package.sh`.
pub fn package_zip() -> PathBuf {
    let zip = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/signin-export.zip");
    assert!(
        zip.is_file(),
        "{} is missing: build it first with `scripts/package.sh` (the handler tests run the packaged binary exactly as the Functions host would)",
        zip.display()
    );
    zip
}

/// Log level the host assigns to a line of the handler's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Information,
    Warning,
    Error,
}

/// One line the host logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    /// `None` for the handler's console, `Some(function)` for an invocation's `Logs`.
    pub function: Option<String>,
    pub text: String,
}

/// `WorkerProcess.ParseErrorMessageAndLog` with `UseStdErrorStreamForErrorsOnly = true`.
pub fn stderr_level(line: &str) -> Level {
    if line.to_ascii_lowercase().contains("warn") {
        Level::Warning
    } else {
        Level::Error
    }
}

/// An unpacked app: the zip's files in a temp folder, with the manifests read.
pub struct App {
    pub root: tempfile::TempDir,
    pub host_json: Value,
    /// Function name (its folder) → `function.json`.
    pub functions: BTreeMap<String, Value>,
    /// Every entry of the zip with its Unix mode.
    pub entries: BTreeMap<String, u32>,
}

impl App {
    /// Unpacks `zip` like the platform does (Unix modes from the zip's external attributes, no
    /// fix-ups) and reads the manifests.
    pub fn unpack(zip: &Path) -> App {
        let root = tempfile::tempdir().expect("temp dir for the app");
        let script = r#"
import json, os, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
entries = {}
with zipfile.ZipFile(src) as z:
    for info in z.infolist():
        mode = (info.external_attr >> 16) & 0o7777
        entries[info.filename] = mode
        path = z.extract(info, dest)
        if mode and not info.is_dir():
            os.chmod(path, mode)
print(json.dumps(entries))
"#;
        let output = Command::new("python3")
            .args(["-c", script])
            .arg(zip)
            .arg(root.path())
            .output()
            .expect("python3 (needed to unpack the zip)");
        assert!(
            output.status.success(),
            "unpacking {} failed: {}",
            zip.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let entries: BTreeMap<String, u32> =
            serde_json::from_slice(&output.stdout).expect("zip listing");

        let read_json = |path: &Path| -> Value {
            let text =
                std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
        };
        let host_json = read_json(&root.path().join("host.json"));
        // The host indexes every folder at the app root holding a function.json.
        let mut functions = BTreeMap::new();
        for entry in std::fs::read_dir(root.path()).expect("app root") {
            let entry = entry.expect("dir entry");
            let manifest = entry.path().join("function.json");
            if manifest.is_file() {
                functions.insert(
                    entry.file_name().to_string_lossy().into_owned(),
                    read_json(&manifest),
                );
            }
        }
        App {
            root,
            host_json,
            functions,
            entries,
        }
    }

    /// `customHandler.description`.
    pub fn description(&self) -> &Value {
        &self.host_json["customHandler"]["description"]
    }

    /// `defaultExecutablePath`, resolved against the app root when that file exists
    /// (`HttpWorkerDescription.ApplyDefaultsAndValidate`).
    pub fn executable(&self) -> PathBuf {
        let path = self.description()["defaultExecutablePath"]
            .as_str()
            .expect("defaultExecutablePath");
        let candidate = self.root.path().join(path);
        if Path::new(path).is_relative() && candidate.exists() {
            candidate
        } else {
            PathBuf::from(path)
        }
    }

    pub fn arguments(&self) -> Vec<String> {
        self.description()["arguments"]
            .as_array()
            .map(|args| {
                args.iter()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The working directory: `workingDirectory` relative to the app root, else the app root.
    pub fn working_directory(&self) -> PathBuf {
        match self.description()["workingDirectory"].as_str() {
            Some(dir) if !dir.is_empty() => self.root.path().join(dir),
            _ => self.root.path().to_path_buf(),
        }
    }

    /// The binding of `function` whose `direction`/`type` match.
    pub fn binding(&self, function: &str, direction: &str, kind: &str) -> Value {
        let manifest = self
            .functions
            .get(function)
            .unwrap_or_else(|| panic!("no function {function} in the package"));
        manifest["bindings"]
            .as_array()
            .and_then(|bindings| {
                bindings.iter().find(|b| {
                    b["direction"].as_str() == Some(direction)
                        && b["type"].as_str().map(str::to_ascii_lowercase)
                            == Some(kind.to_ascii_lowercase())
                })
            })
            .cloned()
            .unwrap_or_else(|| panic!("{function} has no {direction} {kind} binding"))
    }

    /// `functionTimeout` as a duration (`hh:mm:ss`).
    pub fn function_timeout(&self) -> Option<Duration> {
        let text = self.host_json["functionTimeout"].as_str()?;
        let parts: Vec<u64> = text
            .split(':')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        match parts[..] {
            [h, m, s] => Some(Duration::from_secs(h * 3600 + m * 60 + s)),
            _ => None,
        }
    }
}

/// Resolves `%NAME%` app-setting references the way the host does for binding expressions; a
/// missing setting is an indexing error in the real host, so it panics here.
pub fn resolve_setting_references(value: &str, settings: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        let Some(len) = rest[start + 1..].find('%') else {
            break;
        };
        let name = &rest[start + 1..start + 1 + len];
        let resolved = settings.get(name).unwrap_or_else(|| {
            panic!("'%{name}%' does not resolve to a value (the host would not index the function)")
        });
        out.push_str(&rest[..start]);
        out.push_str(resolved);
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// What the host got back from an invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub invocation_id: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Invocation {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply to the host is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The invocation's `Logs`.
    pub fn logs(&self) -> Vec<String> {
        self.json()["Logs"]
            .as_array()
            .map(|logs| {
                logs.iter()
                    .map(|l| l.as_str().expect("log lines are strings").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An HTTP call to a function as a client makes it (`/api/<route>`).
#[derive(Debug, Clone, Default)]
pub struct HttpCall {
    pub method: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl HttpCall {
    pub fn new(method: &str) -> HttpCall {
        HttpCall {
            method: method.to_string(),
            ..HttpCall::default()
        }
    }

    pub fn query(mut self, name: &str, value: &str) -> HttpCall {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: &str) -> HttpCall {
        self.body = Some(body.to_string());
        self
    }
}

/// What the client of an HTTP trigger receives.
#[derive(Debug, Clone)]
pub struct CallerResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The host re-serialized an object body (its bytes differ from what the handler meant).
    pub reformatted_by_host: bool,
    /// The handler's raw reply to the host.
    pub invocation: Invocation,
}

impl CallerResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "caller body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.as_str())
    }
}

/// A running handler under the emulated host. Killed on drop.
pub struct FunctionsHost {
    pub app: App,
    pub port: u16,
    pub worker_id: String,
    pub settings: BTreeMap<String, String>,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<LogLine>>>,
    client: reqwest::Client,
    pub started_in: Duration,
}

/// A free loopback port, chosen like `WorkerUtilities.GetUnusedTcpPort`.
fn unused_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}

impl FunctionsHost {
    /// Unpacks the package and starts the handler with `settings` as the app settings (the
    /// process gets only these, `PATH`, and the host's variables), then waits until it is ready.
    pub async fn start(settings: Vec<(String, String)>) -> FunctionsHost {
        let mut host = FunctionsHost::launch(settings);
        host.wait_ready().await;
        host
    }

    /// Starts the process without waiting for readiness.
    pub fn launch(settings: Vec<(String, String)>) -> FunctionsHost {
        let app = App::unpack(&package_zip());
        let settings: BTreeMap<String, String> = settings.into_iter().collect();
        let port = unused_port();
        let worker_id = uuid::Uuid::new_v4().to_string();
        let mut command = Command::new(app.executable());
        command
            .args(app.arguments())
            .current_dir(app.working_directory())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&settings)
            // HttpWorkerProcess.CreateWorkerProcess
            .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
            .env("FUNCTIONS_HTTPWORKER_ID", &worker_id)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", &worker_id)
            .env("FUNCTIONS_APP_ROOT_PATH", app.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", app.executable().display()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout pipe");
        let stderr = child.stderr.take().expect("stderr pipe");
        for (pipe, is_stderr) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, false),
            (Box::new(stderr), true),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let level = if is_stderr {
                        stderr_level(&line)
                    } else {
                        Level::Information
                    };
                    logs.lock().unwrap().push(LogLine {
                        level,
                        function: None,
                        text: line,
                    });
                }
            });
        }
        let timeout = app
            .function_timeout()
            .map(|t| t + Duration::from_secs(60))
            .unwrap_or(Duration::from_secs(3600));
        FunctionsHost {
            app,
            port,
            worker_id,
            settings,
            child: Some(child),
            logs,
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("HTTP client"),
            started_in: Duration::ZERO,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// `DefaultHttpWorkerService.IsWorkerReady`: GET / every 25 ms; any HTTP response is ready.
    pub async fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if self.client.get(self.url("/")).send().await.is_ok() {
                self.started_in = started.elapsed();
                return;
            }
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "the handler exited ({status}) before it was ready:\n{}",
                    self.log_text()
                );
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "Initializing HttpWorker timed out after 30 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Every line logged so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.logs.lock().unwrap().clone()
    }

    pub fn log_text(&self) -> String {
        self.logs()
            .iter()
            .map(|l| {
                format!(
                    "[{:?}]{} {}",
                    l.level,
                    l.function
                        .as_deref()
                        .map(|f| format!(" {f}:"))
                        .unwrap_or_default(),
                    l.text
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until a console line satisfies `predicate` (or panics after `timeout`).
    pub async fn wait_for_log(
        &self,
        timeout: Duration,
        predicate: impl Fn(&LogLine) -> bool,
    ) -> LogLine {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| predicate(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no matching log line within {timeout:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs `envelope` to `/<function>` with the host's headers.
    pub async fn post_envelope(&self, function: &str, envelope: &Value) -> Invocation {
        let invocation_id = uuid::Uuid::new_v4().to_string();
        let response = self
            .client
            .post(self.url(function))
            .header("X-Azure-Functions-HostVersion", HOST_VERSION)
            .header("X-Azure-Functions-InvocationId", &invocation_id)
            .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(envelope.to_string())
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("invocation of {function} failed: {e}\n{}", self.log_text())
            });
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.expect("reply body").to_vec();
        let invocation = Invocation {
            invocation_id,
            status,
            content_type,
            body,
        };
        // ProcessLogsFromHttpResponse: only for 2xx replies, each line as Information.
        if (200..300).contains(&status) {
            if let Ok(reply) = serde_json::from_slice::<Value>(&invocation.body) {
                if let Some(lines) = reply["Logs"].as_array() {
                    let mut logs = self.logs.lock().unwrap();
                    for line in lines.iter().filter_map(Value::as_str) {
                        logs.push(LogLine {
                            level: Level::Information,
                            function: Some(function.to_string()),
                            text: line.to_string(),
                        });
                    }
                }
            }
        }
        invocation
    }

    /// Fires the timer trigger of `function` with `timer` as the serialized `TimerInfo`.
    pub async fn invoke_timer(&self, function: &str, timer: Value) -> Invocation {
        let trigger = self.app.binding(function, "in", "timerTrigger");
        let name = trigger["name"].as_str().expect("binding name");
        // The schedule must resolve, as when the host indexes the function.
        resolve_setting_references(
            trigger["schedule"].as_str().expect("schedule"),
            &self.settings,
        );
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format now");
        let envelope = json!({
            "Data": { name: timer.clone() },
            "Metadata": {
                name: timer,
                "sys": {"MethodName": function, "UtcNow": now, "RandGuid": uuid::Uuid::new_v4().to_string()}
            }
        });
        self.post_envelope(function, &envelope).await
    }

    /// Calls the HTTP trigger of `function` as a client would, and returns what the client gets.
    pub async fn call_http(&self, function: &str, call: HttpCall) -> CallerResponse {
        let trigger = self.app.binding(function, "in", "httpTrigger");
        let output = self.app.binding(function, "out", "http");
        let methods: Vec<String> = trigger["methods"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|v| v.as_str().map(str::to_ascii_uppercase))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            methods.is_empty() || methods.contains(&call.method.to_ascii_uppercase()),
            "{function} does not accept {} (methods {methods:?})",
            call.method
        );
        let route = trigger["route"].as_str().unwrap_or(function);
        let query_string = if call.query.is_empty() {
            String::new()
        } else {
            let mut qs = url::form_urlencoded::Serializer::new(String::from("?"));
            for (k, v) in &call.query {
                qs.append_pair(k, v);
            }
            qs.finish()
        };
        // GetQueryCollectionAsDictionary: repeated names are joined with ",".
        let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &call.query {
            query.entry(k.clone()).or_default().push(v.clone());
        }
        let query: serde_json::Map<String, Value> = query
            .into_iter()
            .map(|(k, v)| (k, Value::String(v.join(","))))
            .collect();
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        headers
            .entry("Host".into())
            .or_default()
            .push("signin-export.azurewebsites.net".into());
        for (k, v) in &call.headers {
            headers.entry(k.clone()).or_default().push(v.clone());
        }
        let mut req = json!({
            "Url": format!("https://signin-export.azurewebsites.net/api/{route}{query_string}"),
            "Method": call.method.to_ascii_uppercase(),
            "Query": query,
            "Headers": headers,
            "Params": {},
            "Identities": [{"AuthenticationType": "WebJobsAuthLevel", "IsAuthenticated": true, "Claims": [{"Type": "http://schemas.microsoft.com/2017/07/functions/claims/authlevel", "Value": "Function"}]}],
        });
        // GetRequestAsJObject: Body only when the request had content.
        if let Some(body) = call.body.as_ref().filter(|b| !b.is_empty()) {
            req["Body"] = Value::String(body.clone());
        }
        let name = trigger["name"].as_str().expect("binding name");
        let envelope =
            json!({"Data": { name: req }, "Metadata": {"sys": {"MethodName": function}}});
        let invocation = self.post_envelope(function, &envelope).await;
        host_http_result(&invocation, output["name"].as_str().expect("output name"))
    }

    /// Sends SIGTERM to the handler.
    pub fn sigterm(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                // Let the reader threads drain the pipes.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the handler did not exit within {timeout:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FunctionsHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the host makes of an HTTP-trigger reply (`ProcessDefaultInvocationRequest` →
/// `GetHttpOutputBindingResponse` → `HttpBinding.CreateResult` → `RawScriptResult`).
pub fn host_http_result(invocation: &Invocation, output_name: &str) -> CallerResponse {
    let failed = |invocation: &Invocation| CallerResponse {
        status: 500,
        headers: BTreeMap::new(),
        body: Vec::new(),
        reformatted_by_host: false,
        invocation: invocation.clone(),
    };
    // EnsureSuccessStatusCode: any other status fails the invocation; the caller gets a 500.
    if !(200..300).contains(&invocation.status) {
        return failed(invocation);
    }
    let Ok(reply) = serde_json::from_slice::<Value>(&invocation.body) else {
        return failed(invocation);
    };
    let res = &reply["Outputs"][output_name];
    assert!(
        res.is_object(),
        "the reply sets no `{output_name}` output: {reply}"
    );
    let field = |name: &str| -> Option<&Value> {
        res.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    // StatusCode is read as a string, then parsed as an int.
    let status = field("statusCode")
        .or_else(|| field("status"))
        .and_then(|v| match v {
            Value::Number(n) => n.as_u64().map(|n| n as u16),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .unwrap_or(200);
    let headers: BTreeMap<String, String> = field("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let (body, reformatted_by_host) = match field("body") {
        None | Some(Value::Null) => (Vec::new(), false),
        // StringOutputFormatter: written as is.
        Some(Value::String(text)) => (text.as_bytes().to_vec(), false),
        // A JObject falls through to ToString(): Newtonsoft's indented form.
        Some(other) => (
            serde_json::to_string_pretty(other)
                .expect("pretty")
                .into_bytes(),
            true,
        ),
    };
    CallerResponse {
        status,
        headers,
        body,
        reformatted_by_host,
        invocation: invocation.clone(),
    }
}
