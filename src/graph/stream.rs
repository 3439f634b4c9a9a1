//! All event types' sign-ins as one newest-first stream: several pagers (one per event type)
//! merged by `createdDateTime`, holding at most one page per pager in memory.

use std::collections::VecDeque;

use super::client::{GraphClient, GraphError, GraphStats, SignInPager};
use super::model::SignIn;

/// Told about every page read (the CLI's progress bar).
pub trait PageObserver: Send + Sync {
    fn page(&self, _rows_in_page: usize, _stats: &GraphStats) {}
}

/// Several newest-first pagers (one per event type) merged into one newest-first stream, holding
/// at most one page per pager in memory.
pub struct MergedSignIns<'g> {
    graph: &'g GraphClient,
    streams: Vec<(SignInPager, VecDeque<SignIn>, bool)>,
}

impl<'g> MergedSignIns<'g> {
    pub fn new(graph: &'g GraphClient, pagers: Vec<SignInPager>) -> Self {
        MergedSignIns {
            graph,
            streams: pagers
                .into_iter()
                .map(|p| (p, VecDeque::new(), false))
                .collect(),
        }
    }

    pub async fn next(
        &mut self,
        observer: Option<&dyn PageObserver>,
    ) -> Result<Option<SignIn>, GraphError> {
        for (pager, buffer, done) in &mut self.streams {
            while buffer.is_empty() && !*done {
                match pager.next_page().await? {
                    Some(page) => {
                        if let Some(observer) = observer {
                            observer.page(page.len(), &self.graph.stats());
                        }
                        buffer.extend(page);
                    }
                    None => *done = true,
                }
            }
        }
        let newest = self
            .streams
            .iter()
            .enumerate()
            .filter_map(|(i, (_, buffer, _))| buffer.front().map(|s| (i, s.created)))
            .max_by_key(|(_, created)| *created)
            .map(|(i, _)| i);
        Ok(newest.and_then(|i| self.streams[i].1.pop_front()))
    }
}
