//! Benchmark of the transform and encoding stages: flatten + CSV-encode rows per second for
//! realistic sign-ins, flattening alone, and encoding alone — `CsvEncoder` (which drives
//! `csv-core` straight into the output buffer) against the `csv` crate's high-level `Writer` as a
//! baseline. Two data sets: 1000 synthetic records shaped like a real page, and the demo's
//! simulated tenant.
//!
//! Run: `cargo bench --bench encode` (criterion; throughput is reported in rows/s).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fake_tenant::tenant::{generate, TenantSpec};
use serde_json::json;
use signin_export::csv::{replace_line_breaks, CsvEncoder};
use signin_export::graph::model::SignIn;
use signin_export::transform::flatten::{Cell, Columns};

/// How many sign-ins one iteration encodes (one Graph page is at most 1000).
const ROWS: usize = 1000;

/// Deterministic xorshift, so every run measures the same records.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Sign-ins shaped like a real tenant's page: mostly clean ASCII, some names with commas,
/// quotes, non-ASCII and (rarely) line breaks or formula-like text, failures with reasons,
/// coordinates on every located sign-in.
fn realistic_signins(count: usize) -> Vec<SignIn> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let names = [
        "Jane Doe",
        "Doe, John",
        "Zoë Åström-Núñez",
        "Ana \"Nana\" Silva",
        "山田 太郎",
        "Björn Müller",
        "Chris O'Neil",
        "=cmd|' /C calc'!A0",
        "Line\nBreak",
        "Priya Patel",
    ];
    let clients = [
        "Exchange ActiveSync",
        "Exchange ActiveSync",
        "Browser",
        "Mobile Apps and Desktop clients",
        "IMAP4",
        "Authenticated SMTP",
    ];
    let places = [
        ("Seattle", "Washington", "US", 47.6062, -122.3321),
        ("London", "England", "GB", 51.5072, -0.1276),
        ("Zürich", "Zurich", "CH", 47.3769, 8.5417),
        ("São Paulo", "São Paulo", "BR", -23.5505, -46.6333),
        ("Sydney", "New South Wales", "AU", -33.8688, 151.2093),
        ("Tokyo", "Tokyo", "JP", 35.6762, 139.6503),
    ];
    let systems = ["Ios 17.1", "Android 14", "Windows 10", "MacOs"];
    let failures = [
        (0, "Other."),
        (0, "Other."),
        (0, "Other."),
        (
            50126,
            "Error validating credentials due to invalid username or password.",
        ),
        (
            53003,
            "Access has been blocked by Conditional Access policies.",
        ),
    ];
    (0..count)
        .map(|i| {
            let name = rng.pick(&names);
            let (city, state, country, lat, lon) = places[(rng.next() % places.len() as u64) as usize];
            let (code, reason) = failures[(rng.next() % failures.len() as u64) as usize];
            let upn = format!("user{}@contoso.com", rng.next() % 5000);
            let device = if rng.chance(30) {
                json!({"deviceId": "", "displayName": "", "operatingSystem": rng.pick(&systems),
                       "browser": "Mobile Safari", "isCompliant": false, "isManaged": false, "trustType": ""})
            } else {
                json!({"deviceId": format!("{:08x}-aaaa-bbbb-cccc-{:012x}", rng.next() as u32, rng.next() & 0xFFFF_FFFF_FFFF),
                       "displayName": format!("DESKTOP-{:X}", rng.next() % 0xFFFFF), "operatingSystem": rng.pick(&systems),
                       "browser": "Edge 120.0.0", "isCompliant": true, "isManaged": true, "trustType": "Azure AD joined"})
            };
            SignIn::from_json(json!({
                "id": format!("{:08x}-6301-4ee5-be62-{:012x}", i, rng.next() & 0xFFFF_FFFF_FFFF),
                "createdDateTime": format!("2026-11-28T{:02}:{:02}:{:02}Z", 23 - (i / 3600) % 24, (i / 60) % 60, i % 60),
                "userDisplayName": name,
                "userPrincipalName": upn,
                "userId": format!("{:08x}-2c1b-422c-98fd-5ce52859a4a3", rng.next() as u32),
                "appId": "00000002-0000-0ff1-ce00-000000000000",
                "appDisplayName": "Office 365 Exchange Online",
                "ipAddress": format!("203.0.{}.{}", rng.next() % 256, rng.next() % 256),
                "clientAppUsed": rng.pick(&clients),
                "correlationId": format!("{:08x}-919b-4017-85d8-44be2f5f5483", rng.next() as u32),
                "conditionalAccessStatus": if code == 53003 { "failure" } else { "success" },
                "isInteractive": true,
                "riskDetail": "none", "riskLevelAggregated": "none", "riskLevelDuringSignIn": "none",
                "riskState": "none", "riskEventTypes_v2": [],
                "resourceDisplayName": "Office 365 Exchange Online",
                "resourceId": "00000002-0000-0ff1-ce00-000000000000",
                "status": {"errorCode": code, "failureReason": reason, "additionalDetails": null},
                "deviceDetail": device,
                "location": {"city": city, "state": state, "countryOrRegion": country,
                             "geoCoordinates": {"altitude": null, "latitude": lat, "longitude": lon}},
                "appliedConditionalAccessPolicies": []
            }))
            .expect("bench records are valid sign-ins")
        })
        .collect()
}

/// The `csv` crate's high-level writer as a caller would use it directly: clean each text
/// cell the same way (line breaks, guard), then `write_record`.
struct CsvCrateEncoder {
    writer: csv::Writer<Vec<u8>>,
    scratch: String,
}

impl CsvCrateEncoder {
    fn new() -> Self {
        Self::with_buffer(Vec::with_capacity(1 << 20))
    }

    fn with_buffer(buffer: Vec<u8>) -> Self {
        CsvCrateEncoder {
            writer: csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(buffer),
            scratch: String::new(),
        }
    }

    fn encode_row(&mut self, cells: &[Cell<'_>]) {
        for cell in cells {
            match cell {
                Cell::Text(text) => {
                    let guarded = text
                        .as_bytes()
                        .first()
                        .is_some_and(|b| matches!(b, b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'));
                    let clean = replace_line_breaks(text, &mut self.scratch);
                    if guarded {
                        let field = format!("'{clean}");
                        self.writer
                            .write_field(field)
                            .expect("Vec writes cannot fail");
                    } else {
                        self.writer
                            .write_field(clean)
                            .expect("Vec writes cannot fail");
                    }
                }
                other => self
                    .writer
                    .write_field(other.as_str())
                    .expect("Vec writes cannot fail"),
            }
        }
        self.writer
            .write_record(None::<&[u8]>)
            .expect("Vec writes cannot fail");
    }

    /// Finishes the batch and returns its length, reusing the buffer for the next one.
    fn take(&mut self) -> usize {
        let writer = std::mem::replace(&mut self.writer, csv::Writer::from_writer(Vec::new()));
        let mut buffer = writer.into_inner().expect("Vec writes cannot fail");
        let len = buffer.len();
        buffer.clear();
        *self = CsvCrateEncoder::with_buffer(buffer);
        len
    }
}

/// The simulated tenant of `signin-export demo` (the same generator backs the test fake).
fn demo_signins() -> Vec<SignIn> {
    let spec = TenantSpec {
        users: 60,
        ..TenantSpec::demo(1)
    };
    generate(&spec)
        .into_iter()
        .map(|v| SignIn::from_json(v).expect("demo records are valid sign-ins"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let columns = Columns::default_set();
    for (set, signins) in [
        ("synthetic", realistic_signins(ROWS)),
        ("demo-tenant", demo_signins()),
    ] {
        bench_set(c, &columns, set, &signins);
    }
}

fn bench_set(c: &mut Criterion, columns: &Columns, set: &str, signins: &[SignIn]) {
    let rows = signins.len();

    // Sanity: our encoder and the csv crate's writer agree byte for byte on this data set.
    {
        let mut ours = CsvEncoder::new(columns, true);
        let mut out = Vec::new();
        let mut crate_enc = CsvCrateEncoder::new();
        for s in signins {
            let row = columns.row(s);
            ours.encode_row(&row, &mut out);
            crate_enc.encode_row(&row);
        }
        crate_enc.writer.flush().expect("Vec writes cannot fail");
        assert_eq!(
            &out,
            crate_enc.writer.get_ref(),
            "CsvEncoder and csv::Writer disagree"
        );
        println!(
            "data set {set}: {rows} sign-ins, {} CSV bytes ({} bytes/row)",
            out.len(),
            out.len() / rows
        );
    }

    interleaved_ratios(columns, set, signins);

    let mut group = c.benchmark_group(format!("flatten+encode/{set}"));
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function(BenchmarkId::from_parameter("CsvEncoder"), |b| {
        let mut enc = CsvEncoder::new(columns, true);
        let mut out = Vec::with_capacity(1 << 20);
        let mut cells = Vec::with_capacity(columns.len());
        b.iter(|| {
            out.clear();
            for s in signins {
                columns.row_into(s, &mut cells);
                enc.encode_row(&cells, &mut out);
            }
            black_box(out.len())
        })
    });
    group.bench_function(BenchmarkId::from_parameter("csv::Writer"), |b| {
        let mut enc = CsvCrateEncoder::new();
        let mut cells = Vec::with_capacity(columns.len());
        b.iter(|| {
            for s in signins {
                columns.row_into(s, &mut cells);
                enc.encode_row(&cells);
            }
            black_box(enc.take())
        })
    });
    group.finish();

    let mut group = c.benchmark_group(format!("flatten/{set}"));
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("default-columns", |b| {
        let mut cells = Vec::with_capacity(columns.len());
        b.iter(|| {
            let mut n = 0;
            for s in signins {
                columns.row_into(s, &mut cells);
                n += cells.len();
            }
            black_box(n)
        })
    });
    group.finish();

    // Encoding alone, on pre-flattened rows.
    let flat: Vec<Vec<Cell<'_>>> = signins.iter().map(|s| columns.row(s)).collect();
    let mut group = c.benchmark_group(format!("encode/{set}"));
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function(BenchmarkId::from_parameter("CsvEncoder"), |b| {
        let mut enc = CsvEncoder::new(columns, true);
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            for row in &flat {
                enc.encode_row(row, &mut out);
            }
            black_box(out.len())
        })
    });
    group.bench_function(BenchmarkId::from_parameter("csv::Writer"), |b| {
        let mut enc = CsvCrateEncoder::new();
        b.iter(|| {
            for row in &flat {
                enc.encode_row(row);
            }
            black_box(enc.take())
        })
    });
    group.finish();
}

/// Criterion runs one benchmark after another, so on a shared machine load drift can skew the
/// comparison. This times flattening alone, `CsvEncoder` and `csv::Writer` in alternation over
/// the whole data set (41 rounds) and prints each one's median and its ratio to flatten +
/// `CsvEncoder`, the production path.
fn interleaved_ratios(columns: &Columns, set: &str, signins: &[SignIn]) {
    use std::time::{Duration, Instant};
    const ROUNDS: usize = 41;
    const NAMES: [&str; 3] = ["flatten+CsvEncoder", "flatten+csv::Writer", "flatten only"];
    let mut times: [Vec<Duration>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut ours = CsvEncoder::new(columns, true);
    let mut crate_enc = CsvCrateEncoder::new();
    let mut out = Vec::with_capacity(1 << 20);
    let mut cells = Vec::with_capacity(columns.len());
    for _ in 0..ROUNDS {
        for (i, times) in times.iter_mut().enumerate() {
            let start = Instant::now();
            out.clear();
            for s in signins {
                columns.row_into(s, &mut cells);
                match i {
                    0 => ours.encode_row(&cells, &mut out),
                    1 => crate_enc.encode_row(&cells),
                    _ => {
                        black_box(&cells);
                    }
                }
            }
            if i == 1 {
                black_box(crate_enc.take());
            }
            black_box(out.len());
            times.push(start.elapsed());
        }
    }
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[ROUNDS / 2]
        })
        .collect();
    let rows = signins.len() as f64;
    for (name, median) in NAMES.iter().zip(&medians) {
        println!(
            "interleaved {set:<11} {name:<20} median {:>8.3} ms {:>9.0} rows/s  {:.2}x the production path's time",
            median.as_secs_f64() * 1e3,
            rows / median.as_secs_f64(),
            median.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
