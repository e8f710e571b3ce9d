//! The live stream of presence changes (`GET /_presenced/stream`, Server-Sent
//! Events): every change the notifier sees for a watched user is published
//! here once, numbered, kept in a ring for resumption, and broadcast to the
//! open streams, which pick their tenant's users out of it.
//!
//! Event ids are `{boot}-{number}`: `boot` is drawn when presenced starts,
//! so that a `Last-Event-ID` from before a restart (or older than the ring)
//! is recognized as such, and the stream then starts with the current
//! presence of every user it covers instead of a replay.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use presence_core::UserKey;
use tokio::sync::broadcast;

/// How many past events are kept for `Last-Event-ID`.
const RING: usize = 65_536;

/// How many events an open stream may fall behind before it is ended (its
/// client then resumes with `Last-Event-ID`).
const BROADCAST: usize = 16_384;

#[derive(Debug)]
pub struct StreamEvent {
    pub number: u64,
    pub key: UserKey,
    /// The presence, as `GET` renders it.
    pub data: String,
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<StreamEvent>>,
    next: u64,
}

#[derive(Debug)]
pub struct StreamHub {
    boot: String,
    ring: Mutex<Ring>,
    sender: broadcast::Sender<Arc<StreamEvent>>,
}

impl Default for StreamHub {
    fn default() -> StreamHub {
        StreamHub::new()
    }
}

impl StreamHub {
    pub fn new() -> StreamHub {
        let (sender, _) = broadcast::channel(BROADCAST);
        StreamHub {
            boot: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                next: 1,
            }),
            sender,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn event_id(&self, number: u64) -> String {
        format!("{}-{number}", self.boot)
    }

    /// The number of the latest event published (0 before the first).
    pub fn latest(&self) -> u64 {
        self.ring().next - 1
    }

    pub fn publish(&self, key: UserKey, data: String) {
        let mut ring = self.ring();
        let event = Arc::new(StreamEvent {
            number: ring.next,
            key,
            data,
        });
        ring.next += 1;
        if ring.events.len() == RING {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // Sent under the lock, so that streams receive events in number order.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StreamEvent>> {
        self.sender.subscribe()
    }

    /// The number of `last_event_id`, the events after it, and the latest
    /// number they reach, if it is one of this process's and nothing after
    /// it has left the ring; `None` otherwise.
    pub fn replay_after(&self, last_event_id: &str) -> Option<(u64, Vec<Arc<StreamEvent>>, u64)> {
        let (boot, number) = last_event_id.trim().rsplit_once('-')?;
        let number: u64 = number.parse().ok()?;
        if boot != self.boot {
            return None;
        }
        let ring = self.ring();
        if number >= ring.next {
            return None;
        }
        let oldest = ring.events.front().map_or(ring.next, |event| event.number);
        if number + 1 < oldest {
            return None;
        }
        let events = ring
            .events
            .iter()
            .filter(|event| event.number > number)
            .cloned()
            .collect();
        Some((number, events, ring.next - 1))
    }
}

#[cfg(test)]
mod tests {
    use presence_core::{TenantId, UserId};

    use super::*;

    fn key(user: &str) -> UserKey {
        UserKey::new(
            TenantId::parse("t").expect("valid"),
            UserId::parse(user).expect("valid"),
        )
    }

    #[test]
    fn replays_after_a_known_id_and_refuses_others() {
        let hub = StreamHub::new();
        let mut live = hub.subscribe();
        hub.publish(key("a"), "1".into());
        hub.publish(key("b"), "2".into());
        hub.publish(key("a"), "3".into());
        assert_eq!(live.try_recv().expect("sent").number, 1);
        let (number, replay, latest) = hub.replay_after(&hub.event_id(1)).expect("known");
        assert_eq!((number, latest), (1, 3));
        assert_eq!(
            replay.iter().map(|event| event.number).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(
            hub.replay_after(&hub.event_id(3)).expect("known").1.len(),
            0
        );
        assert!(
            hub.replay_after(&hub.event_id(4)).is_none(),
            "from the future"
        );
        assert!(hub.replay_after("0123456789ab-1").is_none(), "another boot");
        assert!(hub.replay_after("nonsense").is_none());
        assert_eq!(hub.latest(), 3);
    }
}
