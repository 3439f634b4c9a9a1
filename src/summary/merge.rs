//! Tallies out of memory: a tally's entries — devices, places, and who signed in at each place —
//! in one total order, written as sorted runs of JSON lines (spilled to local disk while a day is
//! tallied, stored per daily file in the sink) and merged back as a stream. Merging combines the
//! entries of one key from every run ([`Group::absorb`]; a place's user once), so the merge of
//! the runs of any split of the rows equals the tally of all of them, and memory holds one line
//! per run instead of the tally.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::{Read, Write};

use async_trait::async_trait;
use bytes::Bytes;

use super::tally::{Group, Newest};
use super::SummaryError;

/// What an entry is about. The variant order is the order of a run: devices, places, then the
/// users at each place (so a place's group is known before its users).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKey {
    /// A device key (see [`super::DayTally`]).
    Device(String),
    /// A place key.
    Place(String),
    /// A place key and a user, joined: that the user signed in there.
    PlaceUser(String),
}

impl EntryKey {
    /// The kind (as written: the variant's order) and the key's text.
    pub fn parts(&self) -> (u8, &str) {
        match self {
            EntryKey::Device(key) => (0, key),
            EntryKey::Place(key) => (1, key),
            EntryKey::PlaceUser(key) => (2, key),
        }
    }
}

/// One line of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: EntryKey,
    /// The group of a device or place; `None` for a place's user.
    pub group: Option<Group>,
}

/// A line as written: `[kind, key, [signIns, failures, firstSeen, newest]]` or `[2, key, null]`.
type Line = (u8, String, Option<(u64, u64, String, String)>);

impl Entry {
    pub(super) fn group(key: EntryKey, group: Group) -> Entry {
        Entry {
            key,
            group: Some(group),
        }
    }

    pub(super) fn pair(key: EntryKey) -> Entry {
        Entry { key, group: None }
    }

    /// Appends the entry as one JSON line.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let (kind, key) = self.key.parts();
        let group = self.group.as_ref().map(|g| {
            (
                g.sign_ins,
                g.failures,
                g.first_seen.as_str(),
                g.newest.text(),
            )
        });
        // Writing into a Vec cannot fail, and these types always serialise.
        let _ = serde_json::to_writer(&mut *out, &(kind, key, group));
        out.push(b'\n');
    }

    /// An entry from one line (without its line break).
    pub fn read_line(line: &[u8]) -> Result<Entry, String> {
        let (kind, key, group): Line = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let key = match kind {
            0 => EntryKey::Device(key),
            1 => EntryKey::Place(key),
            2 => EntryKey::PlaceUser(key),
            other => return Err(format!("unknown entry kind {other}")),
        };
        let group = group.map(|(sign_ins, failures, first_seen, newest)| Group {
            sign_ins,
            failures,
            first_seen,
            newest: Newest::from_text(newest),
        });
        if matches!(key, EntryKey::PlaceUser(_)) != group.is_none() {
            return Err("a group where none belongs, or none where one does".into());
        }
        Ok(Entry { key, group })
    }
}

/// A sorted run spilled to a local temporary file (created readable by this user only, since
/// it holds user names; removed when dropped, also when a run fails).
#[derive(Debug)]
pub struct SpillRun {
    path: tempfile::TempPath,
    /// Bytes in the file.
    bytes: u64,
}

/// Bytes of a spilled run read at a time: a merge holds one such chunk per run.
const RUN_CHUNK: usize = 16 * 1024;
/// Runs a tally keeps: past this many, its smallest are merged into one, so that a merge of a
/// tally's runs holds [`RUN_CHUNK`] times at most this many bytes however many rows it has.
pub const MAX_RUNS: usize = 16;

fn spill_error(e: std::io::Error) -> SummaryError {
    SummaryError::Spill(format!(
        "cannot write a tally run to {}: {e}",
        std::env::temp_dir().display()
    ))
}

/// Writes a run, entry by entry (in order, one key each).
struct RunWriter {
    out: std::io::BufWriter<std::fs::File>,
    path: tempfile::TempPath,
    bytes: u64,
    line: Vec<u8>,
}

impl RunWriter {
    fn new() -> Result<RunWriter, SummaryError> {
        let file = tempfile::Builder::new()
            .prefix("signin-export-tally-")
            .tempfile()
            .map_err(spill_error)?;
        let (file, path) = file.into_parts();
        Ok(RunWriter {
            out: std::io::BufWriter::with_capacity(64 * 1024, file),
            path,
            bytes: 0,
            line: Vec::new(),
        })
    }

    fn push(&mut self, entry: &Entry) -> Result<(), SummaryError> {
        self.line.clear();
        entry.write_line(&mut self.line);
        self.bytes += self.line.len() as u64;
        self.out.write_all(&self.line).map_err(spill_error)
    }

    fn finish(mut self) -> Result<SpillRun, SummaryError> {
        self.out.flush().map_err(spill_error)?;
        Ok(SpillRun {
            path: self.path,
            bytes: self.bytes,
        })
    }
}

impl SpillRun {
    /// Writes `entries`, which must come in order, one key each.
    pub(super) fn write(entries: impl Iterator<Item = Entry>) -> Result<SpillRun, SummaryError> {
        let mut writer = RunWriter::new()?;
        for entry in entries {
            writer.push(&entry)?;
        }
        writer.finish()
    }

    /// The run as a source of chunks.
    pub fn into_chunks(self) -> Result<Box<dyn Chunks>, SummaryError> {
        let file = std::fs::File::open(&self.path)
            .map_err(|e| SummaryError::Spill(format!("cannot read back a tally run: {e}")))?;
        Ok(Box::new(RunChunks { file, _run: self }))
    }

    /// Merges the smallest of `runs` into one until at most [`MAX_RUNS`] remain (each entry is
    /// rewritten about log₁₆ of the runs times).
    pub(super) fn compact(runs: &mut Vec<SpillRun>) -> Result<(), SummaryError> {
        while runs.len() > MAX_RUNS {
            runs.sort_by_key(|run| Reverse(run.bytes));
            let smallest = runs.split_off(runs.len() - MAX_RUNS);
            // Local files: their chunks never wait, so the merge runs to its end on this thread
            // (which may be a runtime's: no reactor or timer is involved).
            runs.push(futures::executor::block_on(SpillRun::merge(smallest))?);
        }
        Ok(())
    }

    async fn merge(runs: Vec<SpillRun>) -> Result<SpillRun, SummaryError> {
        let chunks = runs
            .into_iter()
            .map(SpillRun::into_chunks)
            .collect::<Result<Vec<_>, _>>()?;
        let mut merge = Merge::new(chunks).await?;
        let mut writer = RunWriter::new()?;
        while let Some(entry) = merge.next().await? {
            writer.push(&entry)?;
        }
        writer.finish()
    }
}

struct RunChunks {
    file: std::fs::File,
    _run: SpillRun,
}

#[async_trait]
impl Chunks for RunChunks {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SummaryError> {
        // A local file, read 16 KiB at a time: brief enough not to need the blocking pool.
        let mut buf = vec![0; RUN_CHUNK];
        let n = self
            .file
            .read(&mut buf)
            .map_err(|e| SummaryError::Spill(format!("cannot read back a tally run: {e}")))?;
        buf.truncate(n);
        Ok((n > 0).then(|| Bytes::from(buf)))
    }

    fn describe(&self) -> String {
        format!("a tally run spilled to {}", self._run.path.display())
    }
}

/// The bytes of a run, a chunk at a time (a spilled run, a stored tally read in ranges).
#[async_trait]
pub trait Chunks: Send {
    /// The next bytes, `None` at the end. Lines may span chunks.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SummaryError>;

    /// What the run is, for errors (a stored tally's path).
    fn describe(&self) -> String;
}

/// The entries of one run, line by line.
struct Lines {
    chunks: Box<dyn Chunks>,
    chunk: Bytes,
    /// The start of a line the last chunk ended inside.
    partial: Vec<u8>,
}

impl Lines {
    async fn next(&mut self) -> Result<Option<Entry>, SummaryError> {
        loop {
            if let Some(end) = self.chunk.iter().position(|&b| b == b'\n') {
                let line = self.chunk.split_to(end + 1);
                let line = &line[..end];
                let entry = if self.partial.is_empty() {
                    Entry::read_line(line)
                } else {
                    self.partial.extend_from_slice(line);
                    let entry = Entry::read_line(&self.partial);
                    self.partial.clear();
                    entry
                };
                return entry
                    .map(Some)
                    .map_err(|e| SummaryError::Run(format!("{}: {e}", self.chunks.describe())));
            }
            self.partial.extend_from_slice(&self.chunk);
            match self.chunks.next_chunk().await? {
                Some(chunk) => self.chunk = chunk,
                None if self.partial.is_empty() => return Ok(None),
                None => {
                    return Err(SummaryError::Run(format!(
                        "{} ends inside a line",
                        self.chunks.describe()
                    )))
                }
            }
        }
    }
}

/// The next entry of one run, ordered for the merge's heap: by key, then by run.
struct Head {
    entry: Entry,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        self.entry
            .key
            .cmp(&other.entry.key)
            .then(self.run.cmp(&other.run))
    }
}

/// The merge of sorted runs: each key once, its entries combined.
pub struct Merge {
    runs: Vec<Lines>,
    heads: BinaryHeap<Reverse<Head>>,
    /// The last key returned (kind and text): runs must be sorted, and a run out of order is an
    /// error.
    last: Option<(u8, String)>,
}

impl Merge {
    pub async fn new(runs: Vec<Box<dyn Chunks>>) -> Result<Merge, SummaryError> {
        let mut merge = Merge {
            runs: runs
                .into_iter()
                .map(|chunks| Lines {
                    chunks,
                    chunk: Bytes::new(),
                    partial: Vec::new(),
                })
                .collect(),
            heads: BinaryHeap::new(),
            last: None,
        };
        for run in 0..merge.runs.len() {
            merge.advance(run).await?;
        }
        Ok(merge)
    }

    async fn advance(&mut self, run: usize) -> Result<(), SummaryError> {
        if let Some(entry) = self.runs[run].next().await? {
            self.heads.push(Reverse(Head { entry, run }));
        }
        Ok(())
    }

    /// The next key's entry, combined over the runs; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Entry>, SummaryError> {
        let Some(Reverse(Head { mut entry, run })) = self.heads.pop() else {
            return Ok(None);
        };
        self.advance(run).await?;
        while self
            .heads
            .peek()
            .is_some_and(|Reverse(head)| head.entry.key == entry.key)
        {
            let Some(Reverse(head)) = self.heads.pop() else {
                break;
            };
            if let (Some(mine), Some(more)) = (entry.group.as_mut(), head.entry.group) {
                mine.absorb(more);
            }
            self.advance(head.run).await?;
        }
        let (kind, key) = entry.key.parts();
        if self
            .last
            .as_ref()
            .is_some_and(|(last_kind, last_key)| (*last_kind, last_key.as_str()) >= (kind, key))
        {
            return Err(SummaryError::Run(format!(
                "{} is out of order",
                self.runs[run].chunks.describe()
            )));
        }
        // The last key's buffer is reused: no allocation per entry.
        let last = self.last.get_or_insert_with(|| (kind, String::new()));
        last.0 = kind;
        last.1.clear();
        last.1.push_str(key);
        Ok(Some(entry))
    }
}

/// The merge of `runs` (tests).
#[cfg(test)]
pub(crate) async fn merge_of(runs: Vec<SpillRun>) -> Merge {
    let chunks = runs.into_iter().map(|r| r.into_chunks().unwrap()).collect();
    Merge::new(chunks).await.unwrap()
}

/// Every entry of `runs`, merged (tests).
#[cfg(test)]
pub(crate) async fn entries_of_runs(runs: Vec<SpillRun>) -> Vec<Entry> {
    let mut merge = merge_of(runs).await;
    let mut out = Vec::new();
    while let Some(entry) = merge.next().await.unwrap() {
        out.push(entry);
    }
    out
}

/// Every entry of `tally`, merged (tests).
#[cfg(test)]
pub(crate) async fn entries_of(tally: super::DayTally) -> Vec<Entry> {
    entries_of_runs(tally.into_runs().unwrap()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: u64, first: &str, newest: &str) -> Group {
        Group {
            sign_ins: n,
            failures: 0,
            first_seen: first.into(),
            newest: Newest::from_text(newest.into()),
        }
    }

    async fn merged(runs: Vec<Vec<Entry>>) -> Vec<Entry> {
        let runs = runs
            .into_iter()
            .map(|run| SpillRun::write(run.into_iter()).unwrap())
            .collect();
        entries_of_runs(runs).await
    }

    #[tokio::test]
    async fn runs_merge_into_one_entry_per_key() {
        let a = vec![
            Entry::group(EntryKey::Device("a".into()), group(1, "t2", "t2\nx")),
            Entry::group(EntryKey::Place("p".into()), group(2, "t1", "t3\ny")),
            Entry::pair(EntryKey::PlaceUser("p\nu".into())),
        ];
        let b = vec![
            Entry::group(EntryKey::Device("a".into()), group(3, "t1", "t1\nz")),
            Entry::group(EntryKey::Device("b".into()), group(1, "t1", "t1\nz")),
            Entry::pair(EntryKey::PlaceUser("p\nu".into())),
            Entry::pair(EntryKey::PlaceUser("p\nv".into())),
        ];
        let out = merged(vec![a, b]).await;
        assert_eq!(
            out,
            vec![
                Entry::group(EntryKey::Device("a".into()), group(4, "t1", "t2\nx")),
                Entry::group(EntryKey::Device("b".into()), group(1, "t1", "t1\nz")),
                Entry::group(EntryKey::Place("p".into()), group(2, "t1", "t3\ny")),
                Entry::pair(EntryKey::PlaceUser("p\nu".into())),
                Entry::pair(EntryKey::PlaceUser("p\nv".into())),
            ]
        );
    }

    #[test]
    fn many_runs_compact_into_few_with_the_same_entries() {
        let runs_of = || -> Vec<SpillRun> {
            (0..40u64)
                .map(|i| {
                    let entries = vec![
                        Entry::group(EntryKey::Device(format!("d{}", i % 7)), group(1, "t", "t")),
                        Entry::pair(EntryKey::PlaceUser(format!("p\nu{i}"))),
                    ];
                    SpillRun::write(entries.into_iter()).unwrap()
                })
                .collect()
        };
        let expected = futures::executor::block_on(entries_of_runs(runs_of()));
        let mut runs = runs_of();
        SpillRun::compact(&mut runs).unwrap();
        assert!(runs.len() <= MAX_RUNS, "{}", runs.len());
        let compacted = futures::executor::block_on(entries_of_runs(runs));
        assert_eq!(compacted, expected);
        assert_eq!(compacted.len(), 7 + 40);
        assert_eq!(
            compacted[0].group.as_ref().unwrap().sign_ins,
            6,
            "d0: 0, 7, …, 35"
        );
    }

    #[tokio::test]
    async fn a_run_out_of_order_is_an_error_not_a_wrong_summary() {
        let run = vec![
            Entry::pair(EntryKey::PlaceUser("b".into())),
            Entry::pair(EntryKey::PlaceUser("a".into())),
        ];
        let chunks = vec![SpillRun::write(run.into_iter())
            .unwrap()
            .into_chunks()
            .unwrap()];
        let mut merge = Merge::new(chunks).await.unwrap();
        assert!(merge.next().await.unwrap().is_some());
        let error = merge.next().await.unwrap_err().to_string();
        assert!(error.contains("out of order"), "{error}");
    }

    #[test]
    fn lines_with_any_text_read_back_as_written() {
        let entry = Entry::group(
            EntryKey::Device("a\"b\\c\n\u{1F600}".into()),
            group(7, "2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z\n\t,x"),
        );
        let mut line = Vec::new();
        entry.write_line(&mut line);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(Entry::read_line(&line[..line.len() - 1]).unwrap(), entry);
        assert!(Entry::read_line(b"[2,\"k\",[1,0,\"a\",\"b\"]]").is_err());
        assert!(Entry::read_line(b"[0,\"k\",null]").is_err());
    }
}
