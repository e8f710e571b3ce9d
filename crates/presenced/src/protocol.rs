//! Which HTTP a connection speaks, and hyper's connection builders for each
//! with presenced's bounds: HTTP/1.1, and HTTP/2 beside it on the same port,
//! over TLS when the client asks for `h2` by ALPN, and in plain text when
//! the client starts with HTTP/2's connection preface (h2c with prior
//! knowledge, as gRPC clients and `curl --http2-prior-knowledge` do).
//!
//! HTTP/1.1's `Upgrade: h2c` is not served (such a request is answered over
//! HTTP/1.1): Graph does not offer it, no Graph SDK sends it, and RFC 9113
//! deprecates it.
//!
//! Why not hyper-util's `auto::Builder`, which tells the two apart the same
//! way: it reads the first bytes with no time bound, so a client that
//! connects and says nothing would hold its connection past
//! `--header-timeout`, and it takes no ALPN. Here the choice is made once,
//! before hyper is called, and each connection is hyper's own connection of
//! its protocol, as HTTP/1.1's was before HTTP/2 came, with the few bytes
//! read to choose put back in front.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::limits::Limits;
use crate::tasks::Tasks;

/// What an HTTP/2 client sends first (RFC 9113, section 3.4), and no
/// HTTP/1.1 request begins with (`PRI` is no method).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    /// The protocol a TLS handshake agreed on by ALPN: HTTP/2 when the
    /// client asked for `h2`, HTTP/1.1 otherwise (also when it asked for
    /// nothing, as older clients do).
    pub fn of_alpn(negotiated: Option<&[u8]>) -> Protocol {
        match negotiated {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        }
    }
}

/// What ALPN offers, most preferred first: HTTP/2, which carries many
/// requests on one connection, then HTTP/1.1.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Reads the first bytes of a plain-text connection, at most the
/// preface's 24 and no more once one differs from it, and answers the
/// protocol with the connection, those bytes to be read again first. A
/// connection that closes first is answered as HTTP/1.1, for hyper to find
/// closed. The caller bounds how long it may take.
pub async fn sniff<T: AsyncRead + Unpin>(mut io: T) -> io::Result<(Protocol, Replay<T>)> {
    let mut head = [0u8; PREFACE.len()];
    let mut read = 0;
    let protocol = loop {
        let more = io.read(&mut head[read..]).await?;
        read += more;
        if more == 0 || head[..read] != PREFACE[..read] {
            break Protocol::Http1;
        }
        if read == PREFACE.len() {
            break Protocol::Http2;
        }
    };
    Ok((
        protocol,
        Replay {
            inner: io,
            head,
            read,
            replayed: 0,
        },
    ))
}

/// A connection whose first bytes were read to tell its protocol: it
/// hands them out again before anything else.
#[derive(Debug)]
pub struct Replay<T> {
    inner: T,
    head: [u8; PREFACE.len()],
    /// How many of `head` were read from the connection.
    read: usize,
    /// How many of those have been handed out again.
    replayed: usize,
}

impl<T: AsyncRead + Unpin> AsyncRead for Replay<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.replayed < self.read {
            let (from, to) = (self.replayed, self.read);
            let length = (to - from).min(buf.remaining());
            buf.put_slice(&self.head[from..from + length]);
            self.replayed += length;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(context, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Replay<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(context, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

/// hyper's builders of both protocols, with presenced's bounds.
#[derive(Clone, Debug)]
pub struct Builders {
    pub http1: http1::Builder,
    pub http2: http2::Builder<StreamTasks>,
    /// How long an HTTP/2 connection with no stream open is kept
    /// (`--header-timeout`, as an idle HTTP/1.1 connection).
    pub idle_timeout: std::time::Duration,
    /// How long an HTTP/2 connection's answers may wait for the client's
    /// flow-control window with none progressing (`--send-timeout`, as an
    /// HTTP/1.1 answer may wait for its socket).
    pub send_timeout: std::time::Duration,
}

impl Builders {
    /// HTTP/1.1: a head larger than `--max-header-bytes` is answered 431 by
    /// hyper (with no body: hyper writes that answer itself and takes none
    /// from the application) and the connection closed; a head slower than
    /// `--header-timeout` closes the connection (hyper answers nothing, the
    /// request being incomplete), which also ends idle keep-alive
    /// connections after that long.
    ///
    /// HTTP/2: at most `--max-h2-streams` streams at once, advertised in
    /// the connection's settings; the reset floods bounded
    /// (`--max-h2-pending-resets`, `--max-h2-error-resets`), the
    /// connection closed with GOAWAY beyond them; a header list larger than
    /// `--max-header-bytes`, counted as HTTP/2 counts it (each field's name
    /// and value and 32 bytes), is answered 431 by the h2 library itself
    /// and its stream refused, the connection going on. A PING is sent
    /// after `--header-timeout` without a frame from the client, and the
    /// connection closed when the client has not answered it within as
    /// long again: a peer that vanished while its streams were open is
    /// found. A connection with no stream open for `--header-timeout` is
    /// closed by its task ([`crate::connections::Connection::idle_for`]),
    /// as an idle HTTP/1.1 connection is by hyper, and so is one whose
    /// answers all wait for the client's window for `--send-timeout`
    /// ([`crate::connections::Connection::starved_for`]).
    pub fn new(limits: &Limits, tasks: Tasks) -> Builders {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout())
            .max_header_size(limits.max_header_bytes);
        let mut http2 = http2::Builder::new(StreamTasks(tasks));
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_h2_streams)
            .max_pending_accept_reset_streams(limits.max_h2_pending_resets)
            .max_local_error_reset_streams(limits.max_h2_error_resets)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(limits.header_timeout())
            .keep_alive_timeout(limits.header_timeout());
        Builders {
            http1,
            http2,
            idle_timeout: limits.header_timeout(),
            send_timeout: limits.send_timeout(),
        }
    }
}

/// Where hyper runs each HTTP/2 stream: a short-lived task of [`Tasks`],
/// so that shutdown waits for streams as it does for connections. (HTTP/1.1
/// needs none: its one request at a time runs in the connection's task.)
#[derive(Clone, Debug)]
pub struct StreamTasks(Tasks);

impl<F> hyper::rt::Executor<F> for StreamTasks
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        self.0.spawn_short("http2 stream", stream);
    }
}

/// Whether an HTTP/2 connection ended because the client went past a bound
/// on stream resets: the h2 library closed it with GOAWAY
/// `ENHANCE_YOUR_CALM` (`too_many_resets`, `too_many_internal_resets`).
pub fn reset_flood(error: &hyper::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|cause| cause.downcast_ref::<h2::Error>())
        .is_some_and(|cause| {
            cause.is_go_away()
                && cause.is_library()
                && cause.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sniffed(sent: &[u8]) -> (Protocol, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, sent)
            .await
            .expect("written");
        drop(client);
        let (protocol, mut replay) = sniff(server).await.expect("sniffed");
        let mut again = Vec::new();
        replay.read_to_end(&mut again).await.expect("read again");
        (protocol, again)
    }

    #[tokio::test]
    async fn the_preface_is_http2_and_anything_else_http1_with_every_byte_read_again() {
        let mut http2 = PREFACE.to_vec();
        http2.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        let table: [(&[u8], Protocol); 6] = [
            (&http2, Protocol::Http2),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", Protocol::Http1),
            (b"POST /v1.0/$batch HTTP/1.1\r\n\r\n", Protocol::Http1),
            (b"PRI * HTTP/1.1\r\n\r\n", Protocol::Http1),
            (b"PRI", Protocol::Http1),
            (b"", Protocol::Http1),
        ];
        for (sent, expected) in table {
            let (protocol, again) = sniffed(sent).await;
            assert_eq!(protocol, expected, "{:?}", String::from_utf8_lossy(sent));
            assert_eq!(again, sent, "{:?}", String::from_utf8_lossy(sent));
        }
    }

    #[tokio::test]
    async fn a_preface_sent_a_byte_at_a_time_is_still_http2() {
        let (mut client, server) = tokio::io::duplex(64);
        let sending = tokio::spawn(async move {
            for byte in PREFACE {
                tokio::io::AsyncWriteExt::write_all(&mut client, &[*byte])
                    .await
                    .expect("written");
                tokio::task::yield_now().await;
            }
            client
        });
        let (protocol, _) = sniff(server).await.expect("sniffed");
        assert_eq!(protocol, Protocol::Http2);
        drop(sending.await);
    }

    #[test]
    fn alpn_chooses_http2_only_when_the_client_asked_for_it() {
        assert_eq!(Protocol::of_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(Protocol::of_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(Protocol::of_alpn(None), Protocol::Http1);
    }
}
