//! A query's sign-ins one at a time, newest first: the pager's pages unrolled, holding one page in
//! memory. Every event type is in the same query (`signInEventTypes/any(…)`), so Graph already
//! returns one newest-first sequence and nothing is merged here.

use std::collections::VecDeque;

use super::client::{GraphClient, GraphError, GraphStats, SignInPager};
use super::model::SignIn;

/// Told about every page read (the CLI's progress bar).
pub trait PageObserver: Send + Sync {
    fn page(&self, _rows_in_page: usize, _stats: &GraphStats) {}
}

/// The rows of one query, page by page.
pub struct SignInStream<'g> {
    graph: &'g GraphClient,
    pager: SignInPager,
    page: VecDeque<SignIn>,
    done: bool,
    pages: u64,
}

impl<'g> SignInStream<'g> {
    pub fn new(graph: &'g GraphClient, pager: SignInPager) -> Self {
        SignInStream {
            graph,
            pager,
            page: VecDeque::new(),
            done: false,
            pages: 0,
        }
    }

    /// Pages read so far (more than one: `@odata.nextLink` was followed).
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The next sign-in, reading the next page when this one is used up; `None` at the end.
    pub async fn next(
        &mut self,
        observer: Option<&dyn PageObserver>,
    ) -> Result<Option<SignIn>, GraphError> {
        while self.page.is_empty() && !self.done {
            match self.pager.next_page().await? {
                Some(page) => {
                    self.pages += 1;
                    if let Some(observer) = observer {
                        observer.page(page.len(), &self.graph.stats());
                    }
                    self.page.extend(page);
                }
                None => self.done = true,
            }
        }
        Ok(self.page.pop_front())
    }
}
