//! The metrics publisher: a tick published through the `metrics` facade, served by the
//! Prometheus exporter over a real socket, and rendered from a recorder of the test's own.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

/// A port free on the loopback address a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// The body of `GET /metrics`, or why it could not be read.
fn scrape(port: u16) -> Result<String, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {response:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("not a 200 response: {head}"));
    }
    Ok(body.to_string())
}

/// The value of the exposition line that starts with `series ` (name and labels), if any.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Checks what every rendering of a published sample holds: `live` bytes in `scope`.
fn check_exposition(text: &str, scope: &str, live: u64) {
    for line in [
        "# TYPE memledger_scope_live_bytes gauge",
        "# TYPE memledger_scope_allocations_total counter",
        "# TYPE memledger_budget_level gauge",
        "# HELP memledger_scope_live_bytes Bytes of the scope's live blocks, as requested.",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let series = format!("memledger_scope_live_bytes{{scope=\"{scope}\"}}");
    assert_eq!(
        value(text, &series),
        Some(live as f64),
        "{series} in\n{text}"
    );
    let allocations = format!("memledger_scope_allocations_total{{scope=\"{scope}\"}}");
    assert_eq!(
        value(text, &allocations),
        Some(1.0),
        "{allocations} in\n{text}"
    );
    let peak = format!("memledger_scope_peak_bytes{{scope=\"{scope}\"}}");
    assert!(value(text, &peak).unwrap() >= live as f64);
    // The unscoped root has a label value Prometheus does not read as absent.
    assert!(value(text, "memledger_scope_live_bytes{scope=\"<unscoped>\"}").is_some());
    assert!(
        !text.contains("scope=\"\""),
        "an empty scope label in\n{text}"
    );

    let level = value(text, "memledger_budget_level").expect("the budget level");
    assert!((0.0..=3.0).contains(&level));
    for layer in ["ledger", "allocated", "active", "resident", "rss"] {
        let series = format!("memledger_memory_bytes{{layer=\"{layer}\"}}");
        let bytes = value(text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(bytes > 0.0, "{series} is {bytes}");
    }
    let ledger = value(text, "memledger_memory_bytes{layer=\"ledger\"}").unwrap();
    assert!(ledger >= live as f64);
    assert!(value(text, "memledger_gap_bytes{kind=\"fragmentation\"}").is_some());
    for limit in ["total", "soft", "prompt", "hard"] {
        let series = format!("memledger_budget_bytes{{limit=\"{limit}\"}}");
        assert!(value(text, &series).unwrap() > 0.0, "{series}");
    }
    assert!(value(text, "memledger_budget_current_bytes").unwrap() > 0.0);
    let leak = format!("memledger_scope_suspected_leak{{scope=\"{scope}\"}}");
    assert_eq!(value(text, &leak), Some(0.0));
    let growth = format!("memledger_scope_growth_bytes_per_second{{scope=\"{scope}\"}}");
    assert!(value(text, &growth).is_some());
}

#[test]
fn exporter_serves_a_published_sample_over_http() {
    let port = free_port();
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(([127, 0, 0, 1], port))
        .install()
        .expect("install the Prometheus exporter");

    let sampler = memledger_monitor::Sampler::builder()
        .interval(Duration::from_secs(3600))
        .scope_budget(
            "exported",
            memledger_monitor::ScopeBudget::new(100_000, 1 << 30).unwrap(),
        )
        .start()
        .unwrap();
    let publisher = memledger_metrics::Publisher::start(&sampler).unwrap();
    assert!(publisher.is_running());
    let exported = memledger::in_scope("exported", || vec![0u8; 123_456]);

    let before = publisher.published();
    sampler.sample_now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.published() == before {
        assert!(Instant::now() < deadline, "the sample was never published");
        std::thread::sleep(Duration::from_millis(5));
    }

    // The listener is bound by `install`, and serves as soon as its thread runs.
    let mut last = Err(String::new());
    for _ in 0..50 {
        last = scrape(port);
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = last.unwrap_or_else(|e| panic!("could not scrape port {port}: {e}"));
    check_exposition(&text, "exported", 123_456);
    assert!(
        text.lines()
            .any(|l| l == "memledger_scope_live_bytes{scope=\"exported\"} 123456"),
        "{text}"
    );
    // Above its soft limit, below its hard one: caution.
    assert_eq!(
        value(&text, "memledger_scope_budget_level{scope=\"exported\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "memledger_scope_budget_bytes{scope=\"exported\",limit=\"soft\"}"
        ),
        Some(100_000.0)
    );

    // The publisher ends with its sampler.
    sampler.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.is_running() {
        assert!(
            Instant::now() < deadline,
            "the publisher outlived its sampler"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    publisher.stop();
    drop(exported);
}

/// What a Prometheus recorder renders once `describe` and `publish` recorded `sample` in it.
fn describe_and_publish(
    recorder: &metrics_exporter_prometheus::PrometheusRecorder,
    sample: &memledger_monitor::Sample,
) -> String {
    metrics::with_local_recorder(recorder, || {
        memledger_metrics::describe();
        memledger_metrics::publish(sample);
    });
    recorder.handle().render()
}

#[test]
fn publish_renders_through_a_local_recorder() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let local = memledger::in_scope("rendered_locally", || vec![1u32; 1000]);
    let sampler = memledger_monitor::Sampler::builder()
        .interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    let sample = sampler.sample_now();
    let text = describe_and_publish(&recorder, &sample);
    check_exposition(&text, "rendered_locally", 4000);
    assert!(text.contains("# HELP memledger_memory_bytes "));
    // No budget for the scope, no budget series.
    assert!(!text.contains("memledger_scope_budget_level{scope=\"rendered_locally\"}"));

    // A later tick moves the gauges and the counters.
    let more = memledger::in_scope("rendered_locally", || vec![2u8; 500]);
    let sample = sampler.sample_now();
    metrics::with_local_recorder(&recorder, || memledger_metrics::publish(&sample));
    let text = recorder.handle().render();
    assert_eq!(
        value(
            &text,
            "memledger_scope_live_bytes{scope=\"rendered_locally\"}"
        ),
        Some(4500.0)
    );
    assert_eq!(
        value(
            &text,
            "memledger_scope_allocations_total{scope=\"rendered_locally\"}"
        ),
        Some(2.0)
    );
    sampler.stop();
    drop((local, more));
}

/// The series of an exposition text, by name and sorted labels, with their values; and its
/// `# HELP` and `# TYPE` lines.
fn exposition(text: &str) -> (HashMap<String, f64>, Vec<String>) {
    let mut series = HashMap::new();
    let mut meta = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            meta.push(line.to_string());
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("a series and its value");
        let key = match key.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                format!("{name}{{{}}}", labels.join(","))
            }
            None => key.to_string(),
        };
        let value: f64 = value.parse().expect("a number");
        assert!(series.insert(key, value).is_none(), "{line:?} twice");
    }
    meta.sort();
    (series, meta)
}

#[test]
fn render_prometheus_writes_what_publish_records() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let local = memledger::in_scope("rendered_twice", || vec![1u64; 1000]);
    let sampler = memledger_monitor::Sampler::builder()
        .interval(Duration::from_secs(3600))
        .scope_budget(
            "rendered_twice",
            memledger_monitor::ScopeBudget::new(1 << 20, 1 << 30).unwrap(),
        )
        .start()
        .unwrap();
    let sample = sampler.sample_now();
    let theirs = describe_and_publish(&recorder, &sample);
    let ours = memledger_metrics::render_prometheus(&sample);
    check_exposition(&ours, "rendered_twice", 8000);
    let (their_series, their_meta) = exposition(&theirs);
    let (our_series, our_meta) = exposition(&ours);
    assert_eq!(our_meta, their_meta, "the same HELP and TYPE lines");
    assert_eq!(our_series, their_series, "the same series and values");
    assert!(our_series.len() > 20);
    drop(local);
}
