//! The behaviour every backend must show, one suite per seam, run against
//! each backend (memory and embedded here; a networked backend runs the
//! same suites against its own servers). [`run_all`] runs them all on one
//! fresh store.

use presence_core::{
    Command, Duration, SessionExpiration, SessionId, SessionState, TenantId, UserId, UserKey,
};

use crate::Store;

pub mod due;
pub mod facts;
pub mod feed;
pub mod subscriptions;

pub(crate) use facts::read_one;

pub(crate) fn key(tenant: &str, user: &str) -> UserKey {
    UserKey::new(
        TenantId::parse(tenant).expect("valid tenant"),
        UserId::parse(user).expect("valid user"),
    )
}

pub(crate) fn set_presence(session: &str, minutes: i64) -> Command {
    Command::SetPresence {
        session_id: SessionId::parse(session).expect("valid session"),
        state: SessionState::Available,
        expiration: SessionExpiration::new(Duration::from_mins(minutes)).expect("in range"),
    }
}

/// Every suite, on one fresh store.
pub async fn run_all(store: &dyn Store) {
    facts::run(store).await;
    feed::run(store).await;
    due::run(store).await;
    subscriptions::run(store).await;
}
