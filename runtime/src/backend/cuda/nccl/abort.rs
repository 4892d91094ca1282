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

    /// World rank `rank` left the launch (`why`: "rank 1 returned from its closure"): every
    /// other rank's communicator of a group the rank belonged to learns how many collective
    /// calls it made there ([`CommLaunchLine::peer_departed`]); groups without it are
    /// unaffected.
    pub fn depart(&self, rank: usize, why: &str) {
        let comms: Vec<Arc<CommLaunchLine>> = self
            .comms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let gone: Vec<(Arc<str>, u64)> = comms
            .iter()
            .filter(|c| c.owner == rank)
            .map(|c| (c.key.clone(), c.lock().seq))
            .collect();
        for c in comms.iter().filter(|c| c.owner != rank) {
            if let Some((_, final_seq)) = gone.iter().find(|(k, _)| *k == c.key) {
                c.peer_departed(*final_seq, why);
            }
        }
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
