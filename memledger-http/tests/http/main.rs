//! memledger-http's endpoints, through the handler and through the standalone server, read by
//! the real clients where they are installed: `go tool pprof` over HTTP, headless Chromium on
//! the live page, `promtool check metrics` on `/metrics`, and a strict reading of the Prometheus
//! text format; and the `http_request` fuzz target's check over its kept inputs
//! (`fuzz_request`).

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use memledger_monitor::Sampler;

mod browser;
mod endpoints;
mod fuzz_request;
mod go;
mod promtool;
#[path = "../../../memledger/tests/regressions/replay.rs"]
mod replay;
mod server;

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

/// The scope of the known workload.
const SCOPE: &str = "http_test";

/// What every test shares: a sampler ticking every 50 ms over a known workload (16 MiB in
/// 8 KiB blocks from `http_known_site`, sampled every 64 KiB), and a server of its endpoints.
struct Fixture {
    sampler: Arc<Sampler>,
    server: memledger_http::Server,
    _blocks: Vec<Vec<u8>>,
}

#[inline(never)]
fn http_known_site() -> Vec<Vec<u8>> {
    (0..2048).map(|_| black_box(vec![7u8; 8 * 1024])).collect()
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        memledger::sampling::set_rate(64 * 1024).unwrap();
        let blocks = memledger::in_scope(SCOPE, http_known_site);
        let sampler = Arc::new(
            Sampler::builder()
                .interval(Duration::from_millis(50))
                .start()
                .unwrap(),
        );
        sampler.sample_now();
        let server = memledger_http::Endpoints::builder(Arc::clone(&sampler))
            .profile_interval(Duration::from_secs(1))
            .page_refresh(Duration::from_millis(300))
            .build()
            .server()
            .addr("127.0.0.1:0".parse().unwrap())
            .start()
            .unwrap();
        Fixture {
            sampler,
            server,
            _blocks: blocks,
        }
    })
}

/// An answer read off the wire.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Sends `request` as it is and reads the answer to its end.
fn send(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let body = raw[end + 4..].to_vec();
    if let Some(length) = head.lines().find_map(|l| {
        l.strip_prefix("Content-Length: ")
            .and_then(|v| v.parse::<usize>().ok())
    }) {
        assert_eq!(length, body.len(), "Content-Length of {head}");
    }
    Answer { status, head, body }
}

/// `GET path` from `addr`.
fn get(addr: SocketAddr, path: &str) -> Answer {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
    )
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

/// Whether `needle` is in `haystack`.
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A folder of its own under the target's scratch space, emptied first.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("memledger-http-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `http_request` fuzz target's check over its kept inputs: its seeds (`fuzz/seeds/http_request`) and
/// the inputs that once failed it (`memledger/tests/regressions/http_request`; every file there but
/// the README). A file that fails the check fails the test, by name.
#[test]
fn kept_fuzz_inputs_pass_the_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    replay::replay(&root, "http_request", fuzz_request::check);
}
