//! The standalone server: loopback unless told, the bearer token, and every bound on a
//! client: silence, size, malformed heads, bodies, too many connections, and a stop that does
//! not wait for any of them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memledger_http::{Endpoints, Error};

use crate::{fixture, get, read_answer, send};

fn endpoints() -> Endpoints {
    Endpoints::new(Arc::clone(&fixture().sampler))
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn only_loopback_unless_allowed() {
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let refused = endpoints().server().addr(any).start().unwrap_err();
    assert!(matches!(refused, Error::NotLoopback(_)), "{refused}");
    assert!(refused.to_string().contains("allow_remote"));
    let invalid = endpoints()
        .server()
        .addr(loopback())
        .bearer_token("a b")
        .start();
    assert!(matches!(invalid, Err(Error::InvalidToken)));
    let server = endpoints()
        .server()
        .addr(any)
        .allow_remote()
        .bearer_token("s3cret")
        .start()
        .unwrap();
    let port = server.local_addr().port();
    let at: SocketAddr = ([127, 0, 0, 1], port).into();
    let denied = get(at, "/metrics");
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate").as_deref(), Some("Bearer"));
    let wrong = send(
        at,
        b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cre\r\n\r\n",
    );
    assert_eq!(wrong.status, 401);
    let right = send(
        at,
        b"GET /metrics HTTP/1.1\r\nauthorization: Bearer s3cret\r\n\r\n",
    );
    assert_eq!(right.status, 200);
    server.stop();
    assert!(
        TcpStream::connect(at).is_err(),
        "nothing listens once stopped"
    );
}

#[test]
fn bad_requests_get_a_status_never_a_hang() {
    let server = endpoints()
        .server()
        .addr(loopback())
        .read_timeout(Duration::from_millis(500))
        .start()
        .unwrap();
    let addr = server.local_addr();

    // A client that connects and sends nothing is cut off at the read timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let answer = read_answer(&mut silent);
    assert_eq!(answer.status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));

    // One that sends a byte at a time is held to the same bound in all.
    let started = Instant::now();
    let mut dripping = TcpStream::connect(addr).unwrap();
    for b in b"GET /metrics HTTP/1.1\r\nX: " {
        if dripping.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let answer = read_answer(&mut dripping);
    assert_eq!(answer.status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));

    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(send(addr, huge.as_bytes()).status, 431);
    let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
    let many = format!("GET /metrics HTTP/1.1\r\n{many}\r\n");
    assert_eq!(send(addr, many.as_bytes()).status, 431);
    for malformed in [
        &b"\x00\x01\x02\r\n\r\n"[..],
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"GET http://evil/metrics HTTP/1.1\r\n\r\n",
        b"GET /met rics HTTP/1.1\r\n\r\n",
    ] {
        let answer = send(addr, malformed);
        assert_eq!(answer.status, 400, "{:?}: {}", malformed, answer.text());
    }
    let body = b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(send(addr, body).status, 413);
    let chunked = b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(send(addr, chunked).status, 413);
    // A client gone before its head is whole gets nothing and harms nothing.
    drop(TcpStream::connect(addr).unwrap());
    assert_eq!(get(addr, "/metrics").status, 200);
    server.stop();
}

#[test]
fn connections_past_the_bound_are_refused_at_once() {
    let server = endpoints()
        .server()
        .addr(loopback())
        .workers(1)
        .queue(1)
        .read_timeout(Duration::from_secs(3))
        .start()
        .unwrap();
    let addr = server.local_addr();
    // One silent client holds the worker, one waits in the queue: the third is refused.
    let _held = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _queued = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let refused = get(addr, "/metrics");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(server.stats().refused >= 1);
    server.stop();
}

#[test]
fn stopping_cuts_off_slow_clients_and_windows_and_joins() {
    let server = endpoints()
        .server()
        .addr(loopback())
        .read_timeout(Duration::from_secs(30))
        .start()
        .unwrap();
    let addr = server.local_addr();
    let mut silent = TcpStream::connect(addr).unwrap();
    let window = std::thread::spawn(move || get(addr, "/debug/pprof/heap?seconds=60"));
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    drop(server); // stops and joins
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        started.elapsed()
    );
    assert_eq!(
        window.join().unwrap().status,
        503,
        "the window was cut short"
    );
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens once stopped"
    );
}

#[test]
fn windows_past_the_bound_are_refused() {
    let server = Endpoints::builder(Arc::clone(&fixture().sampler))
        .max_windows(1)
        .build()
        .server()
        .addr(loopback())
        .start()
        .unwrap();
    let addr = server.local_addr();
    let first = std::thread::spawn(move || get(addr, "/debug/pprof/allocs?seconds=2"));
    std::thread::sleep(Duration::from_millis(500));
    let second = get(addr, "/debug/pprof/allocs?seconds=2");
    assert_eq!(second.status, 503, "{}", second.text());
    assert_eq!(second.header("retry-after").as_deref(), Some("2"));
    assert_eq!(first.join().unwrap().status, 200);
    server.stop();
}
