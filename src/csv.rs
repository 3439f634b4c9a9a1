//! CSV encoding: UTF-8 BOM + header, RFC 4180 quoting, no line breaks in fields, formula guard.
//!
//! The format, byte for byte:
//!
//! * The [header](CsvEncoder::header) is the UTF-8 BOM (`EF BB BF`), the column names joined
//!   with `,`, and `CRLF`. It is the same bytes every time for the same columns; rows never
//!   carry a BOM.
//! * Each row ends with `CRLF` (RFC 4180). Fields are quoted only when they contain `,` or `"`,
//!   and a `"` inside a quoted field is doubled (RFC 4180, as the `csv` crate writes it). A row
//!   of a single empty field is written as `""` so it is not a blank line.
//! * **No line breaks inside any field**: CR, LF, a CRLF pair, VT, FF, NEL (U+0085), LINE
//!   SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029) each become one space, so Power BI's
//!   default CSV import (which does not honour quoted newlines) never splits a row.
//! * **Formula guard** (on by default, `SIGNINS_CSV_SAFE`): a text cell whose *original* value
//!   begins with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`. The guard looks at the value
//!   before line breaks are replaced, so a leading CR is still guarded (it then becomes a space:
//!   `"\r=cmd"` → `' =cmd`); a tab is not a line break and stays. [`Cell::Number`] and
//!   [`Cell::Bool`] cells are never altered (a longitude of `-122.3` stays `-122.3`).
//!
//! Quoting is the `csv` crate's own writer core (`csv-core`), writing straight into the caller's
//! buffer. A hand-written single pass was tried and measured (`benches/encode.rs`): 1.1–1.16×
//! faster end to end, where flattening dominates and Graph's paging is the real limit — not
//! worth a second quoting implementation to keep correct.

use std::borrow::Cow;

use bytes::Bytes;

use crate::graph::model::SignInRecord;
use crate::transform::flatten::{Cell, Columns};

/// The UTF-8 byte order mark that starts every file (Excel and Power BI use it to detect UTF-8).
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The record terminator.
pub const TERMINATOR: &[u8] = b"\r\n";

/// Encodes rows of [`Cell`]s for one set of columns.
pub struct CsvEncoder {
    header: Bytes,
    columns: usize,
    guard: bool,
    core: csv_core::Writer,
    /// csv-core's output window, reused.
    core_buf: Vec<u8>,
    /// Reused buffer for fields that need line breaks replaced.
    scratch: String,
    /// Reused buffer for cells the flattener builds (numbers, joined lists, the location).
    cell: String,
}

/// One encoded row's cells as written (after line-break replacement and the formula guard,
/// before quoting): one text and where each cell ends in it.
#[derive(Debug, Default, Clone)]
pub struct RowCells {
    text: String,
    ends: Vec<usize>,
}

impl RowCells {
    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    fn push(&mut self, cell: &str) {
        self.text.push_str(cell);
        self.ends.push(self.text.len());
    }

    /// The cells, one after another.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where each cell ends in [`RowCells::text`].
    pub fn ends(&self) -> &[usize] {
        &self.ends
    }
}

impl std::fmt::Debug for CsvEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvEncoder")
            .field("columns", &self.columns)
            .field("guard", &self.guard)
            .finish()
    }
}

impl CsvEncoder {
    /// An encoder for `columns`; `formula_guard` is `SIGNINS_CSV_SAFE`.
    pub fn new(columns: &Columns, formula_guard: bool) -> CsvEncoder {
        CsvEncoder::with_header(&columns.names(), formula_guard)
    }

    /// An encoder for rows of these column names (the summaries' own columns), with the same
    /// rules as the export's.
    pub fn with_header(names: &[&str], formula_guard: bool) -> CsvEncoder {
        let mut header = Vec::with_capacity(BOM.len() + names.len() * 16);
        header.extend_from_slice(BOM);
        header.extend_from_slice(names.join(",").as_bytes());
        header.extend_from_slice(TERMINATOR);
        CsvEncoder {
            header: Bytes::from(header),
            columns: names.len(),
            guard: formula_guard,
            core: csv_core::WriterBuilder::new()
                .terminator(csv_core::Terminator::CRLF)
                .build(),
            core_buf: Vec::new(),
            scratch: String::new(),
            cell: String::new(),
        }
    }

    /// UTF-8 BOM + header row + CRLF; identical every time for the same columns.
    pub fn header(&self) -> Bytes {
        self.header.clone()
    }

    /// Appends one encoded row (with its CRLF) to `out`.
    pub fn encode_row(&mut self, cells: &[Cell<'_>], out: &mut Vec<u8>) {
        debug_assert_eq!(
            cells.len(),
            self.columns,
            "row has the wrong number of cells"
        );
        if let [only] = cells {
            if only.as_str().is_empty() {
                out.extend_from_slice(b"\"\"\r\n");
                return;
            }
        }
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.encode_cell(cell, out, None);
        }
        out.extend_from_slice(TERMINATOR);
    }

    /// Flattens `signin` for `columns` and appends its encoded row (with its CRLF) to `out`,
    /// cell by cell: the same bytes as [`CsvEncoder::encode_row`] of [`Columns::row`], without
    /// building the row.
    pub fn encode_signin(
        &mut self,
        columns: &Columns,
        signin: &SignInRecord<'_>,
        out: &mut Vec<u8>,
    ) {
        self.encode_signin_with_cells(columns, signin, out, None);
    }

    /// [`CsvEncoder::encode_signin`], also giving the row's cells as written into `cells`, when
    /// given (cleared first): what reading the row back would give, without reading it back.
    pub fn encode_signin_with_cells(
        &mut self,
        columns: &Columns,
        signin: &SignInRecord<'_>,
        out: &mut Vec<u8>,
        mut cells: Option<&mut RowCells>,
    ) {
        if let Some(cells) = cells.as_deref_mut() {
            cells.clear();
        }
        debug_assert_eq!(
            columns.len(),
            self.columns,
            "encoder built for other columns"
        );
        let mut cell_text = std::mem::take(&mut self.cell);
        if let [only] = columns.columns() {
            let cell = only.cell_into(signin, &mut cell_text);
            if cell.as_str().is_empty() {
                out.extend_from_slice(b"\"\"\r\n");
                if let Some(cells) = cells {
                    cells.push("");
                }
            } else {
                self.encode_cell(&cell, out, cells);
                out.extend_from_slice(TERMINATOR);
            }
        } else {
            for (i, column) in columns.columns().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let cell = column.cell_into(signin, &mut cell_text);
                self.encode_cell(&cell, out, cells.as_deref_mut());
            }
            out.extend_from_slice(TERMINATOR);
        }
        self.cell = cell_text;
    }

    /// Writes one cell; `cells` gets its text as written, unquoted.
    fn encode_cell(&mut self, cell: &Cell<'_>, out: &mut Vec<u8>, cells: Option<&mut RowCells>) {
        // The cell's text as written, and whether csv-core must decide on quoting it.
        let (written, quoted): (Cow<'_, str>, bool) = match cell {
            Cell::Empty => (Cow::Borrowed(""), false),
            Cell::Bool(true) => (Cow::Borrowed("true"), false),
            Cell::Bool(false) => (Cow::Borrowed("false"), false),
            // Numbers come from the flattener as plain decimals: nothing to quote or guard.
            Cell::Number(n) => (Cow::Borrowed(n.as_ref()), true),
            // Nearly every cell is printable ASCII with nothing to replace, guard or quote: it is
            // written as it is. Anything else takes the exact path.
            Cell::Text(text) if is_plain(text.as_bytes()) && !self.guarded(text) => {
                (Cow::Borrowed(text.as_ref()), false)
            }
            Cell::Text(text) => (clean_text(text, self.guard, &mut self.scratch), true),
        };
        if quoted {
            core_field(&mut self.core, written.as_bytes(), &mut self.core_buf, out);
        } else {
            out.extend_from_slice(written.as_bytes());
        }
        if let Some(cells) = cells {
            cells.push(&written);
        }
    }

    /// Whether the formula guard applies to `text`.
    fn guarded(&self, text: &str) -> bool {
        self.guard
            && text
                .as_bytes()
                .first()
                .is_some_and(|&b| is_guarded_start(b))
    }
}

/// Whether `bytes` has no byte that any step of encoding a text cell looks for: no control byte
/// below 0x0E (every line break but NEL and U+2028/9, and the tab and CR the guard looks for), no
/// byte of a multi-byte character (which starts the other line breaks), no `,` and no `"` (what
/// csv-core quotes, with the CR and LF). Such a cell is written unchanged unless the guard's
/// `=`, `+`, `-` or `@` starts it. Eight bytes at a time; a test holds it to the exact steps for
/// every byte at every offset of a word.
fn is_plain(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `word` is zero.
    let zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGH;
    let mut words = bytes.chunks_exact(8);
    for chunk in words.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let below_0e = word.wrapping_sub(ONES * 0x0E) & !word & HIGH;
        let special = below_0e
            | (word & HIGH)
            | zero_byte(word ^ (ONES * u64::from(b',')))
            | zero_byte(word ^ (ONES * u64::from(b'"')));
        if special != 0 {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| (0x0E..0x80).contains(&b) && b != b',' && b != b'"')
}

/// Whether a value starting with this byte gets the formula guard.
#[inline]
fn is_guarded_start(b: u8) -> bool {
    matches!(b, b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
}

/// Bytes that start a line break: CR, LF, VT, FF, and the lead bytes of NEL (C2 85) and
/// U+2028/U+2029 (E2 80 A8/A9).
const BREAK_LEAD: [bool; 256] = {
    let mut t = [false; 256];
    t[b'\r' as usize] = true;
    t[b'\n' as usize] = true;
    t[0x0B] = true;
    t[0x0C] = true;
    t[0xC2] = true;
    t[0xE2] = true;
    t
};

/// Where the first byte that may start a line break is ([`BREAK_LEAD`]). Every cell of every
/// row is scanned and nearly all are printable ASCII, where no break can start: eight bytes at a
/// time are checked for a byte below 0x0E or above 0x7F, and only a word holding one is looked
/// up byte by byte (a byte-at-a-time table scan was ~2.5 % of the export's CPU).
fn first_break_lead(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let table = |offset: usize, part: &[u8]| {
        part.iter()
            .position(|&b| BREAK_LEAD[b as usize])
            .map(|i| offset + i)
    };
    let mut words = bytes.chunks_exact(8);
    for (n, chunk) in words.by_ref().enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // Non-zero when some byte is below 0x0E (exact when there is one, though it may also
        // flag bytes after it) or has its high bit set: either way the table decides.
        let suspect = (word.wrapping_sub(ONES * 0x0E) & !word & HIGH) | (word & HIGH);
        if suspect != 0 {
            if let Some(at) = table(n * 8, chunk) {
                return Some(at);
            }
        }
    }
    let rest = words.remainder();
    table(bytes.len() - rest.len(), rest)
}

/// Replaces every line break with one space (CRLF counts as one break). Returns `s` itself when
/// there is none.
pub fn replace_line_breaks<'s>(s: &'s str, scratch: &'s mut String) -> &'s str {
    let bytes = s.as_bytes();
    let Some(first) = first_break_lead(bytes) else {
        return s;
    };
    scratch.clear();
    scratch.push_str(&s[..first]);
    let mut chars = s[first..].chars().peekable();
    let mut changed = false;
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                scratch.push(' ');
                changed = true;
            }
            '\n' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                scratch.push(' ');
                changed = true;
            }
            other => scratch.push(other),
        }
    }
    if changed {
        scratch.as_str()
    } else {
        s
    }
}

/// Line breaks replaced, then the guard quote added when the original starts with a guarded
/// byte.
fn clean_text<'s>(text: &'s str, guard: bool, scratch: &'s mut String) -> Cow<'s, str> {
    let guarded = guard
        && text
            .as_bytes()
            .first()
            .is_some_and(|&b| is_guarded_start(b));
    let clean = replace_line_breaks(text, scratch);
    if guarded {
        let mut s = String::with_capacity(clean.len() + 1);
        s.push('\'');
        s.push_str(clean);
        Cow::Owned(s)
    } else {
        Cow::Borrowed(clean)
    }
}

/// Writes one field through `csv-core` onto the end of `out`, using `buf` as its output window
/// (csv-core writes into initialised slices; reusing one avoids zeroing `out` for every field).
fn core_field(core: &mut csv_core::Writer, input: &[u8], buf: &mut Vec<u8>, out: &mut Vec<u8>) {
    // Most cells need no quotes, and then csv-core writes them unchanged: its own test decides,
    // and the cell is copied once instead of through the window.
    if !core.should_quote(input) {
        out.extend_from_slice(input);
        return;
    }
    // Worst case: every byte a doubled quote, the two enclosing quotes and the delimiter.
    let need = input.len() * 2 + 3;
    if buf.len() < need {
        buf.resize(need, 0);
    }
    let (_, read, written) = core.field(input, buf);
    debug_assert_eq!(read, input.len(), "csv-core output window too small");
    // `delimiter` closes the quote if the field opened one, then writes `,`; the record framing
    // is ours, so the `,` is dropped.
    let (_, closing) = core.delimiter(&mut buf[written..]);
    out.extend_from_slice(&buf[..(written + closing).saturating_sub(1)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::model::SignIn;
    use serde_json::json;

    fn text(s: &str) -> Cell<'_> {
        Cell::Text(Cow::Borrowed(s))
    }

    #[test]
    fn plain_cells_are_exactly_those_no_step_changes() {
        let core = csv_core::WriterBuilder::new()
            .terminator(csv_core::Terminator::CRLF)
            .build();
        for b in 0..=255u8 {
            // Every offset within a word and in the tail after one.
            for at in 0..19 {
                let mut bytes = vec![b'a'; 19];
                bytes[at] = b;
                let special = !(0x0E..0x80).contains(&b) || b == b',' || b == b'"';
                assert_eq!(is_plain(&bytes), !special, "byte {b:#04x} at {at}");
                if !special {
                    assert!(!core.should_quote(&bytes), "csv-core quotes {b:#04x}");
                    assert_eq!(first_break_lead(&bytes), None, "{b:#04x}");
                }
            }
        }
        assert!(is_plain(b""));
    }

    /// Strings that have broken CSV exports before.
    const NASTY: &[&str] = &[
        "plain",
        "",
        " ",
        "Doe, Jane",
        "say \"hi\"",
        "\"",
        "\"\"",
        ",",
        "a\r\nb",
        "a\nb",
        "a\rb",
        "a\r\n\r\nb",
        "line\u{2028}sep\u{2029}para\u{85}nel",
        "vt\u{0B}ff\u{0C}end",
        "\r\n",
        "trailing\n",
        "Zoë Åström-Núñez",
        "名前 テスト",
        "emoji 😀👍🏽 and ZWJ 👩‍💻",
        "dash – and ’quotes’ €",
        "=HYPERLINK(\"http://evil\",\"click\")",
        "+1 555 0100",
        "-2+3",
        "@SUM(A1:A2)",
        "\t=tab",
        "\r=cr",
        "\n=lf",
        " =space",
        "'already quoted",
        "=a,b\r\n\"c\"",
        "Â\u{a0}non-break",
    ];

    /// What a reader must get back: line breaks → space, plus the guard quote.
    fn expected(original: &str, guard: bool) -> String {
        let mut scratch = String::new();
        clean_text(original, guard, &mut scratch).into_owned()
    }

    fn read_back(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(bytes);
        let headers = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_string)
            .collect();
        let rows = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        (headers, rows)
    }

    fn columns3() -> Columns {
        Columns::parse("userDisplayName,clientAppUsed,id").unwrap()
    }

    fn encode_all(guard: bool, values: &[&str]) -> Vec<u8> {
        let cols = columns3();
        let mut enc = CsvEncoder::new(&cols, guard);
        let mut out = enc.header().to_vec();
        for v in values {
            enc.encode_row(&[text(v), text("x"), text(v)], &mut out);
        }
        out
    }

    #[test]
    fn round_trip_of_nasty_strings_through_the_csv_reader() {
        for guard in [true, false] {
            let bytes = encode_all(guard, NASTY);
            assert!(bytes.starts_with(BOM));
            let (headers, rows) = read_back(&bytes[BOM.len()..]);
            assert_eq!(headers, ["userDisplayName", "clientAppUsed", "id"]);
            assert_eq!(rows.len(), NASTY.len(), "guard={guard}");
            for (row, original) in rows.iter().zip(NASTY) {
                let want = expected(original, guard);
                assert_eq!(row, &[want.clone(), "x".to_string(), want], "{original:?}");
                for field in row {
                    assert!(!field.contains([
                        '\r', '\n', '\u{0B}', '\u{0C}', '\u{85}', '\u{2028}', '\u{2029}'
                    ]));
                }
            }
            // One physical line per row: a reader that ignores quotes splits rows right.
            let text = std::str::from_utf8(&bytes).unwrap();
            assert_eq!(text.matches("\r\n").count(), NASTY.len() + 1);
            assert_eq!(text.matches('\n').count(), NASTY.len() + 1);
            assert_eq!(text.matches('\r').count(), NASTY.len() + 1);
        }
    }

    #[test]
    fn exact_bytes_of_quoting_breaks_and_guard() {
        let cols = columns3();
        let mut enc = CsvEncoder::new(&cols, true);
        let mut out = Vec::new();
        enc.encode_row(
            &[text("Doe, \"JD\""), text("a\r\nb\u{2028}c"), text("=1+1")],
            &mut out,
        );
        enc.encode_row(&[text("\r=cmd"), text("\t@x"), text("=a,\"b\"")], &mut out);
        enc.encode_row(
            &[Cell::Empty, Cell::Bool(true), Cell::Bool(false)],
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"Doe, \"\"JD\"\"\",a b c,'=1+1\r\n' =cmd,'\t@x,\"'=a,\"\"b\"\"\"\r\n,true,false\r\n"
        );
    }

    #[test]
    fn guard_off_leaves_formulas_alone() {
        let cols = columns3();
        let mut enc = CsvEncoder::new(&cols, false);
        let mut out = Vec::new();
        enc.encode_row(&[text("=1+1"), text("-5"), text("\r@x")], &mut out);
        assert_eq!(out, b"=1+1,-5, @x\r\n");
    }

    #[test]
    fn numbers_are_never_guarded() {
        let s = SignIn::from_json(json!({
            "id": "-id", "createdDateTime": "2026-11-28T10:00:00Z",
            "location": {"geoCoordinates": {"latitude": -33.8688, "longitude": "-122.3"}},
            "status": {"errorCode": -1}
        }))
        .unwrap();
        let cols = Columns::parse("latitude,longitude,statusErrorCode,id").unwrap();
        let mut enc = CsvEncoder::new(&cols, true);
        let mut out = Vec::new();
        enc.encode_row(&cols.row(&s), &mut out);
        assert_eq!(out, b"-33.8688,-122.3,-1,'-id\r\n");
    }

    #[test]
    fn header_is_identical_every_time_and_the_bom_only_there() {
        let cols = Columns::default_set();
        let a = CsvEncoder::new(&cols, true);
        let b = CsvEncoder::new(&cols, false);
        assert_eq!(a.header(), a.header());
        assert_eq!(a.header(), b.header());
        let expected = format!("\u{FEFF}{}\r\n", cols.names().join(","));
        assert_eq!(a.header(), expected.as_bytes());

        let mut enc = CsvEncoder::new(&cols, true);
        let s = SignIn::from_json(json!({"id": "1", "createdDateTime": "2026-11-28T10:00:00Z",
            "userDisplayName": "\u{FEFF}bom in data"}))
        .unwrap();
        let mut rows = Vec::new();
        enc.encode_row(&cols.row(&s), &mut rows);
        enc.encode_row(&cols.row(&s), &mut rows);
        assert!(!rows.starts_with(BOM));
        // The only BOM bytes in the rows are the one that was in the data.
        let bom_count = rows.windows(3).filter(|w| *w == BOM).count();
        assert_eq!(bom_count, 2);
        let mut file = a.header().to_vec();
        file.extend_from_slice(&rows);
        let (headers, read) = read_back(&file[BOM.len()..]);
        assert_eq!(headers, cols.names());
        assert_eq!(read.len(), 2);
        assert_eq!(read[0][1], "\u{FEFF}bom in data");
    }

    #[test]
    fn the_csv_reader_strips_our_bom() {
        let cols = columns3();
        let mut enc = CsvEncoder::new(&cols, true);
        let mut file = enc.header().to_vec();
        enc.encode_row(&[text("a"), text("b"), text("c")], &mut file);
        let (headers, rows) = read_back(&file);
        assert_eq!(headers, ["userDisplayName", "clientAppUsed", "id"]);
        assert_eq!(rows, [["a", "b", "c"]]);
    }

    #[test]
    fn single_empty_column_is_not_a_blank_line() {
        let cols = Columns::parse("userDisplayName").unwrap();
        let mut enc = CsvEncoder::new(&cols, true);
        let mut file = enc.header().to_vec();
        enc.encode_row(&[Cell::Empty], &mut file);
        enc.encode_row(&[text("")], &mut file);
        enc.encode_row(&[text("x")], &mut file);
        let (_, rows) = read_back(&file[BOM.len()..]);
        assert_eq!(rows, [[""], [""], ["x"]]);
    }

    #[test]
    fn writes_the_same_bytes_as_the_csv_crates_writer() {
        // NASTY plus deterministic random strings over an alphabet of troublemakers.
        let alphabet: Vec<char> =
            "a,\"\r\n\t=+-@' é€😀\u{2028}\u{2029}\u{85}\u{0B}\u{0C}\u{a0}\u{2013}"
                .chars()
                .collect();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut values: Vec<String> = NASTY.iter().map(|s| s.to_string()).collect();
        for _ in 0..2000 {
            let len = (next() % 12) as usize;
            values.push(
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect(),
            );
        }
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        for guard in [true, false] {
            let ours = encode_all(guard, &refs);
            // And the csv crate's high-level writer agrees on the cleaned values.
            let mut wtr = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::new());
            wtr.write_record(["userDisplayName", "clientAppUsed", "id"])
                .unwrap();
            for v in &refs {
                let e = expected(v, guard);
                wtr.write_record([e.as_str(), "x", e.as_str()]).unwrap();
            }
            let mut reference = BOM.to_vec();
            reference.extend_from_slice(&wtr.into_inner().unwrap());
            assert_eq!(ours, reference);
            let (_, rows) = read_back(&ours[BOM.len()..]);
            for (row, v) in rows.iter().zip(&refs) {
                assert_eq!(row[0], expected(v, guard));
            }
        }
    }

    #[test]
    fn the_demo_tenant_round_trips_with_every_column() {
        use fake_tenant::tenant::{generate, TenantSpec};
        let records: Vec<SignIn> = generate(&TenantSpec::demo(7))
            .into_iter()
            .map(|v| SignIn::from_json(v).unwrap())
            .collect();
        assert!(records.len() > 100);
        let cols = Columns::every();
        let mut enc = CsvEncoder::new(&cols, true);
        let mut file = enc.header().to_vec();
        for s in &records {
            enc.encode_row(&cols.row(s), &mut file);
        }
        let text = std::str::from_utf8(&file).unwrap();
        // One physical line per sign-in, plus the header.
        assert_eq!(text.split("\r\n").count(), records.len() + 2);
        let (headers, rows) = read_back(&file);
        assert_eq!(headers, cols.names());
        assert_eq!(rows.len(), records.len());
        for (row, s) in rows.iter().zip(&records) {
            for ((field, name), cell) in row.iter().zip(cols.names()).zip(cols.row(s)) {
                let want = match &cell {
                    Cell::Text(t) => expected(t, true),
                    other => other.as_str().to_string(),
                };
                assert_eq!(field, &want, "{name} of {}", s.id());
            }
        }
    }

    /// The cells the encoder gives are what reading its row back gives (the summaries tally
    /// them instead of reading the CSV), with and without the guard, for every column and for
    /// names that need quoting, replacing or guarding; and the row's bytes are unchanged.
    #[test]
    fn the_cells_given_are_the_row_read_back() {
        use fake_tenant::tenant::{generate, TenantSpec};
        let mut records: Vec<Vec<u8>> = generate(&TenantSpec::demo(7))
            .into_iter()
            .map(|v| serde_json::to_vec(&v).unwrap())
            .collect();
        for name in NASTY {
            let record = json!({
                "id": "n", "createdDateTime": "2026-11-28T10:00:00Z", "userDisplayName": name,
                "location": {"city": name, "geoCoordinates": {"latitude": 1.5, "longitude": -2}}
            });
            records.push(serde_json::to_vec(&record).unwrap());
        }
        for (cols, guard) in [
            (Columns::every(), true),
            (Columns::every(), false),
            (Columns::parse("userDisplayName").unwrap(), true),
        ] {
            let mut enc = CsvEncoder::new(&cols, guard);
            let mut cells = RowCells::default();
            for json in &records {
                let signin = SignInRecord::from_slice(json).unwrap();
                let (mut with, mut without) = (Vec::new(), Vec::new());
                enc.encode_signin_with_cells(&cols, &signin, &mut with, Some(&mut cells));
                enc.encode_signin(&cols, &signin, &mut without);
                assert_eq!(with, without);
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(&with[..]);
                let row = reader.records().next().unwrap().unwrap();
                let given_row = crate::summary::Row::new(cells.text(), cells.ends());
                let given: Vec<&str> = (0..given_row.len()).map(|i| given_row.get(i)).collect();
                assert_eq!(given, row.iter().collect::<Vec<_>>(), "guard {guard}");
            }
        }
    }

    #[test]
    fn the_word_scan_finds_what_the_byte_scan_finds() {
        let plain = |b: &[u8]| b.iter().position(|&b| BREAK_LEAD[b as usize]);
        // Every break lead and its neighbours, at every offset around the 8-byte words.
        let specials: &[&[u8]] = &[
            b"\r",
            b"\n",
            b"\x0B",
            b"\x0C",
            b"\x0D",
            b"\x0E",
            b"\x00",
            b"\x09",
            b"\x7F",
            "\u{85}".as_bytes(),
            "\u{2028}".as_bytes(),
            "\u{2029}".as_bytes(),
            "é".as_bytes(),
            "€".as_bytes(),
            "名".as_bytes(),
            "\u{a0}".as_bytes(),
        ];
        for len in 0..26 {
            let base = vec![b'a'; len];
            assert_eq!(first_break_lead(&base), None);
            for at in 0..=len {
                for special in specials {
                    let mut bytes = base.clone();
                    bytes.splice(at..at, special.iter().copied());
                    assert_eq!(first_break_lead(&bytes), plain(&bytes), "{bytes:?}");
                    // A second special later must not hide or move the first.
                    bytes.extend_from_slice(b"xy\r");
                    assert_eq!(first_break_lead(&bytes), plain(&bytes), "{bytes:?}");
                }
            }
        }
        for text in NASTY {
            assert_eq!(
                first_break_lead(text.as_bytes()),
                plain(text.as_bytes()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn line_breaks_become_single_spaces() {
        let mut scratch = String::new();
        let cases = [
            ("a\r\nb", "a b"),
            ("a\n\nb", "a  b"),
            ("a\r\rb", "a  b"),
            ("a\n\rb", "a  b"),
            ("\u{2028}\u{2029}\u{85}", "   "),
            ("no breaks – here €", "no breaks – here €"),
            ("Â\u{a0}", "Â\u{a0}"),
        ];
        for (input, want) in cases {
            assert_eq!(replace_line_breaks(input, &mut scratch), want, "{input:?}");
        }
    }
}
