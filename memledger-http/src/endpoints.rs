//! The handlers: a request's method and address in, a status, a content type and a body out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{Response, StatusCode, Uri};
use memledger_monitor::{
    Event, HistoryEntry, Profile, ProfileValue, Recording, RecordingHeader, Sample, Sampler,
    Subscription,
};

use crate::route::{QueryLimits, Route, RouteError};

/// How often a profile is resolved at most, unless [`EndpointsBuilder::profile_interval`] sets
/// another: requests within it share one.
pub const DEFAULT_PROFILE_INTERVAL: Duration = Duration::from_secs(10);

/// How often the live page refetches itself, unless [`EndpointsBuilder::page_refresh`] sets
/// another.
pub const DEFAULT_PAGE_REFRESH: Duration = Duration::from_secs(2);

/// How many of the newest ticks the live page draws, unless [`EndpointsBuilder::page_samples`]
/// sets another: 5 minutes at the sampler's default interval of 1 s.
pub const DEFAULT_PAGE_SAMPLES: usize = 300;

/// How many `?seconds=` windows run at once, unless [`EndpointsBuilder::max_windows`] sets
/// another: each holds a thread for its window, so they are bounded below a server's workers.
pub const DEFAULT_MAX_WINDOWS: usize = 2;

/// The content type of pprof's gzipped `profile.proto`, as Go serves it.
const PPROF: &str = "application/octet-stream";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
/// The Prometheus text exposition format.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where the endpoints read the books' history from.
enum Source {
    Sampler(Arc<Sampler>),
    /// `memledger_monitor::monitor`, the process-wide sampler, whichever runs when asked.
    Monitor,
}

impl Source {
    fn latest(&self) -> Option<Arc<Sample>> {
        match self {
            Source::Sampler(s) => s.latest(),
            Source::Monitor => memledger_monitor::monitor::latest(),
        }
    }

    fn history_last(&self, n: usize) -> Vec<HistoryEntry> {
        match self {
            Source::Sampler(s) => s.history_last(n),
            Source::Monitor => {
                memledger_monitor::monitor::with(|s| s.history_last(n)).unwrap_or_default()
            }
        }
    }

    fn subscribe(&self) -> Option<Subscription> {
        match self {
            Source::Sampler(s) => Some(s.subscribe()),
            Source::Monitor => memledger_monitor::monitor::subscribe(),
        }
    }
}

/// Configures [`Endpoints`]: made by [`Endpoints::builder`] or [`Endpoints::monitor_builder`].
#[must_use]
pub struct EndpointsBuilder {
    source: Source,
    limits: QueryLimits,
    profile_interval: Duration,
    page_refresh: Duration,
    page_samples: usize,
    max_windows: usize,
}

impl EndpointsBuilder {
    /// Resolve a profile at most once per `interval` (default [`DEFAULT_PROFILE_INTERVAL`],
    /// 10 s): pprof requests and page renders within it share the profile. A `?seconds=` window
    /// resolves one more at its end if the shared one is older than the window.
    pub fn profile_interval(mut self, interval: Duration) -> Self {
        self.profile_interval = interval;
        self
    }

    /// The live page refetches itself every `refresh` (default [`DEFAULT_PAGE_REFRESH`], 2 s;
    /// at least 250 ms).
    pub fn page_refresh(mut self, refresh: Duration) -> Self {
        self.page_refresh = refresh;
        self
    }

    /// The live page draws the newest `samples` ticks (default [`DEFAULT_PAGE_SAMPLES`], at
    /// least 1). The endpoints keep them, about 1 to 4 KiB each with 16 scopes (booked to
    /// `<memledger>`).
    pub fn page_samples(mut self, samples: usize) -> Self {
        self.page_samples = samples.max(1);
        self
    }

    /// The longest `?seconds=` window (default [`DEFAULT_MAX_SECONDS`](crate::DEFAULT_MAX_SECONDS),
    /// 60 s); a longer one is answered 400.
    pub fn max_seconds(mut self, seconds: u64) -> Self {
        self.limits.max_seconds = seconds;
        self
    }

    /// The most `?seconds=` windows at once (default [`DEFAULT_MAX_WINDOWS`], 2); one more is
    /// answered 503 with `Retry-After`.
    pub fn max_windows(mut self, windows: usize) -> Self {
        self.max_windows = windows;
        self
    }

    /// The most history entries one answer holds, and the largest `?limit=` (default
    /// [`DEFAULT_MAX_HISTORY`](crate::DEFAULT_MAX_HISTORY), 10 000; at least 1).
    pub fn max_history(mut self, entries: usize) -> Self {
        self.limits.max_history = entries.max(1);
        self
    }

    /// The endpoints, subscribed to the sampler's ticks (for the live page) from now on.
    pub fn build(self) -> Endpoints {
        let _own = memledger::__private::own_scope();
        let subscription = self.source.subscribe();
        Endpoints {
            inner: Arc::new(Inner {
                source: self.source,
                limits: self.limits,
                profile_interval: self.profile_interval,
                page_refresh: self.page_refresh,
                page_samples: self.page_samples,
                max_windows: self.max_windows,
                profile: Mutex::new(None),
                page: Mutex::new(PageState {
                    subscription,
                    samples: VecDeque::new(),
                    first_profile: None,
                    rendered: None,
                }),
                windows: AtomicUsize::new(0),
                counts: Counts::default(),
            }),
        }
    }
}

/// The endpoints over one sampler: a function from a request to a response, for any server.
///
/// [`handle`](Endpoints::handle) takes an [`http::Request`] (of any body: the endpoints read
/// only the method and the address) and returns an [`http::Response`] with the whole body, so a
/// router of axum, hyper, actix or any other mounts it in a few lines; [`Server`](crate::Server)
/// serves it on a thread of its own for programs without one. Cloning is cheap and clones share
/// everything (the profile cache, the page's ticks).
///
/// Every answer is bounded: see the [crate documentation](crate) for what each endpoint costs.
/// `handle` never panics on a request; it blocks for a `?seconds=` window (up to
/// [`EndpointsBuilder::max_seconds`]) and while a profile is resolved, so an async server calls
/// it off its reactor (axum: `tokio::task::spawn_blocking`).
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
/// # fn main() -> Result<(), memledger_monitor::Error> {
/// use std::sync::Arc;
/// let sampler = Arc::new(memledger_monitor::Sampler::builder().start()?);
/// sampler.sample_now();
/// let endpoints = memledger_http::Endpoints::new(Arc::clone(&sampler));
/// let request = http::Request::get("/debug/memledger/status").body(()).unwrap();
/// let response = endpoints.handle(&request);
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// let missing = endpoints.handle(&http::Request::get("/nothing").body(()).unwrap());
/// assert_eq!(missing.status(), 404);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Endpoints {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    limits: QueryLimits,
    profile_interval: Duration,
    page_refresh: Duration,
    page_samples: usize,
    max_windows: usize,
    /// The shared profile, with its encodings made on demand.
    profile: Mutex<Option<Arc<Cached>>>,
    page: Mutex<PageState>,
    /// `?seconds=` windows running.
    windows: AtomicUsize,
    counts: Counts,
}

/// A resolved profile and what was made from it.
struct Cached {
    at: Instant,
    profile: Profile,
    heap: std::sync::OnceLock<Vec<u8>>,
    allocs: std::sync::OnceLock<Vec<u8>>,
}

impl Cached {
    fn new(profile: Profile) -> Cached {
        Cached {
            at: Instant::now(),
            profile,
            heap: std::sync::OnceLock::new(),
            allocs: std::sync::OnceLock::new(),
        }
    }
}

/// The live page's ticks and its last rendering.
struct PageState {
    subscription: Option<Subscription>,
    samples: VecDeque<Arc<Sample>>,
    /// The profile of the first render: the page's flame graphs of growth compare against it.
    first_profile: Option<Arc<Profile>>,
    /// The last page, with the tick and the profile it was drawn from.
    rendered: Option<(u64, Instant, Arc<Vec<u8>>)>,
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    profiles: AtomicU64,
    pages: AtomicU64,
}

/// Counters of the endpoints' own work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Requests answered, whatever their status.
    pub requests: u64,
    /// Profiles resolved (at most one per profile interval, plus one per `?seconds=` window
    /// whose end found the shared one too old).
    pub profiles_resolved: u64,
    /// Live pages drawn (requests that found no new tick since the last one share it).
    pub pages_rendered: u64,
}

/// A way to end the waits of `?seconds=` windows early: a stopping server's.
#[derive(Default)]
pub(crate) struct Cancel {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Cancel {
    /// Waits `d`; false if cancelled meanwhile.
    fn wait(&self, d: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, d, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        !*stopped
    }

    pub(crate) fn cancel(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the state whole, so a panic elsewhere does not spoil it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A response with `status`, `content_type` and `body`, never cached by the client.
pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A plain-text answer that says what went wrong and what to do.
pub(crate) fn text(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    reply(status, TEXT, format!("{message}\n").into_bytes())
}

impl Endpoints {
    /// The endpoints over `sampler`, with the defaults.
    pub fn new(sampler: Arc<Sampler>) -> Endpoints {
        Endpoints::builder(sampler).build()
    }

    /// A builder over `sampler`.
    pub fn builder(sampler: Arc<Sampler>) -> EndpointsBuilder {
        EndpointsBuilder::with_source(Source::Sampler(sampler))
    }

    /// A builder over the process-wide monitor (`memledger_monitor::monitor`): whichever
    /// sampler runs there when a request comes; without one, the endpoints that need a tick
    /// answer 503.
    pub fn monitor_builder() -> EndpointsBuilder {
        EndpointsBuilder::with_source(Source::Monitor)
    }

    /// Answers `request`: see the [crate documentation](crate) for the endpoints. Only the
    /// method and the address are read.
    pub fn handle<B>(&self, request: &http::Request<B>) -> Response<Vec<u8>> {
        self.respond(request.method().as_str(), request.uri(), None)
    }

    /// Counters of the endpoints' own work.
    pub fn stats(&self) -> EndpointStats {
        let c = &self.inner.counts;
        EndpointStats {
            requests: c.requests.load(Ordering::Relaxed),
            profiles_resolved: c.profiles.load(Ordering::Relaxed),
            pages_rendered: c.pages.load(Ordering::Relaxed),
        }
    }

    /// Answers a request, with `cancel` ending a `?seconds=` window early.
    pub(crate) fn respond(
        &self,
        method: &str,
        uri: &Uri,
        cancel: Option<&Cancel>,
    ) -> Response<Vec<u8>> {
        // What the endpoints allocate is the monitoring's, not the program's.
        let _own = memledger::__private::own_scope();
        self.inner.counts.requests.fetch_add(1, Ordering::Relaxed);
        match Route::parse(method, uri.path(), uri.query(), self.inner.limits) {
            Ok(route) => self.route(route, cancel),
            Err(e) => {
                let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
                let mut response = text(status, &e.to_string());
                if let RouteError::Method(_) = e {
                    response
                        .headers_mut()
                        .insert(ALLOW, HeaderValue::from_static("GET"));
                }
                response
            }
        }
    }

    fn route(&self, route: Route, cancel: Option<&Cancel>) -> Response<Vec<u8>> {
        match route {
            Route::Heap { seconds } => self.pprof(ProfileValue::LiveBytes, seconds, cancel),
            Route::Allocs { seconds } => self.pprof(ProfileValue::AllocatedBytes, seconds, cancel),
            Route::PprofIndex => text(StatusCode::OK, PPROF_INDEX),
            Route::Page => self.page(),
            Route::Snapshot => json(&memledger::snapshot()),
            Route::Status => match self.inner.source.latest() {
                Some(sample) => json(&sample.status),
                None => no_tick(),
            },
            Route::Reconciliation => match self.inner.source.latest() {
                Some(sample) => match &sample.reconciliation {
                    Ok(r) => json(r),
                    Err(e) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("the last tick could not read the process's memory: {e}"),
                    ),
                },
                None => no_tick(),
            },
            Route::History { since, limit } => {
                let limit = limit.unwrap_or(self.inner.limits.max_history);
                let mut entries = self.inner.source.history_last(limit);
                if let Some(since) = since {
                    let from = since.at(SystemTime::now());
                    entries.retain(|e| e.at >= from);
                }
                json(&entries)
            }
            Route::Metrics => match self.inner.source.latest() {
                Some(sample) => reply(
                    StatusCode::OK,
                    PROMETHEUS,
                    memledger_metrics::render_prometheus(&sample).into_bytes(),
                ),
                None => no_tick(),
            },
        }
    }

    /// The shared profile, resolved now if it is older than the interval (or than `after`).
    fn profile(&self, after: Option<Instant>) -> Arc<Cached> {
        let mut cached = lock(&self.inner.profile);
        if let Some(c) = cached.as_ref() {
            let fresh = c.at.elapsed() < self.inner.profile_interval;
            if fresh && after.is_none_or(|after| c.at >= after) {
                return Arc::clone(c);
            }
        }
        // Resolved under the lock: requests that come meanwhile wait for this one and share it.
        let c = Arc::new(Cached::new(memledger_monitor::profile()));
        self.inner.counts.profiles.fetch_add(1, Ordering::Relaxed);
        *cached = Some(Arc::clone(&c));
        c
    }

    fn pprof(
        &self,
        value: ProfileValue,
        seconds: Option<u64>,
        cancel: Option<&Cancel>,
    ) -> Response<Vec<u8>> {
        let (name, body) = match seconds {
            None => {
                let c = self.profile(None);
                let encoded = match value {
                    ProfileValue::AllocatedBytes => &c.allocs,
                    _ => &c.heap,
                };
                let body = encoded.get_or_init(|| c.profile.to_pprof_as(value)).clone();
                (
                    if encoded_is_allocs(value) {
                        "allocs"
                    } else {
                        "heap"
                    },
                    body,
                )
            }
            Some(seconds) => {
                let Some(_window) = Window::take(&self.inner) else {
                    let mut response = text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!(
                            "{} ?seconds= windows run already, the most at once: try again \
                             later",
                            self.inner.max_windows
                        ),
                    );
                    let retry = HeaderValue::from(seconds.max(1));
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, retry);
                    return response;
                };
                let base = self.profile(None);
                let window = Duration::from_secs(seconds);
                let waited = match cancel {
                    Some(cancel) => cancel.wait(window),
                    None => {
                        std::thread::sleep(window);
                        true
                    }
                };
                if !waited {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server is stopping: the window was cut short",
                    );
                }
                let end = self.profile(Some(base.at + window));
                let delta = end.profile.since(&base.profile);
                let shown = match value {
                    ProfileValue::AllocatedBytes => ProfileValue::AllocatedBytes,
                    _ => ProfileValue::GrowthBytes,
                };
                let name = if encoded_is_allocs(value) {
                    "allocs-delta"
                } else {
                    "heap-delta"
                };
                (name, delta.to_pprof_as(shown))
            }
        };
        let mut response = reply(StatusCode::OK, PPROF, body);
        let disposition = format!("attachment; filename=\"{name}.pb.gz\"");
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            response.headers_mut().insert(CONTENT_DISPOSITION, v);
        }
        response
    }

    /// The live page: the newest ticks drawn by the report, with the shared profile.
    fn page(&self) -> Response<Vec<u8>> {
        let profile = self.profile(None);
        let inner = &*self.inner;
        let mut state = lock(&inner.page);
        if state.subscription.is_none() {
            state.subscription = inner.source.subscribe();
        }
        // The subscription's queue holds the ticks since the last page (its newest, if more
        // came than it holds).
        let mut arrived = Vec::new();
        let mut ended = false;
        if let Some(subscription) = &state.subscription {
            loop {
                match subscription.receiver().try_recv() {
                    Ok(Event::Sample(sample)) => arrived.push(sample),
                    Ok(_) => {}
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        ended = true;
                        break;
                    }
                }
            }
        }
        if ended {
            // The sampler stopped (the monitor's may be restarted): subscribe again next time.
            state.subscription = None;
        }
        if arrived.is_empty() && state.samples.is_empty() {
            arrived.extend(inner.source.latest());
        }
        for sample in arrived {
            if state
                .samples
                .back()
                .is_none_or(|last| last.sequence < sample.sequence || last.at < sample.at)
            {
                state.samples.push_back(sample);
            }
        }
        while state.samples.len() > inner.page_samples {
            state.samples.pop_front();
        }
        let Some(last) = state.samples.back().cloned() else {
            return no_tick();
        };
        if let Some((sequence, at, page)) = &state.rendered {
            if *sequence == last.sequence && *at == profile.at {
                return reply(StatusCode::OK, HTML, page.to_vec());
            }
        }
        let resolved = Arc::new(profile.profile.clone());
        let first_profile = Arc::clone(state.first_profile.get_or_insert(resolved.clone()));
        let mut samples: Vec<Sample> = state.samples.iter().map(|s| Sample::clone(s)).collect();
        if let Some(first) = samples.first_mut() {
            first.profile = Some(first_profile);
        }
        if let Some(newest) = samples.last_mut() {
            newest.profile = Some(resolved);
        }
        let mut header = RecordingHeader::now();
        if let Some(first) = samples.first() {
            header.started_at = first.at.checked_sub(first.uptime).unwrap_or(first.at);
        }
        let recording = Recording { header, samples };
        let page = memledger_report::render_live_html(&recording, inner.page_refresh).into_bytes();
        inner.counts.pages.fetch_add(1, Ordering::Relaxed);
        let page = Arc::new(page);
        state.rendered = Some((last.sequence, profile.at, Arc::clone(&page)));
        reply(StatusCode::OK, HTML, page.to_vec())
    }
}

fn encoded_is_allocs(value: ProfileValue) -> bool {
    value == ProfileValue::AllocatedBytes
}

impl EndpointsBuilder {
    fn with_source(source: Source) -> EndpointsBuilder {
        EndpointsBuilder {
            source,
            limits: QueryLimits::default(),
            profile_interval: DEFAULT_PROFILE_INTERVAL,
            page_refresh: DEFAULT_PAGE_REFRESH,
            page_samples: DEFAULT_PAGE_SAMPLES,
            max_windows: DEFAULT_MAX_WINDOWS,
        }
    }
}

/// A `?seconds=` window's place among the few that may run at once.
struct Window<'a>(&'a AtomicUsize);

impl<'a> Window<'a> {
    fn take(inner: &'a Inner) -> Option<Window<'a>> {
        let taken = inner
            .windows
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < inner.max_windows).then_some(n + 1)
            });
        taken.ok().map(|_| Window(&inner.windows))
    }
}

impl Drop for Window<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Response<Vec<u8>> {
    match memledger_monitor::to_json(value) {
        Ok(body) => reply(StatusCode::OK, JSON, body.into_bytes()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}")),
    }
}

fn no_tick() -> Response<Vec<u8>> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the sampler has not ticked yet (or the process-wide monitor is not running): \
         try again after its first interval",
    )
}

const PPROF_INDEX: &str = "memledger's pprof endpoints (gzipped profile.proto, sampled \
allocation sites, the scope as the label `scope`):\n\
/debug/pprof/heap             live bytes by site (default sample type live_bytes)\n\
/debug/pprof/heap?seconds=N   growth by site over N seconds (growth_bytes)\n\
/debug/pprof/allocs           bytes allocated by site since the start (allocated_bytes)\n\
/debug/pprof/allocs?seconds=N bytes allocated by site over N seconds\n\
\n\
go tool pprof -top http://HOST:PORT/debug/pprof/heap\n";
