//! The page rendered from recordings: a real one, one with names that are markup, one with more
//! scopes than colours, empty and single-sample ones, and a long one that is thinned.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use memledger_monitor::{Recording, RecordingHeader, Sampler};
use memledger_report::render_html;

use crate::{between, escape, has_non_numbers, recorded, WORKLOAD_SCOPES};

#[test]
fn renders_a_real_recording() {
    let (_, recording) = recorded();
    let html = render_html(recording);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));

    // The chart: one area per scope that held bytes, the largest first.
    let mut active = HashSet::new();
    for sample in &recording.samples {
        for scope in sample.snapshot.scopes() {
            if scope.live_bytes > 0 {
                active.insert(scope.path.clone());
            }
        }
    }
    let chart = between(&html, "<svg id=\"chart\"", "</svg>");
    assert_eq!(
        chart.matches("<path class=\"area\"").count(),
        active.len().min(13),
        "one area per scope"
    );
    for scope in WORKLOAD_SCOPES {
        assert!(active.contains(scope), "{scope} held bytes");
        assert_eq!(
            chart.matches(&format!("data-scope=\"{scope}\"")).count(),
            1,
            "{scope} has its area"
        );
    }
    // The first series is the scope that held the most.
    let mut largest = ("", 0);
    for sample in &recording.samples {
        for scope in sample.snapshot.scopes() {
            if scope.live_bytes > largest.1 {
                largest = (scope.path.as_str(), scope.live_bytes);
            }
        }
    }
    assert!(chart.contains(&format!(
        "<path class=\"area\" data-series=\"0\" data-scope=\"{}\"",
        escape(largest.0)
    )));
    assert!(chart.contains("<path class=\"rss\""), "the RSS is drawn");
    assert!(chart.contains(" MiB</text>"), "byte ticks");
    assert!(chart.contains(" s</text>"), "time ticks");
    assert!(
        chart.contains("class=\"limit ") || html.contains("off the chart"),
        "the budget's limits are drawn or noted"
    );
    assert!(!has_non_numbers(&html));

    // The legend and the table.
    let legend = between(&html, "<ul class=\"legend\"", "</ul>");
    let table = between(&html, "<table class=\"scopes\">", "</table>");
    let last = recording.samples.last().unwrap();
    for scope in WORKLOAD_SCOPES {
        assert!(legend.contains(scope), "{scope} in the legend");
        assert!(table.contains(scope), "{scope} in the table");
    }
    for leak in &last.leaks {
        assert!(
            table.contains(&format!(
                "{} <span class=\"badge small leak\">",
                escape(&leak.path)
            )),
            "{} is marked as a suspected leak",
            leak.path
        );
    }
    assert!(table.contains("<th>growth (window)</th>"));

    // The status and the waterfall.
    assert!(html.contains(&format!("class=\"status level-{}\"", last.status.level)));
    let waterfall = between(&html, "<svg class=\"waterfall\"", "</svg>");
    for row in [
        "ledger (requested bytes)",
        "jemalloc allocated",
        "jemalloc active",
        "jemalloc resident",
        "process RSS",
        "size-class rounding",
    ] {
        assert!(waterfall.contains(row), "{row} in the waterfall");
    }

    // Self-contained: nothing is fetched from anywhere.
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains(" src=") && !html.contains(" href=") && !html.contains("url("));
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    // The error handler comes before any other script.
    let first_script = between(&html, "<script>", "</script>");
    assert!(first_script.contains("window.onerror"));
    assert!(html.contains("body.dataset.ready = \"1\""));

    // Where the memory was allocated: the sampler takes a profile when it first suspects a
    // leak, and the page draws the largest scopes of the last one, with the workload's frames.
    let sites = between(&html, "<section id=\"sites\">", "</section>");
    match recording
        .samples
        .iter()
        .rev()
        .find_map(|s| s.profile.as_deref())
    {
        Some(profile) => {
            for scope in profile.scopes.iter().filter(|s| s.live.bytes > 0).take(3) {
                let block = format!(
                    "<div class=\"flame-scope\" data-scope=\"{}\">",
                    escape(&scope.path)
                );
                assert!(sites.contains(&block), "{} has a flame graph", scope.path);
            }
            if profile.scopes.iter().any(|s| s.live.bytes > 0) {
                assert!(sites.contains("<svg class=\"flame\""));
                assert!(sites.contains("report::recorded"), "the workload's frames");
            }
        }
        None => assert!(sites.contains("No sample in this recording carries a profile")),
    }
}

#[test]
fn scope_names_are_escaped() {
    // After the workload's recording, which samples the whole process.
    recorded();
    let name = "<img src=x onerror=alert(1)>&\"'";
    let sampler = Sampler::builder().start().unwrap();
    let _g = memledger::enter(name);
    let held = vec![7u8; 96 << 10];
    let sample = sampler.sample_now();
    drop(_g);
    let recording = Recording {
        header: RecordingHeader {
            program: Some("<script>alert(2)</script>".to_string()),
            ..RecordingHeader::now()
        },
        samples: vec![sample.as_ref().clone()],
    };
    let html = render_html(&recording);
    assert!(!html.contains("<img"), "the name is not markup");
    assert!(!html.contains("<script>alert"), "the program is not markup");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#39;"));
    assert!(html.contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
    // The figures for the script hold the name as JSON that cannot close the script element.
    let data = between(&html, "id=\"chart-data\">", "</script>");
    assert!(data.contains(r#"\u003cimg src=x onerror=alert(1)\u003e\u0026\"'"#));
    drop(held);
    sampler.stop();
}

#[test]
fn more_than_twelve_scopes_share_other() {
    // After the workload's recording, which samples the whole process.
    recorded();
    let sampler = Sampler::builder().start().unwrap();
    let held: Vec<Vec<u8>> = (0..15)
        .map(|i| memledger::in_scope(&format!("many/s{i:02}"), || vec![1u8; (i + 1) << 16]))
        .collect();
    let sample = sampler.sample_now();
    let recording = Recording {
        header: RecordingHeader::now(),
        samples: vec![sample.as_ref().clone()],
    };
    let html = render_html(&recording);
    let chart = between(&html, "<svg id=\"chart\"", "</svg>");
    assert_eq!(chart.matches("<path class=\"area\"").count(), 13);
    assert!(
        chart.contains("data-scope=\"many/s14\""),
        "the largest has its own colour"
    );
    assert!(html.contains("other ("));
    drop(held);
    sampler.stop();
}

#[test]
fn empty_and_single_sample_recordings_render() {
    // After the workload's recording, which samples the whole process.
    recorded();
    let header_only = Recording {
        header: RecordingHeader::now(),
        samples: Vec::new(),
    };
    let html = render_html(&header_only);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("This recording has no samples"));
    assert!(html.contains("body.dataset.ready = \"1\""));

    let sampler = Sampler::builder().start().unwrap();
    let held = memledger::in_scope("single", || vec![1u8; 1 << 20]);
    let sample = sampler.sample_now().as_ref().clone();
    sampler.stop();
    // One sample, and two samples at the same moment: nothing to divide time by.
    for samples in [vec![sample.clone()], vec![sample.clone(), sample.clone()]] {
        let recording = Recording {
            header: RecordingHeader::now(),
            samples,
        };
        let html = render_html(&recording);
        assert!(html.contains("data-scope=\"single\""));
        assert!(!has_non_numbers(&html), "{html}");
    }
    // A sample whose memory could not be read: no RSS line, no waterfall.
    let mut unread = sample;
    unread.reconciliation = Err(memledger_monitor::ReadError::ProcessGone);
    let html = render_html(&Recording {
        header: RecordingHeader::now(),
        samples: vec![unread],
    });
    assert!(!html.contains("<path class=\"rss\""));
    assert!(html.contains("no reconciliation to show"));
    assert!(html.contains("the process is gone"));
    drop(held);
}

#[test]
fn long_recordings_are_thinned() {
    // After the workload's recording, which samples the whole process.
    recorded();
    let sampler = Sampler::builder().start().unwrap();
    let held = memledger::in_scope("long", || vec![1u8; 1 << 20]);
    let sample = sampler.sample_now().as_ref().clone();
    sampler.stop();
    let samples: Vec<_> = (0..5000u64)
        .map(|i| {
            let mut s = sample.clone();
            s.sequence = i;
            s.uptime = Duration::from_secs(i);
            s
        })
        .collect();
    let started = Instant::now();
    let html = render_html(&Recording {
        header: RecordingHeader::now(),
        samples,
    });
    let took = started.elapsed();
    assert!(html.contains("Drawn from 1200 of the 5000 samples"));
    let area = between(&html, "<path class=\"area\" data-series=\"0\"", "</path>");
    assert_eq!(
        area.matches('L').count(),
        2 * 1200 - 1,
        "1200 points up and back"
    );
    assert!(html.contains(">1 h</text>"), "time ticks in hours");
    assert!(took < Duration::from_secs(5), "rendering took {took:?}");
    drop(held);
}

#[test]
fn a_live_page_is_the_recording_page_with_a_refetch() {
    let (_, recording) = recorded();
    let still = render_html(recording);
    let live = memledger_report::render_live_html(recording, Duration::from_secs(3));
    assert!(
        !still.contains("connect-src"),
        "a recording's page fetches nothing"
    );
    assert!(!still.contains("__memledgerRefreshMs"));
    assert!(live.contains(
        "content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
         connect-src 'self'\""
    ));
    assert!(live.contains("window.__memledgerRefreshMs = 3000;"));
    assert!(live.contains("<title>memledger live: "));
    assert!(live.contains("refreshed every 3.0 s"));
    // The content between the header and the footer is the same page.
    let body = |html: &str| between(html, "</header>", "<footer>").to_string();
    assert_eq!(body(&live), body(&still));
    // Refreshing faster than a quarter of a second is not asked of the program.
    let fast = memledger_report::render_live_html(recording, Duration::ZERO);
    assert!(fast.contains("window.__memledgerRefreshMs = 250;"));
}
