//! Reading back the export's own CSV rows (a staged block, or a daily file in chunks) field by
//! field, and where the columns the summaries read sit in them.

use super::SummaryError;

/// Where the columns the summaries read are in the export's rows (`None`: left out by
/// `SIGNINS_COLUMNS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowLayout {
    /// Fields per row.
    pub width: usize,
    pub created: usize,
    pub status: Option<usize>,
    pub user: Option<usize>,
    pub user_name: Option<usize>,
    pub client_app: Option<usize>,
    pub app: Option<usize>,
    pub ip: Option<usize>,
    pub device_id: Option<usize>,
    pub device_name: Option<usize>,
    pub os: Option<usize>,
    pub browser: Option<usize>,
    pub compliant: Option<usize>,
    pub managed: Option<usize>,
    pub trust: Option<usize>,
    pub latitude: Option<usize>,
    pub longitude: Option<usize>,
    pub location: Option<usize>,
    pub city: Option<usize>,
    pub state: Option<usize>,
    pub country: Option<usize>,
}

impl RowLayout {
    /// The layout of rows with these columns (the export's header, in order). Fails when
    /// `createdDateTime` is left out: without it no first, last or newest sign-in can be told.
    pub fn new(columns: &[&str]) -> Result<RowLayout, SummaryError> {
        let at = |name: &str| columns.iter().position(|c| *c == name);
        Ok(RowLayout {
            width: columns.len(),
            created: at("createdDateTime").ok_or(SummaryError::MissingColumn("createdDateTime"))?,
            status: at("statusErrorCode"),
            user: at("userPrincipalName"),
            user_name: at("userDisplayName"),
            client_app: at("clientAppUsed"),
            app: at("appDisplayName"),
            ip: at("ipAddress"),
            device_id: at("deviceId"),
            device_name: at("deviceDisplayName"),
            os: at("deviceOperatingSystem"),
            browser: at("deviceBrowser"),
            compliant: at("deviceIsCompliant"),
            managed: at("deviceIsManaged"),
            trust: at("deviceTrustType"),
            latitude: at("latitude"),
            longitude: at("longitude"),
            location: at("location"),
            city: at("locationCity"),
            state: at("locationState"),
            country: at("locationCountryOrRegion"),
        })
    }
}

/// One row's fields, borrowed from the reader.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    text: &'a str,
    ends: &'a [usize],
}

impl<'a> Row<'a> {
    /// A row of fields laid end to end in `text`, field `i` ending at `ends[i]`.
    pub fn new(text: &'a str, ends: &'a [usize]) -> Row<'a> {
        Row { text, ends }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `i` (`""` past the end).
    pub fn get(&self, i: usize) -> &'a str {
        let Some(&end) = self.ends.get(i) else {
            return "";
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end).unwrap_or("")
    }

    /// Field `i`, or `""` for a column the export leaves out.
    pub fn field(&self, i: Option<usize>) -> &'a str {
        i.map_or("", |i| self.get(i))
    }
}

/// Splits CSV bytes into rows, chunk after chunk (a row may straddle two chunks): `csv-core`'s
/// reader, the counterpart of the writer that encoded them.
#[derive(Debug)]
pub struct RowReader {
    core: csv_core::Reader,
    record: Vec<u8>,
    record_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    rows: u64,
}

impl Default for RowReader {
    fn default() -> Self {
        RowReader {
            core: csv_core::Reader::new(),
            record: vec![0; 1024],
            record_len: 0,
            ends: vec![0; 64],
            ends_len: 0,
            rows: 0,
        }
    }
}

impl RowReader {
    /// Rows read so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Reads the rows `input` completes; the end of `input` may be the middle of a row.
    pub fn feed(&mut self, input: &[u8], each: &mut dyn FnMut(Row<'_>)) -> Result<(), String> {
        if input.is_empty() {
            // An empty input means the end of the data to csv-core; see `finish`.
            return Ok(());
        }
        self.read(input, each)
    }

    /// Reads the last row if it lacks its line break; the reader is then ready for new data.
    pub fn finish(&mut self, each: &mut dyn FnMut(Row<'_>)) -> Result<(), String> {
        self.read(&[], each)?;
        self.core.reset();
        Ok(())
    }

    fn read(&mut self, mut input: &[u8], each: &mut dyn FnMut(Row<'_>)) -> Result<(), String> {
        let at_end = input.is_empty();
        loop {
            let (result, read, written, ended) = self.core.read_record(
                input,
                &mut self.record[self.record_len..],
                &mut self.ends[self.ends_len..],
            );
            input = &input[read..];
            self.record_len += written;
            self.ends_len += ended;
            match result {
                csv_core::ReadRecordResult::InputEmpty => return Ok(()),
                csv_core::ReadRecordResult::End => return Ok(()),
                csv_core::ReadRecordResult::OutputFull => {
                    let len = self.record.len() * 2;
                    self.record.resize(len, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    self.rows += 1;
                    let text = std::str::from_utf8(&self.record[..self.record_len])
                        .map_err(|e| format!("not UTF-8 ({e})"))?;
                    each(Row {
                        text,
                        ends: &self.ends[..self.ends_len],
                    });
                    self.record_len = 0;
                    self.ends_len = 0;
                    if input.is_empty() && !at_end {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Every row of `bytes` (whole rows), for tests and small inputs.
#[cfg(test)]
pub(crate) fn collect(bytes: &[u8]) -> Vec<Vec<String>> {
    let mut reader = RowReader::default();
    let mut rows = Vec::new();
    let mut keep =
        |row: Row<'_>| rows.push((0..row.len()).map(|i| row.get(i).to_string()).collect());
    reader.feed(bytes, &mut keep).unwrap();
    reader.finish(&mut keep).unwrap();
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_across_chunks_read_as_written() {
        let text = "a,\"b, \"\"c\"\"\",\r\n\"\",x,é\r\nlast,,z\r\n";
        let whole = collect(text.as_bytes());
        assert_eq!(
            whole,
            vec![
                vec!["a".to_string(), "b, \"c\"".into(), "".into()],
                vec!["".to_string(), "x".into(), "é".into()],
                vec!["last".to_string(), "".into(), "z".into()],
            ]
        );
        // Any split point, even inside a quoted field or a UTF-8 character.
        for cut in 0..text.len() {
            let mut reader = RowReader::default();
            let mut rows = Vec::new();
            let mut keep = |row: Row<'_>| {
                rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).to_string())
                        .collect::<Vec<_>>(),
                )
            };
            reader.feed(&text.as_bytes()[..cut], &mut keep).unwrap();
            reader.feed(&text.as_bytes()[cut..], &mut keep).unwrap();
            reader.finish(&mut keep).unwrap();
            assert_eq!(rows, whole, "cut at {cut}");
        }
    }

    #[test]
    fn a_long_row_grows_the_buffers() {
        let row: Vec<String> = (0..200).map(|i| "x".repeat(i)).collect();
        let text = format!("{}\r\n", row.join(","));
        assert_eq!(collect(text.as_bytes()), vec![row]);
    }

    #[test]
    fn the_layout_needs_the_creation_time_only() {
        let layout = RowLayout::new(&["id", "createdDateTime", "latitude"]).unwrap();
        assert_eq!(
            (layout.width, layout.created, layout.latitude),
            (3, 1, Some(2))
        );
        assert_eq!(layout.user, None);
        let missing = RowLayout::new(&["id", "latitude"]).unwrap_err();
        assert!(missing.to_string().contains("createdDateTime"), "{missing}");
    }
}
