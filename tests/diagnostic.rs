//! The diagnostic-settings source: every fake sign-in's diagnostic line gives the Graph path's CSV
//! row, and the reader, against real Azurite append blobs, reads each complete line once across
//! appends between reads, an older hour growing, a duplicate delivery (within a read and across
//! reads), a truncated last line and a malformed line, and an Event Hubs `{"records":[…]}` line
//! with a bad record in it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use fake_tenant::diagnostic::{
    archive, event_hubs_message, received_at, to_line, Archive, ArchiveFaults, Phase,
};
use fake_tenant::tenant::{generate, TenantSpec, TENANT_ID};
use serde_json::Value;
use signin_export::config::Secret;
use signin_export::csv::CsvEncoder;
use signin_export::diagnostic::cursor::id_key;
use signin_export::diagnostic::{
    advanced, parse_line, plan_listing, plan_read, Cursors, DiagnosticReader, ListedBlob, Listing,
    Malformed, ReadPlan, ReaderOptions, SourceError,
};
use signin_export::graph::model::{EventType, SignInRecord};
use signin_export::sink::blob::BlobAuth;
use signin_export::transform::flatten::Columns;
use time::macros::datetime;

use crate::support::azurite::Azurite;
use crate::support::diagnostic;
use crate::support::fake::spawn_http;

fn tenant(users: usize, days: u32) -> Vec<Value> {
    generate(&TenantSpec {
        users,
        days,
        seed: 19,
        end: datetime!(2026-11-28 12:00:00.5 UTC),
    })
}

fn event_type(record: &Value) -> EventType {
    let name = record["signInEventTypes"][0].as_str().expect("event type");
    EventType::ALL
        .into_iter()
        .find(|t| t.as_str() == name)
        .expect("known event type")
}

/// The CSV row of `signin` for `columns` (formula guard on, as by default).
fn row(columns: &Columns, signin: &SignInRecord<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    CsvEncoder::new(columns, true).encode_signin(columns, signin, &mut out);
    out
}

#[test]
fn every_fake_records_diagnostic_line_gives_its_graph_row() {
    let records = tenant(40, 3);
    assert!(records.len() > 500);
    let column_sets = [Columns::default_set(), Columns::every()];
    for record in &records {
        let graph_json = serde_json::to_vec(record).unwrap();
        let graph = SignInRecord::from_slice(&graph_json).unwrap();
        let line = to_line(record, TENANT_ID, received_at(record).unwrap()).unwrap();
        let line = serde_json::to_vec(&line).unwrap();
        let mut parsed = parse_line(&line, event_type(record)).unwrap();
        let diagnostic = parsed.next().unwrap().unwrap();
        assert!(parsed.next().is_none());
        assert_eq!(diagnostic.signin.id(), graph.id());
        // Same instant, so the same daily file.
        assert_eq!(diagnostic.signin.created, graph.created);
        for columns in &column_sets {
            let (graph_row, diagnostic_row) =
                (row(columns, &graph), row(columns, &diagnostic.signin));
            assert_eq!(
                String::from_utf8_lossy(&diagnostic_row),
                String::from_utf8_lossy(&graph_row),
                "{}",
                graph.id()
            );
        }
    }
}

#[test]
fn an_event_hubs_message_gives_the_same_rows() {
    let records = tenant(5, 1);
    let interactive: Vec<&Value> = records
        .iter()
        .filter(|r| event_type(r) == EventType::InteractiveUser)
        .take(5)
        .collect();
    let lines: Vec<Value> = interactive
        .iter()
        .map(|r| to_line(r, TENANT_ID, received_at(r).unwrap()).unwrap())
        .collect();
    let message = serde_json::to_vec(&event_hubs_message(lines)).unwrap();
    let columns = Columns::every();
    let parsed: Vec<_> = parse_line(&message, EventType::InteractiveUser)
        .unwrap()
        .collect();
    assert_eq!(parsed.len(), interactive.len());
    for (record, parsed) in interactive.iter().zip(parsed) {
        let graph_json = serde_json::to_vec(record).unwrap();
        let graph = SignInRecord::from_slice(&graph_json).unwrap();
        assert_eq!(
            row(&columns, &parsed.unwrap().signin),
            row(&columns, &graph)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The reader against Azurite
// ---------------------------------------------------------------------------------------------

/// A reader that follows the module's exactly-once recipe: list every category's container, read
/// what [`plan_read`] says from the cursors, dedup by id, advance the cursors to what was
/// consumed (here at once: the run does it with the commit).
struct Consumer {
    reader: DiagnosticReader,
    cursors: Cursors,
    seen: HashSet<u128>,
    /// Ids taken, in order.
    rows: Vec<String>,
    /// Ids skipped as already taken.
    duplicates: Vec<String>,
    malformed: Vec<Malformed>,
    /// Lines read by the last `read`.
    lines_read: usize,
    max_line: usize,
}

impl Consumer {
    fn new(azurite: &Azurite, options: ReaderOptions) -> Consumer {
        let max_line = options.max_line_bytes;
        let auth = BlobAuth::Sas(Secret::new(azurite.account_sas("rl")));
        Consumer {
            reader: DiagnosticReader::with_options(
                &diagnostic::account_url(azurite),
                auth,
                options,
            )
            .unwrap(),
            cursors: Cursors::new(),
            seen: HashSet::new(),
            rows: Vec::new(),
            duplicates: Vec::new(),
            malformed: Vec::new(),
            lines_read: 0,
            max_line,
        }
    }

    async fn listed(&self) -> Vec<ListedBlob> {
        let mut all = Vec::new();
        for event_type in EventType::ALL {
            match self.reader.list(event_type, &Listing::Container).await {
                Ok(blobs) => all.extend(blobs),
                Err(SourceError::NoContainer { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        all
    }

    async fn read(&mut self) {
        self.lines_read = 0;
        for blob in self.listed().await {
            let path = blob.key.path();
            let (from, to) = match plan_read(self.cursors.get(&path), &blob) {
                ReadPlan::UpToDate => continue,
                ReadPlan::Read { from, to } => (from, to),
                ReadPlan::Restart { to, why } => panic!("{path} restarted ({why:?}) up to {to}"),
            };
            let mut lines = self.reader.open(&blob, from, to).unwrap();
            while let Some(piece) = lines.next_piece().await.unwrap() {
                for oversized in &piece.oversized {
                    self.malformed
                        .push(Malformed::oversized(&path, oversized, self.max_line));
                }
                for line in &piece.lines {
                    self.lines_read += 1;
                    let records = match parse_line(line.bytes, blob.key.event_type) {
                        Ok(records) => records,
                        Err(e) => {
                            self.malformed
                                .push(Malformed::record(&path, line.offset, None, &e));
                            continue;
                        }
                    };
                    // A record of an Event Hubs message is named by its index, as the run does.
                    let message = records.is_message();
                    for (i, record) in records.enumerate() {
                        match record {
                            Ok(record) => {
                                let id = record.signin.id().to_string();
                                if self.seen.insert(id_key(&id)) {
                                    self.rows.push(id);
                                } else {
                                    self.duplicates.push(id);
                                }
                            }
                            Err(e) => self.malformed.push(Malformed::record(
                                &path,
                                line.offset,
                                message.then_some(i),
                                &e,
                            )),
                        }
                    }
                }
            }
            self.cursors.insert(path, advanced(&blob, lines.consumed()));
        }
    }
}

/// Lines written by the appends of `phase` (a cut line counts in the phase that ends it).
fn lines_in(archive: &Archive, phase: Phase) -> usize {
    archive
        .phase(phase)
        .map(|a| a.bytes.iter().filter(|&&b| b == b'\n').count())
        .sum()
}

#[tokio::test]
async fn the_reader_takes_each_complete_line_once_across_appends_and_faults() {
    let azurite = Azurite::start_http().await;
    let records = tenant(30, 2);
    let every = ArchiveFaults::every();
    let archive = archive(&records, TENANT_ID, every);
    let all_ids: BTreeSet<String> = archive.lines.keys().cloned().collect();
    assert_eq!(all_ids.len(), records.len());

    // Small pieces: most lines span two reads.
    let options = ReaderOptions {
        piece_bytes: 997,
        max_line_bytes: 64 * 1024,
        ..Default::default()
    };
    let mut consumer = Consumer::new(&azurite, options);

    diagnostic::write(&azurite, &archive, Phase::First).await;
    consumer.read().await;
    assert_eq!(consumer.lines_read, lines_in(&archive, Phase::First));
    assert_eq!(
        consumer.duplicates, archive.duplicated,
        "the repeated delivery is skipped"
    );
    let (malformed, expected) = diagnostic::malformed_places(&consumer.malformed, &archive);
    assert_eq!(
        malformed, expected,
        "the malformed line, by blob and offset"
    );
    assert!(
        consumer.malformed[0]
            .reason
            .starts_with("not a JSON object")
            && consumer.malformed[0].record.is_none(),
        "{:?}",
        consumer.malformed
    );
    // The truncated line waits: exactly one blob's cursor stops short of its length.
    let short: Vec<(&String, u64, u64)> = consumer
        .cursors
        .iter()
        .filter(|(_, c)| c.offset != c.length)
        .map(|(path, c)| (path, c.offset, c.length))
        .collect();
    assert_eq!(short.len(), 1, "{short:?}");
    let first_rows = consumer.rows.len();
    assert!(first_rows < all_ids.len());

    // Appended after the first read: the newest hours, an older hour, the rest of the cut line.
    diagnostic::write(&azurite, &archive, Phase::Later).await;
    consumer.read().await;
    assert_eq!(
        consumer.lines_read,
        lines_in(&archive, Phase::Later),
        "only what was appended is read"
    );
    assert_eq!(consumer.rows.len(), all_ids.len(), "every sign-in once");
    assert_eq!(
        consumer.rows.iter().cloned().collect::<BTreeSet<_>>(),
        all_ids
    );
    assert_eq!(
        consumer.duplicates,
        [archive.duplicated.clone(), archive.repeated_later.clone()].concat(),
        "the repeat of a line read before is skipped too"
    );
    assert_eq!(
        consumer.malformed.len(),
        1,
        "the malformed line is reported once"
    );
    assert!(consumer.cursors.values().all(|c| c.offset == c.length));

    // Nothing new: nothing read.
    consumer.read().await;
    assert_eq!(consumer.lines_read, 0);
    assert_eq!(consumer.rows.len(), all_ids.len());
}

#[tokio::test]
async fn an_event_hubs_message_in_a_blob_gives_its_rows_and_names_a_bad_record_by_index() {
    let azurite = Azurite::start_http().await;
    let records = tenant(10, 1);
    let interactive: Vec<&Value> = records
        .iter()
        .filter(|r| event_type(r) == EventType::InteractiveUser)
        .take(5)
        .collect();
    assert_eq!(interactive.len(), 5);
    let line_of = |r: &Value| to_line(r, TENANT_ID, received_at(r).unwrap()).unwrap();
    // A line, then a message of three records (the middle one without `properties`), a line.
    let mut bad = line_of(interactive[2]);
    bad.as_object_mut().unwrap().remove("properties");
    let message = event_hubs_message(vec![line_of(interactive[1]), bad, line_of(interactive[3])]);
    let mut bytes = Vec::new();
    for line in [line_of(interactive[0]), message, line_of(interactive[4])] {
        serde_json::to_writer(&mut bytes, &line).unwrap();
        bytes.push(b'\n');
    }
    let message_at = bytes.iter().position(|&b| b == b'\n').unwrap() as u64 + 1;
    let container = EventType::InteractiveUser.diagnostic_container();
    let blob = Archive::blob_name(TENANT_ID, received_at(interactive[0]).unwrap());
    diagnostic::append(&azurite, container, &blob, &bytes).await;

    let mut consumer = Consumer::new(&azurite, ReaderOptions::default());
    consumer.read().await;
    assert_eq!(consumer.lines_read, 3);
    let id = |i: usize| interactive[i]["id"].as_str().unwrap().to_string();
    assert_eq!(
        consumer.rows,
        [0, 1, 3, 4].map(id),
        "the message's good records"
    );
    assert_eq!(
        consumer.malformed,
        vec![Malformed {
            blob: format!("{container}/{blob}"),
            offset: message_at,
            record: Some(1),
            reason: "no `properties` object".into(),
        }],
        "the bad record, by its line's offset and its index in `records`"
    );
    assert!(consumer.cursors.values().all(|c| c.offset == c.length));
}

#[tokio::test]
async fn listing_by_hour_prefixes_finds_the_same_blobs_and_failures_name_the_fix() {
    let azurite = Azurite::start_http().await;
    let records = tenant(10, 1);
    let archive = archive(&records, TENANT_ID, ArchiveFaults::default());
    diagnostic::write(&azurite, &archive, Phase::First).await;
    let consumer = Consumer::new(&azurite, ReaderOptions::default());

    let all = consumer.listed().await;
    assert_eq!(all.len(), {
        let blobs: BTreeSet<(&str, &str)> = archive
            .appends
            .iter()
            .map(|a| (a.container, a.blob.as_str()))
            .collect();
        blobs.len()
    });
    let prefixes: Vec<String> = all
        .iter()
        .filter_map(|b| b.hour.as_ref().map(|h| h.prefix.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(prefixes, vec![format!("tenantId={TENANT_ID}/")]);
    let hours: BTreeMap<EventType, Vec<&ListedBlob>> =
        all.iter().fold(BTreeMap::new(), |mut by, blob| {
            by.entry(blob.key.event_type)
                .or_insert_with(Vec::new)
                .push(blob);
            by
        });
    for (event_type, blobs) in hours {
        let first = blobs
            .iter()
            .filter_map(|b| b.hour.as_ref())
            .map(|h| h.hour)
            .min()
            .unwrap();
        let last = blobs
            .iter()
            .filter_map(|b| b.hour.as_ref())
            .map(|h| h.hour)
            .max()
            .unwrap();
        let listing = plan_listing(&prefixes, first, last);
        assert!(matches!(listing, Listing::Prefixes(_)), "{listing:?}");
        let by_prefix = consumer.reader.list(event_type, &listing).await.unwrap();
        assert_eq!(by_prefix.iter().collect::<Vec<_>>(), blobs);
        // One hour only.
        let one = plan_listing(&prefixes, last, last);
        let newest = consumer.reader.list(event_type, &one).await.unwrap();
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].hour.as_ref().unwrap().hour, last);
    }

    // No diagnostic setting for a category yet: its container does not exist.
    let missing = EventType::ALL.into_iter().find(|t| {
        !archive
            .appends
            .iter()
            .any(|a| a.container == t.diagnostic_container())
    });
    if let Some(missing) = missing {
        let err = consumer
            .reader
            .list(missing, &Listing::Container)
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::NoContainer { .. }), "{err}");
        assert!(err.to_string().contains("create the setting"), "{err}");
    }

    // A SAS that may list but not read: the read is denied, and the message says what to grant.
    let sas = azurite.account_sas("l");
    let auth = BlobAuth::Sas(Secret::new(sas.clone()));
    let lister = DiagnosticReader::with_options(
        &diagnostic::account_url(&azurite),
        auth,
        ReaderOptions::default(),
    )
    .unwrap();
    let blob = &all[0];
    let mut lines = lister.open(blob, 0, blob.length).unwrap();
    let err = lines.next_piece().await.unwrap_err();
    assert!(matches!(err, SourceError::Denied { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("r and l"), "{text}");
    let sig = url::form_urlencoded::parse(sas.as_bytes())
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert!(!text.contains(&sig), "{text}");
}

#[tokio::test]
async fn the_reader_reads_with_a_managed_identity_token_over_https() {
    let (ctx, _fake) = crate::blob_sink::oauth::ctx_with_fake().await;
    let records = tenant(6, 1);
    let archive = archive(&records, TENANT_ID, ArchiveFaults::default());
    diagnostic::write(&ctx.azurite, &archive, Phase::First).await;
    let reader = DiagnosticReader::with_options(
        &diagnostic::account_url(&ctx.azurite),
        ctx.auth(),
        ReaderOptions::default(),
    )
    .unwrap();
    let mut ids = BTreeSet::new();
    for event_type in EventType::ALL {
        let blobs = match reader.list(event_type, &Listing::Container).await {
            Ok(blobs) => blobs,
            Err(SourceError::NoContainer { .. }) => continue,
            Err(e) => panic!("{e}"),
        };
        for blob in blobs {
            let mut lines = reader.open(&blob, 0, blob.length).unwrap();
            while let Some(piece) = lines.next_piece().await.unwrap() {
                for line in &piece.lines {
                    for record in parse_line(line.bytes, event_type).unwrap() {
                        ids.insert(record.unwrap().signin.id().to_string());
                    }
                }
            }
            assert_eq!(lines.consumed(), blob.length);
        }
    }
    assert_eq!(ids, archive.lines.keys().cloned().collect());
    assert!(reader.request_counts().requests > 0);
}

// ---------------------------------------------------------------------------------------------
// `check` explains this source's failures
// ---------------------------------------------------------------------------------------------

/// Runs `signin-export check` with the diagnostic source on `storage`, tokens from the fake's
/// managed identity; returns the exit code and stdout.
async fn check(env: Vec<(String, String)>, storage: String) -> (Option<i32>, String) {
    let out = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_signin-export"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .env("SIGNINS_SOURCE", "diagnostic-settings")
        .env("SIGNINS_DIAGNOSTIC_STORAGE", storage)
        .args(["check", "--destination"])
        .arg(out.path());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn check_explains_a_missing_setting_a_missing_role_and_another_tenants_blobs() {
    let fake = spawn_http(Vec::new()).await;
    let env = fake.managed_identity_env("beta");
    let azurite = Azurite::start_http().await;
    let (read_list, list_only) = (azurite.account_sas("rl"), azurite.account_sas("l"));
    let storage = |sas: &str| format!("{}?{sas}", diagnostic::account_url(&azurite));

    // No diagnostic setting yet: no insights-logs-* container.
    let (code, stdout) = check(env.clone(), storage(&read_list)).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("[FAIL] diagnostic setting: no insights-logs-* sign-in container"),
        "{stdout}"
    );
    assert!(stdout.contains("[ ok ] destination"), "{stdout}");

    // This tenant's setting archives both default categories: all well.
    let records: Vec<Value> = tenant(6, 1)
        .into_iter()
        .filter(|r| {
            matches!(
                event_type(r),
                EventType::InteractiveUser | EventType::NonInteractiveUser
            )
        })
        .collect();
    let ours = archive(&records, fake.fake.tenant_id(), ArchiveFaults::default());
    diagnostic::write(&azurite, &ours, Phase::First).await;
    let (code, stdout) = check(env.clone(), storage(&read_list)).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("[ ok ] insights-logs-signinlogs: readable"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "[ ok ] tenant: the archived sign-ins are of this app's tenant {}",
            fake.fake.tenant_id()
        )),
        "{stdout}"
    );

    // Read access missing: the SAS (or role) says what to grant.
    let (code, stdout) = check(env.clone(), storage(&list_only)).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("[FAIL] insights-logs-")
            && stdout.contains("denied")
            && stdout.contains("r and l"),
        "{stdout}"
    );

    // Another tenant's setting writes to the same account.
    let theirs = archive(
        &records[..2],
        "0badc0de-0000-4000-8000-000000000000",
        ArchiveFaults::default(),
    );
    diagnostic::write(&azurite, &theirs, Phase::First).await;
    let (code, stdout) = check(env, storage(&read_list)).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("[FAIL] tenant: blobs of another tenant")
            && stdout.contains("0badc0de-0000-4000-8000-000000000000"),
        "{stdout}"
    );
    // The SAS never shows.
    let sig = url::form_urlencoded::parse(read_list.as_bytes())
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert!(!stdout.contains(&sig));
}
