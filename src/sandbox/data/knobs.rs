//! What tests set (fault knobs) and read (request counters) while the simulator runs.
//!
//! All atomics or short-held mutexes, so a test changes them without stopping the server,
//! and [`Stats::until`] lets it wait for what the simulator saw instead of sleeping.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde_json::Value as Json;

/// Fault knobs and counters for tests (all atomics: set them while the server runs).
#[derive(Debug, Default)]
pub struct Knobs {
    /// Answer this many upcoming InvokeCommand requests with 429.
    pub throttle_next: AtomicU32,
    /// Retry-After seconds on those 429s.
    pub retry_after_secs: AtomicU32,
    /// Answer this many upcoming requests with 503.
    pub unavailable_next: AtomicU32,
    /// Answer this many upcoming requests with 401 (as for an expired token).
    pub unauthorized_next: AtomicU32,
    /// Delay before answering each InvokeCommand request, in milliseconds.
    pub latency_ms: AtomicU64,
    /// Delay before answering follow-up pages (`$skiptoken`) only, in milliseconds.
    pub page_latency_ms: AtomicU64,
    /// The cmdlet list EXOModuleFile publishes (None: every cmdlet of the built-in table).
    pub exported_cmdlets: Mutex<Option<Vec<String>>>,
}

/// A request as received: headers (lower-case names) and JSON body.
pub type SeenRequest = (Vec<(String, String)>, Json);

/// Counters for tests (requests as received).
#[derive(Debug, Default)]
pub struct Stats {
    /// Every InvokeCommand request (first pages and follow-ups, retries included).
    pub invoke_requests: AtomicU64,
    /// Follow-up page requests (`@odata.nextLink`).
    pub page_requests: AtomicU64,
    /// Follow-up page requests that got past the simulated latency (answered: a page or an error).
    pub pages_answered: AtomicU64,
    /// Requests whose client went away while the simulated latency held them.
    pub abandoned_requests: AtomicU64,
    /// EXOModuleFile requests.
    pub module_file_requests: AtomicU64,
    /// The last InvokeCommand request: headers (lower-case names) and JSON body.
    pub last_request: Mutex<Option<SeenRequest>>,
    /// Every InvokeCommand body received, in order (bounded to the last 1,000).
    pub bodies: Mutex<Vec<Json>>,
    /// Woken whenever a request counter moves ([`Stats::count`]).
    changed: tokio::sync::Notify,
}

impl Stats {
    /// Adds one to `counter` (one of this struct's) and wakes [`Stats::until`] waiters.
    pub fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Resolves once `done` holds for the counters: lets a test wait for what the
    /// simulator saw (a request arriving, a client going away) without sleeping.
    pub async fn until(&self, done: impl Fn(&Self) -> bool) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if done(self) {
                return;
            }
            changed.await;
        }
    }
}

/// Total requests observed (convenience for tests).
pub fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::SeqCst)
}
