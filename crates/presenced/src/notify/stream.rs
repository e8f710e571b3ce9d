//! The live stream of presence changes (`GET /_presenced/stream`, Server-Sent
//! Events): every change the notifier reads from the store's change feed for
//! a streamed user is broadcast here once, and each open stream picks its
//! own users out of it and renders them for its own viewer.
//!
//! An event's id is the change feed's cursor just after the change, so a
//! `Last-Event-ID` resumes by reading the feed after it; a cursor the feed
//! no longer holds (older than what it keeps, from before a restart, or
//! from a time nobody followed it) starts the stream again with the current
//! presence of every user it covers.

use std::sync::Arc;

use presence_core::{Instant, UserFacts, UserKey};
use presence_store::Position;
use tokio::sync::broadcast;

/// How many events an open stream may fall behind before it is ended (its
/// client then resumes with `Last-Event-ID`).
const BROADCAST: usize = 16_384;

#[derive(Debug)]
pub struct StreamEvent {
    /// The change feed's cursor after this change, as text.
    pub id: String,
    /// Where the change sits in the feed.
    pub position: Position,
    pub key: UserKey,
    pub facts: Arc<UserFacts>,
    pub at: Instant,
}

#[derive(Debug)]
pub struct StreamHub {
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
        StreamHub { sender }
    }

    pub fn publish(&self, event: StreamEvent) {
        // Nobody listening is fine: the feed keeps the change for resumption.
        let _ = self.sender.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StreamEvent>> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use presence_core::{TenantId, UserId};

    use super::*;

    #[test]
    fn subscribers_receive_what_is_published_after_they_subscribe() {
        let hub = StreamHub::new();
        let key = UserKey::new(
            TenantId::parse("t").expect("valid"),
            UserId::parse("a").expect("valid"),
        );
        let event = |id: &str| StreamEvent {
            id: id.into(),
            position: Position {
                partition: 0,
                offset: 1,
            },
            key: key.clone(),
            facts: Arc::default(),
            at: Instant::from_unix_millis(0),
        };
        hub.publish(event("before"));
        let mut live = hub.subscribe();
        hub.publish(event("after"));
        assert_eq!(live.try_recv().expect("sent").id, "after");
        assert!(live.try_recv().is_err());
    }
}
