//! Integration tests: each starts the real `presenced` binary and talks HTTP
//! to it. One binary, one module per area, shared helpers.

// Not every test binary uses every helper.
#[allow(dead_code)]
mod helpers;

mod aggregation;
mod auth;
mod batch;
mod board;
mod browser;
mod browser_cors;
mod certs;
mod combinations;
mod compression;
mod cors;
mod direct;
mod disk_full;
mod durability;
mod endpoints;
mod errors;
mod extensions;
mod http2;
mod install;
mod limits;
mod many_nodes;
mod notifications;
mod npm;
mod ops;
mod receiver;
mod redis_admin;
mod scheduler;
mod schemathesis;
mod sdk;
mod sdk_js;
mod sdk_python;
mod throttle;
mod timeline;
mod venv;
mod webhook_ca;
