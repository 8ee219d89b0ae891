//! The server's connections: an accept loop over hyper's HTTP/1.1 with a cap on concurrent
//! connections and the timeouts that keep a client from holding one without sending a request
//! (header read, idle keep-alive, request body); and the process's open-file limit, raised at start.
//!
//! Not `axum::serve`: it sets no timer and no cap, so connections that trickled their headers, or
//! sent nothing, stayed open for ever, and ~1,100 of them used up a 1,024 file-descriptor limit
//! until every request (even `/healthz`) hung (issue 9; `docs/adr/0005-connection-limits-and-metrics-access.md`).
//!
//! The timeouts bound *reading a request*. A request being handled or answered has none: a
//! long-poll (`?wait=120s`) or the event feed may take as long as it takes.
//!
//! - The header and idle timeouts are kept by [`TimedIo`], the connection's socket as hyper sees
//!   it, not by hyper's own `header_read_timeout`: hyper's starts when the connection waits for a
//!   request, so it would be the idle timeout as well (one figure for both), and it allocates and
//!   registers a timer for every request. `TimedIo` has one timer per connection, touched only
//!   when a head arrives in pieces, or when the timer fires.
//! - The body timeout is kept by [`DeadlineBody`] around each request's body, armed only when the
//!   server first has to wait for the body (a body that came with its head never arms it).

use anyhow::Context as _;
use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// How long clients may take to send requests, and how many may be connected at once.
/// The defaults are argued in ADR 0005; `ledger serve` takes each as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From a request's first byte (or, for a new connection, from its accept) to the end of its
    /// head (request line and headers).
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request after an answer.
    pub idle_timeout: Duration,
    /// From the first time the server has to wait for a request's body to its last byte.
    pub body_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// File descriptors kept out of the connection cap for everything else the process opens: the
/// log's segment files (the writer's, and those a read opens), the data directory's lock, the
/// callback client's sockets, the listener, standard streams. A quarter of a smaller limit.
pub const RESERVED_FILES: u64 = 256;

impl ConnectionLimits {
    /// These limits with `max_connections` lowered, if need be, so that the connections and
    /// [`RESERVED_FILES`] (or a quarter of a limit under 1,024) fit under a soft open-file limit of
    /// `open_files`: a connection past the limit would fail `accept` with EMFILE, where waiting
    /// in the backlog costs nothing.
    pub fn fitted_to(self, open_files: u64) -> ConnectionLimits {
        let reserved = RESERVED_FILES.min(open_files / 4);
        let fits = open_files.saturating_sub(reserved).max(1);
        ConnectionLimits {
            max_connections: self
                .max_connections
                .min(usize::try_from(fits).unwrap_or(usize::MAX)),
            ..self
        }
    }
}

/// Parses a duration as `ledger serve` takes it: `10s`, `500ms`, `2m`, or a bare number of
/// seconds; zero is refused (a timeout of zero would close every connection at once).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(split) => text.split_at(split),
        None => (text, "s"),
    };
    let wrong = || format!("expected a duration like 10s, 500ms or 2m, not {text:?}");
    let amount: u64 = number.parse().map_err(|_| wrong())?;
    let duration = match unit {
        "ms" => Duration::from_millis(amount),
        "s" => Duration::from_secs(amount),
        "m" => Duration::from_secs(amount.saturating_mul(60)),
        _ => return Err(wrong()),
    };
    if duration.is_zero() {
        return Err(format!("{text:?}: a timeout must be longer than zero"));
    }
    Ok(duration)
}

/// The process's open-file limit (RLIMIT_NOFILE) before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit the process started with.
    pub soft_before: u64,
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (the ceiling of the soft one).
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard limit. Many systems start processes at a soft
/// limit of 1,024 with a hard limit hundreds of times higher; each connection holds a file
/// descriptor, so the soft limit is what caps connections unless raised.
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let (soft_before, hard) = rlimit::Resource::NOFILE.get()?;
    if soft_before < hard {
        rlimit::Resource::NOFILE.set(hard, hard)?;
    }
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    Ok(OpenFileLimit {
        soft_before,
        soft,
        hard,
    })
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops accepting,
/// lets each connection finish the request it is answering, and returns when all have closed.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_sender, closing) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut at_cap = false;
    loop {
        // A slot before `accept`: at the cap, new connections wait in the kernel's backlog (where
        // they cost this process no file descriptor) rather than being accepted and dropped.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                at_cap = false;
                permit
            }
            Err(_) => {
                if !at_cap {
                    at_cap = true;
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection cap reached; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => {
                        permit.context("the connection semaphore is never closed")?
                    }
                    () = &mut shutdown => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    pause_after_accept_error(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            limits,
            permit,
            closing.clone(),
        ));
    }
    drop(listener);
    closing_sender.send_replace(true);
    // Every connection holds a slot until it closes: all slots back means all connections done.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// After a failed `accept`: a peer that left before it was accepted is nothing; running out of
/// file descriptors or memory is logged, and accepting resumes after a pause (an immediate retry
/// would spin, and connections closing by their timeouts free what is missing).
async fn pause_after_accept_error(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(%error, "accept failed; accepting again in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    _slot: OwnedSemaphorePermit,
    mut closing: watch::Receiver<bool>,
) {
    // Answers are small and written whole: send them at once rather than wait on Nagle's algorithm.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    let activity = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(TimedIo::new(stream, limits, activity.clone()));
    let service = ConnectionService {
        router,
        activity,
        body_timeout: limits.body_timeout,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // `TimedIo` keeps the header and idle timeouts (see the module's documentation).
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let closing = async move {
        // Dropped at once: a `watch::Ref` holds a lock, which must not live across an await.
        let _ = closing.wait_for(|closing| *closing).await.map(drop);
    };
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = closing => {
            // Shutting down: finish the request in hand, keep nothing alive.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// What a connection's socket needs to know of its requests, told by [`ConnectionService`]:
/// whether one is being handled, how many began, when the last one was answered. Atomics because
/// the connection's future must be `Send`; all of it is touched from the connection's one task.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    in_flight: AtomicU32,
    started: AtomicU64,
    /// When the last answer was done (its body written or dropped), in nanoseconds after `opened`.
    answered_at: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            started: AtomicU64::new(0),
            answered_at: AtomicU64::new(0),
        }
    }

    fn answered_at(&self) -> Instant {
        self.opened + Duration::from_nanos(self.answered_at.load(Ordering::Relaxed))
    }
}

/// A request being handled or answered: from the call of the service until its answer's body is
/// done (dropped by hyper once written, or with the connection).
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.started.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let nanos = u64::try_from(self.0.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.answered_at.store(nanos, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection's socket as hyper sees it: reads fail with `TimedOut` when a head takes longer
/// than the header timeout, or the connection waits longer than the idle timeout for its next
/// request. Nothing is timed while a request is handled or answered.
///
/// One timer per connection. Its deadline is moved only when a head arrives in pieces (the rest
/// must come within the header timeout) or when it fires (then it is checked against what the
/// connection did meanwhile and set again, or the connection is closed), never for a request that
/// arrives whole and is answered: that costs two atomic updates and a clock read.
#[derive(Debug)]
struct TimedIo {
    stream: TcpStream,
    limits: ConnectionLimits,
    activity: Arc<Activity>,
    timer: Pin<Box<Sleep>>,
    /// Bytes arrived while no request was in flight, and their request has not started yet.
    head_started: bool,
    /// The count of started requests when `head_started` was set.
    head_of_request: u64,
    /// The timer is set to the header deadline of the head that started.
    head_timed: bool,
}

impl TimedIo {
    fn new(stream: TcpStream, limits: ConnectionLimits, activity: Arc<Activity>) -> TimedIo {
        // A new connection's first head has the header timeout from the accept on.
        let timer = Box::pin(tokio::time::sleep_until(
            activity.opened + limits.header_timeout,
        ));
        TimedIo {
            stream,
            limits,
            activity,
            timer,
            head_started: false,
            head_of_request: 0,
            head_timed: false,
        }
    }

    /// On a read that has to wait: whether the connection ran out of time (then the read fails),
    /// else the timer is registered to wake the connection at its deadline.
    fn check_deadline(&mut self, context: &mut Context<'_>) -> Poll<io::Error> {
        let busy = self.activity.in_flight.load(Ordering::Relaxed) > 0;
        let started = self.activity.started.load(Ordering::Relaxed);
        if self.head_started && (busy || started != self.head_of_request) {
            // The head was complete: its request started.
            self.head_started = false;
            self.head_timed = false;
        }
        if self.head_started && !self.head_timed {
            // Part of a head came and the rest is awaited: from now on it has the header timeout.
            self.head_timed = true;
            let deadline = Instant::now() + self.limits.header_timeout;
            self.timer.as_mut().reset(deadline);
        }
        loop {
            if self.timer.as_mut().poll(context).is_pending() {
                return Poll::Pending;
            }
            // The timer fired: judge the connection by what it did since it was set.
            let now = Instant::now();
            let deadline = if self.activity.in_flight.load(Ordering::Relaxed) > 0 {
                // A request is being handled: nothing is due before its answer and an idle period.
                now + self.limits.idle_timeout
            } else if self.head_started {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request's head did not arrive within the header timeout",
                ));
            } else if self.activity.started.load(Ordering::Relaxed) == 0 {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request arrived within the header timeout of the connection's accept",
                ));
            } else {
                let due = self.activity.answered_at() + self.limits.idle_timeout;
                if due <= now {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no further request arrived within the idle timeout",
                    ));
                }
                due
            };
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buffer.filled().len();
        match Pin::new(&mut this.stream).poll_read(context, buffer) {
            Poll::Ready(Ok(())) => {
                if !this.head_started
                    && buffer.filled().len() > before
                    && this.activity.in_flight.load(Ordering::Relaxed) == 0
                {
                    // The first bytes of a request; if its head is complete, hyper starts it
                    // before the next read, and no timer is touched.
                    this.head_started = true;
                    this.head_of_request = this.activity.started.load(Ordering::Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.check_deadline(context).map(Err),
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(context, bytes)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}

/// hyper's service for one connection: marks each request in flight for [`TimedIo`], puts the
/// body timeout around its body, and hands it to the router.
#[derive(Debug, Clone)]
struct ConnectionService {
    router: Router,
    activity: Arc<Activity>,
    body_timeout: Duration,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = hyper::Response<AnswerBody>;
    type Error = Infallible;
    type Future = ConnectionFuture;

    fn call(&self, request: hyper::Request<Incoming>) -> ConnectionFuture {
        let in_flight = InFlight::start(&self.activity);
        let request = request.map(|body| DeadlineBody::new(body, self.body_timeout));
        // A `Router` is always ready (its `poll_ready` answers at once), as `axum::serve` relies
        // on too; a clone of it is a reference count.
        let answer = tower_service::Service::call(&mut self.router.clone(), request);
        ConnectionFuture {
            answer,
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`ConnectionService`]: the router's, with the request kept in flight until
    /// its body is done.
    struct ConnectionFuture {
        #[pin]
        answer: axum::routing::future::RouteFuture<Infallible>,
        in_flight: Option<InFlight>,
    }
}

impl Future for ConnectionFuture {
    type Output = Result<hyper::Response<AnswerBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.answer.poll(context));
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|body| AnswerBody {
            body,
            _in_flight: in_flight,
        })))
    }
}

/// An answer's body, holding its request in flight until hyper is done with it.
#[derive(Debug)]
struct AnswerBody {
    body: axum::body::Body,
    _in_flight: Option<InFlight>,
}

impl Body for AnswerBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The error of a request body that did not arrive within the body timeout; the body extractors
/// answer it with 408 (`problem::ApiError`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimedOut(pub Duration);

pin_project_lite::pin_project! {
    /// A request body that fails with [`BodyTimedOut`] when it takes longer than its timeout,
    /// counted from the first time a read of it has to wait (a body that came with its head never
    /// starts the clock, and costs no timer).
    #[derive(Debug)]
    pub struct DeadlineBody<B> {
        #[pin]
        body: B,
        #[pin]
        timer: Option<Sleep>,
        timeout: Duration,
    }
}

impl<B> DeadlineBody<B> {
    pub fn new(body: B, timeout: Duration) -> DeadlineBody<B> {
        DeadlineBody {
            body,
            timer: None,
            timeout,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        match this.body.poll_frame(context) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|frame| frame.map_err(Into::into))),
            Poll::Pending => {
                if this.timer.is_none() {
                    this.timer.set(Some(tokio::time::sleep(*this.timeout)));
                }
                let expired = this
                    .timer
                    .as_pin_mut()
                    .is_some_and(|timer| timer.poll(context).is_ready());
                if expired {
                    Poll::Ready(Some(Err(Box::new(BodyTimedOut(*this.timeout)))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
