//! The HTML report: the `memledger-report` command on good and bad recordings, the page rendered
//! from a real recording, and that page in a headless browser (where Chromium is installed).

#[global_allocator]
static GLOBAL: memledger::Ledger<tikv_jemallocator::Jemalloc> =
    memledger::Ledger::new(tikv_jemallocator::Jemalloc);

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use memledger_monitor::{
    Budget, LeakDetection, Limit, ProcessMemory, Recording, RecordingHeader, RecordingWriter,
    Sampler,
};
use memledger_report::render_html;

/// The scopes the recorded workload books to.
const WORKLOAD_SCOPES: [&str; 4] = [
    "project_indexes",
    "global_index",
    "query_cache",
    "project_indexes/parse",
];

/// The colour of the chart's first series (the scope with the most live bytes).
const FIRST_SERIES_COLOR: [u8; 3] = [0x4e, 0x79, 0xa7];

/// Every series colour of the chart.
const SERIES_COLORS: [[u8; 3]; 12] = [
    [0x4e, 0x79, 0xa7],
    [0xf2, 0x8e, 0x2b],
    [0xe1, 0x57, 0x59],
    [0x59, 0xa1, 0x4f],
    [0xb0, 0x7a, 0xa1],
    [0x76, 0xb7, 0xb2],
    [0xed, 0xc9, 0x48],
    [0xff, 0x9d, 0xa7],
    [0x9c, 0x75, 0x5f],
    [0x17, 0xbe, 0xcf],
    [0xbc, 0xbd, 0x22],
    [0x7f, 0x3c, 0x8d],
];

/// A fresh directory for one test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("memledger-report-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The recording of a workload with four scopes over about a second, made once: its text and
/// what it reads as.
fn recorded() -> &'static (String, Recording) {
    static RECORDED: OnceLock<(String, Recording)> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let dir = temp_dir("recorded");
        let path = dir.join("workload.jsonl");
        // Limits a little above what the process holds now, so that some fall on the chart.
        let rss = ProcessMemory::read()
            .map(|p| p.rss_bytes)
            .unwrap_or(64 << 20);
        let budget = Budget::builder()
            .total(rss + (96 << 20))
            .soft(Limit::Bytes(rss + (24 << 20)))
            .prompt(Limit::Bytes(rss + (40 << 20)))
            .hard(Limit::Bytes(rss + (64 << 20)))
            .build()
            .unwrap();
        let sampler = Sampler::builder()
            .interval(Duration::from_millis(20))
            .budget(budget)
            .leak_detection(LeakDetection {
                window: Duration::from_millis(800),
                min_rate: 1024.0,
                min_fit: 0.9,
                min_samples: 10,
            })
            .start()
            .unwrap();
        let recorder = RecordingWriter::create(&sampler, &path).unwrap();

        let mut indexes: Vec<Vec<u8>> = Vec::new();
        let mut global: Vec<u8> = Vec::new();
        let mut cache: Vec<Vec<u8>> = Vec::new();
        let mut parsed: Vec<Vec<u8>> = Vec::new();
        for step in 0..50u32 {
            {
                // Grows steadily: the suspected leak.
                let _g = memledger::scope!("project_indexes");
                indexes.push(vec![1u8; 256 << 10]);
                let _p = memledger::scope!("parse");
                parsed.push(vec![2u8; 64 << 10]);
                if parsed.len() > 6 {
                    parsed.remove(0);
                }
            }
            if step == 5 {
                // One big step, then flat.
                global = memledger::in_scope("global_index", || vec![3u8; 6 << 20]);
            }
            {
                // A sawtooth.
                let _g = memledger::scope!("query_cache");
                cache.push(vec![4u8; 160 << 10]);
                if step % 16 == 15 {
                    cache.clear();
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sampler.sample_now();
        let stats = recorder.stop().unwrap();
        sampler.stop();
        drop((indexes, global, cache, parsed));
        let recording = Recording::open(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(recording.samples.len() as u64, stats.samples);
        assert!(
            recording.samples.len() >= 10,
            "the workload was sampled {} times",
            recording.samples.len()
        );
        (text, recording)
    })
}

/// The command, run to completion.
fn report(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memledger-report"))
        .args(args)
        .output()
        .expect("the memledger-report command runs")
}

/// Runs the command on `input` and expects it to fail with exit status 1 and a message that
/// names `input` and says each of `says`.
fn expect_failure(input: &Path, says: &[&str]) -> String {
    let out = report(&[input.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let prefix = format!("memledger-report: {}: ", input.display());
    assert!(stderr.starts_with(&prefix), "stderr: {stderr}");
    for what in says {
        assert!(stderr.contains(what), "{what:?} is not in: {stderr}");
    }
    assert!(
        !input.with_extension("html").exists(),
        "no page is written for a bad recording"
    );
    stderr
}

#[test]
fn help_prints_the_usage() {
    for flag in ["--help", "-h"] {
        let out = report(&[flag.as_ref()]);
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("usage: memledger-report <recording.jsonl>"));
        assert!(stdout.contains("--output"));
    }
}

#[test]
fn usage_errors_exit_with_2() {
    let cases: [&[&str]; 4] = [
        &["--frobnicate", "x.jsonl"],
        &[],
        &["a.jsonl", "b.jsonl"],
        &["a.jsonl", "-o"],
    ];
    for args in cases {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let out = report(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: memledger-report"), "{stderr}");
    }
}

#[test]
fn an_empty_file_is_reported_as_empty() {
    let dir = temp_dir("empty");
    let input = dir.join("empty.jsonl");
    std::fs::write(&input, "").unwrap();
    expect_failure(&input, &["the recording is empty"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_truncated_last_line_is_named() {
    let dir = temp_dir("truncated");
    let input = dir.join("cut.jsonl");
    let text = &recorded().0;
    let lines: Vec<&str> = text.lines().take(4).collect();
    assert_eq!(
        lines.len(),
        4,
        "the recording has a header and three samples"
    );
    let cut = &lines[3][..lines[3].len() / 2];
    std::fs::write(
        &input,
        format!("{}\n{}\n{}\n{cut}", lines[0], lines[1], lines[2]),
    )
    .unwrap();
    expect_failure(&input, &["line 4: not a sample", "cut short"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_version_is_reported() {
    let dir = temp_dir("version");
    let input = dir.join("future.jsonl");
    std::fs::write(
        &input,
        "{\"memledger_recording\":99,\"started_at\":{\"secs_since_epoch\":0,\
         \"nanos_since_epoch\":0},\"pid\":1,\"program\":null,\"compression\":\"zstd\"}\n",
    )
    .unwrap();
    expect_failure(&input, &["line 1: ", "version 99"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_that_is_not_a_recording_is_named_at_its_line() {
    let dir = temp_dir("not-a-recording");
    let input = dir.join("notes.jsonl");
    std::fs::write(&input, "\n\nshopping list: eggs\n").unwrap();
    expect_failure(&input, &["line 3: not a memledger recording"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_file_is_reported() {
    let dir = temp_dir("missing");
    let input = dir.join("nowhere.jsonl");
    expect_failure(&input, &["cannot read the recording"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_command_writes_the_page_next_to_the_recording() {
    let dir = temp_dir("command");
    let input = dir.join("run.jsonl");
    std::fs::write(&input, &recorded().0).unwrap();

    let out = report(&[input.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = dir.join("run.html");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&page.display().to_string()),
        "it says where it wrote the page: {stdout}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html, render_html(&recorded().1));

    let other = dir.join("elsewhere.html");
    for flag in ["-o", "--output"] {
        let _ = std::fs::remove_file(&other);
        let out = report(&[input.as_os_str(), flag.as_ref(), other.as_os_str()]);
        assert!(out.status.success());
        assert_eq!(std::fs::read_to_string(&other).unwrap(), html);
    }
    let out = report(&["-o".as_ref(), "-".as_ref(), input.as_os_str()]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), html);

    let unwritable = dir.join("no-such-dir").join("page.html");
    let out = report(&[input.as_os_str(), "-o".as_ref(), unwritable.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `text` as the page escapes it.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The part of `html` from `start` up to the next `end`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} is not in the page"));
    let rest = &html[from..];
    &rest[..rest.find(end).map_or(rest.len(), |at| at + end.len())]
}

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

/// Chromium, if it is installed.
fn chromium() -> Option<PathBuf> {
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.exists() {
        return Some(fixed.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
        .find(|candidate| candidate.is_file())
}

/// Runs headless Chromium on `url` with `extra` arguments; its standard output, or a panic after
/// 60 s.
fn run_chromium(chromium: &Path, dir: &Path, url: &str, extra: &[String]) -> String {
    let profile = dir.join(format!("profile-{}", extra.len()));
    std::fs::create_dir_all(&profile).unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium {extra:?} did not finish within 60 s: {}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(
        status.success(),
        "chromium {extra:?} failed ({status}): {stderr}"
    );
    stdout
}

/// The screenshot's pixels as RGB, with its width and height.
fn decode_png(path: &Path) -> (Vec<[u8; 3]>, u32, u32) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    let pixels = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (pixels, info.width, info.height)
}

/// Whether `html` holds a figure that is not a number (`NaN`, `inf`).
fn has_non_numbers(html: &str) -> bool {
    let bytes = html.as_bytes();
    html.contains("NaN")
        || html.match_indices("inf").any(|(at, _)| {
            let before = at.checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(at + 3).copied();
            !before.is_some_and(|b| b.is_ascii_alphabetic())
                && !after.is_some_and(|b| b.is_ascii_alphabetic())
        })
}

fn close(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
    a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= tolerance)
}

#[test]
fn the_page_runs_in_a_browser() {
    let Some(chromium) = chromium() else {
        if std::env::var_os("MEMLEDGER_REQUIRE_BROWSER").is_some() {
            panic!(
                "MEMLEDGER_REQUIRE_BROWSER is set but chromium is not installed \
                 (looked for /usr/bin/chromium and chromium on PATH)"
            );
        }
        println!("chromium not found: browser check skipped");
        return;
    };
    let started = Instant::now();
    let dir = temp_dir("browser");
    let page = dir.join("report.html");
    std::fs::write(&page, render_html(&recorded().1)).unwrap();

    // The script ran to its end without an error, and drew the tooltip and the highlight when
    // the page moved the cursor (`#check`).
    let url = format!("file://{}", page.display());
    let dom = run_chromium(
        &chromium,
        &dir,
        &format!("{url}#check"),
        &["--dump-dom".to_string()],
    );
    assert!(
        dom.contains("<svg id=\"chart\""),
        "the page loaded: {dom:.300}"
    );
    let body = between(&dom, "<body", ">");
    assert!(
        !body.contains("data-errors"),
        "the page's script failed: {body}"
    );
    assert!(
        body.contains("data-ready=\"1\""),
        "the page's script did not finish: {body}"
    );
    assert!(
        !between(&dom, "<div id=\"tooltip\"", ">").contains("hidden"),
        "the tooltip shows"
    );
    let tooltip = between(&dom, "<div id=\"tooltip\"", "</div></div>");
    assert!(tooltip.contains("after the start"), "{tooltip}");
    assert!(tooltip.contains("project_indexes"), "{tooltip}");
    assert!(tooltip.contains("ledger total"), "{tooltip}");
    assert!(
        dom.contains("class=\"chart focus\""),
        "the legend highlights its series"
    );
    assert!(dom.contains("class=\"area on\" data-series=\"0\""));

    // The chart is drawn: the first series' colour, and series colours over a good part of the
    // window.
    let shot = dir.join("report.png");
    run_chromium(
        &chromium,
        &dir,
        &url,
        &[format!("--screenshot={}", shot.display())],
    );
    let (pixels, width, height) = decode_png(&shot);
    assert!(
        width >= 1000 && height >= 800,
        "screenshot {width}x{height}"
    );
    let total = pixels.len();
    let first = pixels
        .iter()
        .filter(|&&p| close(p, FIRST_SERIES_COLOR, 6))
        .count();
    let series = pixels
        .iter()
        .filter(|&&p| SERIES_COLORS.iter().any(|&c| close(p, c, 6)))
        .count();
    let colourful = pixels
        .iter()
        .filter(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 40)
        .count();
    let share = |n: usize| n as f64 * 100.0 / total as f64;
    println!(
        "screenshot {width}x{height}: first series {:.1}%, series colours {:.1}%, colourful \
         {:.1}% of the pixels; browser check took {:.1} s",
        share(first),
        share(series),
        share(colourful),
        started.elapsed().as_secs_f64()
    );
    assert!(share(first) > 1.0, "the first series is drawn");
    assert!(share(series) > 2.0, "the series are drawn");
    assert!(share(colourful) > 2.0, "the page is not blank");
    let _ = std::fs::remove_dir_all(&dir);
}
