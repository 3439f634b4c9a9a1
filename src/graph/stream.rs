//! A query's sign-ins one at a time, newest first: the pager's pages unrolled, holding one page in
//! memory. Usually every event type is in the same query (`signInEventTypes/any(…)`) and Graph
//! returns one newest-first sequence; where a tenant refuses that form, `run::slice` merges one
//! stream per event type by peeking at each.

use super::client::{GraphClient, GraphError, GraphStats, PageRows, SignInPager};
use super::model::SignInRecord;

/// Told about every page read (the CLI's progress bar).
pub trait PageObserver: Send + Sync {
    fn page(&self, _rows_in_page: usize, _stats: &GraphStats) {}
}

/// The rows of one query, page by page.
pub struct SignInStream<'g> {
    graph: &'g GraphClient,
    pager: SignInPager,
    /// The page being read (its bytes and the records borrowing from them) and the next index.
    page: Option<PageRows>,
    index: usize,
    done: bool,
    pages: u64,
}

impl<'g> SignInStream<'g> {
    pub fn new(graph: &'g GraphClient, pager: SignInPager) -> Self {
        SignInStream {
            graph,
            pager,
            page: None,
            index: 0,
            done: false,
            pages: 0,
        }
    }

    /// Pages read so far (more than one: `@odata.nextLink` was followed).
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The next sign-in, reading the next page when this one is used up; `None` at the end.
    /// The record borrows from the page held here: it is valid until the next call.
    pub async fn next(
        &mut self,
        observer: Option<&dyn PageObserver>,
    ) -> Result<Option<&SignInRecord<'_>>, GraphError> {
        if self.peek(observer).await?.is_none() {
            return Ok(None);
        }
        self.index += 1;
        Ok(self
            .page
            .as_ref()
            .and_then(|p| p.rows().get(self.index - 1)))
    }

    /// The next sign-in without taking it (reading the next page when this one is used up);
    /// `None` at the end. Several streams read at once are merged by peeking at each.
    pub async fn peek(
        &mut self,
        observer: Option<&dyn PageObserver>,
    ) -> Result<Option<&SignInRecord<'_>>, GraphError> {
        while self.page.as_ref().is_none_or(|p| self.index >= p.len()) && !self.done {
            // Give the used page back before the next arrives: memory holds one page, and its
            // buffer takes the next one.
            self.give_back_page();
            match self.pager.next_page().await? {
                Some(page) => {
                    self.pages += 1;
                    if let Some(observer) = observer {
                        observer.page(page.len(), &self.graph.stats());
                    }
                    self.page = Some(page);
                    self.index = 0;
                }
                None => self.done = true,
            }
        }
        Ok(self.current())
    }

    /// The sign-in [`Self::peek`] returned, again.
    pub fn current(&self) -> Option<&SignInRecord<'_>> {
        self.page.as_ref().and_then(|p| p.rows().get(self.index))
    }

    /// Whether every row of the page held was taken (the next [`Self::peek`] reads a page).
    pub fn page_used_up(&self) -> bool {
        self.page.as_ref().is_some_and(|p| self.index >= p.len())
    }

    /// Gives the page held back to the client (its memory, its slot), once used up: the
    /// reader may wait on something else before the next page without holding it.
    pub fn give_back_page(&mut self) {
        if self.page_used_up() {
            if let Some(used) = self.page.take() {
                self.graph.recycle(used);
            }
        }
    }

    /// Takes the sign-in [`Self::peek`] returned.
    pub fn advance(&mut self) {
        if self.current().is_some() {
            self.index += 1;
        }
    }
}

impl Drop for SignInStream<'_> {
    /// A stream left mid-page (the slice cursor moving on, a deadline) gives its buffer back too.
    fn drop(&mut self) {
        if let Some(page) = self.page.take() {
            self.graph.recycle(page);
        }
    }
}
