//! How many pages a run holds in memory at once. A page is ~6.5 MB of JSON and ~1.3 MB of
//! records, so the pages in memory are most of a run's resident memory; but a chain holds its
//! page only while it reads and uses it (milliseconds), and waits for Graph's next answer
//! (seconds) holding none. So chains share a few slots: a chain claims one once a page's answer
//! has come — never while Graph works on the request — and gives it back when it holds no page.
//! The answers that come meanwhile wait in the connection until a slot frees.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots one run's chains share.
#[derive(Debug, Clone)]
pub struct PageSlots(Arc<Semaphore>);

impl PageSlots {
    pub fn new(slots: usize) -> PageSlots {
        PageSlots(Arc::new(Semaphore::new(slots.max(1))))
    }

    /// A claim for one reader (a chain): every page its streams read is held under it.
    pub fn claim(&self) -> Arc<PageClaim> {
        Arc::new(PageClaim {
            slots: self.0.clone(),
            held: Mutex::new(Held::default()),
        })
    }

    /// Slots free now.
    pub fn free(&self) -> usize {
        self.0.available_permits()
    }
}

/// One reader's hold on a slot. A reader with one query per event type holds a page of each
/// stream it merges: all under its one slot, so that a reader holding a slot never waits for
/// another (no reader can wait on one that waits on it).
#[derive(Debug)]
pub struct PageClaim {
    slots: Arc<Semaphore>,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    slot: Option<OwnedSemaphorePermit>,
    pages: usize,
}

impl PageClaim {
    fn held(&self) -> MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Called once a page's answer has come, before its body is read: waits for a slot unless
    /// this claim holds one. The page keeps the lease until it is given back.
    pub async fn lease(self: &Arc<Self>) -> PageLease {
        self.hold_slot().await;
        self.held().pages += 1;
        PageLease(self.clone())
    }

    async fn hold_slot(&self) {
        if self.held().slot.is_some() {
            return;
        }
        // Never closed, so this only fails if the semaphore were: then nothing is bounded.
        let slot = self.slots.clone().acquire_owned().await.ok();
        let mut held = self.held();
        if held.slot.is_none() {
            held.slot = slot;
        }
    }

    /// Gives the slot up while the reader waits on something other than its pages (a commit,
    /// another read's end), keeping the pages it holds: a waiting reader then never keeps the
    /// read it waits for from a slot. [`Self::resume`] takes a slot again.
    pub fn pause(&self) {
        self.held().slot = None;
    }

    /// Takes a slot again after [`Self::pause`], if the reader still holds pages.
    pub async fn resume(&self) {
        if self.held().pages > 0 {
            self.hold_slot().await;
        }
    }
}

/// One page held under a [`PageClaim`]; the claim's slot is given back with its last page.
#[derive(Debug)]
pub struct PageLease(Arc<PageClaim>);

impl Drop for PageLease {
    fn drop(&mut self) {
        let mut held = self.0.held();
        held.pages = held.pages.saturating_sub(1);
        if held.pages == 0 {
            held.slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn blocks<F: std::future::Future>(future: F) -> bool {
        tokio::time::timeout(Duration::from_millis(50), future)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_slot_is_held_from_the_first_page_to_the_last() {
        let slots = PageSlots::new(1);
        let (one, two) = (slots.claim(), slots.claim());
        let first = one.lease().await;
        // A second stream of the same reader shares its slot.
        let second = one.lease().await;
        assert_eq!(slots.free(), 0);
        assert!(
            blocks(two.lease()).await,
            "the other reader waits for the slot"
        );
        drop(first);
        assert_eq!(slots.free(), 0, "one page is still held");
        drop(second);
        assert_eq!(slots.free(), 1);
        let _other = two.lease().await;
        assert_eq!(slots.free(), 0);
    }

    #[tokio::test]
    async fn a_paused_reader_keeps_its_pages_but_not_its_slot() {
        let slots = PageSlots::new(1);
        let (waiting, other) = (slots.claim(), slots.claim());
        let page = waiting.lease().await;
        waiting.pause();
        let other_page = other.lease().await;
        assert!(blocks(waiting.resume()).await, "it waits for the slot back");
        drop(other_page);
        waiting.resume().await;
        assert_eq!(slots.free(), 0);
        drop(page);
        assert_eq!(slots.free(), 1);
        // Nothing held: resuming takes no slot.
        waiting.pause();
        waiting.resume().await;
        assert_eq!(slots.free(), 1);
    }
}
