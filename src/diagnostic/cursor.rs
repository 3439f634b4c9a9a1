//! How far each blob has been read, as the state records it, and what to read next (pure,
//! table-tested).
//!
//! A [`BlobCursor`] is the exactly-once record of one append blob: the bytes consumed (always
//! right after a newline), and the length, ETag and creation time seen when they were read. The
//! listing says what each blob looks like now ([`ListedBlob`]); [`plan_read`] compares the two.
//! Append blobs only grow (Append Block adds at the end; nothing rewrites a committed block), so
//! the bytes below a cursor never change — unless the blob was deleted and written again under
//! the same name, which its creation time (or a length below the cursor) gives away.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::layout::BlobHour;
use crate::graph::model::EventType;

/// How far one blob has been read and committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobCursor {
    /// Bytes consumed: the offset right after the last newline of a committed read.
    pub offset: u64,
    /// The blob's length when it was read.
    pub length: u64,
    /// The blob's ETag when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The blob's creation time: another value means the blob was deleted and written again.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub created: Option<OffsetDateTime>,
}

/// Identifies one blob of the source: its category (which names the container) and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobKey {
    pub event_type: EventType,
    pub name: String,
}

impl BlobKey {
    /// `<container>/<blob name>`: the key of the blob in the state document, and how reports
    /// name it.
    pub fn path(&self) -> String {
        format!("{}/{}", self.event_type.diagnostic_container(), self.name)
    }

    /// The key of a [`BlobKey::path`].
    pub fn from_path(path: &str) -> Option<BlobKey> {
        let (container, name) = path.split_once('/')?;
        Some(BlobKey {
            event_type: EventType::from_diagnostic_container(container)?,
            name: name.to_string(),
        })
    }
}

/// The cursors of the source, by [`BlobKey::path`] (a map, so the state's JSON is stable).
pub type Cursors = BTreeMap<String, BlobCursor>;

/// One blob as List Blobs shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlob {
    pub key: BlobKey,
    /// The hour its events were received in, when the name is an hourly blob's.
    pub hour: Option<BlobHour>,
    pub length: u64,
    pub etag: Option<String>,
    pub created: Option<OffsetDateTime>,
    pub last_modified: Option<OffsetDateTime>,
}

/// What to read of one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadPlan {
    /// Nothing new since the cursor.
    UpToDate,
    /// The bytes `[from, to)`: what was appended since the cursor (from 0 for a new blob).
    Read { from: u64, to: u64 },
    /// The blob is not the one the cursor was about (created again, or shorter than what was
    /// consumed): read it all, `[0, to)`. Rows already exported are recognised by their id as far
    /// as the dedup window reaches; the run reports the restart.
    Restart { to: u64, why: RestartReason },
}

/// Why a blob is read again from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// Its creation time is not the one recorded.
    Recreated,
    /// It is shorter than the bytes consumed.
    Shrunk,
}

/// What to read of `listed`, given its cursor (none: never read).
pub fn plan_read(cursor: Option<&BlobCursor>, listed: &ListedBlob) -> ReadPlan {
    let Some(cursor) = cursor else {
        return if listed.length == 0 {
            ReadPlan::UpToDate
        } else {
            ReadPlan::Read {
                from: 0,
                to: listed.length,
            }
        };
    };
    let recreated = matches!(
        (cursor.created, listed.created),
        (Some(seen), Some(now)) if seen != now
    );
    let restart = |why| {
        if listed.length == 0 {
            ReadPlan::UpToDate
        } else {
            ReadPlan::Restart {
                to: listed.length,
                why,
            }
        }
    };
    if recreated {
        restart(RestartReason::Recreated)
    } else if listed.length < cursor.offset {
        restart(RestartReason::Shrunk)
    } else if listed.length == cursor.offset {
        ReadPlan::UpToDate
    } else {
        ReadPlan::Read {
            from: cursor.offset,
            to: listed.length,
        }
    }
}

/// The cursor after reading `listed` up to `consumed` (the offset after the last complete line
/// read): what the commit records.
pub fn advanced(listed: &ListedBlob, consumed: u64) -> BlobCursor {
    BlobCursor {
        offset: consumed,
        length: listed.length,
        etag: listed.etag.clone(),
        created: listed.created,
    }
}

/// Drops the cursors of blobs received before `oldest_hour` (the lifecycle rule deletes them;
/// nothing reads them again) and of names that are not hourly blobs.
pub fn forget_before(cursors: &mut Cursors, oldest_hour: OffsetDateTime) {
    cursors.retain(|path, _| {
        BlobKey::from_path(path)
            .and_then(|key| BlobHour::parse(&key.name))
            .is_some_and(|blob| blob.hour >= oldest_hour)
    });
}

/// The archive's id window keys sign-ins as the Graph source's does.
pub use crate::graph::model::id_key;

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NAME: &str = "tenantId=t/y=2026/m=11/d=28/h=09/m=00/PT1H.json";

    fn listed(length: u64, created: Option<OffsetDateTime>) -> ListedBlob {
        ListedBlob {
            key: BlobKey {
                event_type: EventType::NonInteractiveUser,
                name: NAME.to_string(),
            },
            hour: BlobHour::parse(NAME),
            length,
            etag: Some(format!("0x{length:X}")),
            created,
            last_modified: None,
        }
    }

    fn cursor(offset: u64, created: Option<OffsetDateTime>) -> BlobCursor {
        BlobCursor {
            offset,
            length: offset + 7,
            etag: Some("0x1".into()),
            created,
        }
    }

    #[test]
    fn reads_what_was_appended_since_the_cursor() {
        let born = Some(datetime!(2026-11-28 09:00:03 UTC));
        let reborn = Some(datetime!(2026-11-29 09:00:03 UTC));
        let cases: &[(Option<BlobCursor>, ListedBlob, ReadPlan)] = &[
            (None, listed(0, born), ReadPlan::UpToDate),
            (None, listed(500, born), ReadPlan::Read { from: 0, to: 500 }),
            (
                Some(cursor(500, born)),
                listed(500, born),
                ReadPlan::UpToDate,
            ),
            // A trailing incomplete line was not consumed: read on from the cursor.
            (
                Some(cursor(480, born)),
                listed(500, born),
                ReadPlan::Read { from: 480, to: 500 },
            ),
            (
                Some(cursor(500, born)),
                listed(900, born),
                ReadPlan::Read { from: 500, to: 900 },
            ),
            // Older cursors without a creation time still work.
            (
                Some(cursor(500, None)),
                listed(900, born),
                ReadPlan::Read { from: 500, to: 900 },
            ),
            (
                Some(cursor(500, born)),
                listed(900, reborn),
                ReadPlan::Restart {
                    to: 900,
                    why: RestartReason::Recreated,
                },
            ),
            (
                Some(cursor(500, None)),
                listed(200, born),
                ReadPlan::Restart {
                    to: 200,
                    why: RestartReason::Shrunk,
                },
            ),
            (
                Some(cursor(500, born)),
                listed(0, reborn),
                ReadPlan::UpToDate,
            ),
        ];
        for (cursor, listed, want) in cases {
            assert_eq!(
                &plan_read(cursor.as_ref(), listed),
                want,
                "{cursor:?} {listed:?}"
            );
        }
    }

    #[test]
    fn the_advanced_cursor_records_what_was_seen() {
        let born = Some(datetime!(2026-11-28 09:00:03 UTC));
        let blob = listed(900, born);
        let next = advanced(&blob, 880);
        assert_eq!(next.offset, 880);
        assert_eq!(next.length, 900);
        assert_eq!(next.etag.as_deref(), Some("0x384"));
        assert_eq!(
            plan_read(Some(&next), &blob),
            ReadPlan::Read { from: 880, to: 900 }
        );
        // Its JSON is the state's: camelCase, RFC 3339.
        let json = serde_json::to_value(&next).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"offset": 880, "length": 900, "etag": "0x384", "created": "2026-11-28T09:00:03Z"})
        );
        let back: BlobCursor =
            serde_json::from_value(serde_json::json!({"offset": 1, "length": 2})).unwrap();
        assert_eq!(back.created, None);
    }

    #[test]
    fn keys_round_trip_and_old_cursors_are_forgotten() {
        let key = BlobKey {
            event_type: EventType::ManagedIdentity,
            name: NAME.to_string(),
        };
        let path = key.path();
        assert_eq!(
            path,
            format!("insights-logs-managedidentitysigninlogs/{NAME}")
        );
        assert_eq!(BlobKey::from_path(&path), Some(key));
        assert_eq!(BlobKey::from_path("insights-logs-auditlogs/x"), None);

        let mut cursors = Cursors::new();
        for hour in ["08", "09", "10"] {
            let name = NAME.replace("h=09", &format!("h={hour}"));
            cursors.insert(format!("insights-logs-signinlogs/{name}"), cursor(1, None));
        }
        cursors.insert(
            "insights-logs-signinlogs/other.json".into(),
            cursor(1, None),
        );
        forget_before(&mut cursors, datetime!(2026-11-28 09:00 UTC));
        let kept: Vec<&str> = cursors.keys().map(String::as_str).collect();
        assert_eq!(kept.len(), 2);
        assert!(kept
            .iter()
            .all(|k| !k.contains("h=08") && k.contains("PT1H")));
    }

    #[test]
    fn id_keys_are_the_guid_bits_or_a_digest() {
        assert_eq!(
            id_key("0231f922-93fa-4005-bb11-b344eca03c01"),
            0x0231f922_93fa_4005_bb11_b344eca03c01
        );
        assert_eq!(
            id_key("0231F922-93FA-4005-BB11-B344ECA03C01"),
            id_key("0231f922-93fa-4005-bb11-b344eca03c01")
        );
        assert_ne!(id_key("not-a-guid"), id_key("not-a-guid-2"));
        assert_eq!(id_key("not-a-guid"), id_key("not-a-guid"));
    }
}
