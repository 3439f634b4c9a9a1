//! The Blob sink against real Azurite, in both CI modes: HTTP with an account SAS, and HTTPS with
//! `--oauth basic` and tokens from the fake App Service managed-identity endpoint. Every scenario
//! runs in both modes (`sas::*` and `oauth::*`), each on its own Azurite.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use signin_export::config::Secret;
use signin_export::sink::blob::{BlobAuth, BlobSink, BlobSinkOptions, LatestCopy};
use signin_export::sink::{
    daily_file, BlockId, DailyFile, LockOutcome, Sink, SinkError, LATEST_FILE,
};
use url::Url;

use crate::support::azurite::{Azurite, Mode};

const CONTAINER: &str = "exports";
const BASE: &str = "signins/exchange-activesync";
const HEADER: &str = "\u{feff}id,user,createdDateTime\r\n";

/// One test's Azurite plus how to build sinks against it.
pub struct Ctx {
    pub azurite: Azurite,
    auth: BlobAuth,
    /// Strings that must never appear in an error: the SAS, its signature, tokens.
    secrets: Vec<String>,
    /// Keeps the fake managed-identity endpoint (OAuth mode) alive.
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

impl Ctx {
    pub async fn sas() -> Ctx {
        let azurite = Azurite::start_http().await;
        let sas = azurite.account_sas("rwdlacup");
        let sig: String = url::form_urlencoded::parse(sas.as_bytes())
            .find(|(k, _)| k == "sig")
            .map(|(_, v)| v.into_owned())
            .expect("sig in SAS");
        Ctx {
            azurite,
            auth: BlobAuth::Sas(Secret::new(sas.clone())),
            secrets: vec![sas, sig],
            _keep: Vec::new(),
        }
    }

    /// Builds a Ctx around a running Azurite and an auth (used by the OAuth mode).
    pub fn new(
        azurite: Azurite,
        auth: BlobAuth,
        secrets: Vec<String>,
        keep: Vec<Box<dyn std::any::Any + Send>>,
    ) -> Ctx {
        Ctx {
            azurite,
            auth,
            secrets,
            _keep: keep,
        }
    }

    pub fn container_url(&self) -> Url {
        self.azurite.container_url(CONTAINER)
    }

    /// Test options: the shortest lease Azure allows and few, fast retries.
    pub fn options() -> BlobSinkOptions {
        BlobSinkOptions {
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(3),
            max_retries: 2,
            initial_retry_delay: Duration::from_millis(50),
            max_retry_delay: Duration::from_millis(200),
            max_retry_elapsed: Duration::from_secs(3),
            latest_copy: LatestCopy::Auto,
        }
    }

    pub fn sink(&self) -> BlobSink {
        self.sink_with(BASE, Ctx::options())
    }

    /// How this context authenticates (a SAS or a managed-identity credential).
    pub fn auth(&self) -> BlobAuth {
        self.auth.clone()
    }

    pub fn sink_with(&self, base: &str, options: BlobSinkOptions) -> BlobSink {
        BlobSink::with_options(&self.container_url(), base, self.auth.clone(), options)
            .expect("sink")
    }

    /// Asserts that no secret of this context appears in `text`.
    pub fn assert_clean(&self, text: &str) {
        for secret in &self.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret leaked into: {text}"
            );
        }
        assert!(
            !text.contains("sig="),
            "a SAS signature leaked into: {text}"
        );
        assert!(!text.contains("eyJ"), "a token leaked into: {text}");
    }

    /// Checks `err` for secrets and returns it.
    pub fn clean(&self, err: SinkError) -> SinkError {
        self.assert_clean(&err.to_string());
        self.assert_clean(&format!("{err:?}"));
        err
    }
}

fn rows(tag: &str, range: std::ops::Range<u32>) -> String {
    range
        .map(|i| {
            format!(
                "{tag}-{i},user{i}@contoso.com,2026-11-28T10:{:02}:00Z\r\n",
                i % 60
            )
        })
        .collect()
}

/// Stages `data` as one block per entry and commits them into `file`; returns the ticket.
async fn append(
    sink: &BlobSink,
    file: &str,
    run: &str,
    data: &[String],
) -> signin_export::sink::CommitTicket {
    let mut ids = Vec::new();
    for (seq, chunk) in data.iter().enumerate() {
        let id = BlockId::new(run, seq as u32);
        sink.stage(file, &id, Bytes::from(chunk.clone()))
            .await
            .expect("stage");
        ids.push(id);
    }
    let ticket = sink
        .prepare(file, Bytes::from_static(HEADER.as_bytes()), &ids)
        .await
        .expect("prepare");
    sink.commit(&ticket).await.expect("commit");
    ticket
}

async fn read_text(sink: &BlobSink, file: &str) -> String {
    let bytes = sink.read(file).await.expect("read").expect("file exists");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

fn day(d: u8) -> String {
    daily_file(time::Date::from_calendar_date(2026, time::Month::November, d).expect("date"))
}

/// A credential that always returns the same token.
#[derive(Debug)]
struct StaticToken(String);

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for StaticToken {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        assert_eq!(scopes, [signin_export::credential::STORAGE_SCOPE]);
        Ok(azure_core::credentials::AccessToken::new(
            self.0.clone(),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios, each run in both modes.

/// stage → prepare → commit → read; a second commit puts its rows after the header, ahead of the
/// older rows; the header is there exactly once.
pub async fn round_trip(ctx: Ctx) {
    let sink = ctx.sink();
    let file = day(1);
    assert_eq!(sink.read(&file).await.expect("read"), None);
    let first = [rows("a", 0..3), rows("a", 3..5)];
    append(&sink, &file, "run-a", &first).await;
    assert_eq!(
        read_text(&sink, &file).await,
        format!("{HEADER}{}{}", first[0], first[1])
    );

    let second = [rows("b", 0..2)];
    append(&sink, &file, "run-b", &second).await;
    let text = read_text(&sink, &file).await;
    assert_eq!(
        text,
        format!("{HEADER}{}{}{}", second[0], first[0], first[1])
    );
    assert_eq!(text.matches("id,user,createdDateTime").count(), 1);

    let files = sink.list_daily().await.expect("list");
    assert_eq!(names(&files), vec![file.clone()]);
    assert_eq!(files[0].len, text.len() as u64);
}

fn names(files: &[DailyFile]) -> Vec<String> {
    files.iter().map(|f| f.name.clone()).collect()
}

/// A commit returns the file's version before and after, the listing shows the same version, a
/// ranged read pinned to a version fails once the file changed, and `put_file` replaces a whole
/// file for the lock holder only (the summaries and their tallies rely on all four).
pub async fn versions_pin_ranged_reads_and_put_file_replaces(ctx: Ctx) {
    let sink = ctx.sink();
    let file = day(3);
    let commit = |tag: &'static str| {
        let (sink, file) = (&sink, &file);
        async move {
            let id = BlockId::new(tag, 0);
            sink.stage(file, &id, Bytes::from(rows(tag, 0..2)))
                .await
                .expect("stage");
            let ticket = sink
                .prepare(file, Bytes::from_static(HEADER.as_bytes()), &[id])
                .await
                .expect("prepare");
            sink.commit(&ticket).await.expect("commit")
        }
    };
    let first = commit("a").await;
    assert_eq!(first.before, None, "a new file");
    let listed = sink.list_daily().await.expect("list");
    assert_eq!(listed[0].version, first.after, "{listed:?}");
    let row = sink
        .read_range(&file, &first.after, HEADER.len() as u64, 3)
        .await
        .expect("read range");
    assert_eq!(&row[..], b"a-0");
    let second = commit("b").await;
    assert_eq!(second.before.as_ref(), Some(&first.after));
    assert_ne!(second.after, first.after);
    let stale = sink
        .read_range(&file, &first.after, HEADER.len() as u64, 3)
        .await
        .expect_err("a read pinned to an older version");
    assert!(matches!(ctx.clean(stale), SinkError::Conflict { .. }));

    let summary = "summary/locations.csv";
    assert!(
        sink.put_file(summary, Bytes::from_static(b"x"))
            .await
            .is_err(),
        "only the lock holder writes"
    );
    assert_eq!(
        sink.acquire("p").await.expect("acquire"),
        LockOutcome::Acquired
    );
    for content in [&b"first\r\n"[..], b"second, longer\r\n"] {
        sink.put_file(summary, Bytes::from_static(content))
            .await
            .expect("put_file");
        assert_eq!(
            &sink.read(summary).await.expect("read").expect("file")[..],
            content
        );
    }

    // A file too large for memory: staged block by block, replaced whole, read in ranges
    // pinned to the version `version_of` gives.
    let tally = "_state/tally/2026-11-28.bin";
    assert_eq!(sink.version_of(tally).await.expect("version_of"), None);
    let mut versions = Vec::new();
    for (write, parts) in [
        ("w1", &["a\n", "bb\n", "ccc\n"][..]),
        ("w2", &["dddd\n"][..]),
    ] {
        let ids: Vec<BlockId> = (0..parts.len() as u32)
            .map(|i| BlockId::new(write, i))
            .collect();
        // Staged out of order: the list's order is the file's.
        for (id, part) in ids.iter().zip(parts).rev() {
            sink.stage(tally, id, Bytes::from_static(part.as_bytes()))
                .await
                .expect("stage");
        }
        let written = sink.put_blocks(tally, &ids).await.expect("put_blocks");
        let whole = parts.concat();
        let (version, len) = sink
            .version_of(tally)
            .await
            .expect("version_of")
            .expect("file");
        assert_eq!(written, version, "put_blocks returns the version it made");
        assert_eq!(len, whole.len() as u64);
        let tail = sink
            .read_range(tally, &version, 2, len - 2)
            .await
            .expect("read range");
        assert_eq!(&tail[..], &whole.as_bytes()[2..]);
        versions.push(version);
    }
    assert_ne!(versions[0], versions[1], "a new write is a new version");
    let stale = sink
        .read_range(tally, &versions[0], 0, 1)
        .await
        .expect_err("a read pinned to the replaced version");
    assert!(matches!(ctx.clean(stale), SinkError::Conflict { .. }));
    sink.release().await.expect("release");
    assert!(
        sink.put_blocks(tally, &[BlockId::new("w3", 0)])
            .await
            .is_err(),
        "only the lock holder writes"
    );
}

/// is_committed is false after prepare and true after commit; committing twice is harmless.
pub async fn is_committed_tracks_the_commit(ctx: Ctx) {
    let sink = ctx.sink();
    let file = day(2);
    append(&sink, &file, "run-0", &[rows("x", 0..1)]).await;
    let id = BlockId::new("run-1", 0);
    sink.stage(&file, &id, Bytes::from(rows("y", 0..2)))
        .await
        .expect("stage");
    let ticket = sink
        .prepare(
            &file,
            Bytes::from_static(HEADER.as_bytes()),
            std::slice::from_ref(&id),
        )
        .await
        .expect("prepare");
    assert!(!sink.is_committed(&ticket).await.expect("is_committed"));
    // The ticket survives a round trip through JSON (the pipeline stores it in the state).
    let stored: signin_export::sink::CommitTicket =
        serde_json::from_str(&serde_json::to_string(&ticket).expect("json")).expect("json");
    sink.commit(&stored).await.expect("commit");
    assert!(sink.is_committed(&ticket).await.expect("is_committed"));
    // A repeated commit of the same ticket (e.g. an SDK retry after a lost response) is a no-op.
    sink.commit(&ticket).await.expect("repeated commit");
    assert_eq!(
        read_text(&sink, &file).await,
        format!("{HEADER}{}{}", rows("y", 0..2), rows("x", 0..1))
    );
}

/// Two tickets prepared on the same version: the second commit is a Conflict and changes nothing.
pub async fn stale_ticket_conflicts(ctx: Ctx) {
    let sink = ctx.sink();
    // New file: both tickets expect the file not to exist.
    let file = day(3);
    let a = BlockId::new("run-a", 0);
    let b = BlockId::new("run-b", 0);
    sink.stage(&file, &a, Bytes::from(rows("a", 0..1)))
        .await
        .expect("stage");
    sink.stage(&file, &b, Bytes::from(rows("b", 0..1)))
        .await
        .expect("stage");
    let header = Bytes::from_static(HEADER.as_bytes());
    let ta = sink
        .prepare(&file, header.clone(), std::slice::from_ref(&a))
        .await
        .expect("prepare");
    let tb = sink
        .prepare(&file, header.clone(), std::slice::from_ref(&b))
        .await
        .expect("prepare");
    sink.commit(&ta).await.expect("first commit");
    let err = ctx.clean(sink.commit(&tb).await.expect_err("stale commit must fail"));
    assert!(matches!(err, SinkError::Conflict { .. }), "{err:?}");
    assert!(!sink.is_committed(&tb).await.expect("is_committed"));
    let after_a = format!("{HEADER}{}", rows("a", 0..1));
    assert_eq!(read_text(&sink, &file).await, after_a);

    // Existing file: both tickets hold the same ETag.
    let c = BlockId::new("run-c", 0);
    let d = BlockId::new("run-d", 0);
    sink.stage(&file, &c, Bytes::from(rows("c", 0..1)))
        .await
        .expect("stage");
    let tc = sink
        .prepare(&file, header.clone(), std::slice::from_ref(&c))
        .await
        .expect("prepare");
    sink.stage(&file, &d, Bytes::from(rows("d", 0..1)))
        .await
        .expect("stage");
    let td = sink
        .prepare(&file, header.clone(), std::slice::from_ref(&d))
        .await
        .expect("prepare");
    sink.commit(&td).await.expect("commit d");
    let err = ctx.clean(sink.commit(&tc).await.expect_err("stale commit must fail"));
    assert!(matches!(err, SinkError::Conflict { .. }), "{err:?}");
    assert_eq!(
        read_text(&sink, &file).await,
        format!("{HEADER}{}{}", rows("d", 0..1), rows("a", 0..1))
    );
}

/// Issue 9: a writer whose commit arrives late — after its lease expired and the next writer
/// settled its pending ticket as not committed — must not land it (the next writer re-exports
/// those rows). `fence` makes the late Put Block List fail, for an existing and a new file.
pub async fn a_late_commit_is_fenced(ctx: Ctx) {
    let first = ctx.sink();
    let next = ctx.sink();
    let header = Bytes::from_static(HEADER.as_bytes());
    let file = day(5);
    append(&first, &file, "run-0", &[rows("old", 0..2)]).await;
    let late = BlockId::new("run-a", 0);
    first
        .stage(&file, &late, Bytes::from(rows("late", 0..3)))
        .await
        .expect("stage");
    let ticket = first
        .prepare(&file, header.clone(), std::slice::from_ref(&late))
        .await
        .expect("prepare");
    // The first writer stalls here; the next one settles its ticket.
    assert!(!next.fence(&ticket).await.expect("fence"));
    let err = ctx.clean(
        first
            .commit(&ticket)
            .await
            .expect_err("a fenced commit must fail"),
    );
    assert!(matches!(err, SinkError::Conflict { .. }), "{err:?}");
    assert_eq!(
        read_text(&first, &file).await,
        format!("{HEADER}{}", rows("old", 0..2))
    );

    // A file that did not exist yet.
    let new_file = day(6);
    let late_new = BlockId::new("run-a", 1);
    first
        .stage(&new_file, &late_new, Bytes::from(rows("late", 0..1)))
        .await
        .expect("stage");
    let ticket = first
        .prepare(&new_file, header.clone(), std::slice::from_ref(&late_new))
        .await
        .expect("prepare");
    assert!(!next.fence(&ticket).await.expect("fence"));
    let err = ctx.clean(
        first
            .commit(&ticket)
            .await
            .expect_err("a fenced commit must fail"),
    );
    assert!(matches!(err, SinkError::Conflict { .. }), "{err:?}");
    assert_eq!(read_text(&first, &new_file).await, HEADER);

    // A commit that did land is recognised, and fencing it changes nothing.
    let landed = append(&first, &file, "run-c", &[rows("c", 0..1)]).await;
    assert!(next.fence(&landed).await.expect("fence"));
    assert_eq!(
        read_text(&first, &file).await,
        format!("{HEADER}{}{}", rows("c", 0..1), rows("old", 0..2))
    );
}

/// The lease: a second writer is Busy and sees the holder; release lets it in; write_state needs
/// the lease; read_state treats the placeholder `{}` as "no state".
pub async fn lease_excludes_a_second_writer(ctx: Ctx) {
    let a = ctx.sink();
    let b = ctx.sink();
    assert_eq!(a.read_state().await.expect("read_state"), None);
    let err = ctx.clean(
        a.write_state(Bytes::from_static(b"{\"v\":1}"))
            .await
            .expect_err("write_state without the lease"),
    );
    assert!(matches!(err, SinkError::LockLost { .. }), "{err:?}");
    assert!(matches!(
        a.ensure_locked().await,
        Err(SinkError::LockLost { .. })
    ));

    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    assert_eq!(
        a.acquire("host-a pid 1 ü").await.expect("acquire"),
        LockOutcome::Acquired
    );
    a.ensure_locked().await.expect("locked");
    // The state blob exists now, as the `{}` placeholder: still "no state".
    assert_eq!(a.read_state().await.expect("read_state"), None);

    match b.acquire("host-b").await.expect("acquire b") {
        LockOutcome::Busy(holder) => {
            assert_eq!(holder.holder, "host-a pid 1 ü");
            let since = holder.since.expect("since");
            assert!(
                since >= before && since <= time::OffsetDateTime::now_utc(),
                "{since}"
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    let err = ctx.clean(
        b.write_state(Bytes::from_static(b"{\"v\":2}"))
            .await
            .expect_err("b holds no lease"),
    );
    assert!(matches!(err, SinkError::LockLost { .. }), "{err:?}");

    let state = Bytes::from_static(b"{\"watermark\":\"2026-11-28T10:00:00Z\"}");
    a.write_state(state.clone()).await.expect("write_state");
    assert_eq!(
        b.read_state().await.expect("read_state"),
        Some(state.clone())
    );
    // Writing the state keeps the holder visible.
    match b.acquire("host-b").await.expect("acquire b") {
        LockOutcome::Busy(holder) => assert_eq!(holder.holder, "host-a pid 1 ü"),
        other => panic!("expected Busy, got {other:?}"),
    }

    a.release().await.expect("release");
    a.release().await.expect("second release is a no-op");
    assert!(matches!(
        a.ensure_locked().await,
        Err(SinkError::LockLost { .. })
    ));
    assert_eq!(
        b.acquire("host-b").await.expect("acquire b"),
        LockOutcome::Acquired
    );
    let state2 = Bytes::from_static(b"{\"watermark\":\"2026-11-28T11:00:00Z\"}");
    b.write_state(state2.clone()).await.expect("b writes");
    assert_eq!(a.read_state().await.expect("read_state"), Some(state2));
    b.release().await.expect("release b");
}

/// The lease outlives its duration while renewed; a crashed holder's lease expires on its own.
pub async fn crashed_holder_lease_expires(ctx: Ctx) {
    let a = ctx.sink();
    let b = ctx.sink();
    assert_eq!(
        a.acquire("crashing").await.expect("acquire"),
        LockOutcome::Acquired
    );
    // Past the 15 s lease, renewed every 3 s: only the renewals keep it. Wait on the renewals
    // themselves (six of them span 18 s), not on the clock.
    let acquired = Instant::now();
    while a.lease_renewals().await < 6 {
        assert!(
            acquired.elapsed() < Duration::from_secs(60),
            "the lease is not renewed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(acquired.elapsed() > Duration::from_secs(15));
    a.ensure_locked()
        .await
        .expect("still locked thanks to renewals");
    assert!(matches!(
        b.acquire("b").await.expect("acquire"),
        LockOutcome::Busy(_)
    ));
    a.write_state(Bytes::from_static(b"{\"v\":1}"))
        .await
        .expect("write with the renewed lease");

    // Crash: drop without release; renewals stop.
    drop(a);
    let dropped = Instant::now();
    let acquired_after = loop {
        match b.acquire("b").await.expect("acquire") {
            LockOutcome::Acquired => break dropped.elapsed(),
            LockOutcome::Busy(holder) => assert_eq!(holder.holder, "crashing"),
        }
        assert!(
            dropped.elapsed() < Duration::from_secs(40),
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Expiry is 15 s after the last renewal, which was at most 3 s before the drop.
    assert!(
        acquired_after >= Duration::from_secs(10),
        "lease expired too early: {acquired_after:?}"
    );
    b.release().await.expect("release");
}

/// A lease broken by someone else is detected: write_state fails at once, and ensure_locked
/// fails after the next renewal.
pub async fn broken_lease_is_detected(
    ctx: Ctx,
    break_lease: impl std::future::Future<Output = ()>,
) {
    let a = ctx.sink();
    assert_eq!(
        a.acquire("a").await.expect("acquire"),
        LockOutcome::Acquired
    );
    break_lease.await;
    // The next renewal notices.
    let broken = Instant::now();
    while a.ensure_locked().await.is_ok() {
        assert!(
            broken.elapsed() < Duration::from_secs(15),
            "broken lease not noticed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let err = ctx.clean(
        a.write_state(Bytes::from_static(b"{}"))
            .await
            .expect_err("lease was broken"),
    );
    assert!(matches!(err, SinkError::LockLost { .. }), "{err:?}");
    assert!(matches!(
        a.ensure_locked().await,
        Err(SinkError::LockLost { .. })
    ));
}

/// latest.csv = header + the given daily files' rows in the given order; parseable CSV;
/// replaced atomically on republish.
pub async fn publish_latest_concatenates_days(ctx: Ctx) {
    let sink = ctx.sink();
    let days = [day(10), day(11), day(12)];
    append(&sink, &days[0], "r10", &[rows("d10", 0..3)]).await;
    append(
        &sink,
        &days[1],
        "r11",
        &[rows("d11", 0..2), rows("d11", 2..4)],
    )
    .await;
    append(&sink, &days[2], "r12", &[rows("d12", 0..1)]).await;
    append(&sink, &days[2], "r12b", &[rows("d12", 1..3)]).await;

    let order = [days[2].clone(), days[1].clone(), days[0].clone()];
    let copied_before = sink.counters().bytes_copied;
    sink.publish_latest(Bytes::from_static(HEADER.as_bytes()), &order)
        .await
        .expect("publish");
    let expected = format!(
        "{HEADER}{}{}{}{}{}",
        rows("d12", 1..3),
        rows("d12", 0..1),
        rows("d11", 0..2),
        rows("d11", 2..4),
        rows("d10", 0..3)
    );
    let text = read_text(&sink, LATEST_FILE).await;
    assert_eq!(text, expected);
    // What was copied is counted: every daily row, no header.
    assert_eq!(
        sink.counters().bytes_copied - copied_before,
        (expected.len() - HEADER.len()) as u64
    );

    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let headers = reader.headers().expect("headers").clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        ["id", "user", "createdDateTime"]
    );
    let ids: Vec<String> = reader
        .records()
        .map(|r| r.expect("record")[0].to_string())
        .collect();
    assert_eq!(ids.len(), 2 + 1 + 4 + 3);
    assert_eq!(ids.first().map(String::as_str), Some("d12-1"));
    assert_eq!(ids.last().map(String::as_str), Some("d10-2"));

    // Azurite lacks Put Block From URL: Auto fell back to the download path (see module docs).
    assert_eq!(sink.latest_copy(), LatestCopy::Download);

    // latest.csv costs what changed: unchanged days reuse their committed blocks (no copy) ...
    let before = sink.counters().bytes_copied;
    sink.publish_latest(Bytes::from_static(HEADER.as_bytes()), &order)
        .await
        .expect("publish");
    assert_eq!(
        sink.counters().bytes_copied,
        before,
        "nothing changed, nothing copied"
    );
    assert_eq!(read_text(&sink, LATEST_FILE).await, expected);
    // ... and a day that changed is copied alone.
    append(&sink, &days[2], "r12c", &[rows("d12", 3..4)]).await;
    let before = sink.counters().bytes_copied;
    sink.publish_latest(Bytes::from_static(HEADER.as_bytes()), &order)
        .await
        .expect("publish");
    let changed_day = format!(
        "{}{}{}",
        rows("d12", 3..4),
        rows("d12", 1..3),
        rows("d12", 0..1)
    );
    assert_eq!(
        sink.counters().bytes_copied - before,
        changed_day.len() as u64,
        "only the changed day is copied"
    );
    assert_eq!(
        read_text(&sink, LATEST_FILE).await,
        format!(
            "{HEADER}{changed_day}{}{}{}",
            rows("d11", 0..2),
            rows("d11", 2..4),
            rows("d10", 0..3)
        )
    );

    // Republishing with fewer days replaces the whole file.
    sink.publish_latest(Bytes::from_static(HEADER.as_bytes()), &order[2..])
        .await
        .expect("publish");
    assert_eq!(
        read_text(&sink, LATEST_FILE).await,
        format!("{HEADER}{}", rows("d10", 0..3))
    );

    // With no days, latest.csv is just the header.
    sink.publish_latest(Bytes::from_static(HEADER.as_bytes()), &[])
        .await
        .expect("publish");
    assert_eq!(read_text(&sink, LATEST_FILE).await, HEADER);
}

/// ServerSide never falls back: against Azurite it fails with a clear message naming the
/// missing operation, and leaves latest.csv as it was.
pub async fn server_side_copy_is_the_production_path(ctx: Ctx) {
    let options = BlobSinkOptions {
        latest_copy: LatestCopy::ServerSide,
        ..Ctx::options()
    };
    let sink = ctx.sink_with(BASE, options);
    append(&sink, &day(5), "r5", &[rows("d5", 0..2)]).await;
    let err = ctx.clean(
        sink.publish_latest(Bytes::from_static(HEADER.as_bytes()), &[day(5)])
            .await
            .expect_err("Azurite has no Put Block From URL"),
    );
    // Azurite answers 500 to Put Block From URL with a SAS, 501 with a token.
    assert!(err.to_string().contains("Put Block From URL"), "{err}");
    assert_eq!(sink.read(LATEST_FILE).await.expect("read"), None);
    assert_eq!(sink.latest_copy(), LatestCopy::ServerSide);
}

/// A reader downloading while commits happen sees a whole version every time, never a mix.
pub async fn readers_see_old_or_new(ctx: Ctx) {
    let writer = ctx.sink();
    let reader = ctx.sink();
    let file = day(20);
    const COMMITS: u32 = 25;
    // Version k (1-based) = header + batches k..1, newest first; each batch is big enough to span
    // several network reads.
    let batch = |k: u32| rows(&format!("v{k}"), 0..200);
    let version = |k: u32| -> String {
        let mut text = HEADER.to_string();
        for j in (1..=k).rev() {
            text.push_str(&batch(j));
        }
        text
    };
    let write = async {
        for k in 1..=COMMITS {
            append(&writer, &file, &format!("run-{k}"), &[batch(k)]).await;
        }
    };
    let read = async {
        let mut seen = Vec::new();
        let started = Instant::now();
        while seen.last() != Some(&COMMITS) && started.elapsed() < Duration::from_secs(120) {
            if let Some(bytes) = reader.read(&file).await.expect("read") {
                let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
                let k = text.matches("-0,").count() as u32;
                assert_eq!(text, version(k), "a download mixed versions");
                seen.push(k);
            }
        }
        seen
    };
    let ((), seen) = tokio::join!(write, read);
    assert_eq!(seen.last(), Some(&COMMITS));
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "versions went back: {seen:?}"
    );
    assert!(seen.len() > 3, "the reader barely read: {seen:?}");
}

/// Azurite stopped mid-run: clean Unavailable errors (no secrets); after a restart the same
/// sink carries on and nothing committed was lost.
pub async fn outage_fails_cleanly_and_recovers(mut ctx: Ctx) {
    let sink = ctx.sink();
    let file = day(25);
    append(&sink, &file, "before", &[rows("before", 0..2)]).await;
    assert_eq!(
        sink.acquire("outage").await.expect("acquire"),
        LockOutcome::Acquired
    );
    let staged = BlockId::new("during", 0);
    sink.stage(&file, &staged, Bytes::from(rows("during", 0..1)))
        .await
        .expect("stage");

    ctx.azurite.stop().await;
    let retries_before = sink.request_counts().retries;
    let header = Bytes::from_static(HEADER.as_bytes());
    let started = Instant::now();
    let errors = vec![
        sink.stage(
            &file,
            &BlockId::new("during", 1),
            Bytes::from(rows("x", 0..1)),
        )
        .await
        .expect_err("stage during outage"),
        sink.prepare(&file, header.clone(), std::slice::from_ref(&staged))
            .await
            .expect_err("prepare during outage"),
        sink.read_state()
            .await
            .expect_err("read_state during outage"),
        sink.write_state(Bytes::from_static(b"{}"))
            .await
            .expect_err("write_state during outage"),
        sink.list_daily().await.expect_err("list during outage"),
        sink.publish_latest(header.clone(), std::slice::from_ref(&file))
            .await
            .expect_err("publish during outage"),
    ];
    for err in errors {
        let err = ctx.clean(err);
        assert!(matches!(err, SinkError::Unavailable { .. }), "{err:?}");
    }
    assert!(
        sink.request_counts().retries > retries_before,
        "connection failures are retried by the SDK policy"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "retries took {:?}",
        started.elapsed()
    );

    ctx.azurite.restart().await;
    // The staged block survived (Azurite persists to its folder); the run can go on.
    let ticket = sink
        .prepare(&file, header.clone(), std::slice::from_ref(&staged))
        .await
        .expect("prepare after restart");
    sink.commit(&ticket).await.expect("commit after restart");
    assert_eq!(
        read_text(&sink, &file).await,
        format!("{HEADER}{}{}", rows("during", 0..1), rows("before", 0..2))
    );
    sink.publish_latest(header, std::slice::from_ref(&file))
        .await
        .expect("publish after restart");
}

/// Missing permissions give Denied with a hint naming what to grant, and no secret.
pub async fn denied_names_the_missing_permission(ctx: Ctx, read_only: BlobAuth, hint: &str) {
    // The container does not exist and a read-only identity cannot create it.
    let sink = BlobSink::with_options(
        &ctx.container_url(),
        BASE,
        read_only.clone(),
        Ctx::options(),
    )
    .expect("sink");
    let err = ctx.clean(sink.probe().await.expect_err("probe with read-only access"));
    match &err {
        SinkError::Denied { hint: h, .. } => assert!(h.contains(hint), "{err}"),
        other => panic!("expected Denied, got {other:?}"),
    }
    // With the container created by a writer, writes are still denied.
    ctx.sink().probe().await.expect("probe with full access");
    let err = ctx.clean(
        sink.stage(&day(1), &BlockId::new("r", 0), Bytes::from_static(b"x"))
            .await
            .expect_err("stage with read-only access"),
    );
    assert!(matches!(err, SinkError::Denied { .. }), "{err:?}");
    let err = ctx.clean(
        sink.acquire("ro")
            .await
            .expect_err("acquire with read-only access"),
    );
    assert!(matches!(err, SinkError::Denied { .. }), "{err:?}");
}

/// probe creates the container, proves write/read/list/delete and leaves nothing behind;
/// list_daily only lists daily files, relative to the base.
pub async fn probe_and_list(ctx: Ctx) {
    let sink = ctx.sink();
    sink.probe().await.expect("probe creates the container");
    let other_base = ctx.sink_with("other/prefix", Ctx::options());
    append(&sink, &day(7), "r", &[rows("a", 0..1)]).await;
    append(&sink, &day(6), "r", &[rows("b", 0..1)]).await;
    append(&other_base, &day(8), "r", &[rows("c", 0..1)]).await;
    sink.publish_latest(Bytes::from_static(HEADER.as_bytes()), &[day(7)])
        .await
        .expect("publish");
    assert_eq!(
        sink.acquire("p").await.expect("acquire"),
        LockOutcome::Acquired
    );
    sink.probe().await.expect("probe while holding the lease");
    assert_eq!(
        names(&sink.list_daily().await.expect("list")),
        vec![day(6), day(7)]
    );
    assert_eq!(
        names(&other_base.list_daily().await.expect("list")),
        vec![day(8)]
    );
    let root = ctx.sink_with("", Ctx::options());
    assert_eq!(
        names(&root.list_daily().await.expect("list")),
        Vec::<String>::new()
    );
    sink.release().await.expect("release");
    let described = sink.describe();
    ctx.assert_clean(&described);
    assert!(described.contains(BASE), "{described}");
}

macro_rules! in_mode {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let ctx = $make.await;
                super::$name(ctx).await;
            }
        )*
    };
}

mod sas {
    use super::*;

    in_mode!(Ctx::sas();
        round_trip,
        is_committed_tracks_the_commit,
        stale_ticket_conflicts,
        a_late_commit_is_fenced,
        lease_excludes_a_second_writer,
        crashed_holder_lease_expires,
        publish_latest_concatenates_days,
        server_side_copy_is_the_production_path,
        readers_see_old_or_new,
        outage_fails_cleanly_and_recovers,
        probe_and_list,
        versions_pin_ranged_reads_and_put_file_replaces,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn denied_names_the_missing_permission() {
        let ctx = Ctx::sas().await;
        let read_only = BlobAuth::Sas(Secret::new(ctx.azurite.account_sas("rl")));
        super::denied_names_the_missing_permission(ctx, read_only, "c,w,r,l,a,d").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn container_sas_works_too() {
        let ctx = Ctx::sas().await;
        // A service SAS cannot create containers: let an account SAS create it first.
        ctx.sink().probe().await.expect("create the container");
        let sas = ctx.azurite.container_sas(CONTAINER, "racwdl");
        let sink = BlobSink::with_options(
            &ctx.container_url(),
            BASE,
            BlobAuth::Sas(Secret::new(sas)),
            Ctx::options(),
        )
        .expect("sink");
        append(&sink, &day(9), "r", &[rows("c", 0..2)]).await;
        assert_eq!(
            sink.acquire("c").await.expect("acquire"),
            LockOutcome::Acquired
        );
        sink.write_state(Bytes::from_static(b"{\"v\":1}"))
            .await
            .expect("write_state");
        sink.publish_latest(Bytes::from_static(HEADER.as_bytes()), &[day(9)])
            .await
            .expect("publish");
        assert_eq!(
            read_text(&sink, LATEST_FILE).await,
            format!("{HEADER}{}", rows("c", 0..2))
        );
        sink.probe().await.expect("probe");
        sink.release().await.expect("release");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broken_lease_is_detected() {
        let ctx = Ctx::sas().await;
        let sas = ctx.azurite.account_sas("rwdlacup");
        let state_url = format!("{}/{BASE}/_state/state.json?{sas}", ctx.container_url());
        let break_it = async move {
            let client = azure_storage_blob::BlobClient::new(
                Url::parse(&state_url).expect("url"),
                None,
                None,
            )
            .expect("client");
            let options = azure_storage_blob::models::BlobClientBreakLeaseOptions {
                break_period: Some(0),
                ..Default::default()
            };
            client
                .break_lease(Some(options))
                .await
                .expect("break lease");
        };
        super::broken_lease_is_detected(ctx, break_it).await;
    }
}

/// The production path of `publish_latest` (Put Block From URL), which Azurite lacks, checked
/// against a fake Blob endpoint that records what the sink sends.
mod server_side_copy {
    use super::*;
    use axum::body::Bytes as Body;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::IntoResponse;
    use std::sync::{Arc, Mutex};

    /// One request the fake received.
    #[derive(Debug, Clone)]
    pub struct Seen {
        pub method: Method,
        pub path: String,
        pub query: String,
        pub headers: HeaderMap,
        pub body: Vec<u8>,
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// A fake Blob endpoint: every daily file is `len` bytes with ETag `"0xE-<name>"`; Put Block,
    /// Put Block From URL and Put Block List succeed. Every request is logged.
    pub fn app(len: u64) -> (axum::Router, Log) {
        let seen: Log = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Body| {
                let record = record.clone();
                async move {
                    let path = uri.path().to_string();
                    let query = uri.query().unwrap_or("").to_string();
                    record.lock().expect("lock").push(Seen {
                        method: method.clone(),
                        path: path.clone(),
                        query: query.clone(),
                        headers,
                        body: body.to_vec(),
                    });
                    let name = path.rsplit('/').next().unwrap_or("").to_string();
                    if method == Method::GET && query.contains("comp=blocklist") {
                        // latest.csv does not exist yet: nothing to reuse.
                        return (
                            StatusCode::NOT_FOUND,
                            [("x-ms-error-code", "BlobNotFound".to_string())],
                        )
                            .into_response();
                    }
                    if method == Method::HEAD {
                        (
                            StatusCode::OK,
                            [
                                ("content-length", len.to_string()),
                                ("etag", format!("\"0xE-{name}\"")),
                                ("x-ms-blob-type", "BlockBlob".to_string()),
                            ],
                        )
                            .into_response()
                    } else {
                        (StatusCode::CREATED, [("etag", "\"0xNEW\"".to_string())]).into_response()
                    }
                }
            },
        );
        (app, seen)
    }

    /// Serves [`app`] over plain HTTP on 127.0.0.1:0.
    pub async fn spawn(len: u64) -> (Url, Log, tokio::task::JoinHandle<()>) {
        let (app, seen) = app(len);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let url = Url::parse(&format!("http://{addr}/devstoreaccount1/{CONTAINER}")).expect("url");
        (url, seen, task)
    }

    #[tokio::test]
    async fn sas_source_urls_ranges_and_etags() {
        let header = Bytes::from_static(HEADER.as_bytes());
        let len = 1000u64;
        let (url, seen, task) = spawn(len).await;
        let sas = "sv=2021-08-06&ss=b&srt=sco&sp=rwdlacup&se=2030-01-01T00%3A00%3A00Z&spr=https%2Chttp&sig=FAKESIGNATURE%3D";
        let sink =
            BlobSink::with_options(&url, BASE, BlobAuth::Sas(Secret::new(sas)), Ctx::options())
                .expect("sink");
        let days = [day(2), day(1)];
        sink.publish_latest(header.clone(), &days)
            .await
            .expect("publish");
        assert_eq!(
            sink.latest_copy(),
            LatestCopy::Auto,
            "no fallback against real-looking storage"
        );
        task.abort();

        let seen = seen.lock().expect("lock").clone();
        let latest_path = format!("/devstoreaccount1/{CONTAINER}/{BASE}/latest.csv");
        let copies: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.headers.contains_key("x-ms-copy-source"))
            .collect();
        assert_eq!(copies.len(), 2, "{seen:#?}");
        for (copy, file) in copies.iter().zip(&days) {
            assert_eq!(copy.method, Method::PUT);
            assert_eq!(copy.path, latest_path);
            assert!(copy.query.contains("comp=block"), "{}", copy.query);
            assert!(
                copy.query.contains("sig="),
                "the request itself carries the SAS"
            );
            let source = copy.headers["x-ms-copy-source"].to_str().expect("ascii");
            let source = Url::parse(source).expect("source URL");
            assert_eq!(
                source.path(),
                format!("/devstoreaccount1/{CONTAINER}/{BASE}/{file}")
            );
            let pairs: Vec<(String, String)> = source.query_pairs().into_owned().collect();
            assert!(
                pairs.contains(&("sig".to_string(), "FAKESIGNATURE=".to_string())),
                "the source URL carries the SAS: {pairs:?}"
            );
            assert_eq!(
                copy.headers["x-ms-source-range"],
                format!("bytes={}-{}", header.len(), len - 1).as_str()
            );
            let name = file.rsplit('/').next().expect("name");
            assert_eq!(
                copy.headers["x-ms-source-if-match"],
                format!("\"0xE-{name}\"").as_str()
            );
            assert!(!copy.headers.contains_key("x-ms-copy-source-authorization"));
            assert_eq!(copy.headers["content-length"], "0");
        }
        // Header block first, then the copies, then one Put Block List in that order, committed
        // only if latest.csv still does not exist (what the reuse decision was made on).
        let puts: Vec<&Seen> = seen.iter().filter(|s| s.method == Method::PUT).collect();
        assert!(puts[0].query.contains("comp=block") && puts[0].body == header.to_vec());
        let list = puts.last().expect("block list");
        assert!(list.query.contains("comp=blocklist"), "{}", list.query);
        assert_eq!(list.headers["if-none-match"], "*");
        assert_eq!(
            list.headers["x-ms-blob-content-type"],
            "text/csv; charset=utf-8"
        );
        let body = String::from_utf8(list.body.clone()).expect("xml");
        let block_id = |q: &str| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "blockid")
                .map(|(_, v)| v.into_owned())
                .expect("blockid")
        };
        let expected: String = std::iter::once(block_id(&puts[0].query))
            .chain(copies.iter().map(|c| block_id(&c.query)))
            .map(|id| format!("<Uncommitted>{id}</Uncommitted>"))
            .collect();
        assert!(
            body.contains(&format!("<BlockList>{expected}</BlockList>")),
            "{body}"
        );
    }

    #[tokio::test]
    async fn token_source_authorization() {
        crate::support::tls::trust_test_ca();
        let len = 500u64;
        let (app, seen) = app(len);
        let addr = crate::support::tls::spawn_https(app).await;
        let url = Url::parse(&format!("https://{addr}/devstoreaccount1/{CONTAINER}")).expect("url");
        let token = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJodHRwczovL3N0b3JhZ2UuYXp1cmUuY29tIn0.c2ln";
        let sink = BlobSink::with_options(
            &url,
            BASE,
            BlobAuth::Token(Arc::new(StaticToken(token.to_string()))),
            Ctx::options(),
        )
        .expect("sink");
        sink.publish_latest(Bytes::from_static(HEADER.as_bytes()), &[day(3)])
            .await
            .expect("publish");
        let seen = seen.lock().expect("lock").clone();
        let copy = seen
            .iter()
            .find(|s| s.headers.contains_key("x-ms-copy-source"))
            .expect("a Put Block From URL");
        assert_eq!(
            copy.headers["x-ms-copy-source-authorization"],
            format!("Bearer {token}").as_str()
        );
        assert_eq!(
            copy.headers["authorization"],
            format!("Bearer {token}").as_str()
        );
        let source =
            Url::parse(copy.headers["x-ms-copy-source"].to_str().expect("ascii")).expect("url");
        assert_eq!(source.query(), None, "no SAS with token auth");
        assert_eq!(
            copy.headers["x-ms-source-range"],
            format!("bytes={}-{}", HEADER.len(), len - 1).as_str()
        );
    }
}

/// HTTPS + `--oauth basic`: the production managed-identity path end to end. The credential is
/// azure_identity's `ManagedIdentityCredential` pointed (IDENTITY_ENDPOINT + IDENTITY_HEADER, the
/// App Service protocol, api-version 2019-08-01) at the fake identity endpoint, which issues
/// JWT-shaped tokens with aud https://storage.azure.com and an sts.windows.net issuer; Azurite
/// checks them and serves TLS with a certificate of the test CA, trusted via SSL_CERT_FILE.
/// Azurite over HTTPS with bearer tokens from the fake managed identity (also the diagnostic
/// reader's token test).
pub(crate) mod oauth {
    use super::*;
    use crate::support::env::ENV_LOCK;
    use crate::support::tls;
    use azure_core::credentials::TokenCredential;
    use fake_tenant::fake_graph::FakeGraph;
    use signin_export::credential::STORAGE_SCOPE;

    pub async fn ctx() -> Ctx {
        ctx_with_fake().await.0
    }

    /// The OAuth context and the fake identity service behind it.
    pub async fn ctx_with_fake() -> (Ctx, FakeGraph) {
        let ca = tls::test_ca();
        tls::trust_test_ca();
        let azurite = Azurite::start(Mode::HttpsOAuth {
            cert: ca.cert_path.clone(),
            key: ca.key_path.clone(),
        })
        .await;
        let fake = FakeGraph::new(vec![]);
        let addr = fake.spawn().await.expect("fake identity endpoint");
        let endpoint = format!("http://{addr}/msi/token");
        let header = fake.managed_identity_header();

        // The credential reads IDENTITY_ENDPOINT when built and IDENTITY_HEADER when it fetches
        // a token: both happen under the lock, then the token stays cached (1 h) for the test.
        let (credential, token) = {
            let _env = ENV_LOCK.lock().await;
            let saved: Vec<(&str, Option<String>)> = ["IDENTITY_ENDPOINT", "IDENTITY_HEADER"]
                .iter()
                .map(|k| (*k, std::env::var(k).ok()))
                .collect();
            std::env::set_var("IDENTITY_ENDPOINT", &endpoint);
            std::env::set_var("IDENTITY_HEADER", &header);
            let credential = azure_identity::ManagedIdentityCredential::new(None);
            let token = match &credential {
                Ok(credential) => Some(credential.get_token(&[STORAGE_SCOPE], None).await),
                Err(_) => None,
            };
            for (k, v) in saved {
                match v {
                    Some(v) => std::env::set_var(k, v),
                    None => std::env::remove_var(k),
                }
            }
            let credential = credential.expect("managed identity credential");
            let token = token
                .expect("token requested")
                .expect("token from the fake managed-identity endpoint");
            (credential, token.token.secret().to_string())
        };
        assert!(token.starts_with("eyJ"), "JWT-shaped token");
        assert!(fake.issued_tokens() >= 1);
        let credential: Arc<dyn TokenCredential> = credential;
        let ctx = Ctx::new(
            azurite,
            BlobAuth::Token(credential),
            vec![token, header],
            vec![Box::new(fake.clone())],
        );
        (ctx, fake)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn denied_names_the_missing_permission() {
        let (ctx, fake) = ctx_with_fake().await;
        // Azurite's `--oauth basic` checks issuer, audience and lifetime, not roles: an expired
        // token stands in for an identity without access.
        let expired = fake.mint_token_with_lifetime(STORAGE_SCOPE, -600);
        let rejected = BlobAuth::Token(Arc::new(StaticToken(expired)));
        super::denied_names_the_missing_permission(ctx, rejected, "Storage Blob Data Contributor")
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broken_lease_is_detected() {
        let ctx = ctx().await;
        let BlobAuth::Token(credential) = ctx.auth.clone() else {
            unreachable!("oauth context")
        };
        let state_url = format!("{}/{BASE}/_state/state.json", ctx.container_url());
        let break_it = async move {
            let client = azure_storage_blob::BlobClient::new(
                Url::parse(&state_url).expect("url"),
                Some(credential),
                None,
            )
            .expect("client");
            let options = azure_storage_blob::models::BlobClientBreakLeaseOptions {
                break_period: Some(0),
                ..Default::default()
            };
            client
                .break_lease(Some(options))
                .await
                .expect("break lease");
        };
        super::broken_lease_is_detected(ctx, break_it).await;
    }

    in_mode!(ctx();
        round_trip,
        is_committed_tracks_the_commit,
        stale_ticket_conflicts,
        a_late_commit_is_fenced,
        lease_excludes_a_second_writer,
        crashed_holder_lease_expires,
        publish_latest_concatenates_days,
        server_side_copy_is_the_production_path,
        readers_see_old_or_new,
        outage_fails_cleanly_and_recovers,
        probe_and_list,
        versions_pin_ranged_reads_and_put_file_replaces,
    );
}

/// Storage answering 503 to everything: the SDK retry policy (explicit in the sink's client
/// options) retries, then the sink reports Unavailable, with the attempts counted.
mod retries {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn server_errors_are_retried_then_unavailable() {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("x-ms-error-code", "ServerBusy")],
                    "<?xml version=\"1.0\"?><Error><Code>ServerBusy</Code><Message>Busy.\nRequestId:1</Message></Error>",
                )
                    .into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let url = Url::parse(&format!("http://{addr}/devstoreaccount1/{CONTAINER}")).expect("url");
        let options = BlobSinkOptions {
            max_retries: 3,
            ..Ctx::options()
        };
        let sink = BlobSink::with_options(
            &url,
            BASE,
            BlobAuth::Sas(Secret::new("sv=2021-08-06&sig=RETRYSIGNATURE%3D")),
            options,
        )
        .expect("sink");
        let err = sink
            .stage(&day(1), &BlockId::new("r", 0), Bytes::from_static(b"x"))
            .await
            .expect_err("503 forever");
        server.abort();
        match &err {
            SinkError::Unavailable { detail, .. } => {
                assert!(
                    detail.contains("503") && detail.contains("ServerBusy"),
                    "{detail}"
                )
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(!err.to_string().contains("RETRYSIGNATURE"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 4, "1 attempt + 3 retries");
        assert_eq!(
            sink.request_counts(),
            signin_export::sink::blob::RequestCounts {
                requests: 1,
                retries: 3,
                bytes_copied: 0,
            }
        );
    }
}
