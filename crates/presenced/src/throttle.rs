//! Throttling, as Graph does it: a limit per application and tenant
//! (`--throttle-app`), one per tenant with all its applications together
//! (`--throttle-tenant`), and one per client address for requests that
//! carry no valid token (`--throttle-unauthenticated`). Each limit is a rate
//! with a burst of its whole count: GCRA, as the governor crate implements
//! it. Every request counts once, whatever it asks for.
//!
//! One process keeps its limits itself (governor, keyed). Nodes over Redis
//! share theirs: each node takes requests from the limit in Redis (one
//! script, the same algorithm on Redis's clock) a small batch at a time, a
//! hundredth of the limit, and serves them from that stock for at most a
//! second. Every request served was paid for in Redis first, so the nodes
//! together never exceed the rate; what a node holds unused when another
//! asks is the overshoot in time: in any window, at most one batch per node
//! more than the limit allows, and never more than the limit plus one batch
//! per node in a period. When Redis cannot be answered, each node keeps its
//! limits alone until it can again.
//!
//! The check is made where the caller is known: by the `Principal`
//! extractor (`http/authenticate.rs`), after the token (401) and before the
//! body (413, 415, 400), as the SPEC orders them.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use presence_store::RedisStore;

use crate::auth::Principal;

/// A limit: `count` requests per `period`, with a burst of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: StdDuration,
}

impl Rate {
    /// Graph's presence limit per application and tenant: 10,000 requests
    /// every 30 seconds.
    pub const GRAPH: Rate = Rate {
        count: NonZeroU32::new(10_000).expect("non-zero"),
        period: StdDuration::from_secs(30),
    };

    /// Reads `N/PERIOD` (`10000/PT30S`), or `off` (`None`). The error says
    /// what to write.
    pub fn parse(flag: &str, text: &str) -> Result<Option<Rate>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let example = format!("give {flag} as N/PERIOD, such as 10000/PT30S, or off");
        let (count, period) = text
            .split_once('/')
            .ok_or_else(|| format!("{flag} is {text:?}; {example}"))?;
        let count = count
            .trim()
            .parse::<NonZeroU32>()
            .map_err(|_| format!("{flag}'s count {count:?} is not a positive number; {example}"))?;
        let period = crate::wire_time::parse_duration(flag, period.trim())?;
        if !period.is_positive() {
            return Err(format!("{flag}'s period must be positive; {example}"));
        }
        let period = StdDuration::from_millis(period.as_millis() as u64);
        if period.as_nanos() / u128::from(count.get()) == 0 {
            return Err(format!(
                "{flag} allows more than one request per nanosecond; {example}"
            ));
        }
        Ok(Some(Rate { count, period }))
    }

    fn quota(self) -> Quota {
        let emission = self.period / self.count.get();
        Quota::with_period(emission)
            .expect("parse refuses a zero emission interval")
            .allow_burst(self.count)
    }

    /// How many requests a node takes from a shared limit at once.
    fn batch(self) -> u32 {
        (self.count.get() / 100).max(1)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let period = jiff::SignedDuration::try_from(self.period).unwrap_or_default();
        write!(formatter, "{}/{period}", self.count)
    }
}

/// The limits of `presenced serve`; `None` is off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Per application and tenant (`--throttle-app`).
    pub app: Option<Rate>,
    /// Per tenant, all applications together (`--throttle-tenant`).
    pub tenant: Option<Rate>,
    /// Per client address, for requests without a valid token
    /// (`--throttle-unauthenticated`).
    pub unauthenticated: Option<Rate>,
}

/// Which limit refused a request: the label of `presenced_throttled_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    App,
    Tenant,
    Address,
}

impl Limit {
    fn label(self) -> &'static str {
        match self {
            Limit::App => "app",
            Limit::Tenant => "tenant",
            Limit::Address => "address",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Limit::App => "--throttle-app",
            Limit::Tenant => "--throttle-tenant",
            Limit::Address => "--throttle-unauthenticated",
        }
    }
}

/// A refusal: which limit, and when to come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    pub limit: Limit,
    pub rate: Rate,
    /// Whole seconds, at least 1 (`Retry-After`).
    pub retry_after: u64,
}

impl Throttled {
    fn new(limit: Limit, rate: Rate, wait: StdDuration) -> Throttled {
        metrics::counter!("presenced_throttled_total", "limit" => limit.label()).increment(1);
        Throttled {
            limit,
            rate,
            retry_after: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
        }
    }

    /// What the 429 says.
    pub fn message(&self) -> String {
        let whom = match self.limit {
            Limit::App => "this application in this tenant",
            Limit::Tenant => "this tenant's applications together",
            Limit::Address => "requests without a valid token from this address",
        };
        format!(
            "Too many requests: {whom} may make {} requests every {} ({}). Retry after {} seconds, as the Retry-After header says.",
            self.rate.count,
            jiff::SignedDuration::try_from(self.rate.period).unwrap_or_default(),
            self.limit.flag(),
            self.retry_after
        )
    }
}

/// One limit over many keys, in this process.
#[derive(Debug)]
struct Local {
    rate: Rate,
    limiter: DefaultKeyedRateLimiter<u64>,
}

impl Local {
    fn new(rate: Rate) -> Local {
        Local {
            rate,
            limiter: DefaultKeyedRateLimiter::keyed(rate.quota()),
        }
    }

    fn check(&self, limit: Limit, key: u64) -> Result<(), Throttled> {
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Throttled::new(limit, self.rate, wait)
        })
    }
}

/// What a node holds of one shared limit.
#[derive(Debug)]
struct Stock {
    /// Requests paid for in Redis, not yet served.
    left: u32,
    /// The stock is thrown away after this (a node never serves requests
    /// paid for long ago).
    until: StdInstant,
    /// Redis refused; nothing is asked again before this.
    refused_until: Option<StdInstant>,
}

/// How long a node serves requests paid for in Redis.
const STOCK_LIFE: StdDuration = StdDuration::from_secs(1);

/// Every limit, kept here or shared over Redis.
#[derive(Debug)]
pub struct Throttle {
    app: Option<Local>,
    tenant: Option<Local>,
    address: Option<Local>,
    /// Keys the limiters by a hash of what they count, seeded per process,
    /// so that a caller cannot choose values that collide (foldhash: a
    /// fraction of SipHash's cost on the request path).
    hasher: foldhash::fast::RandomState,
    redis: OnceLock<RedisStore>,
    stocks: Mutex<HashMap<(u8, u64), Stock>>,
}

impl Throttle {
    pub fn new(settings: ThrottleSettings) -> Throttle {
        Throttle {
            app: settings.app.map(Local::new),
            tenant: settings.tenant.map(Local::new),
            address: settings.unauthenticated.map(Local::new),
            hasher: foldhash::fast::RandomState::default(),
            redis: OnceLock::new(),
            stocks: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any limit is on.
    pub fn is_on(&self) -> bool {
        self.app.is_some() || self.tenant.is_some() || self.address.is_some()
    }

    /// Shares the limits with the other nodes over `redis`.
    pub fn share(&self, redis: RedisStore) {
        let _ = self.redis.set(redis);
    }

    fn hash(&self, value: impl Hash) -> u64 {
        self.hasher.hash_one(value)
    }

    /// Counts an authenticated request against its application's and its
    /// tenant's limits.
    pub async fn check(&self, principal: &Principal) -> Result<(), Throttled> {
        let tenant = &principal.tenant;
        let app = principal.app_id().unwrap_or("");
        if let Some(local) = &self.app {
            let key = self.hash((tenant, app));
            self.take(Limit::App, local, key, || {
                format!("app:{}:{app}", tenant.as_str())
            })
            .await?;
        }
        if let Some(local) = &self.tenant {
            let key = self.hash(tenant);
            self.take(Limit::Tenant, local, key, || {
                format!("tenant:{}", tenant.as_str())
            })
            .await?;
        }
        Ok(())
    }

    /// Counts a request without a valid token against its address's limit.
    pub async fn check_unauthenticated(&self, address: Option<IpAddr>) -> Result<(), Throttled> {
        let Some(local) = &self.address else {
            return Ok(());
        };
        let Some(address) = address else {
            return Ok(());
        };
        let key = self.hash(address);
        self.take(Limit::Address, local, key, || format!("ip:{address}"))
            .await
    }

    async fn take(
        &self,
        limit: Limit,
        local: &Local,
        key: u64,
        identity: impl FnOnce() -> String,
    ) -> Result<(), Throttled> {
        let Some(redis) = self.redis.get() else {
            return local.check(limit, key);
        };
        let slot = (limit as u8, key);
        let now = StdInstant::now();
        {
            let mut stocks = self
                .stocks
                .lock()
                .expect("the stocks' lock is never poisoned");
            if let Some(stock) = stocks.get_mut(&slot) {
                if let Some(until) = stock.refused_until {
                    if now < until {
                        return Err(Throttled::new(limit, local.rate, until - now));
                    }
                    stock.refused_until = None;
                }
                if stock.left > 0 && now < stock.until {
                    stock.left -= 1;
                    return Ok(());
                }
            }
        }
        let rate = local.rate;
        match redis
            .throttle(&identity(), rate.count.get(), rate.period, rate.batch())
            .await
        {
            Ok(granted) => {
                let mut stocks = self
                    .stocks
                    .lock()
                    .expect("the stocks' lock is never poisoned");
                let stock = stocks.entry(slot).or_insert(Stock {
                    left: 0,
                    until: now,
                    refused_until: None,
                });
                match granted {
                    Ok(taken) => {
                        stock.left = taken - 1;
                        stock.until = now + STOCK_LIFE;
                        Ok(())
                    }
                    Err(wait) => {
                        stock.left = 0;
                        stock.refused_until = Some(now + wait);
                        Err(Throttled::new(limit, rate, wait))
                    }
                }
            }
            Err(error) => {
                // Alone until Redis answers again: this node's own share of
                // the limit is the whole limit.
                metrics::counter!("presenced_throttle_unshared_total").increment(1);
                tracing::debug!(%error, "throttling without Redis for this request");
                local.check(limit, key)
            }
        }
    }

    /// Forgets the keys that are back to a full limit, and stale stocks.
    pub fn forget_idle(&self) {
        for local in [&self.app, &self.tenant, &self.address]
            .into_iter()
            .flatten()
        {
            local.limiter.retain_recent();
            local.limiter.shrink_to_fit();
        }
        let now = StdInstant::now();
        if let Ok(mut stocks) = self.stocks.lock() {
            stocks.retain(|_, stock| {
                now < stock.until || stock.refused_until.is_some_and(|until| now < until)
            });
        }
    }

    /// Forgets idle keys every minute, until `shutdown`.
    pub async fn run(
        self: std::sync::Arc<Self>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<(), String> {
        let mut every = tokio::time::interval(StdDuration::from_secs(60));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.forget_idle(),
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_and_print() {
        let rate = Rate::parse("--throttle-app", "10000/PT30S").expect("valid");
        assert_eq!(rate, Some(Rate::GRAPH));
        assert_eq!(Rate::GRAPH.to_string(), "10000/PT30S");
        assert_eq!(Rate::parse("--throttle-app", "OFF").expect("valid"), None);
        for wrong in [
            "", "10000", "0/PT1S", "-1/PT1S", "5/PT0S", "5/soon", "x/PT1S",
        ] {
            let error = Rate::parse("--throttle-app", wrong).expect_err(wrong);
            assert!(error.contains("--throttle-app"), "{wrong}: {error}");
        }
    }

    #[test]
    fn a_refusal_says_when_to_come_back_in_whole_seconds() {
        let throttled = Throttled::new(Limit::App, Rate::GRAPH, StdDuration::from_millis(1));
        assert_eq!(throttled.retry_after, 1);
        let throttled = Throttled::new(Limit::App, Rate::GRAPH, StdDuration::from_millis(2001));
        assert_eq!(throttled.retry_after, 3);
        let throttled = Throttled::new(Limit::App, Rate::GRAPH, StdDuration::from_secs(2));
        assert_eq!(throttled.retry_after, 2);
        assert!(throttled.message().contains("10000 requests every PT30S"));
    }

    #[test]
    fn a_local_limit_allows_its_burst_then_refuses_each_key_alone() {
        let rate = Rate::parse("--throttle-app", "3/PT1H")
            .expect("valid")
            .expect("on");
        let local = Local::new(rate);
        for _ in 0..3 {
            local.check(Limit::App, 1).expect("within the burst");
        }
        let refused = local.check(Limit::App, 1).expect_err("beyond it");
        // One request comes back every twenty minutes.
        assert!((1..=1200).contains(&refused.retry_after), "{refused:?}");
        local
            .check(Limit::App, 2)
            .expect("another key has its own limit");
    }
}
