//! The diagnostic-settings source (`SIGNINS_SOURCE=diagnostic-settings`): Entra sign-in logs as an
//! Entra diagnostic setting archives them to Azure Storage, read with no request limit.
//!
//! # The source, as Microsoft documents it
//!
//! A diagnostic setting sends each chosen category to the container `insights-logs-<category>`
//! (entra-docs `docs/identity/monitoring-health/concept-diagnostic-settings-logs-options.md` for
//! the categories; azure-monitor-docs `articles/azure-monitor/platform/resource-logs.md`,
//! "Azure Storage", for the rest of this paragraph): one append blob per hour, named by the hour
//! the events were *received* (`…/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`, [`layout`]); the
//! current hour's blob grows as events arrive, the previous hour's can still receive some at the
//! start of the next, and resource logs "aren't completely lossless" and carry no transactional
//! guarantee (so a record can come twice). Each line is one JSON object ([`lines`]): Azure
//! Monitor's envelope around the sign-in, which is Graph beta's `signIn` with the differences
//! [`record`] lists and maps back.
//!
//! | module | job |
//! |---|---|
//! | [`layout`] | blob names ↔ hours, which blobs to list for a range of hours (pure) |
//! | [`lines`] | bytes from an offset → complete lines, the consumed offset, oversized lines (pure) |
//! | [`record`] | one line → [`DiagnosticRecord`]: the Graph [`SignInRecord`](crate::graph::model::SignInRecord) plus the envelope (pure) |
//! | [`cursor`] | per-blob read state and what to read next; the dedup key of an id (pure) |
//! | [`reader`] | List Blobs and ranged reads of one blob, in bounded pieces |
//!
//! # Exactly once (`run::archive` does this)
//!
//! * **Offsets are the state.** `_state/state.json` keeps a [`BlobCursor`] per blob
//!   ([`Cursors`], keyed by `<container>/<name>`): the bytes consumed, always right after a
//!   newline, with the length, ETag and creation time seen. A run lists each category's
//!   container ([`DiagnosticReader::list`]; the whole container is one request per 5000 blobs,
//!   so every blob that grew is seen whatever its hour, or [`plan_listing`] for a range of
//!   hours), asks [`plan_read`] what to read of each blob, and reads those ranges
//!   ([`DiagnosticReader::open`], [`BlobLines::next_piece`]): a trailing line without its
//!   newline is not consumed and is read whole by a later run; a blob of an older hour that grew
//!   is read from its cursor like any other.
//! * **Cursors advance only with the commit.** Rows go to the daily file of their
//!   `createdDateTime` (UTC), so one read can feed several files (late deliveries land in older
//!   days, exactly as on the Graph path). The commit's pending record holds, with the file
//!   tickets, the new cursor of every blob range read ([`advanced`] with the piece's
//!   `consumed`); settling applies them. After a crash the pending tickets are fenced: all
//!   landed, the cursors are applied; none landed, the old cursors stand and the ranges are read
//!   again; some landed, the ranges are read again writing only the rows of the days whose file
//!   did not land — the bytes below a cursor never change (append blobs only grow), so the same
//!   range gives the same rows. A deadline commits what was read up to the last piece.
//! * **Repeated deliveries** carry the same sign-in `id`, into the blob of the hour they are
//!   received in: the same hour's or a neighbour's (at the start of an hour Azure Monitor still
//!   writes the previous one). The ids of committed rows are kept by the hour of their blob (as
//!   [`cursor::id_key`]s, 16 bytes each, a sorted array per hour: a 10M-sign-ins-a-day tenant
//!   holds ~7 MB an hour) from an hour (or `SIGNINS_OVERLAP`, if longer) before the hour reading
//!   stands at; a row whose id is in an hour within that reach of its own blob's is skipped and
//!   counted. A repeat farther apart would be written again; the summary counts what was skipped
//!   so the bound is visible.
//! * **A malformed line** ([`Malformed`]: not JSON, no sign-in, another category, too long) is
//!   counted, reported with its blob and offset, consumed, and does not stop the run.
//! * **A blob written again** under a listed name (another creation time, or shorter than its
//!   cursor) is read from 0 ([`ReadPlan::Restart`]); the id window recognises what was exported.
//! * **Blobs of another tenant** (another `tenantId=` prefix, [`layout::prefix_tenant`], e.g. a
//!   storage account shared by two tenants' settings) are not this export's: the run reads only
//!   its own tenant's prefix and `check` reports the others.
//! * Cursors of blobs older than two days are dropped, and the archive's start moves up past
//!   them (`run::archive::jobs::HORIZON`): those blobs no longer grow and are not read again.

pub mod cursor;
pub mod layout;
pub mod lines;
pub mod reader;
pub mod record;

pub use cursor::{advanced, plan_read, BlobCursor, BlobKey, Cursors, ListedBlob, ReadPlan};
pub use layout::{plan_listing, received_hours, BlobHour, Listing};
pub use reader::{BlobLines, DiagnosticReader, Piece, ReaderOptions, SourceError};
pub use record::{parse_line, DiagnosticRecord, Envelope, Malformed, RecordError};
