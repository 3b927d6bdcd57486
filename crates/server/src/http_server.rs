//! The listener: accepts TCP (optionally TLS) connections, serves HTTP/1.1 and h2 with hyper-util, gives every
//! request an id (`x-amz-request-id`), its [`ClientConnection`] (as a request extension), one log line and its
//! metrics ([`crate::request_record`]), and drains in-flight requests on shutdown. Unsigned health probes and
//! metrics scrapes are answered here, before s3s ([`LocalEndpoints`]).
//!
//! Connections are bounded ([`ConnectionLimits`]): at most `max_connections` are served at once (the next ones wait
//! in the listen backlog), a connection that has not sent a complete first request head by `header_read_timeout`
//! after accept is closed, and so is an HTTP/1.1 connection that waits longer than `idle_timeout` for its next one.
//! It also closes an HTTP/1 connection after refusing a request whose body the client holds back
//! (`Expect: 100-continue`), see [`refused_before_its_body`]. Request bodies pass through [`body_taps`] on their way
//! into s3s; a presigned URL asking for an impossible validity is refused here ([`presigned::check_expires`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use s3s::service::S3Service;
use s3s::xml::Serialize as _;
use s3s::{Body, HttpError, S3Error};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::audit_log::RequestId;
use crate::body_taps;
use crate::config::ConnectionLimits;
use crate::errors::with_default_message;
use crate::health::{Health, Probe};
use crate::metrics::Metrics;
use crate::presigned;
use crate::request_record::{rounded_ms, RequestIdentity, RequestRecord};

/// How a request's client is connected, put into every request's extensions (s3s hands them on to the
/// operations as `S3Request::extensions`): SSE-C keys may only travel over TLS or from loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConnection {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Put into a response's extensions by an operation whose answer is partial (a ranged HeadObject): s3s 0.14 sets
/// 206 for a ranged GetObject on its own but ignores `S3Response::status`, so [`handle`] applies it.
#[derive(Debug, Clone, Copy)]
pub struct PartialContent;

/// What the listener answers itself, before s3s, for requests without S3 authentication.
pub struct LocalEndpoints {
    pub health: Health,
    /// Also where S3 requests are counted.
    pub metrics: Metrics,
}

/// Hands out request ids: the process start time and a counter, unique within the process and across restarts.
#[derive(Debug)]
struct RequestIds {
    epoch: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let epoch = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        RequestIds { epoch, next: AtomicU64::new(1) }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:X}{:08X}", self.epoch, n)
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then stops accepting and waits for in-flight
/// requests to finish.
pub async fn serve(
    listener: TcpListener,
    service: S3Service,
    local: Arc<LocalEndpoints>,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper runs this timer whenever an HTTP/1 connection waits for a request head: from the end of the previous
    // response to the end of the next head. The first head has its own deadline, see `first_head_by`.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let ids = Arc::new(RequestIds::new());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut saturated = false;
    tokio::pin!(shutdown);
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                saturated = false;
                slot
            }
            Err(_) => {
                if !saturated {
                    warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait in the listen backlog until one closes"
                    );
                    saturated = true;
                }
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // never closed
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE or a connection reset before accept; back off briefly instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without it, Nagle's algorithm holds back a small body written after the response head until the client's
        // delayed ACK: ~40 ms per small GET on a keep-alive connection.
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            builder: builder.clone(),
            service: service.clone(),
            local: local.clone(),
            ids: ids.clone(),
            tls: tls.clone(),
            peer,
            first_head_by: tokio::time::Instant::now() + limits.header_read_timeout,
            _slot: slot,
        };
        tokio::spawn(connection.run(stream, graceful.watcher()));
    }
    drop(listener);
    info!(connections = graceful.count(), "shutting down: no new connections, finishing in-flight requests");
    graceful.shutdown().await;
    info!("shutdown complete");
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed by this call, not when the future is first polled:
/// called before the listener is bound, a signal that arrives while the server still starts (its port already
/// accepting) shuts it down gracefully rather than killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    let listen = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|error| warn!(%error, "cannot listen for {name}")).ok()
    };
    let mut interrupt = listen(SignalKind::interrupt(), "SIGINT");
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM");
    async move {
        tokio::select! {
            () = received(interrupt.as_mut()) => info!("received SIGINT"),
            () = received(terminate.as_mut()) => info!("received SIGTERM"),
        }
    }
}

/// The next delivery of a signal; never, if it could not be listened for.
async fn received(signal: Option<&mut Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Everything one accepted connection needs.
struct Connection {
    builder: auto::Builder<TokioExecutor>,
    service: S3Service,
    local: Arc<LocalEndpoints>,
    ids: Arc<RequestIds>,
    tls: Option<TlsAcceptor>,
    peer: SocketAddr,
    /// When the first request head must have arrived (see [`first_head_within`]).
    first_head_by: tokio::time::Instant,
    /// Its place among the `max_connections`, given back when the connection ends.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, watcher: Watcher) {
        let Connection { builder, service, local, ids, tls, peer, first_head_by, _slot } = self;
        let client = ClientConnection { peer, tls: tls.is_some() };
        let has_had_a_request = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&has_had_a_request);
        let handler = service_fn(move |request| {
            seen.store(true, Ordering::Relaxed);
            handle(service.clone(), local.clone(), ids.clone(), client, request)
        });
        let result = match tls {
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), handler).into_owned();
                first_head_within(first_head_by, &has_had_a_request, watcher.watch(connection)).await
            }
            Some(acceptor) => {
                let stream = match tokio::time::timeout_at(first_head_by, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => return debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => return debug!(%peer, "TLS handshake not done within the header read timeout"),
                };
                let connection = builder.serve_connection(TokioIo::new(stream), handler).into_owned();
                first_head_within(first_head_by, &has_had_a_request, watcher.watch(connection)).await
            }
        };
        match result {
            None => debug!(%peer, "no complete request head within the header read timeout: connection closed"),
            Some(Err(error)) => debug!(%peer, error = %error, "connection ended with an error"),
            Some(Ok(())) => {}
        }
    }
}

/// Drives `connection`, but drops it (closing the socket) at `deadline` if no request head has arrived by then.
/// hyper's own header timer starts only once hyper-util has told HTTP/1 from HTTP/2 by the first bytes, so without
/// this a client that sends nothing, or the first bytes of the HTTP/2 preface, would hold its connection forever.
async fn first_head_within<F: Future>(
    deadline: tokio::time::Instant,
    has_had_a_request: &AtomicBool,
    connection: F,
) -> Option<F::Output> {
    tokio::pin!(connection);
    tokio::select! {
        output = &mut connection => Some(output),
        () = tokio::time::sleep_until(deadline) => {
            if has_had_a_request.load(Ordering::Relaxed) {
                Some(connection.await)
            } else {
                None
            }
        }
    }
}

/// The answer to a request refused before s3s saw it, in the XML s3s writes for its own errors.
fn error_response(error: &S3Error) -> Response<Body> {
    let mut xml = Vec::new();
    let mut serializer = s3s::xml::Serializer::new(&mut xml);
    if let Err(cause) = serializer.decl().and_then(|()| error.serialize(&mut serializer)) {
        warn!(%cause, "cannot write an error answer");
        xml.clear();
    }
    let mut response = Response::new(Body::from(xml));
    *response.status_mut() = error.status_code().unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    response
}

/// Gives an error answer that s3s built from a bare code AWS's message for it ([`with_default_message`]).
fn add_default_message(response: &mut Response<Body>) {
    let patched = response.body().bytes().and_then(|xml| with_default_message(std::str::from_utf8(&xml).ok()?));
    if let Some(patched) = patched {
        response.headers_mut().remove(http::header::CONTENT_LENGTH);
        *response.body_mut() = Body::from(patched);
    }
}

/// True for an HTTP/1 request that asked `Expect: 100-continue` and got an error answer. Such an answer usually
/// comes before the body was read, so hyper never sent `100 Continue`, and the client — rightly, and botocore does
/// — sends no body and reuses the connection. hyper, keeping the connection alive, would then read the next
/// request's first bytes as the promised body (a 1-byte body turned the next `PUT` into `UT`); closing the
/// connection, as RFC 9110 §10.1.1 allows, keeps the next request intact.
fn refused_before_its_body(expects_continue: bool, status: StatusCode) -> bool {
    expects_continue && (status.is_client_error() || status.is_server_error())
}

/// Runs one request through s3s (or answers a health probe or metrics scrape) and adds `x-amz-request-id`. An S3
/// request is logged and counted when its response body is done ([`RequestRecord`]); probes and scrapes are logged
/// at debug level only (load balancers and Prometheus send them every few seconds), and not counted. The query
/// string is not logged: presigned URLs carry their signature there.
async fn handle(
    service: S3Service,
    local: Arc<LocalEndpoints>,
    ids: Arc<RequestIds>,
    client: ClientConnection,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let started = Instant::now();
    let peer = client.peer;
    request.extensions_mut().insert(client);
    let id = ids.next();
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let answered_here = if let Some(probe) = Probe::of(&request) {
        Some((local.health.respond(probe, &method).await, "health probe"))
    } else if Metrics::is_scrape(&request) {
        Some((local.metrics.respond(&request).await, "metrics scrape"))
    } else {
        None
    };
    if let Some((mut response, what)) = answered_here {
        insert_request_id(&mut response, &id);
        debug!(target: "coffer_server::request", request_id = %id, %peer, %method, %path,
               status = response.status().as_u16(), ms = rounded_ms(started.elapsed()), "{what}");
        return Ok(response);
    }
    let expects_continue = request.version() <= Version::HTTP_11
        && request
            .headers()
            .get(header::EXPECT)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let identity = RequestIdentity::default();
    request.extensions_mut().insert(identity.clone());
    let mut request = request.map(Body::from);
    let received = body_taps::install(&mut request);
    let result = match presigned::check_expires(request.uri().query()) {
        Err(refused) => Ok(error_response(&refused)),
        Ok(()) => service.call(request).await,
    };
    match result {
        Ok(mut response) => {
            if response.extensions_mut().remove::<PartialContent>().is_some() {
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            }
            if response.status().is_client_error() || response.status().is_server_error() {
                add_default_message(&mut response);
            }
            if refused_before_its_body(expects_continue, response.status()) {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            insert_request_id(&mut response, &id);
            let record = RequestRecord {
                id,
                peer,
                method,
                path,
                status: response.status().as_u16(),
                started,
                identity,
                received,
                metrics: Arc::clone(local.metrics.requests()),
            };
            Ok(response.map(|body| record.follow(body)))
        }
        Err(error) => {
            warn!(target: "coffer_server::request", request_id = %id, %peer, %method, %path,
                  ms = rounded_ms(started.elapsed()), ?error, "request aborted");
            Err(error)
        }
    }
}

fn insert_request_id(response: &mut Response<Body>, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-amz-request-id", value);
    }
}
