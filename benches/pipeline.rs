//! Benchmark of the whole CPU path of one Graph page, starting from its JSON bytes: parse into
//! typed records (`graph::client::parse_page`), filter (the `exchange` preset's client-side
//! check), flatten and CSV-encode the default columns into one block buffer — what the export
//! does per page, minus the network and the sink. Pages are 1,000 sign-ins of the simulated
//! tenant (nested location / device / status / Conditional Access policies, and the display
//! names that break naive CSV writers: commas, quotes, line breaks, formula-like text, emoji).
//!
//! Run: `cargo bench --bench pipeline` (criterion). Two throughputs for the same work:
//! `pipeline/rows` in rows/s and `pipeline/bytes` in MB/s of page JSON. `…+tally` adds what a
//! run does to each row it takes for the summaries (the encoder also gives the cells it wrote,
//! `summary::DayTally::add` counts them; a fresh tally per page, its worst case since every group
//! is new), and `tally only` is the counting alone. Times are the bench thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), not the wall clock.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fake_tenant::tenant::{generate, TenantSpec};
use serde_json::{json, Value};
use signin_export::csv::{CsvEncoder, RowCells};
use signin_export::graph::client::{parse_page, PageBuffer};
use signin_export::summary::{DayTally, Row, RowLayout};
use signin_export::transform::filter::{Preset, SignInFilter};
use signin_export::transform::flatten::Columns;

/// Sign-ins per page: Graph's maximum, what a busy tenant's pages hold.
const PAGE: usize = 1000;

/// One page's body as Graph sends it, from the simulated tenant (every user and hostile name).
fn page_bytes() -> Vec<u8> {
    let spec = TenantSpec {
        users: 300,
        days: 1,
        seed: 11,
        end: time::macros::datetime!(2026-11-28 12:00 UTC),
    };
    let mut records = generate(&spec);
    assert!(records.len() >= PAGE, "tenant too small for one page");
    records.truncate(PAGE);
    let body = json!({
        "@odata.context": "https://graph.microsoft.com/beta/$metadata#auditLogs/signIns",
        "value": Value::Array(records),
        "@odata.nextLink": "https://graph.microsoft.com/beta/auditLogs/signIns?$top=1000&$skiptoken=abc"
    });
    serde_json::to_vec(&body).expect("JSON")
}

fn filter(preset: &str) -> SignInFilter {
    SignInFilter::new(Preset::parse(preset).expect("known preset"), None, None)
}

fn bench(c: &mut Criterion) {
    let body = page_bytes();
    let columns = Columns::default_set();
    // What the export parses each record for: the columns' properties and the filter's.
    let properties = columns.properties().union(SignInFilter::properties());
    let filters = [("all", filter("all")), ("exchange", filter("exchange"))];
    let mut encoder = CsvEncoder::new(&columns, true);
    let mut block = Vec::with_capacity(4 << 20);
    // The page is read into a reused buffer, as the Graph client does: a fresh ~6.6 MB allocation
    // per iteration would time the allocator's page faults, not the export.
    let mut page_buffer = PageBuffer::from(Vec::with_capacity(body.len()));

    let layout =
        RowLayout::new(&columns.names()).expect("the default columns have createdDateTime");
    let add = |tally: &mut DayTally, cells: &RowCells| {
        tally
            .add(&layout, Row::new(cells.text(), cells.ends()))
            .expect("a page's tally fits in memory");
    };
    // The cells of every row the `all` filter takes from the page, for `tally only`.
    let page_cells: Vec<RowCells> = {
        let page = parse_page(body.clone(), 1, properties).expect("page parses");
        let mut out = Vec::new();
        let (_, all) = &filters[0];
        page.rows()
            .iter()
            .filter(|signin| all.matches(signin))
            .map(|signin| {
                let mut cells = RowCells::default();
                encoder.encode_signin_with_cells(&columns, signin, &mut out, Some(&mut cells));
                cells
            })
            .collect()
    };
    let mut cells = RowCells::default();
    // One page through parse + filter + flatten + encode (+ tally): the CPU time this thread
    // spent on it (the copy into the page buffer, the client's read, left out).
    let mut export_page = |filter: Option<&SignInFilter>,
                           block: &mut Vec<u8>,
                           mut tally: Option<&mut DayTally>|
     -> Duration {
        block.clear();
        page_buffer.bytes_mut().extend_from_slice(&body);
        let started = thread_cpu();
        let page =
            parse_page(std::mem::take(&mut page_buffer), 1, properties).expect("page parses");
        if let Some(filter) = filter {
            for signin in page.rows().iter().filter(|s| filter.matches(s)) {
                let wanted = tally.is_some().then_some(&mut cells);
                encoder.encode_signin_with_cells(&columns, signin, block, wanted);
                if let Some(tally) = tally.as_deref_mut() {
                    add(tally, &cells);
                }
            }
        }
        black_box(page.rows().len());
        page_buffer = page.rows.into_buffer();
        thread_cpu().saturating_sub(started)
    };
    for (name, filter) in &filters {
        let mut tally = DayTally::default();
        export_page(Some(filter), &mut block, Some(&mut tally));
        // Rows hold no line break (the columns' rules), so lines are rows.
        let rows = block.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(tally.rows, rows);
        println!(
            "page: {} bytes of JSON, {PAGE} sign-ins; filter {name}: {rows} rows, {} CSV bytes",
            body.len(),
            block.len()
        );
    }

    for (unit, throughput) in [
        ("rows", Throughput::Elements(PAGE as u64)),
        ("bytes", Throughput::Bytes(body.len() as u64)),
    ] {
        let mut group = c.benchmark_group(format!("pipeline/{unit}"));
        group.throughput(throughput);
        for (name, filter) in &filters {
            group.bench_function(format!("parse+filter({name})+flatten+encode"), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| export_page(Some(filter), &mut block, None))
                        .sum()
                })
            });
        }
        let (_, all) = &filters[0];
        group.bench_function("parse+filter(all)+flatten+encode+tally", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let mut tally = DayTally::default();
                        let spent = export_page(Some(all), &mut block, Some(&mut tally));
                        black_box(tally.rows);
                        spent
                    })
                    .sum()
            })
        });
        group.bench_function("tally only", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let started = thread_cpu();
                        let mut tally = DayTally::default();
                        for cells in &page_cells {
                            add(&mut tally, cells);
                        }
                        black_box(tally.rows);
                        thread_cpu().saturating_sub(started)
                    })
                    .sum()
            })
        });
        group.bench_function("parse only", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| export_page(None, &mut block, None))
                    .sum()
            })
        });
        group.finish();
    }
}

/// CPU time of the calling thread: unlike the wall clock, not stretched by other processes
/// taking the CPU, which on a shared machine moved the wall time of the same page by 50 %.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives on this stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

criterion_group!(benches, bench);
criterion_main!(benches);
