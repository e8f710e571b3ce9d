//! The open connections, and the accept loop's share of the bounds
//! (`limits.rs`): `--max-connections`, running out of file descriptors, and
//! telling a slow head from an idle keep-alive connection.
//!
//! Every connection is registered while it is open, with how many requests
//! it has in flight (0 or 1 on HTTP/1.1, which answers one at a time; up to
//! `--max-h2-streams` on HTTP/2) and when its last one ended. A request is
//! in flight from the moment hyper hands it to the service until its
//! response body has been handed back whole, so a stream (Server-Sent
//! Events) is in flight for as long as it is open, and an HTTP/2
//! connection with any stream open is never idle.
//!
//! At the bound, a new client is served by closing the keep-alive
//! connection idle the longest (one that has been answered and has no
//! request in flight; one that has not asked anything yet is left to the
//! header timeout): it is asked to close gracefully (hyper closes an idle
//! HTTP/1 connection at once and lets a request that raced the eviction
//! finish first; on HTTP/2 it sends GOAWAY and lets the streams the client
//! had opened by then finish). When every connection has a request in
//! flight, the new one is closed at once and counted as refused. The same
//! eviction makes room when the process runs out of file descriptors.
//!
//! Why not a crate: tower's `ConcurrencyLimit` and hyper-util's graceful
//! shutdown bound or close connections, but none chooses *which* connection
//! to close by idleness, which is what lets a full server go on serving new
//! clients.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

/// Every open connection, by id.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    /// A std mutex: held to insert, remove, or look for the connection idle
    /// the longest, never across an await.
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    /// A logical clock, moved by every connection opened and every request
    /// ended: which idle connection is the oldest needs only an order.
    activity: Arc<AtomicU64>,
    /// Woken whenever a connection closes.
    closed: tokio::sync::Notify,
    /// The parent of every connection's `close`: cancelled when the server
    /// stops, so that each closes once its request in flight is answered.
    drain: CancellationToken,
}

/// One open connection, as the registry and its own task see it.
#[derive(Debug)]
pub struct Connection {
    in_flight: AtomicU32,
    /// A request has been answered: the connection is a keep-alive one.
    /// One that has not sent its first request is never taken for idle
    /// (it would be closed before it could ask anything); the header
    /// timeout bounds it instead.
    served: AtomicBool,
    /// The `activity` tick of its last request's end (or of its opening).
    last_active: AtomicU64,
    activity: Arc<AtomicU64>,
    /// Bytes have arrived since the last request was handed over: a head
    /// is on its way. Tells a client too slow to send its head (counted as
    /// refused) from an idle keep-alive connection that expired (not).
    reading: AtomicBool,
    /// A write waited longer than `--send-timeout` for the client to read.
    stalled: AtomicBool,
    /// Woken when the last request in flight ends, for the HTTP/2
    /// connection's own idle timer ([`Connection::idle_for`]); HTTP/1.1
    /// leaves that to hyper, and its permit is never taken.
    became_idle: tokio::sync::Notify,
    /// HTTP/2's flow control, watched ([`Connection::starved_for`]): on
    /// HTTP/1.1 a client that reads nothing stops the socket, which
    /// `Watched` sees; on HTTP/2 it withholds its window instead, and hyper
    /// stops asking the answers for more, with the socket idle. Set for
    /// HTTP/2 connections only, so that HTTP/1.1 answers count nothing.
    watch_sends: AtomicBool,
    /// Data frames of answers handed to hyper that it has not asked the
    /// next frame after yet (it asks once the client's window has room).
    sends_waiting: AtomicU32,
    /// How many times hyper asked for a frame after one was waiting: the
    /// client's reading, seen from the answers.
    sends: AtomicU64,
    /// Asks the connection to close once it has no request in flight.
    pub close: CancellationToken,
}

impl Connections {
    pub fn new(max: usize) -> Connections {
        Connections {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            activity: Arc::new(AtomicU64::new(0)),
            closed: tokio::sync::Notify::new(),
            drain: CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Registers a new connection, closing the one idle the longest when
    /// `max` are open already; `None` when none is idle (the new one is to
    /// be refused).
    pub fn admit(self: &Arc<Connections>) -> Option<Open> {
        let mut open = self.lock();
        if open.len() >= self.max {
            // Connections already asked to close go on counting until they
            // have, but are not asked again nor counted against the new one.
            let closing = open
                .values()
                .filter(|connection| connection.close.is_cancelled())
                .count();
            if open.len() - closing >= self.max {
                let evicted = Connections::oldest_idle(&open)?;
                evicted.close.cancel();
                metrics::counter!("presenced_http_connections_evicted_total").increment(1);
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            in_flight: AtomicU32::new(0),
            served: AtomicBool::new(false),
            last_active: AtomicU64::new(self.activity.fetch_add(1, Ordering::Relaxed)),
            activity: self.activity.clone(),
            reading: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            became_idle: tokio::sync::Notify::new(),
            watch_sends: AtomicBool::new(false),
            sends_waiting: AtomicU32::new(0),
            sends: AtomicU64::new(0),
            close: self.drain.child_token(),
        });
        open.insert(id, connection.clone());
        metrics::gauge!("presenced_http_connections").set(open.len() as f64);
        Some(Open {
            registry: self.clone(),
            id,
            connection,
        })
    }

    /// The keep-alive connection with no request in flight whose last one
    /// ended first, not yet asked to close. A scan: it runs only at the bound,
    /// and keeps every request free of any ordering work.
    fn oldest_idle(open: &HashMap<u64, Arc<Connection>>) -> Option<&Arc<Connection>> {
        open.values()
            .filter(|connection| {
                connection.served.load(Ordering::Acquire)
                    && connection.in_flight.load(Ordering::Acquire) == 0
                    && !connection.close.is_cancelled()
            })
            .min_by_key(|connection| connection.last_active.load(Ordering::Relaxed))
    }

    /// Asks the connection idle the longest to close (out of file
    /// descriptors: one of them is worth more to a new client). Answers
    /// whether there was one.
    pub fn evict_oldest_idle(&self) -> bool {
        let open = self.lock();
        match Connections::oldest_idle(&open) {
            Some(connection) => {
                connection.close.cancel();
                metrics::counter!("presenced_http_connections_evicted_total").increment(1);
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves when a connection closes after this was called.
    pub fn closed(&self) -> tokio::sync::futures::Notified<'_> {
        self.closed.notified()
    }

    /// Asks every connection to close once its request in flight is
    /// answered.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Resolves once no connection is open.
    pub async fn drained(&self) {
        loop {
            let closed = self.closed();
            if self.is_empty() {
                return;
            }
            closed.await;
        }
    }
}

/// A registered connection; dropping it unregisters it.
#[derive(Debug)]
pub struct Open {
    registry: Arc<Connections>,
    id: u64,
    pub connection: Arc<Connection>,
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut open = self.registry.lock();
        open.remove(&self.id);
        metrics::gauge!("presenced_http_connections").set(open.len() as f64);
        drop(open);
        self.registry.closed.notify_waiters();
    }
}

impl Connection {
    /// Whether a connection that ran out of `--header-timeout` was cut off
    /// as a slow sender: bytes of a head had arrived, or it never sent a
    /// whole request at all. One that merely sat idle after its last
    /// answer is a keep-alive connection expiring, not a refusal.
    pub fn cut_off_mid_request(&self) -> bool {
        self.reading.load(Ordering::Relaxed) || !self.served.load(Ordering::Acquire)
    }

    /// Whether the connection was cut off because its client read nothing
    /// of an answer for `--send-timeout`.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Whether a request has been answered on it.
    pub fn answered_any(&self) -> bool {
        self.served.load(Ordering::Acquire)
    }

    /// Marks the connection as HTTP/2, whose answers' progress
    /// [`Connection::starved_for`] watches.
    pub fn watch_sends(&self) {
        self.watch_sends.store(true, Ordering::Relaxed);
    }

    /// Resolves once an answer has waited for the client's flow-control
    /// window for `timeout` while no answer on the connection progressed
    /// (within a quarter of `timeout` more), and marks the connection
    /// stalled: an HTTP/2 client that reads nothing, as `Watched` finds one
    /// on HTTP/1.1. One stream starved while the client reads the others
    /// is left to the client: the connection makes progress. (An answer
    /// whose last frame is what waits has been handed over whole and is no
    /// longer in flight: the idle timer closes that connection.)
    pub async fn starved_for(&self, timeout: std::time::Duration) {
        let mut seen = self.sends.load(Ordering::Relaxed);
        let mut progressed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(timeout / 4).await;
            let sends = self.sends.load(Ordering::Relaxed);
            if sends != seen || self.sends_waiting.load(Ordering::Relaxed) == 0 {
                seen = sends;
                progressed = tokio::time::Instant::now();
            } else if progressed.elapsed() >= timeout {
                self.stalled.store(true, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Resolves once the connection has had no request in flight for
    /// `timeout`: from when it is called, or from when its last request
    /// ended, whichever is later. hyper bounds an idle HTTP/1.1 connection
    /// itself (its header timeout); an HTTP/2 connection has no such bound
    /// in hyper, so its task waits on this.
    pub async fn idle_for(&self, timeout: std::time::Duration) {
        loop {
            // Taken before looking, so that a request ending in between
            // wakes it (a stale wake only starts the wait again).
            let became_idle = self.became_idle.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                tokio::select! {
                    () = tokio::time::sleep(timeout) => {
                        if self.in_flight.load(Ordering::Acquire) == 0 {
                            return;
                        }
                    }
                    () = became_idle => {}
                }
            } else {
                became_idle.await;
            }
        }
    }
}

/// A request in flight on a connection, until dropped.
#[derive(Debug)]
struct Busy(Arc<Connection>);

impl Busy {
    fn new(connection: &Arc<Connection>) -> Busy {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        connection.reading.store(false, Ordering::Relaxed);
        Busy(connection.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let connection = &self.0;
        let tick = connection.activity.fetch_add(1, Ordering::Relaxed);
        connection.last_active.store(tick, Ordering::Relaxed);
        connection.reading.store(false, Ordering::Relaxed);
        connection.served.store(true, Ordering::Release);
        if connection.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            connection.became_idle.notify_one();
        }
    }
}

/// The connection's service, marking each request in flight until its
/// response body is done.
#[derive(Clone, Debug)]
pub struct Tracked<S> {
    inner: S,
    connection: Arc<Connection>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, connection: Arc<Connection>) -> Tracked<S> {
        Tracked { inner, connection }
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>>,
{
    type Response = Response<TrackedBody>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let busy = Busy::new(&self.connection);
        TrackedFuture {
            inner: self.inner.call(request),
            busy: Some(busy),
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's answer; the request stays in flight in its body.
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        busy: Option<Busy>,
    }
}

impl<F, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<TrackedBody>, E>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answered = std::task::ready!(this.inner.poll(context));
        let busy = this.busy.take();
        Poll::Ready(answered.map(|response| {
            response.map(|body| TrackedBody {
                inner: body,
                busy,
                waiting: false,
            })
        }))
    }
}

/// A response body that keeps its request in flight until it is dropped,
/// and on HTTP/2 tells the connection whether hyper keeps taking its
/// frames ([`Connection::starved_for`]).
#[derive(Debug)]
pub struct TrackedBody {
    inner: Body,
    busy: Option<Busy>,
    /// A data frame was handed to hyper, which has not asked for the next.
    waiting: bool,
}

impl TrackedBody {
    fn connection(&self) -> Option<&Connection> {
        self.busy.as_ref().map(|busy| &*busy.0)
    }

    /// hyper took the frame that was waiting (it asks for the next), or
    /// the answer ended.
    fn taken(&mut self) {
        if std::mem::take(&mut self.waiting)
            && let Some(connection) = self.connection()
        {
            connection.sends_waiting.fetch_sub(1, Ordering::Relaxed);
            connection.sends.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.taken();
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.is_data()
            && let Some(connection) = self.connection()
            && connection.watch_sends.load(Ordering::Relaxed)
        {
            connection.sends_waiting.fetch_add(1, Ordering::Relaxed);
            self.waiting = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.taken();
    }
}

/// A connection's socket, noting when bytes arrive (see
/// [`Connection::cut_off_mid_request`]), and failing a write that makes no
/// progress for `--send-timeout` (the client reads nothing): hyper bounds
/// how long a head may take to arrive, but not how long an answer may wait
/// for its reader, and a stream or a large answer that is never read would
/// hold its connection forever.
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    connection: Arc<Connection>,
    send_timeout: std::time::Duration,
    /// Armed while a write waits for the client to read.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Watched<T> {
    pub fn new(
        inner: T,
        connection: Arc<Connection>,
        send_timeout: std::time::Duration,
    ) -> Watched<T> {
        Watched {
            inner,
            connection,
            send_timeout,
            stalled: None,
        }
    }

    /// A write that could not proceed: pending until `--send-timeout` has
    /// passed without progress, then an error that ends the connection.
    fn stall<R>(&mut self, context: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timeout = self.send_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(context) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.connection.stalled.store(true, Ordering::Relaxed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing of its answer within --send-timeout",
                )))
            }
        }
    }

    fn progress<R>(
        &mut self,
        written: Poll<io::Result<R>>,
        context: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match written {
            Poll::Pending => self.stall(context),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(context, buf);
        if buf.filled().len() > before {
            self.connection.reading.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(context, buf);
        self.progress(written, context)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(context, bufs);
        self.progress(written, context)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(context);
        self.progress(flushed, context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

/// Whether an accept failed because the process (`EMFILE`) or the system
/// (`ENFILE`) has no file descriptor left.
pub fn out_of_descriptors(error: &io::Error) -> bool {
    use rustix::io::Errno;
    Errno::from_io_error(error).is_some_and(|errno| errno == Errno::MFILE || errno == Errno::NFILE)
}

/// Raises the soft limit on open files to the hard limit, as the Go runtime
/// does at start: the soft limit is often 1,024, far below
/// `--max-connections`, while the hard limit is what the operator allows.
/// Warns when even that is below `max_connections`. Answers the limit now
/// in force, if it could be read.
pub fn raise_open_file_limit(max_connections: usize) -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut current = limit.current;
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum)
        && soft < hard
    {
        let raised = rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            current = Some(hard);
        }
    }
    if let Some(current) = current
        && current < max_connections as u64 + RESERVED_DESCRIPTORS
    {
        tracing::warn!(
            open_file_limit = current,
            max_connections,
            "--max-connections is more than the open-file limit leaves for connections: past about {} connections, accepting waits until one closes (the oldest idle one is closed to make room). Raise the limit (ulimit -n, LimitNOFILE=) or lower --max-connections",
            current.saturating_sub(RESERVED_DESCRIPTORS)
        );
    }
    current
}

/// What presenced keeps open besides connections: the store's files, the
/// runtime's, webhook and Redis connections.
const RESERVED_DESCRIPTORS: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn request_on(connection: &Arc<Connection>) -> Busy {
        Busy::new(connection)
    }

    #[test]
    fn at_the_bound_the_connection_idle_the_longest_is_closed() {
        let connections = Arc::new(Connections::new(3));
        let first = connections.admit().expect("room");
        let second = connections.admit().expect("room");
        let third = connections.admit().expect("room");
        // The first is busy, then the second's request ends after the
        // third's: the third has been idle the longest.
        let _busy = request_on(&first.connection);
        drop(request_on(&third.connection));
        drop(request_on(&second.connection));
        let fourth = connections.admit().expect("an idle one makes room");
        assert!(third.connection.close.is_cancelled());
        assert!(!first.connection.close.is_cancelled());
        assert!(!second.connection.close.is_cancelled());
        // The third is closing but still open: the next new one takes the
        // second, the last idle one.
        let fifth = connections.admit().expect("the second makes room");
        assert!(second.connection.close.is_cancelled());
        assert!(!fourth.connection.close.is_cancelled());
        drop(third);
        drop(second);
        assert_eq!(connections.len(), 3);
        drop(fifth);
        drop(fourth);
    }

    #[test]
    fn a_connection_that_has_asked_nothing_yet_is_not_taken_for_idle() {
        let connections = Arc::new(Connections::new(1));
        let fresh = connections.admit().expect("room");
        assert!(connections.admit().is_none());
        assert!(!fresh.connection.close.is_cancelled());
        drop(request_on(&fresh.connection));
        assert!(connections.admit().is_some());
        assert!(fresh.connection.close.is_cancelled());
    }

    #[test]
    fn at_the_bound_with_every_connection_busy_a_new_one_is_refused() {
        let connections = Arc::new(Connections::new(2));
        let first = connections.admit().expect("room");
        let second = connections.admit().expect("room");
        let _one = request_on(&first.connection);
        let two = request_on(&second.connection);
        assert!(connections.admit().is_none());
        assert!(!connections.evict_oldest_idle());
        drop(two);
        assert!(connections.admit().is_some());
        assert!(second.connection.close.is_cancelled());
    }

    #[test]
    fn closing_every_connection_asks_each_to_close() {
        let connections = Arc::new(Connections::new(10));
        let open = connections.admit().expect("room");
        connections.drain();
        assert!(open.connection.close.is_cancelled());
        drop(open);
        assert!(connections.is_empty());
    }
}
