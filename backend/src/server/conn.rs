//! One connection's clock. Between requests the reader has a deadline: the
//! header timeout from the first byte of a request's head, else the idle
//! timeout from the end of the last request. While a request runs there is
//! none (the request timeout covers it). A write that makes no progress for
//! the idle timeout (a client that never reads its answers) fails too. The requests tell the reader when
//! they start and end through [`Tracked`], which wraps the connection's
//! service; hyper only offers one header timeout that also ends idle
//! keep-alive connections, too soon behind a load balancer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    pub header: Duration,
    pub idle: Duration,
}

/// What a connection's requests tell its reader.
#[derive(Debug)]
struct Requests {
    in_flight: usize,
    /// How many have started: tells a head still being read from one that
    /// has become a request.
    started: u64,
    idle_since: Instant,
}

type Shared = Arc<Mutex<Requests>>;

fn lock(requests: &Shared) -> MutexGuard<'_, Requests> {
    requests.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Deadlines {
    /// Puts `stream` under these deadlines; the [`Tracker`] goes to the
    /// connection's service.
    pub(super) fn watch(self, stream: TcpStream) -> (Watched, Tracker) {
        let now = Instant::now();
        let requests = Arc::new(Mutex::new(Requests {
            in_flight: 0,
            started: 0,
            idle_since: now,
        }));
        let watched = Watched {
            io: stream,
            deadlines: self,
            requests: Arc::clone(&requests),
            head: None,
            sleep: Box::pin(tokio::time::sleep_until(now + self.idle)),
            write_stall: None,
        };
        (watched, Tracker(requests))
    }
}

/// A connection's stream, whose reads fail with `TimedOut` past a deadline.
pub(super) struct Watched {
    io: TcpStream,
    deadlines: Deadlines,
    requests: Shared,
    /// When the first byte of a request's head arrived, and how many
    /// requests had started by then.
    head: Option<(Instant, u64)>,
    sleep: Pin<Box<Sleep>>,
    /// Set while a write waits for the client to read.
    write_stall: Option<Pin<Box<Sleep>>>,
}

impl Watched {
    /// The deadline for the next byte, and what it bounds; `None` while a
    /// request runs.
    fn deadline(&mut self) -> Option<(Instant, &'static str)> {
        let requests = lock(&self.requests);
        if requests.in_flight > 0 {
            return None;
        }
        match self.head {
            Some((since, started)) if started == requests.started => Some((
                since + self.deadlines.header,
                "the request's headers took longer than SERVER_HEADER_TIMEOUT",
            )),
            _ => Some((
                requests.idle_since + self.deadlines.idle,
                "the connection was idle longer than SERVER_IDLE_TIMEOUT",
            )),
        }
    }

    /// Bytes arrived: between requests they start a request's head.
    fn note_bytes(&mut self) {
        let requests = lock(&self.requests);
        let reading_head = self
            .head
            .is_some_and(|(_, started)| started == requests.started);
        if requests.in_flight == 0 && !reading_head {
            self.head = Some((Instant::now(), requests.started));
        }
    }

    /// Sets the clock to the current deadline and has `cx` woken at it;
    /// answers what the deadline bounds once it has passed.
    fn poll_clock(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        let (deadline, why) = self.deadline()?;
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx).is_ready().then_some(why)
    }

    /// Sets the clock after an answer is flushed: hyper may wait for the
    /// next request without reading again, so a read cannot be counted on
    /// to start the idle deadline.
    fn arm(&mut self, cx: &mut Context<'_>) {
        if self.poll_clock(cx).is_some() {
            // Past already: the next read reports it.
            cx.waker().wake_by_ref();
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.note_bytes();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.poll_clock(cx) {
                Some(why) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why))),
                None => Poll::Pending,
            },
        }
    }
}

impl Watched {
    /// A write's outcome, failed once writes have waited the idle timeout.
    fn check_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if written.is_ready() {
            self.write_stall = None;
            return written;
        }
        let idle = self.deadlines.idle;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing for SERVER_IDLE_TIMEOUT",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check_write(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        if flushed.is_ready() {
            this.arm(cx);
        }
        this.check_write(cx, flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The requests' side of a connection's clock.
pub(super) struct Tracker(Shared);

/// Counts one request in flight until dropped.
struct Busy(Shared);

impl Busy {
    fn start(requests: &Shared) -> Busy {
        let mut state = lock(requests);
        state.in_flight += 1;
        state.started += 1;
        Busy(Arc::clone(requests))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }
}

/// A connection's service that tells the reader when requests run.
#[derive(Clone)]
pub(super) struct Tracked<S> {
    inner: S,
    requests: Shared,
}

impl<S> Tracked<S> {
    pub(super) fn new(inner: S, Tracker(requests): Tracker) -> Self {
        Tracked { inner, requests }
    }
}

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: tower::Service<R> + Clone + Send + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: R) -> Self::Future {
        let busy = Busy::start(&self.requests);
        let answer = self.inner.clone().oneshot(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(busy);
            answer
        })
    }
}
