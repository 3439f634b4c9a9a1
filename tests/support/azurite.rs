//! Azurite for the integration tests: installs it from the repo's npm lockfile (`npm ci`) when
//! missing, starts `azurite-blob` on a free port (HTTP, or HTTPS with `--oauth basic`), signs SAS
//! tokens with the well-known development key, and kills it on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use url::Url;

/// Azurite's development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key (public; documented by Microsoft).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Service version the test SAS tokens are signed for.
const SAS_VERSION: &str = "2021-08-06";
/// How long Azurite may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How Azurite listens.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Plain HTTP; requests are authorised with SAS tokens.
    Http,
    /// HTTPS with the given certificate and key, bearer tokens checked by `--oauth basic`.
    HttpsOAuth { cert: PathBuf, key: PathBuf },
}

/// A running `azurite-blob`, killed on drop. Data lives in a temp folder, so it survives
/// [`Azurite::stop`] + [`Azurite::restart`].
pub struct Azurite {
    child: Option<Child>,
    port: u16,
    mode: Mode,
    workspace: tempfile::TempDir,
    output: Arc<Mutex<Vec<String>>>,
}

impl Azurite {
    /// Starts Azurite in `mode` on a free port (installing it first if needed).
    pub async fn start(mode: Mode) -> Azurite {
        tokio::task::spawn_blocking(move || {
            let workspace = tempfile::tempdir().expect("temp dir for Azurite");
            let mut azurite = Azurite {
                child: None,
                port: 0,
                mode,
                workspace,
                output: Arc::new(Mutex::new(Vec::new())),
            };
            azurite.launch(0).unwrap_or_else(|e| panic!("{e}"));
            azurite
        })
        .await
        .expect("Azurite start task")
    }

    pub async fn start_http() -> Azurite {
        Azurite::start(Mode::Http).await
    }

    /// `http(s)://127.0.0.1:PORT/devstoreaccount1`.
    pub fn endpoint(&self) -> Url {
        let scheme = match self.mode {
            Mode::Http => "http",
            Mode::HttpsOAuth { .. } => "https",
        };
        Url::parse(&format!("{scheme}://127.0.0.1:{}/{ACCOUNT}", self.port)).expect("endpoint URL")
    }

    /// URL of `container` (no query string).
    pub fn container_url(&self, container: &str) -> Url {
        Url::parse(&format!("{}/{container}", self.endpoint())).expect("container URL")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Azurite's console output so far (for failure messages).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.join("\n")).unwrap_or_default()
    }

    /// Stops Azurite with SIGTERM, so it saves its metadata (it only autosaves every few
    /// seconds; SIGKILL could lose the last writes), SIGKILL after 10 s. The port and the data
    /// folder are kept for [`Azurite::restart`].
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            tokio::task::spawn_blocking(move || {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .status();
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while std::time::Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            })
            .await
            .expect("Azurite stop task");
        }
    }

    /// Starts Azurite again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        let port = self.port;
        let mut last_error = String::new();
        for _ in 0..20 {
            match self.launch(port) {
                Ok(()) => return,
                Err(e) => last_error = e,
            }
            // The old process released the port when it exited; another process may have
            // grabbed it meanwhile: wait a little and retry.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("Azurite did not restart on port {port}: {last_error}");
    }

    /// Spawns `azurite-blob` on `port` (0: any free port, read back from its console) and waits
    /// until it reports that it listens.
    fn launch(&mut self, port: u16) -> Result<(), String> {
        let bin = azurite_bin();
        let mut command = Command::new(&bin);
        command
            .arg("--blobHost")
            .arg("127.0.0.1")
            .arg("--blobPort")
            .arg(port.to_string())
            .arg("--location")
            .arg(self.workspace.path())
            .arg("--skipApiVersionCheck")
            .arg("--disableTelemetry")
            .arg("--silent");
        if let Mode::HttpsOAuth { cert, key } = &self.mode {
            command
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key)
                .arg("--oauth")
                .arg("basic");
        }
        let mut child = command
            .current_dir(self.workspace.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<u16, String>>();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let output = self.output.clone();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = listening_port(&line) {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Ok(port));
                    }
                }
                if let Ok(mut out) = output.lock() {
                    out.push(line);
                }
            }
            if let Some(tx) = ready.take() {
                let _ = tx.send(Err("Azurite exited before listening".to_string()));
            }
        });
        let output = self.output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut out) = output.lock() {
                    out.push(line);
                }
            }
        });
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(actual)) => {
                self.port = actual;
                self.child = Some(child);
                Ok(())
            }
            Ok(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("{e}; output:\n{}", self.output()))
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "Azurite did not listen within {START_TIMEOUT:?}; output:\n{}",
                    self.output()
                ))
            }
        }
    }

    /// An account SAS (blob service; service, container and object resources) with `permissions`.
    pub fn account_sas(&self, permissions: &str) -> String {
        account_sas(
            permissions,
            time::OffsetDateTime::now_utc() + time::Duration::days(1),
        )
    }

    /// A service SAS for `container` with `permissions`.
    pub fn container_sas(&self, container: &str, permissions: &str) -> String {
        container_sas(
            container,
            permissions,
            time::OffsetDateTime::now_utc() + time::Duration::days(1),
        )
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The port in Azurite's "successfully listens on http://127.0.0.1:PORT" line.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("successfully listens on ").nth(1)?;
    let port = rest.trim().rsplit(':').next()?;
    port.trim_end_matches('/').parse().ok()
}

/// Ends the lease on the blob at `blob_url` (with a SAS) now (Lease Blob, action break, period
/// 0): what its expiry does a minute after a holder was killed. No lease to break is fine.
pub async fn break_lease(http: &reqwest::Client, blob_url: &str) {
    let response = http
        .put(format!("{blob_url}&comp=lease"))
        .header("x-ms-lease-action", "break")
        .header("x-ms-lease-break-period", "0")
        .header("x-ms-version", SAS_VERSION)
        .header("content-length", "0")
        .send()
        .await
        .expect("Lease Blob");
    assert!(
        response.status().is_success() || response.status() == reqwest::StatusCode::CONFLICT,
        "breaking the lease: {}",
        response.status()
    );
}

/// Path of `azurite-blob`, running `npm ci` (from the lockfile) once if it is not installed.
pub fn azurite_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let bin = root.join("node_modules").join(".bin").join("azurite-blob");
        if !bin.exists() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(root)
                .status()
                .map_err(|e| format!("Azurite is not installed and `npm ci` could not run ({e}); install Node.js 20+ and run `npm ci` in {}", root.display()))?;
            if !status.success() {
                return Err(format!("`npm ci` failed ({status}) in {}", root.display()));
            }
        }
        if bin.exists() {
            Ok(bin)
        } else {
            Err(format!("{} is missing after `npm ci`", bin.display()))
        }
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}"))
}

fn sas_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn sign(string_to_sign: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(ACCOUNT_KEY)
        .expect("development key is base64");
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, string_to_sign.as_bytes()))
}

/// Account SAS (version 2020-12-06+ string-to-sign) for the blob service.
pub fn account_sas(permissions: &str, expiry: time::OffsetDateTime) -> String {
    let se = sas_time(expiry);
    let string_to_sign =
        format!("{ACCOUNT}\n{permissions}\nb\nsco\n\n{se}\n\nhttps,http\n{SAS_VERSION}\n\n");
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", SAS_VERSION)
        .append_pair("ss", "b")
        .append_pair("srt", "sco")
        .append_pair("sp", permissions)
        .append_pair("se", &se)
        .append_pair("spr", "https,http")
        .append_pair("sig", &sign(&string_to_sign))
        .finish()
}

/// Service SAS (version 2020-12-06+ string-to-sign) for one container.
pub fn container_sas(container: &str, permissions: &str, expiry: time::OffsetDateTime) -> String {
    let se = sas_time(expiry);
    // sp, st, se, resource, si, sip, spr, sv, sr, snapshot, ses, rscc, rscd, rsce, rscl, rsct
    let string_to_sign = format!(
        "{permissions}\n\n{se}\n/blob/{ACCOUNT}/{container}\n\n\nhttps,http\n{SAS_VERSION}\nc\n\n\n\n\n\n\n"
    );
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", SAS_VERSION)
        .append_pair("sr", "c")
        .append_pair("sp", permissions)
        .append_pair("se", &se)
        .append_pair("spr", "https,http")
        .append_pair("sig", &sign(&string_to_sign))
        .finish()
}

/// HMAC-SHA256 (RFC 2104) on the `sha2` crate the project already uses; checked against RFC 4231
/// below. Avoids a dependency for the one place tests need it.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

#[test]
fn hmac_matches_rfc_4231() {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // Test case 2.
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // Test case 6: key longer than the block size.
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn listening_port_is_parsed() {
    assert_eq!(
        listening_port("Azurite Blob service successfully listens on http://127.0.0.1:35951"),
        Some(35951)
    );
    assert_eq!(
        listening_port("Azurite Blob service successfully listens on https://127.0.0.1:1234"),
        Some(1234)
    );
    assert_eq!(
        listening_port("Azurite Blob service is starting on 127.0.0.1:0"),
        None
    );
}
