//! What hyper serves: the router, and around it only for the requests that
//! need them, gzip both ways and CORS.
//!
//! tower-http's compression, request decompression and CORS layers cost
//! about 2,400 instructions per GET presence (callgrind) wrapped around the
//! router, 5% of the whole request, even for a client that asks for none of
//! what they do: each parses headers, wraps the bodies and grows the
//! request's future, which is moved several times. So a request goes
//! through them only when it has a `Content-Encoding`, accepts gzip, or
//! (with `--cors-origin`) comes from a page with an `Origin`; any other
//! request is answered by the router directly, exactly as the layers would
//! have answered it (they would neither compress, decompress nor add a
//! header to it).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::http::{HeaderMap, Request, header};
use axum::response::Response;
use futures_util::future::Either;
use tower::{Service, ServiceExt};

/// The router, and the same router inside the layers (`negotiated`).
#[derive(Debug)]
pub struct Served<N> {
    plain: Router,
    /// Shared: hyper's glue clones the service for every request, and the
    /// layers hold settings (the CORS origins) that cloning would copy.
    negotiated: Arc<N>,
    cors: bool,
}

impl<N> Clone for Served<N> {
    fn clone(&self) -> Served<N> {
        Served {
            plain: self.plain.clone(),
            negotiated: self.negotiated.clone(),
            cors: self.cors,
        }
    }
}

impl<N> Served<N> {
    pub fn new(plain: Router, negotiated: N, cors: bool) -> Served<N> {
        Served {
            plain,
            negotiated: Arc::new(negotiated),
            cors,
        }
    }

    /// Whether any of the layers has work to do for a request with these
    /// headers.
    fn negotiates(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(header::CONTENT_ENCODING)
            || headers
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .any(|value| contains_gzip(value.as_bytes()))
            || (self.cors && headers.contains_key(header::ORIGIN))
    }
}

/// Whether an `Accept-Encoding` value names gzip, in any case (a `q=0`
/// refusal too: the compression layer reads the weights).
fn contains_gzip(value: &[u8]) -> bool {
    value
        .windows(4)
        .any(|window| window.eq_ignore_ascii_case(b"gzip"))
}

type Negotiated = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<N, B> Service<Request<B>> for Served<N>
where
    N: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    N::Future: Send + 'static,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<<Router as Service<Request<B>>>::Future, Negotiated>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready, and the layers around it are ready
        // when it is.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.negotiates(request.headers()) {
            let negotiated = N::clone(&self.negotiated);
            Either::Right(Box::pin(negotiated.oneshot(request)))
        } else {
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
}
