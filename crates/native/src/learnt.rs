//! Check results a directory listing has just learnt, kept for the check of
//! that directory which (in a deep check) follows.
//!
//! Listing a directory natively asks every server for its shares (and, for
//! a mutable directory, reads every share's header and checks the
//! version's signature): exactly what a check of that directory asks. A
//! deep check lists each directory and then checks it; asking the servers
//! the same questions twice a moment apart doubles the requests (and the
//! storage servers' CPU, the limit on loopback) spent on directories. So
//! the listing computes the directory's check results from its answers and
//! leaves them here, and the next plain check of that storage index takes
//! them (once: a later check asks the servers again).
//!
//! Only plain checks use them: a verify reads every share, and add-lease
//! must renew the leases. At most [`MAX`] results are kept (about 1 KB
//! each), none older than [`MAX_AGE`]; when full, the oldest go, so a
//! listing that is never followed by a check (a manifest) costs nothing
//! lasting, and a check long after a listing asks the servers.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use steward_cap::StorageIndex;

/// Results kept at most.
pub(crate) const MAX: usize = 1024;
/// How long results are good for.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(60);

type Entries = (HashMap<[u8; 16], (Instant, Value)>, VecDeque<[u8; 16]>);

/// The results, by storage index, oldest first.
#[derive(Default)]
pub(crate) struct Learnt(Mutex<Entries>);

impl Learnt {
    /// Keep the results of `si`'s check, as a listing learnt them.
    pub(crate) fn put(&self, si: &StorageIndex, results: Value) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *g;
        if map.insert(si.0, (Instant::now(), results)).is_none() {
            order.push_back(si.0);
        }
        while map.len() > MAX {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Take the results learnt for `si`, if any (they are then gone).
    pub(crate) fn take(&self, si: &StorageIndex) -> Option<Value> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *g;
        let (at, v) = map.remove(&si.0)?;
        if let Some(i) = order.iter().position(|k| *k == si.0) {
            order.remove(i);
        }
        (at.elapsed() <= MAX_AGE).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn taken_once_and_bounded() {
        let l = Learnt::default();
        let si = |i: u32| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_be_bytes());
            StorageIndex(b)
        };
        l.put(&si(1), json!(1));
        assert_eq!(l.take(&si(1)), Some(json!(1)));
        assert_eq!(l.take(&si(1)), None, "once only");
        for i in 0..(MAX as u32 + 10) {
            l.put(&si(i), json!(i));
        }
        assert_eq!(l.take(&si(0)), None, "the oldest went");
        assert_eq!(l.take(&si(MAX as u32 + 9)), Some(json!(MAX + 9)));
        let g = l.0.lock().unwrap();
        assert_eq!(g.0.len(), MAX - 1);
        assert_eq!(g.1.len(), MAX - 1);
    }
}
