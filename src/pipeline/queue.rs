//! The bounded queue between the spool reader and the sender. Its bound covers every finding
//! held in memory — queued, in a request, or waiting for a retry — in count and in bytes: a
//! [`Permit`] travels with each finding and is returned when the finding is settled. When the
//! budget is spent the reader waits (backpressure); nothing is dropped.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use super::ack::Ack;
use crate::finding::Finding;

/// A finding on its way, with its acknowledgement and its share of the memory budget.
#[derive(Debug)]
pub struct Queued {
    /// The finding.
    pub finding: Finding,
    /// Settles it.
    pub ack: Ack,
    /// Its share of the budget.
    pub permit: Permit,
}

/// Memory held by one finding; returned on drop.
#[derive(Debug)]
pub struct Permit {
    _count: tokio::sync::OwnedSemaphorePermit,
    _bytes: tokio::sync::OwnedSemaphorePermit,
}

/// The in-memory budget, shared by the reader (which takes) and the sender (which gives back).
#[derive(Debug, Clone)]
pub struct Budget {
    count: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_bytes: u32,
}

impl Budget {
    /// A budget of `max_findings` findings and `max_bytes` bytes.
    pub fn new(max_findings: usize, max_bytes: usize) -> Self {
        let max_bytes = u32::try_from(max_bytes).unwrap_or(u32::MAX);
        Self {
            count: Arc::new(Semaphore::new(max_findings)),
            bytes: Arc::new(Semaphore::new(max_bytes as usize)),
            max_bytes,
        }
    }

    /// Waits until one finding of `len` bytes fits. A finding larger than the whole budget
    /// takes the whole budget.
    pub async fn reserve(&self, len: usize) -> Permit {
        let len = u32::try_from(len).unwrap_or(u32::MAX).clamp(1, self.max_bytes);
        let count = self.count.clone().acquire_owned().await.expect("the budget is never closed");
        let bytes = self.bytes.clone().acquire_many_owned(len).await.expect("the budget is never closed");
        Permit { _count: count, _bytes: bytes }
    }

    /// Findings that could be reserved right now.
    pub fn free_findings(&self) -> usize {
        self.count.available_permits()
    }

    /// Bytes that could be reserved right now.
    pub fn free_bytes(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// Sending side of the queue.
pub type QueueTx = mpsc::UnboundedSender<Queued>;
/// Receiving side of the queue.
pub type QueueRx = mpsc::UnboundedReceiver<Queued>;

/// One queue per destination; a finding goes to the one its routing chose.
#[derive(Debug, Clone)]
pub struct Lanes(pub Vec<QueueTx>);

impl Lanes {
    /// Queues `q` for its destination; false when that sender is gone (shutting down).
    pub fn send(&self, q: Queued) -> bool {
        self.0.get(q.finding.destination).is_some_and(|tx| tx.send(q).is_ok())
    }
}

/// A queue whose size is held by [`Budget`] permits rather than by the channel.
pub fn channel() -> (QueueTx, QueueRx) {
    mpsc::unbounded_channel()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reserve_waits_until_budget_is_returned() {
        let budget = Budget::new(2, 100);
        let a = budget.reserve(60).await;
        let _b = budget.reserve(30).await;
        assert_eq!((budget.free_findings(), budget.free_bytes()), (0, 10));
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.reserve(10)).await;
        assert!(waiting.is_err(), "a third finding must wait");
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(5), budget.reserve(50)).await.unwrap();
        assert_eq!(budget.free_bytes(), 20);
    }

    #[tokio::test]
    async fn oversized_finding_takes_whole_budget_instead_of_blocking_forever() {
        let budget = Budget::new(10, 100);
        let p = budget.reserve(1_000).await;
        assert_eq!(budget.free_bytes(), 0);
        drop(p);
        assert_eq!(budget.free_bytes(), 100);
    }
}
