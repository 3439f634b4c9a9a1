//! Block bookkeeping of the Blob sink: the commit ticket's detail, the Put Block List body, the
//! split of server-side copies into ranges, and the lock holder's metadata encoding. Pure code.

use std::collections::HashMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::sink::{BlockId, LockHolder};

/// Where Put Block List must find a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Already part of the blob (the header of an existing file, its older rows).
    Committed,
    /// Staged by this run and not yet committed.
    Uncommitted,
}

/// One entry of the block list a ticket will commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedBlock {
    pub id: BlockId,
    pub from: Source,
}

/// What `commit` does and how `is_committed` recognises it: the `detail` of a `CommitTicket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketDetail {
    /// The complete new block list, in order: header, new blocks, then the existing rows.
    pub blocks: Vec<ListedBlock>,
    /// ETag of the file when prepared; `None`: the file did not exist and must still not exist.
    pub etag: Option<String>,
    /// First new block: present in the committed list exactly when the commit happened.
    pub marker: BlockId,
}

impl TicketDetail {
    /// The detail of putting `new` right after the header of a file whose committed blocks are
    /// `existing` (`None`: the file does not exist; its header is staged as `BlockId::header()`).
    pub fn new(
        existing: Option<(&[BlockId], String)>,
        new: &[BlockId],
    ) -> Result<TicketDetail, String> {
        let marker = new
            .first()
            .cloned()
            .ok_or_else(|| "prepare needs at least one staged block".to_string())?;
        let header = BlockId::header();
        if new.contains(&header) {
            return Err("the header block id cannot be used for rows".to_string());
        }
        let uncommitted = new.iter().map(|id| ListedBlock {
            id: id.clone(),
            from: Source::Uncommitted,
        });
        Ok(match existing {
            None => TicketDetail {
                blocks: std::iter::once(ListedBlock {
                    id: header,
                    from: Source::Uncommitted,
                })
                .chain(uncommitted)
                .collect(),
                etag: None,
                marker,
            },
            Some((committed, etag)) => {
                if committed.first() != Some(&header) {
                    return Err(
                        "the file exists but does not start with the header block written by signin-export; \
                         move it away or use a new destination prefix"
                            .to_string(),
                    );
                }
                if committed.iter().any(|id| new.contains(id)) {
                    return Err("a block to add is already committed in the file".to_string());
                }
                let old = committed.iter().map(|id| ListedBlock {
                    id: id.clone(),
                    from: Source::Committed,
                });
                TicketDetail {
                    blocks: std::iter::once(ListedBlock {
                        id: header,
                        from: Source::Committed,
                    })
                    .chain(uncommitted)
                    .chain(old.skip(1))
                    .collect(),
                    etag: Some(etag),
                    marker,
                }
            }
        })
    }

    /// The block ids, in order.
    pub fn ids(&self) -> Vec<&BlockId> {
        self.blocks.iter().map(|b| &b.id).collect()
    }
}

/// The wire form of a block id: base64 of its ASCII bytes (what the SDK sends for `&[u8]` ids).
pub fn wire_id(id: &BlockId) -> String {
    base64::engine::general_purpose::STANDARD.encode(id.as_str().as_bytes())
}

/// Block id from the raw (base64-decoded) name Get Block List returns.
pub fn block_id_from_raw(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    (text.len() == BlockId::LEN && text.is_ascii()).then(|| text.to_string())
}

/// The XML body of Put Block List, keeping the order of `blocks` (the SDK's own model groups
/// blocks by kind, which would reorder a mixed list).
pub fn block_list_xml(blocks: &[ListedBlock]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for block in blocks {
        let tag = match block.from {
            Source::Committed => "Committed",
            Source::Uncommitted => "Uncommitted",
        };
        // base64 has no characters that need escaping in XML.
        xml.push_str(&format!("<{tag}>{}</{tag}>", wire_id(&block.id)));
    }
    xml.push_str("</BlockList>");
    xml
}

/// Splits `[start, end)` into consecutive `(offset, length)` ranges of at most `max` bytes.
pub fn split_range(start: u64, end: u64, max: u64) -> Vec<(u64, u64)> {
    let max = max.max(1);
    let mut ranges = Vec::new();
    let mut offset = start;
    while offset < end {
        let length = (end - offset).min(max);
        ranges.push((offset, length));
        offset += length;
    }
    ranges
}

/// Metadata keys of the state blob that say who holds the lock.
pub const META_HOLDER: &str = "holder";
pub const META_SINCE: &str = "since";

/// The lock holder as blob metadata (values must be ASCII header values: percent-encoded).
pub fn holder_metadata(holder: &str, since: OffsetDateTime) -> HashMap<String, String> {
    let since = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    HashMap::from([
        (
            META_HOLDER.to_string(),
            url::form_urlencoded::byte_serialize(holder.as_bytes()).collect(),
        ),
        (META_SINCE.to_string(), since),
    ])
}

/// Reads the lock holder back from blob metadata; missing or malformed values become empty.
pub fn holder_from_metadata(metadata: &HashMap<String, String>) -> LockHolder {
    let get = |key: &str| {
        metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    };
    let holder = get(META_HOLDER)
        .map(|v| {
            url::form_urlencoded::parse(format!("h={v}").as_bytes())
                .map(|(_, value)| value.into_owned())
                .next()
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let since = get(META_SINCE).and_then(|v| {
        OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()
    });
    LockHolder { holder, since }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u32, run: &str) -> Vec<BlockId> {
        (0..n).map(|i| BlockId::new(run, i)).collect()
    }

    #[test]
    fn new_file_stages_the_header_first() {
        let new = ids(2, "r1");
        let detail = TicketDetail::new(None, &new).unwrap();
        assert_eq!(detail.etag, None);
        assert_eq!(detail.marker, new[0]);
        assert_eq!(
            detail.blocks,
            vec![
                ListedBlock {
                    id: BlockId::header(),
                    from: Source::Uncommitted
                },
                ListedBlock {
                    id: new[0].clone(),
                    from: Source::Uncommitted
                },
                ListedBlock {
                    id: new[1].clone(),
                    from: Source::Uncommitted
                },
            ]
        );
    }

    #[test]
    fn existing_file_gets_new_rows_after_the_header_ahead_of_old_rows() {
        let old = ids(2, "r1");
        let committed = [vec![BlockId::header()], old.clone()].concat();
        let new = ids(1, "r2");
        let detail = TicketDetail::new(Some((&committed, "\"0x1\"".to_string())), &new).unwrap();
        assert_eq!(detail.etag.as_deref(), Some("\"0x1\""));
        assert_eq!(
            detail.ids(),
            vec![&BlockId::header(), &new[0], &old[0], &old[1]]
        );
        assert_eq!(detail.blocks[0].from, Source::Committed);
        assert_eq!(detail.blocks[1].from, Source::Uncommitted);
        assert_eq!(detail.blocks[2].from, Source::Committed);
    }

    #[test]
    fn foreign_files_and_empty_commits_are_refused() {
        let foreign = ids(1, "x");
        assert!(TicketDetail::new(Some((&foreign, "e".into())), &ids(1, "r")).is_err());
        assert!(TicketDetail::new(None, &[]).is_err());
        assert!(TicketDetail::new(None, &[BlockId::header()]).is_err());
        let committed = [vec![BlockId::header()], ids(1, "r")].concat();
        assert!(TicketDetail::new(Some((&committed, "e".into())), &ids(1, "r")).is_err());
    }

    #[test]
    fn ticket_detail_round_trips_through_json() {
        let detail = TicketDetail::new(None, &ids(3, "r")).unwrap();
        let json = serde_json::to_value(&detail).unwrap();
        assert_eq!(json["blocks"][0]["from"], "uncommitted");
        let back: TicketDetail = serde_json::from_value(json).unwrap();
        assert_eq!(back, detail);
    }

    #[test]
    fn block_list_xml_keeps_mixed_order() {
        let new = BlockId::new("r", 7);
        let xml = block_list_xml(&[
            ListedBlock {
                id: BlockId::header(),
                from: Source::Committed,
            },
            ListedBlock {
                id: new.clone(),
                from: Source::Uncommitted,
            },
        ]);
        let header_b64 = wire_id(&BlockId::header());
        assert_eq!(
            xml,
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Committed>{header_b64}</Committed><Uncommitted>{}</Uncommitted></BlockList>",
                wire_id(&new)
            )
        );
        // Every wire id has the same length, as Azure requires.
        assert_eq!(wire_id(&new).len(), header_b64.len());
    }

    #[test]
    fn raw_ids_round_trip() {
        let id = BlockId::new("r", 1);
        assert_eq!(
            block_id_from_raw(id.as_str().as_bytes()).as_deref(),
            Some(id.as_str())
        );
        assert_eq!(block_id_from_raw(b"short"), None);
    }

    #[test]
    fn ranges_cover_exactly_once() {
        assert_eq!(split_range(10, 10, 4), vec![]);
        assert_eq!(split_range(10, 11, 4), vec![(10, 1)]);
        assert_eq!(split_range(10, 20, 4), vec![(10, 4), (14, 4), (18, 2)]);
        assert_eq!(split_range(0, 8, 4), vec![(0, 4), (4, 4)]);
    }

    #[test]
    fn holder_metadata_round_trips_non_ascii() {
        let since = time::macros::datetime!(2026-11-28 16:00:00 UTC);
        let meta = holder_metadata("host-ü pid=1 & invocation 7", since);
        assert!(meta.values().all(|v| v.is_ascii()));
        let back = holder_from_metadata(&meta);
        assert_eq!(back.holder, "host-ü pid=1 & invocation 7");
        assert_eq!(back.since, Some(since));
        let empty = holder_from_metadata(&HashMap::new());
        assert_eq!(
            empty,
            LockHolder {
                holder: String::new(),
                since: None
            }
        );
    }
}
