//! Per-user memory accounting: one [`MemoryBudget`] per owner covers everything the endpoint
//! holds for that user (shells, pipelines, half-received PSRP messages, queued pipeline input,
//! queued replies), so no request shape can make one user's sessions grow without bound.
//!
//! Accounting is RAII: every holder of memory owns a [`Charge`] that is released when it is
//! dropped, so deleting or expiring a shell (which drops its pipelines, fragment buffers and
//! queues) gives the whole amount back without any bookkeeping on the delete path. A request
//! that would go over the budget is refused with a fault that names the limit
//! ([`OverBudget`]); what the endpoint itself produces (command output waiting for a Receive)
//! is charged with [`Charge::force`], so it counts against new requests but never fails: the
//! executor is already slowed down by the bounded output queue.
//!
//! The figures are estimates of heap use (bytes of the buffered data plus a fixed cost per
//! object), not allocator truth; they bound memory to a small multiple of the budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes one user's remoting state may hold at once (all shells together). A real session
/// holds a few hundred KiB: command arguments, one pipeline-input object in flight, a window
/// of output fragments. 64 MiB leaves room for 16 sessions piping large objects.
pub const USER_MEMORY_BUDGET: usize = 64 * 1024 * 1024;

/// What a shell costs before it holds any data (state, maps, counters).
pub const SHELL_COST: usize = 16 * 1024;

/// What a pipeline costs before it holds any data (task, channels, state).
pub const PIPELINE_COST: usize = 4 * 1024;

/// One owner's budget. Shared (`Arc`) by every shell of the owner.
#[derive(Debug)]
pub struct MemoryBudget {
    owner: String,
    limit: usize,
    used: AtomicUsize,
}

/// The charge would take the owner over the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "user {owner} would hold more than the {limit_mib} MiB the proxy keeps per user for remoting \
     sessions ({used} bytes in use, {asked} more asked for {what}); close sessions you no longer \
     use (Get-PSSession | Remove-PSSession), pipe fewer or smaller objects at once, or send \
     large data in several commands"
)]
pub struct OverBudget {
    /// The user.
    pub owner: String,
    /// The budget in MiB.
    pub limit_mib: usize,
    /// Bytes charged before this request.
    pub used: usize,
    /// Bytes this charge asked for.
    pub asked: usize,
    /// What the memory was for (`pipeline input`, `a half-received PSRP message`, …).
    pub what: &'static str,
}

impl MemoryBudget {
    /// A budget of `limit` bytes for `owner`.
    pub fn new(owner: impl Into<String>, limit: usize) -> Arc<Self> {
        Arc::new(Self {
            owner: owner.into(),
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes currently charged.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// An empty charge against this budget (grown later).
    pub fn empty(self: &Arc<Self>) -> Charge {
        Charge {
            budget: self.clone(),
            bytes: 0,
        }
    }

    /// Charges `bytes` for `what`.
    ///
    /// # Errors
    /// [`OverBudget`] when the owner would go over the limit; nothing is charged then.
    pub fn charge(
        self: &Arc<Self>,
        bytes: usize,
        what: &'static str,
    ) -> Result<Charge, OverBudget> {
        let mut c = self.empty();
        c.grow(bytes, what)?;
        Ok(c)
    }

    fn reserve(&self, bytes: usize, what: &'static str) -> Result<(), OverBudget> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|n| *n <= self.limit)
            })
            .map(drop)
            .map_err(|used| OverBudget {
                owner: self.owner.clone(),
                limit_mib: self.limit / (1024 * 1024),
                used,
                asked: bytes,
                what,
            })
    }

    fn release(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// Bytes charged to a budget; released when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Charge {
    /// Bytes this charge holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `bytes` for `what`.
    ///
    /// # Errors
    /// [`OverBudget`]; the charge is unchanged then.
    pub fn grow(&mut self, bytes: usize, what: &'static str) -> Result<(), OverBudget> {
        self.budget.reserve(bytes, what)?;
        self.bytes += bytes;
        Ok(())
    }

    /// Adds `bytes` even over the limit (memory the endpoint produced itself).
    pub fn force(&mut self, bytes: usize) {
        self.budget.used.fetch_add(bytes, Ordering::AcqRel);
        self.bytes += bytes;
    }

    /// Gives back up to `bytes`.
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.budget.release(bytes);
        self.bytes -= bytes;
    }

    /// Gives back everything held so far (the charge stays usable).
    pub fn clear(&mut self) {
        self.shrink(self.bytes);
    }

    /// Splits `bytes` off into a charge of its own (e.g. one queued item's share).
    pub fn split(&mut self, bytes: usize) -> Charge {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Charge {
            budget: self.budget.clone(),
            bytes,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_refused_over_the_limit_and_released_on_drop() {
        let b = MemoryBudget::new("ops", 1000);
        let a = b.charge(600, "a").unwrap();
        let err = b.charge(500, "pipeline input").unwrap_err();
        assert_eq!(err.used, 600);
        assert_eq!(err.asked, 500);
        assert!(err.to_string().contains("Remove-PSSession"), "{err}");
        assert_eq!(b.used(), 600, "a refused charge costs nothing");
        let mut c = b.charge(400, "b").unwrap();
        assert_eq!(b.used(), 1000);
        let part = c.split(150);
        c.shrink(100);
        assert_eq!(b.used(), 900);
        drop(part);
        assert_eq!(b.used(), 750);
        c.force(10_000);
        assert_eq!(b.used(), 10_750);
        drop((a, c));
        assert_eq!(b.used(), 0);
    }
}
