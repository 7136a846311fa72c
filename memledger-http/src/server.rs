//! The standalone server: one accepting thread and a few workers over `std::net`, one request
//! per connection, every wait bounded.

use core::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TrySendError};
use http::{Response, StatusCode, Uri};

use crate::endpoints::{text, Cancel, Endpoints};

/// Worker threads, unless [`ServerBuilder::workers`] sets another.
pub const DEFAULT_WORKERS: usize = 4;

/// Connections accepted and waiting for a worker, unless [`ServerBuilder::queue`] sets
/// another; one more is answered 503 at once.
pub const DEFAULT_QUEUE: usize = 16;

/// The time a client has to send its whole request head, unless [`ServerBuilder::read_timeout`]
/// sets another; past it the connection gets 408 and is closed.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The time a response may take to be written, unless [`ServerBuilder::write_timeout`] sets
/// another; past it the connection is closed.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head (request line and headers) read; a larger one gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The most headers a request may carry; more get 431.
pub const MAX_HEADERS: usize = 32;

/// Why a server did not start.
#[derive(Debug)]
pub enum Error {
    /// The address is not a loopback address and [`ServerBuilder::allow_remote`] was not called.
    NotLoopback(SocketAddr),
    /// A bearer token that cannot be sent in a header (empty, or not visible ASCII).
    InvalidToken,
    /// The address could not be bound.
    Bind(SocketAddr, io::Error),
    /// A thread could not be started.
    Spawn(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotLoopback(addr) => write!(
                f,
                "{addr} is not a loopback address: serving it shows function, scope and file \
                 names and memory figures to the network; call ServerBuilder::allow_remote() \
                 to do so, with a bearer_token()"
            ),
            Error::InvalidToken => f.write_str(
                "a bearer token must be visible ASCII characters, at least one, without spaces",
            ),
            Error::Bind(addr, e) => write!(f, "could not bind {addr}: {e}"),
            Error::Spawn(e) => write!(f, "could not start the server's threads: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind(_, e) | Error::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// Configures a [`Server`]: made by [`Endpoints::server`](crate::Endpoints::server) or
/// [`serve_builder`](crate::serve_builder).
#[must_use]
pub struct ServerBuilder {
    endpoints: Endpoints,
    addr: SocketAddr,
    allow_remote: bool,
    token: Option<String>,
    workers: usize,
    queue: usize,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl Endpoints {
    /// A builder of a server of these endpoints on `127.0.0.1:6060` (`addr` sets another).
    pub fn server(self) -> ServerBuilder {
        ServerBuilder {
            endpoints: self,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 6060)),
            allow_remote: false,
            token: None,
            workers: DEFAULT_WORKERS,
            queue: DEFAULT_QUEUE,
            read_timeout: DEFAULT_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

impl ServerBuilder {
    /// Bind `addr` (port 0 for any free port: [`Server::local_addr`] says which). A
    /// non-loopback address also needs [`allow_remote`](Self::allow_remote).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Allow an address other than loopback. The endpoints show function, file and scope
    /// names and memory figures: set a [`bearer_token`](Self::bearer_token) too, or keep the
    /// port behind a firewall.
    pub fn allow_remote(mut self) -> Self {
        self.allow_remote = true;
        self
    }

    /// Answer 401 to any request without `Authorization: Bearer <token>`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Worker threads, each answering one connection at a time (default [`DEFAULT_WORKERS`],
    /// at least 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Accepted connections waiting for a worker (default [`DEFAULT_QUEUE`], at least 1).
    pub fn queue(mut self, connections: usize) -> Self {
        self.queue = connections.max(1);
        self
    }

    /// The time a client has to send its request head (default [`DEFAULT_READ_TIMEOUT`]).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The time a response may take to be written (default [`DEFAULT_WRITE_TIMEOUT`]).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Binds the address and starts the accepting thread and the workers.
    pub fn start(self) -> Result<Server, Error> {
        if !self.addr.ip().is_loopback() && !self.allow_remote {
            return Err(Error::NotLoopback(self.addr));
        }
        if let Some(token) = &self.token {
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::InvalidToken);
            }
        }
        let _own = memledger::__private::own_scope();
        let listener = TcpListener::bind(self.addr).map_err(|e| Error::Bind(self.addr, e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Bind(self.addr, e))?;
        let shared = Arc::new(Shared {
            endpoints: self.endpoints,
            expected: self.token.map(|t| format!("Bearer {t}").into_bytes()),
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
            stopping: AtomicBool::new(false),
            cancel: Cancel::default(),
            open: (0..self.workers).map(|_| Mutex::new(None)).collect(),
            refused: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let (sender, receiver) = crossbeam_channel::bounded::<TcpStream>(self.queue);
        let mut threads = Vec::with_capacity(self.workers + 1);
        let mut server = Server {
            shared: Arc::clone(&shared),
            local,
            threads: Vec::new(),
            pid: std::process::id(),
        };
        for worker in 0..self.workers {
            let shared = Arc::clone(&shared);
            let receiver: Receiver<TcpStream> = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("memledger-http-{worker}"))
                .spawn(move || {
                    let _own = memledger::__private::own_scope();
                    while let Ok(stream) = receiver.recv() {
                        if shared.stopping.load(Ordering::Acquire) {
                            continue; // dropped unanswered: the server is going away
                        }
                        shared.serve_connection(worker, stream);
                    }
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    server.threads = threads;
                    drop(sender);
                    return Err(Error::Spawn(e)); // `server` drops: the workers end
                }
            }
        }
        let accept_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("memledger-http-accept".into())
            .spawn(move || {
                let _own = memledger::__private::own_scope();
                accept(&accept_shared, &listener, sender);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                server.threads = threads;
                return Err(Error::Spawn(e));
            }
        }
        server.threads = threads;
        Ok(server)
    }
}

/// What the threads share.
struct Shared {
    endpoints: Endpoints,
    /// The whole `Authorization` value expected, if a token is set.
    expected: Option<Vec<u8>>,
    read_timeout: Duration,
    write_timeout: Duration,
    stopping: AtomicBool,
    cancel: Cancel,
    /// Each worker's connection, so that stopping can shut a slow one down.
    open: Vec<Mutex<Option<TcpStream>>>,
    refused: AtomicU64,
    connections: AtomicU64,
}

/// Accepts until the server stops, handing connections to the workers, and answering 503 at
/// once when all of them are busy and the queue is full.
fn accept(shared: &Shared, listener: &TcpListener, sender: crossbeam_channel::Sender<TcpStream>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            break;
        }
        let Ok(stream) = stream else {
            // Out of descriptors, a connection reset before it was accepted: keep serving
            // the others, after a pause that keeps a persistent error from spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        match sender.try_send(stream) {
            Ok(()) => {}
            Err(TrySendError::Full(mut stream)) | Err(TrySendError::Disconnected(mut stream)) => {
                shared.refused.fetch_add(1, Ordering::Relaxed);
                // A short, fixed answer; the client's buffer takes it without waiting.
                let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                let response = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "every worker is busy and the queue is full: try again shortly",
                );
                let _ = write_response(&mut stream, &response, &[("Retry-After", "1")]);
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Shared {
    fn serve_connection(&self, worker: usize, mut stream: TcpStream) {
        if let Some(slot) = self.open.get(worker) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = stream.try_clone().ok();
        }
        let _ = stream.set_write_timeout(Some(self.write_timeout));
        let head = read_head(&mut stream, self.read_timeout);
        // Past its head, a request is answered even while the server stops (a `?seconds=`
        // window is ended by the cancel instead), so it is no longer one to cut off.
        if let Some(slot) = self.open.get(worker) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        let response = match head {
            Ok(head) => self.answer(&head),
            Err(HeadError::Closed) => None,
            Err(e) => Some(e.response()),
        };
        if let Some(response) = response {
            let _ = write_response(&mut stream, &response, &[]);
        }
        let _ = stream.shutdown(Shutdown::Write);
    }

    fn answer(&self, head: &[u8]) -> Option<Response<Vec<u8>>> {
        let request = match parse_head(head) {
            Ok(request) => request,
            Err(e) => return Some(e.response()),
        };
        if let Some(expected) = &self.expected {
            let given = request.authorization.as_deref().unwrap_or(&[]);
            if !same(given, expected) {
                let mut response = text(
                    StatusCode::UNAUTHORIZED,
                    "this server asks for Authorization: Bearer <token>",
                );
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
                return Some(response);
            }
        }
        Some(
            self.endpoints
                .respond(&request.method, &request.uri, Some(&self.cancel)),
        )
    }
}

/// Compares in time that depends on the lengths only, so that a token is not guessed byte by
/// byte from the answers' timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request head was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The client closed the connection, or failed, before sending a whole head: no answer.
    Closed,
    /// Not sent within the read timeout (408).
    Timeout,
    /// Longer than [`MAX_HEAD_BYTES`], or more than [`MAX_HEADERS`] headers (431).
    TooLarge,
    /// Not HTTP/1.x, or a target that is not an absolute path (400).
    Malformed(String),
    /// The request carries a body (the endpoints take none) (413).
    Body,
}

impl HeadError {
    fn response(&self) -> Response<Vec<u8>> {
        match self {
            HeadError::Closed => text(StatusCode::BAD_REQUEST, "the connection closed early"),
            HeadError::Timeout => text(
                StatusCode::REQUEST_TIMEOUT,
                "the request head did not arrive in time",
            ),
            HeadError::TooLarge => text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &format!(
                    "the request head is over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers"
                ),
            ),
            HeadError::Malformed(why) => text(
                StatusCode::BAD_REQUEST,
                &format!("malformed request: {why}"),
            ),
            HeadError::Body => text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the endpoints take no request body",
            ),
        }
    }
}

/// Reads a request head (through the blank line) within `timeout` in all, at most
/// [`MAX_HEAD_BYTES`]: a client that sends nothing, or a byte at a time, is cut off.
fn read_head(stream: &mut TcpStream, timeout: Duration) -> Result<Vec<u8>, HeadError> {
    let deadline = Instant::now() + timeout;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Closed)?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(HeadError::Closed),
        };
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find_end(&head[searched_from..]) {
            head.truncate(searched_from + end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

/// The length through the first blank line (`\r\n\r\n`), if there is one.
fn find_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// A request head as the server reads it.
#[derive(Debug)]
pub struct Head {
    /// The method.
    pub method: String,
    /// The target, an absolute path with its query.
    pub uri: Uri,
    /// The `Authorization` header's value, if there is one.
    pub authorization: Option<Vec<u8>>,
}

/// Parses a whole request head (through its blank line): HTTP/1.x only (`httparse`), an
/// origin-form target, no body. Never panics.
pub fn parse_head(head: &[u8]) -> Result<Head, HeadError> {
    if head.len() > MAX_HEAD_BYTES + 4 {
        return Err(HeadError::TooLarge);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Malformed("the head is cut short".into()))
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    }
    let method = request.method.unwrap_or("").to_string();
    let path = request.path.unwrap_or("");
    if !path.starts_with('/') {
        return Err(HeadError::Malformed(
            "the target must be an absolute path (/debug/pprof/heap)".into(),
        ));
    }
    let uri: Uri = path
        .parse()
        .map_err(|e: http::uri::InvalidUri| HeadError::Malformed(e.to_string()))?;
    let mut authorization = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(header.value.to_vec());
        } else if header.name.eq_ignore_ascii_case("transfer-encoding")
            || (header.name.eq_ignore_ascii_case("content-length")
                && header.value.iter().any(|&b| b != b'0' && b != b' '))
        {
            return Err(HeadError::Body);
        }
    }
    Ok(Head {
        method,
        uri,
        authorization,
    })
}

/// Writes `response` with `Content-Length` and `Connection: close`, plus `extra` headers.
fn write_response(
    stream: &mut TcpStream,
    response: &Response<Vec<u8>>,
    extra: &[(&str, &str)],
) -> io::Result<()> {
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str() {
            head.push_str(name.as_str());
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
    }
    for (name, value) in extra {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body().len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(response.body())?;
    stream.flush()
}

/// A running server. Stops, joining its threads, on [`stop`](Server::stop) or when dropped.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::io::{Read, Write};
/// use std::sync::Arc;
/// let sampler = Arc::new(memledger_monitor::Sampler::builder().start()?);
/// sampler.sample_now();
/// let server = memledger_http::serve(sampler, "127.0.0.1:0".parse()?)?;
/// let mut stream = std::net::TcpStream::connect(server.local_addr())?;
/// stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
/// let mut answer = String::new();
/// stream.read_to_string(&mut answer)?;
/// assert!(answer.starts_with("HTTP/1.1 200 OK"));
/// assert!(answer.contains("memledger_budget_level "));
/// server.stop();
/// # Ok(())
/// # }
/// ```
pub struct Server {
    shared: Arc<Shared>,
    local: SocketAddr,
    threads: Vec<JoinHandle<()>>,
    /// The process that started the threads: a child of `fork` has none of them.
    pid: u32,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Counters of a server's connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections answered 503 at once: every worker busy and the queue full.
    pub refused: u64,
}

impl Server {
    /// The address bound (with the port chosen, if it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The endpoints served.
    pub fn endpoints(&self) -> &Endpoints {
        &self.shared.endpoints
    }

    /// Counters of the server's connections.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            connections: self.shared.connections.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting, cuts off the connections being served (a `?seconds=` window answers
    /// 503) and joins every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.cancel.cancel();
        for slot in &self.shared.open {
            if let Some(stream) = slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        // The accepting thread waits in `accept`: a connection of our own wakes it to see the
        // flag (to loopback where the server listens on every address).
        let mut wake = self.local;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        for thread in self.threads.drain(..) {
            let _ = memledger::__private::join_unless_forked(thread, self.pid);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}
