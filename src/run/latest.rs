//! Rebuilding `latest.csv`: the header plus the daily files of the last `SIGNINS_REPORT_DAYS`
//! days, newest first, replaced in one atomic commit by the sink.

use time::OffsetDateTime;
use tracing::info;

use super::{Run, RunError};
use crate::sink::daily_file;
use crate::state::State;

impl Run<'_> {
    /// Rebuilds `latest.csv` when rows were added or its set of days changed.
    pub(super) async fn publish_latest(&mut self, state: &mut State) -> Result<(), RunError> {
        let today = OffsetDateTime::now_utc().date();
        let first = today - time::Duration::days(i64::from(self.settings.report_days) - 1);
        let mut files: Vec<String> = self
            .deps
            .sink
            .list_daily()
            .await?
            .into_iter()
            .filter(|f| {
                f.as_str() >= daily_file(first).as_str() && f.as_str() <= daily_file(today).as_str()
            })
            .collect();
        files.sort_unstable_by(|a, b| b.cmp(a));
        if self.summary.rows == 0 && state.latest_files.as_ref() == Some(&files) {
            return Ok(());
        }
        self.deps
            .sink
            .publish_latest(self.encoder.header(), &files)
            .await?;
        info!(days = files.len(), "latest.csv replaced");
        state.latest_files = Some(files);
        Ok(())
    }
}
