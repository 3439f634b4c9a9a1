//! Measures the simulated tenant's sign-ins as Graph serves them: the mean JSON size of a record
//! in each version's answer, and what the fake holds in memory per record.
//!
//! `cargo run --release -p fake-tenant --example record_size -- [ROWS]` (default 100000).

use fake_tenant::{signins, ApiVersion, FakeGraph, TenantSpec};

/// Resident memory of this process, in KiB (Linux; 0 elsewhere).
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let days = 3;
    // ~5.5 sign-ins per user and day, as the end-to-end bench sizes its tenant.
    let users = (rows as f64 / (f64::from(days) * 5.5)).ceil() as usize;
    let spec = TenantSpec {
        users,
        days,
        seed: 7,
        end: time::OffsetDateTime::now_utc(),
    };
    let before = resident_kib();
    let started = std::time::Instant::now();
    let fake = FakeGraph::new(signins(&spec).take(rows));
    let built = started.elapsed();
    let held = resident_kib().saturating_sub(before);
    let count = fake.signin_count();
    println!(
        "{count} sign-ins generated and stored in {:.1} s; the fake holds {} bytes per record",
        built.as_secs_f64(),
        held * 1024 / count.max(1) as u64
    );
    let every_type = "signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'nonInteractiveUser' \
                      or t eq 'servicePrincipal' or t eq 'managedIdentity')";
    for (version, filter) in [(ApiVersion::Beta, Some(every_type)), (ApiVersion::V1, None)] {
        let served = fake
            .expected(version, filter)
            .unwrap_or_else(|e| panic!("{e}"));
        let bytes: usize = served.iter().map(|r| r.to_string().len()).sum();
        let properties: usize = served
            .iter()
            .map(|r| r.as_object().map_or(0, |o| o.len()))
            .max()
            .unwrap_or(0);
        println!(
            "{}: {} records served, mean {} JSON bytes per record, {} properties",
            version.segment(),
            served.len(),
            bytes / served.len().max(1),
            properties
        );
    }
}
