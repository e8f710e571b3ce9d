//! The ceiling: the fastest an HTTP server on this machine can answer
//! presenced's traffic while doing none of presenced's work.
//!
//! It is hyper 1 over HTTP/1.1 with keep-alive, on a multi-thread tokio
//! runtime with the default worker count (as presenced runs), and for every
//! request it reads the whole body (presenced must, to parse it) and answers
//! 200 with a body of exactly `--body-bytes` bytes. With `--header-bytes` it
//! also pads its headers so that the whole answer is the size of
//! presenced's (presenced sends `request-id` and `client-request-id`, which
//! a bare server would not). Whatever presenced achieves is then compared to
//! the same bytes moved over the same connections, and the ratio is
//! presenced's own cost.
//!
//! The harness starts it as a separate process (`presenced-bench ceiling`),
//! exactly as it starts presenced. With `--http2` it speaks HTTP/2 in plain
//! text with prior knowledge (h2c) instead, hyper's own HTTP/2 server with
//! its defaults, for the scenarios measured over h2c.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, DATE, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::load::Protocol;

/// The padding header's name.
const PADDING_HEADER: &str = "x-ceiling-padding";

/// `Date: Mon, 23 Nov 2026 05:27:31 GMT` is always 29 characters.
const DATE_VALUE_LENGTH: usize = 29;

/// The answer the ceiling gives to every request.
#[derive(Clone, Debug)]
pub struct CannedAnswer {
    body: Bytes,
    headers: HeaderMap,
}

impl CannedAnswer {
    /// A body of `body_bytes` bytes and headers padded to `header_bytes` (as
    /// counted by [`crate::load::header_block_bytes`], including the
    /// `content-length` and `date` headers hyper adds), or unpadded when the
    /// bare headers are already that large or larger.
    pub fn new(body_bytes: usize, header_bytes: usize) -> CannedAnswer {
        // Spaces inside a JSON array: valid JSON of the requested size, in
        // case anything ever parses it.
        let body = match body_bytes {
            0 => Bytes::new(),
            1 => Bytes::from_static(b"0"),
            length => {
                let mut text = Vec::with_capacity(length);
                text.push(b'[');
                text.resize(length - 1, b' ');
                text.push(b']');
                Bytes::from(text)
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let bare = bare_header_bytes(&headers, body_bytes);
        let padding_overhead = PADDING_HEADER.len() + 4;
        if header_bytes > bare + padding_overhead {
            let value = "p".repeat(header_bytes - bare - padding_overhead);
            headers.insert(
                HeaderName::from_static(PADDING_HEADER),
                HeaderValue::from_str(&value).expect("letters are a valid header value"),
            );
        }
        CannedAnswer { body, headers }
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body.clone()));
        *response.headers_mut() = self.headers.clone();
        response
    }
}

/// The header block of an answer with `headers`, once hyper has added
/// `content-length` and `date`.
fn bare_header_bytes(headers: &HeaderMap, body_bytes: usize) -> usize {
    crate::load::header_block_bytes(headers)
        + CONTENT_LENGTH.as_str().len()
        + 2
        + body_bytes.to_string().len()
        + 2
        + DATE.as_str().len()
        + 2
        + DATE_VALUE_LENGTH
        + 2
}

/// Runs the ceiling until killed.
pub fn serve(
    listen: SocketAddr,
    body_bytes: usize,
    header_bytes: usize,
    protocol: Protocol,
) -> ExitCode {
    // The default worker count (one per core), as presenced's runtime.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ceiling: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let answer = CannedAnswer::new(body_bytes, header_bytes);
    match runtime.block_on(accept_forever(listen, answer, protocol)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ceiling: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn accept_forever(
    listen: SocketAddr,
    answer: CannedAnswer,
    protocol: Protocol,
) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    println!("ceiling listening on http://{address}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: keep serving the
                // connections that exist.
                eprintln!("ceiling: accept failed: {error}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let answer = answer.clone();
                async move {
                    // Read the whole request body, as presenced must to parse
                    // it; a body that fails to arrive still gets the answer.
                    let _ = request.into_body().collect().await;
                    Ok::<_, Infallible>(answer.response())
                }
            });
            let io = TokioIo::new(stream);
            let _ = match protocol {
                Protocol::Http1 => {
                    hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .keep_alive(true)
                        .serve_connection(io, service)
                        .await
                }
                Protocol::Http2 => {
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .timer(TokioTimer::new())
                        .serve_connection(io, service)
                        .await
                }
            };
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header block as a client sees it: the canned headers (padding
    /// included) plus what hyper adds.
    fn answered_header_bytes(answer: &CannedAnswer) -> usize {
        bare_header_bytes(&answer.headers, answer.body.len())
    }

    #[test]
    fn the_answer_has_the_requested_body_and_header_sizes() {
        for (body_bytes, header_bytes) in [(0, 199), (419, 199), (1, 150), (230_000, 300)] {
            let answer = CannedAnswer::new(body_bytes, header_bytes);
            assert_eq!(answer.body.len(), body_bytes);
            assert_eq!(answered_header_bytes(&answer), header_bytes);
        }
    }

    #[test]
    fn headers_already_larger_than_asked_are_left_unpadded() {
        let answer = CannedAnswer::new(10, 0);
        assert!(answer.headers.get(PADDING_HEADER).is_none());
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body, serde_json::json!([]));
    }
}
