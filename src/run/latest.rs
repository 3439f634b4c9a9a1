//! Rebuilding `latest.csv`: the header plus the daily files of the last `SIGNINS_REPORT_DAYS`
//! days, newest first, replaced in one atomic commit by the sink; then the summaries over the
//! same days (`summaries`).

use tracing::{info, warn};

use super::{Run, RunError};
use crate::sink::{daily_file, DailyFile};
use crate::state::State;

impl Run<'_> {
    /// [`Self::publish_latest`] inside what is left of the run's deadline; `Ok(false)` when the
    /// deadline came first (the report stays dirty in the state and the next run rebuilds it).
    pub(super) async fn publish_latest_by_deadline(
        &mut self,
        state: &mut State,
    ) -> Result<bool, RunError> {
        let Some(budget) = self.request.deadline else {
            return self.publish_latest(state).await.map(|()| true);
        };
        let left = budget.saturating_sub(self.started.elapsed());
        let started = std::time::Instant::now();
        match tokio::time::timeout(left, self.publish_latest(state)).await {
            Ok(published) => {
                published?;
                // What the next run keeps of its deadline for this (`Run::stop_reading_at`).
                state.publish_seconds = Some(started.elapsed().as_secs_f64());
                Ok(true)
            }
            Err(_) => {
                warn!("latest.csv or the summaries were not rebuilt before the deadline; the next run rebuilds them");
                Ok(false)
            }
        }
    }

    /// Rebuilds `latest.csv` when it is dirty (a slice was committed since it was last built, by
    /// this run or by one that failed or stopped before rebuilding it) or its set of days changed;
    /// then the summaries, under the same rule, over the same days.
    pub(super) async fn publish_latest(&mut self, state: &mut State) -> Result<(), RunError> {
        let today = self.deps.clock.now().date();
        let first = today - time::Duration::days(i64::from(self.settings.report_days) - 1);
        let (first, last) = (daily_file(first), daily_file(today));
        let mut days: Vec<DailyFile> = self
            .deps
            .sink
            .list_daily()
            .await?
            .into_iter()
            .filter(|f| f.name.as_str() >= first.as_str() && f.name.as_str() <= last.as_str())
            .collect();
        days.sort_unstable_by(|a, b| b.name.cmp(&a.name));
        let files: Vec<String> = days.iter().map(|d| d.name.clone()).collect();
        if state.latest_dirty || state.latest_files.as_ref() != Some(&files) {
            // Another writer may have taken over since the last slice: never replace its report.
            self.deps.sink.ensure_locked().await?;
            self.deps
                .sink
                .publish_latest(self.header.clone(), &files)
                .await?;
            info!(days = files.len(), "latest.csv replaced");
            state.latest_files = Some(files);
            state.latest_dirty = false;
        }
        self.publish_summaries(state, &days).await
    }
}
