//! The communicators of one launch, aborted together when a rank fails (`AbortRegistry`).

use std::sync::{Arc, Mutex, Weak};

use super::core::CommLaunchLine;

/// The communicators of one launch (the world and its splits): when a rank panics or a wait
/// times out, every communicator is aborted so that no rank stays blocked in a collective.
#[derive(Default)]
pub struct AbortRegistry {
    comms: Mutex<Vec<Weak<CommLaunchLine>>>,
}

impl AbortRegistry {
    /// Add `core` to the launch (and forget the communicators that are gone).
    pub fn register(&self, core: &Arc<CommLaunchLine>) {
        let mut c = self.comms.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|w| w.strong_count() > 0);
        c.push(Arc::downgrade(core));
    }

    /// Abort every live communicator of the launch.
    pub fn abort_all(&self, cause: &str) {
        let comms: Vec<Arc<CommLaunchLine>> = self
            .comms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for c in comms {
            c.abort(cause);
        }
    }
}
