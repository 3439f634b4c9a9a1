//! Tallies out of memory: a tally's entries — devices, places, and who signed in at each place —
//! in one total order, written as sorted runs of length-prefixed binary entries (spilled to local
//! disk while a day is tallied, stored per daily file in the sink) and merged back as a stream.
//! Merging combines the entries of one key from every run ([`Group::absorb`]; a place's user
//! once), so the merge of the runs of any split of the rows equals the tally of all of them, and
//! memory holds one entry per run instead of the tally.
//!
//! Why binary and not JSON lines: keys and newest sign-ins join their parts with a line break,
//! which JSON escapes and unescapes part by part; reading and writing runs as JSON took a third
//! of the summaries' CPU time (BENCHMARKS.md). An entry here is copied, never escaped.

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

/// One entry of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: EntryKey,
    /// The group of a device or place; `None` for a place's user.
    pub group: Option<Group>,
}

/// The most bytes one entry may take: far above any real one (a key and a newest sign-in are a
/// few cells), low enough that a damaged length is caught before it is read.
const MAX_ENTRY_BYTES: usize = 1024 * 1024;

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

    /// Appends the entry: its length (`u32`, little-endian), then the kind (`u8`) and the key;
    /// for a device or place, then sign-ins and failures (`u64` each), first seen and newest.
    /// Every text is its length (`u32`) and its UTF-8 bytes.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let (kind, key) = self.key.parts();
        out.push(kind);
        put_text(out, key);
        if kind != 2 {
            debug_assert!(
                self.group.is_some(),
                "a device or place entry without its group"
            );
            let (sign_ins, failures, first_seen, newest) = match &self.group {
                Some(g) => (
                    g.sign_ins,
                    g.failures,
                    g.first_seen.as_str(),
                    g.newest.text(),
                ),
                None => (0, 0, "", ""),
            };
            out.extend_from_slice(&sign_ins.to_le_bytes());
            out.extend_from_slice(&failures.to_le_bytes());
            put_text(out, first_seen);
            put_text(out, newest);
        }
        // An entry's texts are cells of one row: far below 4 GiB.
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// An entry from its bytes (without the length in front).
    pub fn read_from(mut bytes: &[u8]) -> Result<Entry, String> {
        let kind = take(&mut bytes, 1)?[0];
        let key = take_text(&mut bytes)?;
        let (key, group) = match kind {
            0 | 1 => {
                let sign_ins = take_u64(&mut bytes)?;
                let failures = take_u64(&mut bytes)?;
                let group = Group {
                    sign_ins,
                    failures,
                    first_seen: take_text(&mut bytes)?,
                    newest: Newest::from_text(take_text(&mut bytes)?),
                };
                let key = if kind == 0 {
                    EntryKey::Device(key)
                } else {
                    EntryKey::Place(key)
                };
                (key, Some(group))
            }
            2 => (EntryKey::PlaceUser(key), None),
            other => return Err(format!("unknown entry kind {other}")),
        };
        if !bytes.is_empty() {
            return Err(format!("{} bytes after an entry's end", bytes.len()));
        }
        Ok(Entry { key, group })
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if bytes.len() < n {
        return Err("an entry ends early".into());
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

fn take_u32(bytes: &mut &[u8]) -> Result<u32, String> {
    let mut le = [0; 4];
    le.copy_from_slice(take(bytes, 4)?);
    Ok(u32::from_le_bytes(le))
}

fn take_u64(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut le = [0; 8];
    le.copy_from_slice(take(bytes, 8)?);
    Ok(u64::from_le_bytes(le))
}

fn take_text(bytes: &mut &[u8]) -> Result<String, String> {
    let len = take_u32(bytes)? as usize;
    let text = take(bytes, len)?;
    String::from_utf8(text.to_vec()).map_err(|_| "a text that is not UTF-8".to_string())
}

/// The length of the entry `bytes` starts with, once its 4 bytes are there.
fn entry_len(mut bytes: &[u8]) -> Result<Option<usize>, String> {
    if bytes.len() < 4 {
        return Ok(None);
    }
    match take_u32(&mut bytes)? as usize {
        len if len > MAX_ENTRY_BYTES => Err(format!("an entry of {len} bytes")),
        len => Ok(Some(len)),
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
    entry: Vec<u8>,
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
            entry: Vec::new(),
        })
    }

    fn push(&mut self, entry: &Entry) -> Result<(), SummaryError> {
        self.entry.clear();
        entry.write_to(&mut self.entry);
        self.bytes += self.entry.len() as u64;
        self.out.write_all(&self.entry).map_err(spill_error)
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
    /// The next bytes, `None` at the end. Entries may span chunks.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SummaryError>;

    /// What the run is, for errors (a stored tally's path).
    fn describe(&self) -> String;
}

/// The entries of one run, one after another.
struct Entries {
    chunks: Box<dyn Chunks>,
    chunk: Bytes,
    /// The start of an entry the last chunk ended inside.
    partial: Vec<u8>,
}

impl Entries {
    async fn next(&mut self) -> Result<Option<Entry>, SummaryError> {
        let damaged = |chunks: &dyn Chunks, e: String| {
            SummaryError::Run(format!("{}: {e}", chunks.describe()))
        };
        loop {
            if self.partial.is_empty() {
                // Usually the whole entry is in the chunk: read in place.
                let len = entry_len(&self.chunk).map_err(|e| damaged(&*self.chunks, e))?;
                if let Some(len) = len.filter(|len| self.chunk.len() >= 4 + len) {
                    let entry = self.chunk.split_to(4 + len);
                    return Entry::read_from(&entry[4..])
                        .map(Some)
                        .map_err(|e| damaged(&*self.chunks, e));
                }
                self.partial.extend_from_slice(&self.chunk);
                self.chunk.clear();
            } else {
                let len = entry_len(&self.partial).map_err(|e| damaged(&*self.chunks, e))?;
                let want = len.map_or(4, |len| 4 + len);
                let more = (want - self.partial.len()).min(self.chunk.len());
                self.partial.extend_from_slice(&self.chunk.split_to(more));
                if len.is_some() && self.partial.len() == want {
                    let entry = Entry::read_from(&self.partial[4..]);
                    self.partial.clear();
                    return entry.map(Some).map_err(|e| damaged(&*self.chunks, e));
                }
                if !self.chunk.is_empty() {
                    // The length is complete now: go on with the entry.
                    continue;
                }
            }
            match self.chunks.next_chunk().await? {
                Some(chunk) => self.chunk = chunk,
                None if self.partial.is_empty() => return Ok(None),
                None => {
                    return Err(SummaryError::Run(format!(
                        "{} ends inside an entry",
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
    runs: Vec<Entries>,
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
                .map(|chunks| Entries {
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

    /// Chunks cut where a test says.
    struct Pieces(std::collections::VecDeque<Bytes>);

    #[async_trait]
    impl Chunks for Pieces {
        async fn next_chunk(&mut self) -> Result<Option<Bytes>, SummaryError> {
            Ok(self.0.pop_front())
        }
        fn describe(&self) -> String {
            "pieces".into()
        }
    }

    async fn read_back(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Entry>, SummaryError> {
        let mut pieces = std::collections::VecDeque::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&bytes.len()]) {
            pieces.push_back(Bytes::copy_from_slice(&bytes[from..cut]));
            from = cut;
        }
        let mut entries = Entries {
            chunks: Box::new(Pieces(pieces)),
            chunk: Bytes::new(),
            partial: Vec::new(),
        };
        let mut out = Vec::new();
        while let Some(entry) = entries.next().await? {
            out.push(entry);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn entries_with_any_text_read_back_as_written_wherever_the_chunks_end() {
        let written = vec![
            Entry::group(
                EntryKey::Device("a\"b\\c\n\u{1F600}".into()),
                group(7, "2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z\n\t,x"),
            ),
            Entry::group(EntryKey::Place(String::new()), group(u64::MAX, "", "")),
            Entry::pair(EntryKey::PlaceUser("p\nu".into())),
        ];
        let mut bytes = Vec::new();
        for entry in &written {
            entry.write_to(&mut bytes);
        }
        for a in 0..=bytes.len() {
            assert_eq!(
                read_back(&bytes, &[a]).await.unwrap(),
                written,
                "cut at {a}"
            );
            for b in a..=bytes.len() {
                assert_eq!(
                    read_back(&bytes, &[a, b]).await.unwrap(),
                    written,
                    "{a}, {b}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_damaged_run_is_an_error_naming_it() {
        let mut bytes = Vec::new();
        Entry::pair(EntryKey::PlaceUser("p\nu".into())).write_to(&mut bytes);
        let cut = read_back(&bytes[..bytes.len() - 1], &[]).await.unwrap_err();
        assert!(
            cut.to_string().contains("pieces ends inside an entry"),
            "{cut}"
        );
        let mut kind = bytes.clone();
        kind[4] = 9;
        let kind = read_back(&kind, &[]).await.unwrap_err().to_string();
        assert!(kind.contains("pieces: unknown entry kind 9"), "{kind}");
        let mut long = bytes.clone();
        long[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let long = read_back(&long, &[]).await.unwrap_err().to_string();
        assert!(long.contains("an entry of 4294967295 bytes"), "{long}");
        let mut inner = bytes.clone();
        inner[5] = 200;
        let inner = read_back(&inner, &[]).await.unwrap_err().to_string();
        assert!(inner.contains("ends early"), "{inner}");
        let text = read_back(b"[2,\"k\",null]\n", &[]).await.unwrap_err();
        assert!(text.to_string().contains("delete _state/tally/"), "{text}");
    }
}
