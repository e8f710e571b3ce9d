//! Entry points for fuzzing every parser that reads caller input.
//!
//! One function per fuzz target, each taking arbitrary bytes. The cargo-fuzz
//! targets in `fuzz/` (at the repository root) call them under libFuzzer,
//! and `tests/fuzz_corpus.rs` replays every file of `fuzz/corpus/<target>/`
//! through them on stable, so that `cargo test` keeps every input a fuzzer
//! once found interesting. Each function feeds the bytes to one family of
//! parsers and checks what must hold whatever the input, panicking (which
//! libFuzzer reports as a crash) when it does not:
//! - the parser does not panic;
//! - a refusal is a message, and a message that echoes the input stays
//!   short (the echo is cut) and, for durations and date-times, on one line;
//! - a value that parsed renders back and parses to the same value;
//! - where an independent implementation reads the same format (jiff, for
//!   ISO 8601 durations), both agree wherever both accept;
//! - a token is accepted only when validly signed with a key of the
//!   configured kind.
//!
//! Layout: [`time`] (durations, date-times), [`ids`], [`body`] (JSON request
//! bodies), [`headers`] (Content-Type, client-request-id, Last-Event-ID, the
//! unverified token of `--auth none`), [`subscription`] (the `resource`
//! filter, notification URLs), [`token`] (bearer tokens, JWK sets),
//! [`certificate`] (the encryption certificate of rich notifications).
//!
//! Not part of presenced's API: hidden from its documentation, and free to
//! change with the parsers it drives.

mod body;
mod certificate;
mod headers;
mod ids;
mod subscription;
mod time;
mod token;

pub use body::json_body;
pub use certificate::certificate;
pub use headers::headers;
pub use ids::ids;
pub use subscription::subscription;
pub use time::{date_time, duration};
pub use token::{jwk_set, token};

/// A target's entry point: it takes any bytes, and panics when a check fails.
pub type EntryPoint = fn(&[u8]);

/// Every target: its name (the fuzz target's and its corpus directory's)
/// and its entry point.
pub const TARGETS: &[(&str, EntryPoint)] = &[
    ("duration", duration),
    ("date_time", date_time),
    ("ids", ids),
    ("json_body", json_body),
    ("headers", headers),
    ("subscription", subscription),
    ("token", token),
    ("jwk_set", jwk_set),
    ("certificate", certificate),
];

/// The longest refusal message accepted for input of any length: every
/// parser cuts what it echoes (at 64 characters), so a longer message means
/// input is echoed whole.
const LONGEST_MESSAGE_CHARS: usize = 1_000;

/// Checks a refusal's message: present, and bounded whatever the input.
fn check_refusal(input: &str, message: &str) {
    let input = shown(input);
    assert!(
        !message.trim().is_empty(),
        "{input} was refused with no message"
    );
    let length = message.chars().count();
    assert!(
        length <= LONGEST_MESSAGE_CHARS,
        "{input} was refused with a message of {length} characters, which echoes too much: {}",
        shown(message)
    );
}

/// Text for a failure's message: quoted, and cut to 200 characters.
fn shown(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// Runs a future to completion on this thread's runtime. The parsers are
/// async only because their callers are (a token may need a JWKS fetch);
/// none of what the targets drive waits on IO, but the body extractor sets
/// a timer, which needs a runtime with time.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime builds");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

#[cfg(test)]
mod tests;
