//! Rendered presences, kept. A presence is read far more often than it
//! changes, and between two transitions of its user (a fade, an expiry, the
//! end of a preferred presence or of a status message) it does not change at
//! all. So the JSON of a presence, once rendered, is kept with the facts it
//! was rendered from and the instants it holds for, and served again while
//! both hold: a GET, or an id of getPresencesByUserId, then costs a lookup
//! and a comparison instead of the aggregation and the serializer.
//!
//! The invalidation rule, all of it: an entry rendered for reader class `R`
//! from facts `F` at instant `t` answers a read by `R` of facts `F'` at `n`
//! only when `F' == F` and `t <= n < next_transition(F, t)`. A write changes
//! the facts (the sequence number alone changes with every visible change),
//! so an entry from before it is never equal; time changes a presence only at
//! a transition, where the entry stops holding. The facts are compared, not
//! a version number, so the rule holds for every store, over Redis too
//! (where another node made the write), and needs nothing from the writers.
//!
//! The cache is bounded by bytes (`--render-cache`), evicting the entries
//! read least (quick_cache's CLOCK-Pro); an entry that no longer holds is
//! replaced at its next read.

use std::sync::Arc;

use bytes::Bytes;
use presence_core::{Instant, Timeouts, UserFacts, UserKey, next_transition};

use super::presence::{PRESENCE_JSON_BYTES, Reader, presence_json};

/// What one entry costs besides its JSON: the key, the facts (a user with
/// one session holds them inline), the entry and the cache's own slot.
const ENTRY_OVERHEAD: u64 = 320;

/// One rendered presence and what it holds for.
#[derive(Debug)]
struct Rendered {
    facts: UserFacts,
    from: Instant,
    /// The first instant it no longer holds for; `None`: never by itself.
    until: Option<Instant>,
    json: Bytes,
}

impl Rendered {
    fn holds(&self, facts: &UserFacts, now: Instant) -> bool {
        self.from <= now && self.until.is_none_or(|until| now < until) && self.facts == *facts
    }
}

#[derive(Clone, Debug)]
struct ByBytes;

impl quick_cache::Weighter<(UserKey, Reader), Arc<Rendered>> for ByBytes {
    fn weight(&self, _key: &(UserKey, Reader), rendered: &Arc<Rendered>) -> u64 {
        rendered.json.len() as u64 + ENTRY_OVERHEAD
    }
}

type Entries = quick_cache::sync::Cache<
    (UserKey, Reader),
    Arc<Rendered>,
    ByBytes,
    foldhash::fast::RandomState,
>;

/// The rendered presences kept, up to a number of bytes.
#[derive(Debug)]
pub struct RenderedPresences {
    /// `None` when the cache is off (`--render-cache 0`).
    entries: Option<Entries>,
}

impl RenderedPresences {
    /// A cache of at most `bytes` (off with 0).
    pub fn new(bytes: u64) -> RenderedPresences {
        let entries = (bytes > 0).then(|| {
            let typical = PRESENCE_JSON_BYTES as u64 + ENTRY_OVERHEAD;
            let items = usize::try_from(bytes / typical)
                .unwrap_or(usize::MAX)
                .max(1);
            Entries::with(
                items,
                bytes,
                ByBytes,
                foldhash::fast::RandomState::default(),
                Default::default(),
            )
        });
        RenderedPresences { entries }
    }

    /// The JSON of `key`'s presence as `facts` show it at `now` to `reader`,
    /// without `@odata.context`: the same bytes as a fresh rendering.
    pub fn json(
        &self,
        key: &UserKey,
        facts: Option<&UserFacts>,
        now: Instant,
        timeouts: Timeouts,
        reader: Reader,
    ) -> Bytes {
        // A user nothing is held for is Offline, and is not kept: reads of
        // ids that do not exist must not push out those that do.
        let (Some(entries), Some(facts)) = (&self.entries, facts) else {
            return render(key, facts, now, timeouts, reader);
        };
        let slot = (key.clone(), reader);
        if let Some(rendered) = entries.get(&slot)
            && rendered.holds(facts, now)
        {
            return rendered.json.clone();
        }
        let json = render(key, Some(facts), now, timeouts, reader);
        entries.insert(
            slot,
            Arc::new(Rendered {
                facts: facts.clone(),
                from: now,
                until: next_transition(facts, now, timeouts),
                json: json.clone(),
            }),
        );
        json
    }

    /// The bytes held now (for `/metrics`).
    pub fn weight(&self) -> u64 {
        self.entries.as_ref().map_or(0, Entries::weight)
    }
}

/// A fresh rendering, without `@odata.context`.
pub fn render(
    key: &UserKey,
    facts: Option<&UserFacts>,
    now: Instant,
    timeouts: Timeouts,
    reader: Reader,
) -> Bytes {
    let presence = presence_json(&key.user, facts, now, timeouts, reader, None);
    let mut buffer = Vec::with_capacity(PRESENCE_JSON_BYTES);
    // Writing to a Vec cannot fail, and neither can a presence's fields
    // (strings, numbers and options of them) as JSON.
    serde_json::to_writer(&mut buffer, &presence).expect("a presence always serializes");
    Bytes::from(buffer)
}

/// Writes `text` as a JSON string. Contexts are URLs with nothing to escape
/// but in rare cases; those are copied as they are (serde_json's escaper
/// takes ten instructions a character, a tenth of a GET's rendering).
fn push_string(buffer: &mut Vec<u8>, text: &str) {
    // A fold rather than `all`: without the early exit the compiler checks
    // sixteen or thirty-two bytes at a time.
    let escaped = text.bytes().fold(false, |escaped, byte| {
        escaped | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    });
    let plain = !escaped;
    if plain {
        buffer.push(b'"');
        buffer.extend_from_slice(text.as_bytes());
        buffer.push(b'"');
    } else {
        // Writing a string to a Vec cannot fail.
        serde_json::to_writer(buffer, text).expect("a string always serializes");
    }
}

/// A rendered presence with its `@odata.context` first: byte for byte what
/// serializing the presence with that context gives.
pub fn with_context(json: &[u8], context: &str) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(json.len() + context.len() + 24);
    buffer.extend_from_slice(b"{\"@odata.context\":");
    push_string(&mut buffer, context);
    if json.len() > 2 {
        buffer.push(b',');
    }
    buffer.extend_from_slice(&json[1..]);
    buffer
}

/// A collection of rendered presences with its `@odata.context`: byte for
/// byte what serializing `{"@odata.context", "value"}` gives.
pub fn collection(context: &str, items: &[Bytes]) -> Vec<u8> {
    let size = items.iter().map(|json| json.len() + 1).sum::<usize>();
    let mut buffer = Vec::with_capacity(context.len() + 32 + size);
    buffer.extend_from_slice(b"{\"@odata.context\":");
    push_string(&mut buffer, context);
    buffer.extend_from_slice(b",\"value\":[");
    for (index, json) in items.iter().enumerate() {
        if index > 0 {
            buffer.push(b',');
        }
        buffer.extend_from_slice(json);
    }
    buffer.extend_from_slice(b"]}");
    buffer
}

#[cfg(test)]
mod tests {
    use presence_core::strategies::{T0, any_history, any_timeouts};
    use presence_core::{Duration, TenantId, UserId, apply};
    use proptest::prelude::*;

    use super::*;

    fn key() -> UserKey {
        UserKey::new(
            TenantId::parse("contoso").expect("an id"),
            UserId::parse("alice").expect("an id"),
        )
    }

    /// What the one render path gives, serialized as the handlers did
    /// before anything was kept.
    fn fresh(
        facts: Option<&UserFacts>,
        now: Instant,
        timeouts: Timeouts,
        reader: Reader,
        context: Option<&str>,
    ) -> Vec<u8> {
        let presence = presence_json(
            &key().user,
            facts,
            now,
            timeouts,
            reader,
            context.map(str::to_owned),
        );
        serde_json::to_vec(&presence).expect("serializes")
    }

    proptest! {
        /// Cached and fresh renderings agree at every instant and after
        /// every command: right after each command, at random later
        /// instants (some beyond the next command, so that an entry from
        /// the future must not serve the past), and around each next
        /// transition, for both reader classes.
        #[test]
        fn a_kept_rendering_always_equals_a_fresh_one(
            history in any_history(),
            timeouts in any_timeouts(),
            probes in prop::collection::vec(0..3_000_000i64, 1..8),
        ) {
            let kept = RenderedPresences::new(1 << 20);
            let key = key();
            let mut facts = UserFacts::default();
            let mut written = false;
            for (offset, command) in &history {
                let now = Instant::from_unix_millis(T0 + offset);
                written |= apply(&mut facts, command, now, timeouts).is_ok();
                let held = written.then_some(&facts);
                let mut instants = vec![now];
                instants.extend(probes.iter().map(|probe| now.saturating_add(Duration::from_millis(*probe))));
                if let Some(transition) = next_transition(&facts, now, timeouts) {
                    instants.extend([
                        Instant::from_unix_millis(transition.as_unix_millis() - 1),
                        transition,
                        transition.saturating_add(Duration::from_millis(1)),
                    ]);
                }
                for instant in instants {
                    for reader in [Reader::Owner, Reader::OtherUser] {
                        let json = kept.json(&key, held, instant, timeouts, reader);
                        let expected = fresh(held, instant, timeouts, reader, None);
                        prop_assert_eq!(
                            String::from_utf8_lossy(&json),
                            String::from_utf8_lossy(&expected),
                            "at {:?} for {:?}", instant, reader
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_context_and_a_collection_are_written_as_serde_writes_them() {
        let timeouts = Timeouts::default();
        let now = Instant::from_unix_millis(T0);
        let mut facts = UserFacts::default();
        let command =
            presence_core::Command::SetStatusMessage(Some(presence_core::StatusMessageInput {
                content: "Quotes \" and \\ and\nlines".into(),
                expiry: None,
            }));
        apply(&mut facts, &command, now, timeouts).expect("applies");
        let context = "https://graph.example/v1.0/$metadata#users('o\"k')/presence/$entity";
        let json = render(&key(), Some(&facts), now, timeouts, Reader::Owner);
        assert_eq!(
            with_context(&json, context),
            fresh(Some(&facts), now, timeouts, Reader::Owner, Some(context))
        );
        #[derive(serde::Serialize)]
        struct Collection<'a> {
            #[serde(rename = "@odata.context")]
            context: &'a str,
            value: Vec<serde_json::Value>,
        }
        for count in [0, 1, 3] {
            let items = vec![json.clone(); count];
            let expected = Collection {
                context,
                value: items
                    .iter()
                    .map(|item| serde_json::from_slice(item).expect("JSON"))
                    .collect(),
            };
            assert_eq!(
                collection(context, &items),
                serde_json::to_vec(&expected).expect("serializes"),
                "{count} items"
            );
        }
    }

    #[test]
    fn the_cache_stays_within_its_bytes_and_can_be_off() {
        let timeouts = Timeouts::default();
        let now = Instant::from_unix_millis(T0);
        let kept = RenderedPresences::new(64 * 1024);
        let tenant = TenantId::parse("contoso").expect("an id");
        let mut facts = UserFacts::default();
        let command = presence_core::Command::SetUserPreferredPresence {
            state: presence_core::PreferredState::ALL[0],
            expiration: None,
        };
        apply(&mut facts, &command, now, timeouts).expect("applies");
        for index in 0..1_000 {
            let key = UserKey::new(
                tenant.clone(),
                UserId::parse(&format!("user{index}")).expect("an id"),
            );
            kept.json(&key, Some(&facts), now, timeouts, Reader::Owner);
        }
        assert!(kept.weight() <= 64 * 1024, "{} bytes", kept.weight());
        assert!(kept.weight() > 0);
        let off = RenderedPresences::new(0);
        let json = off.json(&key(), Some(&facts), now, timeouts, Reader::Owner);
        assert_eq!(off.weight(), 0);
        assert_eq!(
            json,
            render(&key(), Some(&facts), now, timeouts, Reader::Owner)
        );
    }
}
