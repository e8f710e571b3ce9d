//! What hyper serves: the router, and around it only for the requests that
//! need them, gzip both ways and CORS.
//!
//! tower-http's compression, request decompression and CORS layers cost
//! about 2,400 instructions per GET presence (callgrind) wrapped around the
//! router, 5% of the whole request, even for a client that asks for none of
//! what they do: each parses headers, wraps the bodies and grows the
//! request's future, which is moved several times. So a request goes
//! through them only when it has a `Content-Encoding` or accepts gzip, and
//! every request does when `--cors-origin` is given. Any other request is
//! answered by the router directly, as the layers would have answered it
//! but for one header: the compression layer marks an answer of 1 KiB or
//! more `Vary: Accept-Encoding` even when it leaves it plain, and a cache
//! may serve a plain answer to any client, so none is needed on one.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::http::{HeaderMap, Request, header};
use axum::response::Response;
use futures_util::future::Either;
use hyper::body::Incoming;
use tower::{Service, ServiceExt};
use tower_http::compression::predicate::{NotForContentType, SizeAbove};
use tower_http::compression::{Compression, CompressionLayer, Predicate};
use tower_http::cors::Cors;
use tower_http::decompression::{RequestDecompression, RequestDecompressionLayer};

use crate::http::direct::Direct;

/// The router inside request decompression, CORS (when any origin is
/// listed) and response compression.
pub type Negotiated =
    Compression<tower::util::Either<Cors<Decompressed>, Decompressed>, Compressible>;

type Decompressed = RequestDecompression<Router>;

/// The router, and the same router inside the layers (`negotiated`), and
/// beside them the direct route (`direct.rs`) for the GETs of a presence
/// and the setPresence requests that need neither.
#[derive(Clone)]
pub struct Served {
    plain: Router,
    /// `None` where every request must go through the router (nodes that
    /// share a manual clock: a layer of the router reads it first).
    direct: Option<Direct>,
    /// Shared: hyper's glue clones the service for every request, and the
    /// layers hold settings (the CORS origins) that cloning would copy.
    negotiated: Arc<Negotiated>,
    cors: bool,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Served")
            .field("cors", &self.cors)
            .finish_non_exhaustive()
    }
}

impl Served {
    /// `router` served as is, and inside the layers; CORS for `cors`; and
    /// `direct` first, for the requests that need no layer.
    pub fn new(router: Router, cors: &crate::cors::CorsOrigins, direct: Option<Direct>) -> Served {
        use tower::Layer;
        let decompressed = RequestDecompressionLayer::new()
            .pass_through_unaccepted(true)
            .layer(router.clone());
        let with_cors = tower::util::option_layer(cors.layer()).layer(decompressed);
        let negotiated = CompressionLayer::new()
            .compress_when(Compressible)
            .layer(with_cors);
        Served {
            plain: router,
            direct,
            negotiated: Arc::new(negotiated),
            cors: !cors.is_empty(),
        }
    }

    /// Whether any of the layers has work to do for a request with these
    /// headers. With `--cors-origin`, every request: the CORS layer marks
    /// every answer `Vary: Origin`, so that a cache never serves an answer
    /// made for one origin (or none) to another.
    fn negotiates(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(header::CONTENT_ENCODING)
            || headers
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .any(|value| contains_gzip(value.as_bytes()))
            || self.cors
    }
}

/// Spells a `Content-Encoding` of gzip as the decompression layer reads it:
/// encodings are matched regardless of case (RFC 9110), and `x-gzip` is
/// gzip.
fn normalize_gzip(headers: &mut HeaderMap) {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .is_some_and(|value| {
            value != "gzip"
                && (value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip"))
        });
    if gzip && headers.get_all(header::CONTENT_ENCODING).iter().count() == 1 {
        headers.insert(
            header::CONTENT_ENCODING,
            axum::http::HeaderValue::from_static("gzip"),
        );
    }
}

/// Whether an `Accept-Encoding` value names gzip, in any case (a `q=0`
/// refusal too: the compression layer reads the weights).
fn contains_gzip(value: &[u8]) -> bool {
    value
        .windows(4)
        .any(|window| window.eq_ignore_ascii_case(b"gzip"))
}

/// Which answers are gzipped, when the client accepts it: those of 1 KiB or
/// more (a batch read, a list of subscriptions). A single presence (about
/// 300 bytes) is not: gzip would save a few dozen bytes at the cost of a
/// compressor's set-up on the most frequent request. A stream never is:
/// each event must leave at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Compressible;

impl Predicate for Compressible {
    fn should_compress<B>(&self, response: &axum::http::Response<B>) -> bool
    where
        B: hyper::body::Body,
    {
        SizeAbove::new(1024).should_compress(response)
            && NotForContentType::SSE.should_compress(response)
            && NotForContentType::GRPC.should_compress(response)
            && NotForContentType::IMAGES.should_compress(response)
    }
}

type Answer = crate::http::direct::Answer;

impl Service<Request<Incoming>> for Served {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<<Router as Service<Request<Incoming>>>::Future, Answer>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready, and the layers around it are ready
        // when it is.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        if self.negotiates(request.headers()) {
            normalize_gzip(request.headers_mut());
            let negotiated = Negotiated::clone(&self.negotiated);
            Either::Right(Box::pin(async move {
                let response = negotiated.oneshot(request).await?;
                Ok(response.map(axum::body::Body::new))
            }))
        } else {
            if let Some(direct) = &self.direct
                && let Some(admitted) = direct.admit(&request)
            {
                return Either::Right(direct.answer(admitted, request));
            }
            Either::Left(self.plain.call(request))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_found_in_any_case_and_list() {
        for accepted in [
            "gzip",
            "GZip",
            "br, gzip;q=0.5",
            "deflate, x-gzip",
            "gzip;q=0",
        ] {
            assert!(contains_gzip(accepted.as_bytes()), "{accepted}");
        }
        for refused in ["", "identity", "br", "deflate, zstd", "gzi"] {
            assert!(!contains_gzip(refused.as_bytes()), "{refused}");
        }
    }

    #[test]
    fn gzip_is_spelled_as_the_layer_reads_it() {
        for (given, read) in [
            ("GZIP", "gzip"),
            ("x-gzip", "gzip"),
            (" Gzip ", "gzip"),
            ("gzip", "gzip"),
            ("br", "br"),
            ("gzip, br", "gzip, br"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_ENCODING, given.parse().expect("a value"));
            normalize_gzip(&mut headers);
            assert_eq!(headers[header::CONTENT_ENCODING], read, "{given}");
        }
    }
}
