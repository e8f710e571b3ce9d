//! Rendered presences, kept. A presence is read far more often than it
//! changes, and between two transitions of its user (a fade, an expiry, the
//! end of a preferred presence or of a status message) it does not change at
//! all. So the JSON of a presence, once rendered, is kept with the instants
//! it holds for, and served again while it holds: a GET, or an id of
//! getPresencesByUserId, then costs a comparison instead of the aggregation
//! and the serializer.
//!
//! The invalidation rule, all of it: a rendering for reader class `R` made
//! from facts `F` at instant `t` answers a read by `R` of facts `F'` at `n`
//! only when `F' == F` and `t <= n < next_transition(F, t)`. A write changes
//! the facts (the sequence number alone changes with every visible change);
//! time changes a presence only at a transition, where a rendering stops
//! holding. Where it is kept decides how `F' == F` is known:
//!
//! - **Beside the facts**, in the store's [`Memo`] of the user, when the
//!   store holds the facts in memory (the memory and embedded stores). The
//!   store drops the memo whenever it applies a command to the user, under
//!   the lock that guards the facts, so a memo's renderings were made from
//!   the facts beside them. A read finds the facts and the rendering in one
//!   lookup.
//! - **In a cache of its own** when the store keeps no memos (over Redis,
//!   where another node made the write): keyed by user and reader class,
//!   holding a copy of the facts, compared on every read.
//!
//! Each is bounded by bytes (`--render-cache-bytes`). The cache evicts the
//! entries read least (quick_cache's CLOCK-Pro). Memos are not evicted: a
//! memo goes when its user is next written. So a user whose facts have all
//! ended (Offline for good, whose record stays) is not kept, as one nothing
//! is held for is not, and past the bound a rendering goes to the cache
//! instead, until writes have dropped enough memos: a store full of memos
//! of users never written again cannot turn keeping off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use presence_core::{Instant, Timeouts, UserFacts, UserKey, next_transition};
use presence_store::{Memo, Memorable};

use super::presence::{PRESENCE_JSON_BYTES, Reader, presence_json};

/// What one cache entry costs besides its JSON: the key, the facts (a user
/// with one session holds them inline), the entry and the cache's own slot.
const ENTRY_OVERHEAD: u64 = 320;

/// What a memo costs besides its JSON: the box of two renderings and the
/// shared bytes' own allocation.
const MEMO_OVERHEAD: u64 = 160;

/// One rendering and the instants it holds for.
#[derive(Debug)]
struct Rendering {
    from: Instant,
    /// The first instant it no longer holds for; `None`: never by itself.
    until: Option<Instant>,
    json: Bytes,
}

impl Rendering {
    fn new(
        key: &UserKey,
        facts: &UserFacts,
        now: Instant,
        timeouts: Timeouts,
        reader: Reader,
    ) -> Rendering {
        Rendering {
            from: now,
            until: next_transition(facts, now, timeouts),
            json: render(key, Some(facts), now, timeouts, reader),
        }
    }

    fn holds_at(&self, now: Instant) -> bool {
        self.from <= now && self.until.is_none_or(|until| now < until)
    }
}

/// A user's renderings in the store's memo, one per reader class, made from
/// the facts beside them. Its bytes are counted against the bound while it
/// lives.
#[derive(Debug)]
struct Kept {
    renderings: [Option<Rendering>; 2],
    weight: u64,
    budget: Arc<Budget>,
}

/// A reader of a kept memo reads one of its renderings: each one's bytes,
/// a cache line at a time, are loaded ahead of it (every 64th byte, and
/// the last, which may sit on a line of its own when the bytes do not
/// start at a line's start).
impl Memorable for Kept {
    fn warm(&self) {
        for rendering in self.renderings.iter().flatten() {
            for line in rendering.json.chunks(64) {
                std::hint::black_box(line[0]);
            }
            std::hint::black_box(rendering.json.last().copied());
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.weight, Ordering::Relaxed);
    }
}

/// The bytes memos may take, and take now.
#[derive(Debug)]
struct Budget {
    bytes: u64,
    used: AtomicU64,
}

impl Budget {
    /// Counts `weight` more bytes, if they fit.
    fn take(&self, weight: u64) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + weight <= self.bytes).then_some(used + weight)
            })
            .is_ok()
    }
}

fn slot(reader: Reader) -> usize {
    match reader {
        Reader::Owner => 0,
        Reader::OtherUser => 1,
    }
}

/// The JSON kept in `memo` for `reader`, if it holds at `now`.
fn in_memo(memo: &mut Memo, reader: Reader, now: Instant) -> Option<&Bytes> {
    let rendering = memo.get_mut::<Kept>()?.renderings[slot(reader)].as_ref()?;
    rendering.holds_at(now).then_some(&rendering.json)
}

/// A rendering kept in the cache, with the facts it was made from.
#[derive(Debug)]
struct Cached {
    facts: UserFacts,
    rendering: Rendering,
}

#[derive(Clone, Debug)]
struct ByBytes;

impl quick_cache::Weighter<(UserKey, Reader), Arc<Cached>> for ByBytes {
    fn weight(&self, _key: &(UserKey, Reader), cached: &Arc<Cached>) -> u64 {
        cached.rendering.json.len() as u64 + ENTRY_OVERHEAD
    }
}

type Entries =
    quick_cache::sync::Cache<(UserKey, Reader), Arc<Cached>, ByBytes, foldhash::fast::RandomState>;

/// The rendered presences kept, up to a number of bytes.
#[derive(Debug)]
pub struct RenderedPresences {
    /// The cache, for stores that keep no memos; `None` when keeping is off
    /// (`--render-cache-bytes 0`).
    entries: Option<Entries>,
    budget: Arc<Budget>,
}

impl RenderedPresences {
    /// Renderings of at most `bytes` (none kept with 0).
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
        RenderedPresences {
            entries,
            budget: Arc::new(Budget {
                bytes,
                used: AtomicU64::new(0),
            }),
        }
    }

    /// The JSON of `key`'s presence as `facts` show it at `now` to `reader`,
    /// without `@odata.context`: the same bytes as a fresh rendering.
    /// `memo` is the user's memo where the store keeps one (see the
    /// module's rule), `None` otherwise.
    pub fn json(
        &self,
        key: &UserKey,
        facts: Option<&UserFacts>,
        mut memo: Option<&mut Memo>,
        now: Instant,
        timeouts: Timeouts,
        reader: Reader,
    ) -> Bytes {
        // A user nothing is held for is Offline, and is not kept: reads of
        // ids that do not exist must not push out those that do.
        let Some(facts) = facts else {
            return render(key, None, now, timeouts, reader);
        };
        if memo.is_some() && facts.holds_nothing() {
            // A user whose facts have all ended is Offline for good, as one
            // nothing is held for, and keeps their record for ever: kept
            // beside it, a rendering would hold its bytes until their next
            // write, if any.
            return render(key, Some(facts), now, timeouts, reader);
        }
        if let Some(json) = memo
            .as_deref_mut()
            .and_then(|memo| in_memo(memo, reader, now).cloned())
        {
            return json;
        }
        // The cache holds what did not fit beside the facts, and everything
        // where the store keeps no memos.
        if let Some(json) = self.in_cache(key, facts, now, reader) {
            return json;
        }
        let rendering = Rendering::new(key, facts, now, timeouts, reader);
        let rendering = match memo {
            Some(memo) => match self.keep_in_memo(memo, reader, rendering) {
                Ok(json) => return json,
                Err(unkept) => unkept,
            },
            None => rendering,
        };
        self.keep_in_cache(key, facts, reader, rendering)
    }

    /// [`RenderedPresences::json`], appended to `out`. A rendering kept in
    /// the memo is copied from where it is kept, without counting a
    /// reference to its shared bytes: that count is an atomic instruction,
    /// which waits for the loads before it, once per id of a batch. (A memo
    /// holds a rendering only of the facts beside it, and only of facts
    /// that hold something, so what [`RenderedPresences::json`] checks
    /// before it looks there is already true.)
    #[allow(clippy::too_many_arguments)]
    pub fn append_json(
        &self,
        out: &mut Vec<u8>,
        key: &UserKey,
        facts: Option<&UserFacts>,
        mut memo: Option<&mut Memo>,
        now: Instant,
        timeouts: Timeouts,
        reader: Reader,
    ) {
        if let Some(json) = memo
            .as_deref_mut()
            .and_then(|memo| in_memo(memo, reader, now))
        {
            out.extend_from_slice(json);
            return;
        }
        out.extend_from_slice(&self.json(key, facts, memo, now, timeouts, reader));
    }

    /// Keeps `rendering` in the memo, within the bound; gives it back when
    /// it does not fit.
    fn keep_in_memo(
        &self,
        memo: &mut Memo,
        reader: Reader,
        rendering: Rendering,
    ) -> Result<Bytes, Rendering> {
        let weight = rendering.json.len() as u64;
        let json = rendering.json.clone();
        match memo.get_mut::<Kept>() {
            Some(kept) => {
                // The rendering replaced gives its bytes back first, to the
                // budget that counted them.
                if let Some(old) = kept.renderings[slot(reader)].take() {
                    let replaced = old.json.len() as u64;
                    kept.budget.used.fetch_sub(replaced, Ordering::Relaxed);
                    kept.weight -= replaced;
                }
                if !kept.budget.take(weight) {
                    return Err(rendering);
                }
                kept.weight += weight;
                kept.renderings[slot(reader)] = Some(rendering);
            }
            None => {
                if !self.budget.take(weight + MEMO_OVERHEAD) {
                    return Err(rendering);
                }
                let mut renderings = [None, None];
                renderings[slot(reader)] = Some(rendering);
                memo.set(Kept {
                    renderings,
                    weight: weight + MEMO_OVERHEAD,
                    budget: Arc::clone(&self.budget),
                });
            }
        }
        Ok(json)
    }

    /// The cached JSON, if it holds for `facts` at `now`.
    fn in_cache(
        &self,
        key: &UserKey,
        facts: &UserFacts,
        now: Instant,
        reader: Reader,
    ) -> Option<Bytes> {
        let cached = self.entries.as_ref()?.get(&(key.clone(), reader))?;
        (cached.rendering.holds_at(now) && cached.facts == *facts)
            .then(|| cached.rendering.json.clone())
    }

    /// Keeps `rendering` in the cache, when there is one.
    fn keep_in_cache(
        &self,
        key: &UserKey,
        facts: &UserFacts,
        reader: Reader,
        rendering: Rendering,
    ) -> Bytes {
        let json = rendering.json.clone();
        if let Some(entries) = &self.entries {
            entries.insert(
                (key.clone(), reader),
                Arc::new(Cached {
                    facts: facts.clone(),
                    rendering,
                }),
            );
        }
        json
    }

    /// The bytes held now, in memos and in the cache (for `/metrics`).
    pub fn weight(&self) -> u64 {
        self.budget.used.load(Ordering::Relaxed) + self.entries.as_ref().map_or(0, Entries::weight)
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

/// Many renderings in one buffer, each found by its place in the order
/// they were asked for, whatever order they were appended in.
#[derive(Debug)]
pub struct Renderings {
    bytes: Vec<u8>,
    spans: Vec<Option<std::ops::Range<usize>>>,
}

impl Renderings {
    /// Room for `count` renderings, none appended yet.
    pub fn new(count: usize) -> Renderings {
        Renderings {
            bytes: Vec::with_capacity(count * PRESENCE_JSON_BYTES),
            spans: vec![None; count],
        }
    }

    /// Appends the rendering `write` writes as the one at `index`.
    pub fn append(&mut self, index: usize, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        write(&mut self.bytes);
        self.spans[index] = Some(start..self.bytes.len());
    }

    /// The places nothing was appended for yet.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.spans.len())
            .filter(|&index| self.spans[index].is_none())
            .collect()
    }

    /// The renderings in order; an empty one where nothing was appended.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + Clone {
        self.spans
            .iter()
            .map(|span| span.clone().map_or(&[][..], |span| &self.bytes[span]))
    }
}

/// A collection of rendered presences with its `@odata.context`: byte for
/// byte what serializing `{"@odata.context", "value"}` gives.
pub fn collection<'a>(context: &str, items: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let size = items.clone().map(|json| json.len() + 1).sum::<usize>();
    let mut buffer = Vec::with_capacity(context.len() + 32 + size);
    buffer.extend_from_slice(b"{\"@odata.context\":");
    push_string(&mut buffer, context);
    buffer.extend_from_slice(b",\"value\":[");
    for (index, json) in items.enumerate() {
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
    use futures_util::FutureExt;
    use presence_core::strategies::{T0, any_history, any_timeouts};
    use presence_core::{Duration, TenantId, UserId, apply};
    use presence_store::{Facts, MemoryStore};
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
        key: &UserKey,
        facts: Option<&UserFacts>,
        now: Instant,
        timeouts: Timeouts,
        reader: Reader,
        context: Option<&str>,
    ) -> Vec<u8> {
        let presence = presence_json(
            &key.user,
            facts,
            now,
            timeouts,
            reader,
            context.map(str::to_owned),
        );
        serde_json::to_vec(&presence).expect("serializes")
    }

    /// What `read` makes of `key`'s facts and memo in `store`, beside a
    /// fresh rendering of those facts.
    fn read_through_memo<T: Send>(
        store: &MemoryStore,
        key: &UserKey,
        now: Instant,
        timeouts: Timeouts,
        reader: Reader,
        mut read: impl for<'f> FnMut(Option<&'f UserFacts>, Option<&'f mut Memo>) -> T + Send,
    ) -> (T, Vec<u8>) {
        let mut answer = None;
        store
            .read_memos(std::slice::from_ref(key), &mut |_, facts, memo| {
                answer = Some((
                    read(facts, memo),
                    fresh(key, facts, now, timeouts, reader, None),
                ));
            })
            .now_or_never()
            .expect("a memory store's read never waits")
            .expect("reads");
        answer.expect("visited")
    }

    /// The JSON of `key` read through `store`'s memos.
    fn through_memo(
        kept: &RenderedPresences,
        store: &MemoryStore,
        key: &UserKey,
        now: Instant,
        timeouts: Timeouts,
        reader: Reader,
    ) -> (Bytes, Vec<u8>) {
        read_through_memo(store, key, now, timeouts, reader, |facts, memo| {
            kept.json(key, facts, memo, now, timeouts, reader)
        })
    }

    /// [`through_memo`] with [`RenderedPresences::append_json`], after a
    /// byte already written.
    fn appended_through_memo(
        kept: &RenderedPresences,
        store: &MemoryStore,
        key: &UserKey,
        now: Instant,
        timeouts: Timeouts,
        reader: Reader,
    ) -> (Vec<u8>, Vec<u8>) {
        read_through_memo(store, key, now, timeouts, reader, |facts, memo| {
            let mut out = vec![b'['];
            kept.append_json(&mut out, key, facts, memo, now, timeouts, reader);
            out.split_off(1)
        })
    }

    proptest! {
        /// Kept and fresh renderings agree at every instant and after every
        /// command, kept either way: in the memo beside the facts of a
        /// memory store that applies each command, and in the cache beside
        /// a copy of the facts. Each is checked right after each command,
        /// at random later instants (some beyond the next command, so that
        /// a rendering from the future must not serve the past), and around
        /// each next transition, for both reader classes.
        #[test]
        fn a_kept_rendering_always_equals_a_fresh_one(
            history in any_history(),
            timeouts in any_timeouts(),
            probes in prop::collection::vec(0..3_000_000i64, 1..8),
        ) {
            let cached = RenderedPresences::new(1 << 20);
            let memos = RenderedPresences::new(1 << 20);
            let store = MemoryStore::new();
            let key = key();
            let mut facts = UserFacts::default();
            let mut written = false;
            for (offset, command) in &history {
                let now = Instant::from_unix_millis(T0 + offset);
                written |= apply(&mut facts, command, now, timeouts).is_ok();
                // Refused or applied, as the model decides; the memo is
                // compared below with a fresh rendering of the store's own
                // facts.
                let _ = store.apply_now(&key, command, now, timeouts);
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
                        let json = cached.json(&key, held, None, instant, timeouts, reader);
                        let expected = fresh(&key, held, instant, timeouts, reader, None);
                        prop_assert_eq!(
                            String::from_utf8_lossy(&json),
                            String::from_utf8_lossy(&expected),
                            "cached, at {:?} for {:?}", instant, reader
                        );
                        let (json, expected) = through_memo(&memos, &store, &key, instant, timeouts, reader);
                        prop_assert_eq!(
                            String::from_utf8_lossy(&json),
                            String::from_utf8_lossy(&expected),
                            "in the memo, at {:?} for {:?}", instant, reader
                        );
                        // Appended, after that read: from what it kept.
                        let (json, expected) = appended_through_memo(&memos, &store, &key, instant, timeouts, reader);
                        prop_assert_eq!(
                            String::from_utf8_lossy(&json),
                            String::from_utf8_lossy(&expected),
                            "appended from the memo, at {:?} for {:?}", instant, reader
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn renderings_are_found_in_the_order_asked_whatever_the_order_appended() {
        let mut renderings = Renderings::new(4);
        for (index, text) in [(2, "two"), (0, "zero"), (3, "three")] {
            renderings.append(index, |out| out.extend_from_slice(text.as_bytes()));
        }
        assert_eq!(renderings.missing(), vec![1]);
        renderings.append(1, |out| out.extend_from_slice(b"one"));
        assert!(renderings.missing().is_empty());
        let texts: Vec<&[u8]> = renderings.iter().collect();
        assert_eq!(texts, [&b"zero"[..], b"one", b"two", b"three"]);
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
            fresh(
                &key(),
                Some(&facts),
                now,
                timeouts,
                Reader::Owner,
                Some(context)
            )
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
                collection(context, items.iter().map(|item| &item[..])),
                serde_json::to_vec(&expected).expect("serializes"),
                "{count} items"
            );
        }
    }

    #[test]
    fn the_cache_and_the_memos_stay_within_their_bytes_and_can_be_off() {
        let timeouts = Timeouts::default();
        let now = Instant::from_unix_millis(T0);
        let tenant = TenantId::parse("contoso").expect("an id");
        let set = presence_core::Command::SetUserPreferredPresence {
            state: presence_core::PreferredState::ALL[0],
            expiration: None,
        };
        let mut facts = UserFacts::default();
        apply(&mut facts, &set, now, timeouts).expect("applies");
        let keys: Vec<UserKey> = (0..1_000)
            .map(|index| {
                UserKey::new(
                    tenant.clone(),
                    UserId::parse(&format!("user{index}")).expect("an id"),
                )
            })
            .collect();

        let cached = RenderedPresences::new(64 * 1024);
        for key in &keys {
            cached.json(key, Some(&facts), None, now, timeouts, Reader::Owner);
        }
        assert!(cached.weight() <= 64 * 1024, "{} bytes", cached.weight());
        assert!(cached.weight() > 0);

        let memos = RenderedPresences::new(64 * 1024);
        let in_memos = |memos: &RenderedPresences| memos.budget.used.load(Ordering::Relaxed);
        let in_cache =
            |memos: &RenderedPresences| memos.entries.as_ref().map_or(0, Entries::weight);
        let store = MemoryStore::new();
        for key in &keys {
            store.apply_now(key, &set, now, timeouts).expect("applies");
        }
        for reader in [Reader::Owner, Reader::OtherUser] {
            for key in &keys {
                let (json, expected) = through_memo(&memos, &store, key, now, timeouts, reader);
                assert_eq!(json, expected);
            }
        }
        let full = in_memos(&memos);
        assert!(full <= 64 * 1024, "{full} bytes");
        assert!(
            full > 64 * 1024 - 2 * (PRESENCE_JSON_BYTES as u64 + MEMO_OVERHEAD),
            "{full} bytes"
        );
        // Past the bound, the cache keeps them, within the bound too.
        assert!(in_cache(&memos) > 0);
        assert!(in_cache(&memos) <= 64 * 1024, "{} bytes", in_cache(&memos));
        // And answers from there: what did not fit is not rendered again.
        let last = keys.last().expect("keys");
        let (first, _) = through_memo(&memos, &store, last, now, timeouts, Reader::Owner);
        let (again, _) = through_memo(&memos, &store, last, now, timeouts, Reader::Owner);
        assert_eq!(first.as_ptr(), again.as_ptr(), "the cache's bytes");
        // Writes drop the memos, and their bytes are given back.
        let away = presence_core::Command::SetUserPreferredPresence {
            state: presence_core::PreferredState::ALL[1],
            expiration: None,
        };
        for key in &keys {
            store.apply_now(key, &away, now, timeouts).expect("applies");
        }
        assert_eq!(in_memos(&memos), 0);
        // Once there is room again, renderings are kept again.
        through_memo(&memos, &store, &keys[0], now, timeouts, Reader::Owner);
        assert!(in_memos(&memos) > 0);
        // A user whose facts have all ended is not kept: nothing would
        // ever drop it.
        let ended = &keys[1];
        store
            .apply_now(
                ended,
                &presence_core::Command::ClearUserPreferredPresence,
                now,
                timeouts,
            )
            .expect("applies");
        let before = in_memos(&memos);
        let (json, expected) = through_memo(&memos, &store, ended, now, timeouts, Reader::Owner);
        assert_eq!(json, expected);
        assert!(String::from_utf8_lossy(&json).contains("\"Offline\""));
        assert_eq!(in_memos(&memos), before);

        let off = RenderedPresences::new(0);
        let json = off.json(&key(), Some(&facts), None, now, timeouts, Reader::Owner);
        through_memo(&off, &store, &keys[1], now, timeouts, Reader::Owner);
        assert_eq!(off.weight(), 0);
        assert_eq!(
            json,
            render(&key(), Some(&facts), now, timeouts, Reader::Owner)
        );
    }
}
