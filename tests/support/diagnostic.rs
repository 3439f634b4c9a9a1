//! Writes a fake tenant's diagnostic-settings archive (`fake_tenant::diagnostic`) into Azurite the
//! way Azure Monitor does: a container per category, an append blob per received hour, lines
//! added with Append Block — phase by phase, so a test can read between the phases.

use std::collections::BTreeSet;

use azure_core::http::{Etag, RequestContent};
use azure_storage_blob::models::AppendBlobClientCreateOptions;
use azure_storage_blob::{BlobClient, BlobContainerClient};
use bytes::Bytes;
use fake_tenant::diagnostic::{Append, Archive, Phase};
use signin_export::diagnostic::Malformed;
use url::Url;

use crate::support::azurite::Azurite;

/// Largest Append Block the service takes (4 MiB for older service versions, which Azurite
/// follows).
const MAX_APPEND: usize = 4 * 1024 * 1024;

/// Where a malformed line is: `container/blob` and byte offset.
pub type Place = (String, u64);

/// The malformed lines `reported`, and those the archive holds, each by [`Place`]: a correct
/// reader reports exactly the archive's.
pub fn malformed_places(reported: &[Malformed], archive: &Archive) -> (Vec<Place>, Vec<Place>) {
    let reported = reported
        .iter()
        .map(|m| (m.blob.clone(), m.offset))
        .collect();
    let archived = archive
        .malformed
        .iter()
        .map(|at| (format!("{}/{}", at.container, at.blob), at.offset))
        .collect();
    (reported, archived)
}

/// `http://127.0.0.1:PORT/devstoreaccount1`: the account URL a reader takes.
pub fn account_url(azurite: &Azurite) -> Url {
    azurite.endpoint()
}

/// Writes the appends of `phase` (creating containers and blobs as needed), with an account SAS
/// that may create and write.
pub async fn write(azurite: &Azurite, archive: &Archive, phase: Phase) {
    let sas = azurite.account_sas("racwl");
    let mut containers = BTreeSet::new();
    for append in archive.phase(phase) {
        if containers.insert(append.container) {
            create_container(azurite, append.container, &sas).await;
        }
        write_append(azurite, append, &sas).await;
    }
}

/// Appends `bytes` to `container/blob`, creating the container and the blob if they do not
/// exist: for tests that write lines by hand.
pub async fn append(azurite: &Azurite, container: &'static str, blob: &str, bytes: &[u8]) {
    let sas = azurite.account_sas("racwl");
    create_container(azurite, container, &sas).await;
    let append = Append {
        container,
        blob: blob.to_string(),
        phase: Phase::First,
        bytes: bytes.to_vec(),
    };
    write_append(azurite, &append, &sas).await;
}

async fn create_container(azurite: &Azurite, container: &str, sas: &str) {
    let mut url = azurite.container_url(container);
    url.set_query(Some(sas));
    let client = BlobContainerClient::new(url, None, None).expect("container client");
    if let Err(e) = client.create(None).await {
        assert_eq!(
            e.http_status().map(u16::from),
            Some(409),
            "creating {container}: {e}"
        );
    }
}

async fn write_append(azurite: &Azurite, append: &Append, sas: &str) {
    let mut url = azurite.container_url(append.container);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.extend(append.blob.split('/'));
    }
    url.set_query(Some(sas));
    let blob = BlobClient::new(url, None, None)
        .expect("blob client")
        .append_blob_client();
    // Create unless it exists: the later phases append to blobs of the first.
    let create = AppendBlobClientCreateOptions {
        if_none_match: Some(Etag::from("*")),
        ..Default::default()
    };
    if let Err(e) = blob.create(Some(create)).await {
        assert_eq!(
            e.http_status().map(u16::from),
            Some(409),
            "creating {}: {e}",
            append.blob
        );
    }
    for chunk in append.bytes.chunks(MAX_APPEND) {
        let body: RequestContent<Bytes, _> = Bytes::copy_from_slice(chunk).into();
        blob.append_block(body, chunk.len() as u64, None)
            .await
            .unwrap_or_else(|e| panic!("appending to {}: {e}", append.blob));
    }
}
