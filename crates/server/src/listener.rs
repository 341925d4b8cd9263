//! The accept loop shared by plain HTTP and TLS: one task per connection,
//! at most `max_connections` of them, each watched for slow and idle
//! clients, and a graceful stop.
//!
//! * A permit of a semaphore is taken before each `accept`, so connections
//!   past the cap wait in the kernel's backlog instead of being served;
//!   the permit goes with the connection's task and returns when it ends.
//! * A request head must arrive whole within `header_read_timeout`: hyper
//!   enforces it for every HTTP/1.1 head (so it also bounds the wait for
//!   the next request on a kept-alive connection), and the watchdog below
//!   closes a connection whose first request has not arrived within it
//!   after the accept, which covers the TLS handshake, the choice of
//!   protocol and HTTP/2.
//! * The watchdog also closes a connection on which no request is being
//!   handled and no byte has moved for `idle_timeout`: an idle HTTP/2
//!   connection, a kept-alive one, or a response whose client stopped
//!   reading. Bytes are counted on the socket, under TLS.
//! * At shutdown the listener closes, every connection is asked to finish
//!   (HTTP/1.1 after its current response, HTTP/2 with GOAWAY), and those
//!   still open after `shutdown_grace` are dropped.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The timeouts of `config`, with at most `max_connections` open.
    pub fn of(config: &crate::ServerConfig, max_connections: usize) -> Self {
        Limits {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            max_connections,
            shutdown_grace: config.shutdown_grace,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` fires, then stops as the
/// module describes.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait for
                    // connections to end rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            builder: builder.clone(),
            limits,
            shutdown: shutdown.clone(),
        };
        let tls = tls.clone();
        connections.spawn(async move {
            connection.run(stream, tls).await;
            drop(permit);
        });
    }
    drop(listener);
    while connections.try_join_next().is_some() {}
    let open = connections.len();
    if open > 0 {
        tracing::info!(open, "waiting for open connections to finish");
    }
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace_secs = limits.shutdown_grace.as_secs(),
            "connections still open after the shutdown grace period are dropped"
        );
        connections.shutdown().await;
    }
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What a connection's task needs.
struct Connection {
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Limits,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let activity = Arc::new(Activity::new());
        let io = Tracked {
            inner: stream,
            activity: activity.clone(),
        };
        match tls {
            None => self.serve(TokioIo::new(io), activity).await,
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(io));
                let stream = tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    done = handshake => match done {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake not done within the header read timeout");
                            return;
                        }
                    },
                };
                self.serve(TokioIo::new(stream), activity).await
            }
        }
    }

    async fn serve<I>(self, io: TokioIo<I>, activity: Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let counted = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let handling = counted.begin_request();
            let answer = app.clone().call(request);
            async move {
                let response = answer.await;
                drop(handling);
                response
            }
        });
        let connection = self.builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            let deadline = activity.deadline(&self.limits);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if activity.deadline(&self.limits) <= Instant::now() {
                        tracing::debug!("closing a slow or idle connection");
                        return;
                    }
                }
            }
        }
    }
}

/// What the watchdog of one connection knows: when a byte last moved, how
/// many requests are being handled, and how many have arrived.
struct Activity {
    accepted: Instant,
    /// Milliseconds after `accepted` when a byte last moved.
    last_byte_ms: AtomicU64,
    handling: AtomicUsize,
    requests: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            accepted: Instant::now(),
            last_byte_ms: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.accepted.elapsed().as_millis() as u64;
        self.last_byte_ms.store(ms, Ordering::Relaxed);
    }

    fn begin_request(self: &Arc<Self>) -> Handling {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.handling.fetch_add(1, Ordering::Relaxed);
        Handling(self.clone())
    }

    /// When the connection is to be closed unless something happens
    /// first; a time in the future while a request is being handled.
    fn deadline(&self, limits: &Limits) -> Instant {
        if self.handling.load(Ordering::Relaxed) > 0 {
            return Instant::now() + limits.idle_timeout;
        }
        let last_byte =
            self.accepted + Duration::from_millis(self.last_byte_ms.load(Ordering::Relaxed));
        let idle = last_byte + limits.idle_timeout;
        if self.requests.load(Ordering::Relaxed) == 0 {
            idle.min(self.accepted + limits.header_read_timeout)
        } else {
            idle
        }
    }
}

/// A request being handled, from its complete head to its response head.
struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket that notes in its [`Activity`] when bytes move.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The highest `max_connections` the process's open-file limit allows:
/// the soft limit less room for the metadata store's and the storage's
/// sockets and for files (a quarter of the limit, at most 256). `None`
/// when the limit cannot be read or is unlimited.
pub fn connection_ceiling() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if status != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    let soft = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    Some(soft.saturating_sub((soft / 4).min(256)).max(1))
}
