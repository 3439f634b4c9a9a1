//! JSON Lines out of an append blob read in pieces (pure, table-tested): which lines are
//! complete, where each starts, and the offset after the last newline — the only offset that may
//! ever be recorded as consumed.
//!
//! A line without its newline is not consumed: Azure Monitor may be appending it right now, and
//! the next read starts again at its first byte. `\r\n` ends a line like `\n`; blank lines are
//! skipped; a UTF-8 byte order mark at the very start of a blob is not part of the first line.
//! [`LineBuffer`] holds one piece and one incomplete line at most: a line longer than its limit is
//! skipped up to its newline and reported as [`Oversized`], never held whole.

/// One complete line: its bytes (no line terminator) and the blob offset of its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    pub offset: u64,
    pub bytes: &'a [u8],
}

/// A line longer than the buffer's limit, skipped without being held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    /// Blob offset of the line's first byte.
    pub offset: u64,
    /// Its length without the terminator.
    pub len: u64,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What [`split_lines`] found in some bytes of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split<'a> {
    /// The complete lines, in order.
    pub lines: Vec<Line<'a>>,
    /// Complete lines longer than the limit, left out of `lines`.
    pub oversized: Vec<Oversized>,
    /// Blob offset right after the last `\n` (the start offset when there is none).
    pub consumed: u64,
}

/// The complete lines of `bytes`, which start at blob offset `start`: everything up to the last
/// `\n`. A line of more than `max_line` bytes (before its `\n`) is reported, not returned.
pub fn split_lines(bytes: &[u8], start: u64, max_line: usize) -> Split<'_> {
    let mut split = Split {
        consumed: start,
        ..Split::default()
    };
    let Some(last) = bytes.iter().rposition(|&b| b == b'\n') else {
        return split;
    };
    let mut from = 0;
    for (end, _) in bytes[..=last]
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
    {
        let offset = start + from as u64;
        let raw = &bytes[from..end];
        if raw.len() > max_line {
            split.oversized.push(Oversized {
                offset,
                len: raw.len() as u64,
            });
        } else {
            push_line(&mut split.lines, raw, offset);
        }
        from = end + 1;
    }
    split.consumed = start + last as u64 + 1;
    split
}

/// Adds `raw` (a line without its `\n`) unless it is blank; strips a `\r` and a blob's BOM.
fn push_line<'a>(lines: &mut Vec<Line<'a>>, raw: &'a [u8], offset: u64) {
    let mut line = Line {
        offset,
        bytes: raw.strip_suffix(b"\r").unwrap_or(raw),
    };
    if offset == 0 {
        if let Some(rest) = line.bytes.strip_prefix(BOM) {
            line = Line {
                offset: BOM.len() as u64,
                bytes: rest,
            };
        }
    }
    if !line.bytes.iter().all(u8::is_ascii_whitespace) {
        lines.push(line);
    }
}

/// The lines of one blob read in successive pieces, in bounded memory. Per piece: get the space
/// with [`LineBuffer::spare`], read the next bytes of the blob into it, report how many with
/// [`LineBuffer::filled`], then take the complete lines with [`LineBuffer::lines`]. The next
/// `spare` drops them and carries the incomplete tail over.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes of `buf` holding data (`spare` grows `buf` beyond it until `filled`).
    len: usize,
    /// Blob offset of `buf[0]`.
    start: u64,
    /// Blob offset of the next byte to read.
    read_to: u64,
    /// Longest line kept whole.
    max_line: usize,
    /// Skipping an oversized line that began here: its bytes are not kept.
    skipping: Option<u64>,
    /// Oversized lines that ended in the current piece.
    oversized: Vec<Oversized>,
}

impl LineBuffer {
    /// A buffer for reading a blob from `offset` on, keeping lines of up to `max_line` bytes.
    pub fn new(offset: u64, max_line: usize) -> LineBuffer {
        LineBuffer {
            buf: Vec::new(),
            len: 0,
            start: offset,
            read_to: offset,
            max_line: max_line.max(1),
            skipping: None,
            oversized: Vec::new(),
        }
    }

    /// Blob offset of the next byte to read.
    pub fn next_offset(&self) -> u64 {
        self.read_to
    }

    /// Blob offset after the last newline read: every byte before it is in a line returned by
    /// [`LineBuffer::lines`] (now or for an earlier piece), blank, or in an [`Oversized`] line.
    pub fn consumed(&self) -> u64 {
        if let Some(from) = self.skipping {
            return from;
        }
        match self.data().iter().rposition(|&b| b == b'\n') {
            Some(last) => self.start + last as u64 + 1,
            None => self.start,
        }
    }

    /// Space for the next `n` bytes of the blob. Drops the complete lines of the previous piece.
    pub fn spare(&mut self, n: usize) -> &mut [u8] {
        let keep_from = match self.skipping {
            Some(_) => self.len,
            None => self
                .data()
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1),
        };
        self.buf.truncate(self.len);
        self.buf.drain(..keep_from);
        self.len = self.buf.len();
        self.start = self.read_to - self.len as u64;
        self.oversized.clear();
        // Exactly: doubling would let the buffer grow to twice a piece.
        self.buf.reserve_exact(n);
        self.buf.resize(self.len + n, 0);
        &mut self.buf[self.len..]
    }

    /// Records that the first `n` bytes of the space given by [`LineBuffer::spare`] were read.
    pub fn filled(&mut self, n: usize) {
        let n = n.min(self.buf.len() - self.len);
        let piece_from = self.len;
        self.len += n;
        self.read_to += n as u64;
        self.buf.truncate(self.len);
        if let Some(from) = self.skipping {
            // Everything before this piece was dropped: the piece starts `buf`.
            match self.buf[piece_from..].iter().position(|&b| b == b'\n') {
                None => {
                    self.buf.clear();
                    self.len = 0;
                    self.start = self.read_to;
                    return;
                }
                Some(i) => {
                    let end = self.start + (piece_from + i) as u64;
                    self.oversized.push(Oversized {
                        offset: from,
                        len: end - from,
                    });
                    self.skipping = None;
                    self.buf.drain(..piece_from + i + 1);
                    self.len = self.buf.len();
                    self.start = end + 1;
                }
            }
        }
        let tail_from = self
            .data()
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if self.len - tail_from > self.max_line {
            // The complete lines before the tail stay for `lines`; the tail is dropped.
            self.skipping = Some(self.start + tail_from as u64);
            self.buf.truncate(tail_from);
            self.len = tail_from;
        }
    }

    /// The complete lines of the current piece, and the oversized lines that ended in it.
    pub fn lines(&self) -> (Vec<Line<'_>>, Vec<Oversized>) {
        let split = split_lines(self.data(), self.start, self.max_line);
        let mut oversized = self.oversized.clone();
        oversized.extend(split.oversized);
        (split.lines, oversized)
    }

    fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(lines: &[Line<'a>]) -> Vec<(u64, &'a str)> {
        lines
            .iter()
            .map(|l| (l.offset, std::str::from_utf8(l.bytes).unwrap()))
            .collect()
    }

    #[test]
    fn split_lines_stops_at_the_last_newline() {
        // (bytes, start offset, the lines, the consumed offset)
        type Case<'a> = (&'a [u8], u64, &'a [(u64, &'a str)], u64);
        let cases: &[Case] = &[
            (b"", 0, &[], 0),
            (b"{\"a\":1}", 0, &[], 0),
            (b"{\"a\":1}\n", 0, &[(0, "{\"a\":1}")], 8),
            (b"a\nb\nc", 100, &[(100, "a"), (102, "b")], 104),
            // CRLF, blank lines and whitespace-only lines.
            (b"a\r\n\n  \r\nb\n", 0, &[(0, "a"), (8, "b")], 10),
            // A BOM only at the start of the blob.
            (b"\xEF\xBB\xBFa\nb\n", 0, &[(3, "a"), (5, "b")], 7),
            (b"\xEF\xBB\xBFa\n", 9, &[(9, "\u{feff}a")], 14),
        ];
        for (bytes, start, want, end) in cases {
            let split = split_lines(bytes, *start, 1000);
            assert_eq!(
                texts(&split.lines),
                *want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(split.consumed, *end, "{:?}", String::from_utf8_lossy(bytes));
            assert!(split.oversized.is_empty());
        }
        let split = split_lines(b"ok\n12345\r\nok\n", 0, 5);
        assert_eq!(texts(&split.lines), vec![(0, "ok"), (10, "ok")]);
        assert_eq!(split.oversized, vec![Oversized { offset: 3, len: 6 }]);
    }

    /// Reads `blob` from `offset` in pieces of `piece` bytes; returns the lines, the oversized
    /// lines and the consumed offset.
    fn read_in_pieces(
        blob: &[u8],
        offset: u64,
        piece: usize,
        max_line: usize,
    ) -> (Vec<(u64, String)>, Vec<Oversized>, u64) {
        let mut buffer = LineBuffer::new(offset, max_line);
        let mut lines = Vec::new();
        let mut oversized = Vec::new();
        while buffer.next_offset() < blob.len() as u64 {
            let from = buffer.next_offset() as usize;
            let n = piece.min(blob.len() - from);
            buffer.spare(n).copy_from_slice(&blob[from..from + n]);
            buffer.filled(n);
            let (found, skipped) = buffer.lines();
            lines.extend(
                found
                    .iter()
                    .map(|l| (l.offset, String::from_utf8_lossy(l.bytes).into_owned())),
            );
            oversized.extend(skipped);
        }
        (lines, oversized, buffer.consumed())
    }

    #[test]
    fn any_piece_size_finds_the_same_lines_as_one_read() {
        let blob =
            b"\xEF\xBB\xBF{\"n\":1}\n{\"n\":22}\r\n\n{\"n\":333}\n{\"n\":4444}\n{\"partial\":";
        let split = split_lines(blob, 0, 1 << 20);
        let end = split.consumed;
        let whole: Vec<(u64, String)> = split
            .lines
            .iter()
            .map(|l| (l.offset, String::from_utf8_lossy(l.bytes).into_owned()))
            .collect();
        for piece in 1..=blob.len() + 3 {
            let (lines, oversized, consumed) = read_in_pieces(blob, 0, piece, 1 << 20);
            assert_eq!(lines, whole, "piece {piece}");
            assert!(oversized.is_empty());
            assert_eq!(consumed, end, "piece {piece}");
        }
        // Resuming at the consumed offset finds nothing new until the tail is completed.
        let (lines, _, consumed) = read_in_pieces(blob, end, 4, 1 << 20);
        assert!(lines.is_empty());
        assert_eq!(consumed, end);
        let mut grown = blob.to_vec();
        grown.extend_from_slice(b"true}\n");
        let (lines, _, consumed) = read_in_pieces(&grown, end, 5, 1 << 20);
        assert_eq!(lines, vec![(end, "{\"partial\":true}".to_string())]);
        assert_eq!(consumed, grown.len() as u64);
    }

    #[test]
    fn oversized_lines_are_skipped_and_reported_whatever_the_piece_size() {
        let long = "x".repeat(50);
        let blob = format!("{{\"a\":1}}\n{long}\n{{\"b\":2}}\n{long}");
        let blob = blob.as_bytes();
        for piece in 1..=blob.len() {
            let (lines, oversized, consumed) = read_in_pieces(blob, 0, piece, 20);
            assert_eq!(
                lines,
                vec![(0, "{\"a\":1}".to_string()), (59, "{\"b\":2}".to_string())],
                "piece {piece}"
            );
            assert_eq!(
                oversized,
                vec![Oversized { offset: 8, len: 50 }],
                "piece {piece}"
            );
            // The unterminated oversized tail is not consumed: it may still be growing.
            assert_eq!(consumed, 67, "piece {piece}");
        }
        // Once terminated, it is reported and consumed.
        let mut done = blob.to_vec();
        done.push(b'\n');
        let (lines, oversized, consumed) = read_in_pieces(&done, 67, 7, 20);
        assert!(lines.is_empty());
        assert_eq!(
            oversized,
            vec![Oversized {
                offset: 67,
                len: 50
            }]
        );
        assert_eq!(consumed, done.len() as u64);
    }

    #[test]
    fn memory_holds_one_piece_and_one_line() {
        let line = format!("{{\"k\":\"{}\"}}\n", "v".repeat(100));
        let blob = line.repeat(1000);
        let mut buffer = LineBuffer::new(0, 4096);
        let mut count = 0;
        while buffer.next_offset() < blob.len() as u64 {
            let from = buffer.next_offset() as usize;
            let n = 1000.min(blob.len() - from);
            buffer
                .spare(n)
                .copy_from_slice(&blob.as_bytes()[from..from + n]);
            buffer.filled(n);
            count += buffer.lines().0.len();
            assert!(buffer.buf.capacity() < 1000 + 2 * line.len() + 64);
        }
        assert_eq!(count, 1000);
        assert_eq!(buffer.consumed(), blob.len() as u64);
    }

    #[test]
    fn a_short_read_keeps_only_what_was_read() {
        let mut buffer = LineBuffer::new(10, 100);
        let space = buffer.spare(8);
        space[..4].copy_from_slice(b"ab\nc");
        buffer.filled(4);
        assert_eq!(texts(&buffer.lines().0), vec![(10, "ab")]);
        assert_eq!(buffer.next_offset(), 14);
        assert_eq!(buffer.consumed(), 13);
        // A read that failed (never `filled`) leaves nothing behind.
        buffer.spare(16);
        let space = buffer.spare(2);
        space.copy_from_slice(b"d\n");
        buffer.filled(2);
        assert_eq!(texts(&buffer.lines().0), vec![(13, "cd")]);
        assert_eq!(buffer.consumed(), 16);
    }
}
