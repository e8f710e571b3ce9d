//! presenced: a presence server that speaks the Microsoft Graph presence API.
//!
//! The binary (`main.rs`) parses the command line ([`cli`], which maps it
//! onto each module's own settings and which no other module imports),
//! installs the tracing subscriber and the metrics recorder, binds the
//! listener and calls [`server::run`]. Everything else is a function of its
//! inputs:
//! - [`server`]: builds the state, starts the scheduler, serves HTTP, shuts down.
//! - [`tasks`]: the one owner of every spawned task, and the shutdown report.
//! - [`http`]: the routes, Graph's JSON shapes and error envelope.
//! - [`auth`]: who is calling and what Graph lets them do.
//! - [`token`]: verifying bearer tokens (hs256, JWKS) and minting dev tokens.
//! - [`tls`]: serving HTTPS with rustls.
//! - [`cors`]: which web pages may call presenced (`--cors-origin`).
//! - [`protocol`]: HTTP/1.1 or HTTP/2 (ALPN, the h2c preface), and hyper's
//!   builders of both with presenced's bounds.
//! - [`throttle`]: the limits per application, tenant and address (429).
//! - [`limits`]: the bounds on what clients may hold, and the refusals'
//!   counts; [`connections`]: the open connections and the accept loop's
//!   share of those bounds.
//! - [`service`]: the presence service every edge calls: reads for a
//!   viewer, commands, the one render path.
//! - [`timeline`]: the one due-time engine; [`scheduler`] (users' fades and
//!   expiries) and the notifier's subscription timers are its clients.
//! - [`notify`]: subscriptions, webhooks and the live stream.
//! - [`wire`]: Graph's presence and notification JSON.
//! - [`clock`]: the system clock or the manual one.
//! - [`wire_time`]: Graph's duration and date-time formats.
//! - `fuzzing` (hidden): the entry points of the fuzz targets in `fuzz/`.
//!
//! The presence model itself lives in `presence-core`; storage in `presence-store`.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod connections;
pub mod cors;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod limits;
pub mod notify;
pub mod ownership;
pub mod protocol;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod state;
pub mod tasks;
pub mod throttle;
pub mod timeline;
pub mod tls;
pub mod token;
pub mod wire;
pub mod wire_time;

#[cfg(test)]
mod tidy;
