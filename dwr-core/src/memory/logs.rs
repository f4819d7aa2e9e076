//! Job logs: the lines kept under the line cap and the byte cap (with its marker), read by
//! absolute line number, and the appends and follows over them.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;

use tokio::sync::Notify;

use super::lifecycle::stale;
use super::state::State;
use crate::error::StoreError;
use crate::ids::JobId;

#[derive(Default)]
pub(super) struct JobLog {
    lines: VecDeque<String>,
    /// Lines dropped from the front by the cap: the absolute number of `lines[0]`.
    dropped: usize,
    /// Bytes of the lines kept (ever appended and not cut by the byte cap).
    bytes: u64,
    /// Bytes and lines cut by the byte cap; once non-zero, the last line is the marker.
    cut_bytes: u64,
    cut_lines: u64,
}

impl JobLog {
    fn end(&self) -> usize {
        self.dropped + self.lines.len()
    }

    /// Appends `new` up to `max_bytes` of log (0: no byte cap), then keeps the newest
    /// `cap` lines.
    fn push(&mut self, new: &[String], cap: usize, max_bytes: u64) {
        let mut taken = 0;
        if self.cut_lines == 0 {
            for line in new {
                let len = line.len() as u64;
                if max_bytes > 0 && self.bytes + len > max_bytes {
                    break;
                }
                self.bytes += len;
                taken += 1;
            }
        }
        self.lines.extend(new[..taken].iter().cloned());
        let cut = &new[taken..];
        if !cut.is_empty() {
            let first_cut = self.cut_lines == 0;
            self.cut_lines += cut.len() as u64;
            self.cut_bytes += cut.iter().map(|l| l.len() as u64).sum::<u64>();
            let marker = crate::store::log_cap_marker(max_bytes, self.cut_bytes, self.cut_lines);
            match self.lines.back_mut() {
                Some(last) if !first_cut => *last = marker,
                _ => self.lines.push_back(marker),
            }
        }
        let over = self.lines.len().saturating_sub(cap);
        if over > 0 {
            self.lines.drain(..over);
            self.dropped += over;
        }
    }

    /// The lines kept from absolute line `from` on.
    pub(super) fn read_from(&self, from: usize) -> Vec<String> {
        let skip = from.saturating_sub(self.dropped);
        self.lines.iter().skip(skip).cloned().collect()
    }
}

impl State {
    /// Appends to a job's log (see `JobStore::append_logs`); returns the notifier of its
    /// followers, if any, to ring.
    pub(super) fn append_logs(
        &mut self,
        id: JobId,
        attempt: Option<u32>,
        lines: &[String],
        cap: usize,
        max_bytes: u64,
    ) -> Result<Option<Arc<Notify>>, StoreError> {
        let entry = self.entry_mut(id)?;
        if let Some(attempt) = attempt {
            if attempt != entry.job.attempt || !entry.job.state.holds_resources() {
                return Err(stale(&entry.job, attempt));
            }
        }
        entry.log.push(lines, cap, max_bytes);
        Ok(entry.log_notify.clone())
    }

    /// The lines from `from` on once there are some or the job is terminal; until then the
    /// notifier an append or the job's end will ring (created by the first follower).
    pub(super) fn new_logs(
        &mut self,
        id: JobId,
        from: usize,
    ) -> Result<ControlFlow<Vec<String>, Arc<Notify>>, StoreError> {
        let entry = self.entry_mut(id)?;
        if entry.log.end() > from || entry.job.state.is_terminal() {
            return Ok(ControlFlow::Break(entry.log.read_from(from)));
        }
        let notify = entry
            .log_notify
            .get_or_insert_with(|| Arc::new(Notify::new()));
        Ok(ControlFlow::Continue(notify.clone()))
    }
}
