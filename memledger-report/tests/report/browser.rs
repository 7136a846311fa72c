//! The page in headless Chromium: its script runs to its end without an error, the tooltip and
//! the highlighting show, and the chart and the flame graphs are drawn, as a screenshot shows.
//! Without Chromium the tests are skipped, or fail where `MEMLEDGER_REQUIRE_BROWSER` is set.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memledger_report::render_html;

use crate::flame::{profiled_recording, MARKUP_FUNCTION};
use crate::{between, escape, recorded, temp_dir};

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

/// Writes `html` as a page in a new folder `name` and dumps its DOM from headless Chromium after
/// the page's own check (`#check`) ran: the folder, the page's URL and the DOM.
fn checked_dom(chromium: &Path, name: &str, html: &str) -> (PathBuf, String, String) {
    let dir = temp_dir(name);
    let page = dir.join("report.html");
    std::fs::write(&page, html).unwrap();
    let url = format!("file://{}", page.display());
    let dom = run_chromium(
        chromium,
        &dir,
        &format!("{url}#check"),
        &["--dump-dom".to_string()],
    );
    (dir, url, dom)
}

/// Chromium for a browser test: `None` (the test is skipped, and says so) if it is not
/// installed, a panic if `MEMLEDGER_REQUIRE_BROWSER` asks for it.
fn required_chromium() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        if std::env::var_os("MEMLEDGER_REQUIRE_BROWSER").is_some() {
            panic!(
                "MEMLEDGER_REQUIRE_BROWSER is set but chromium is not installed \
                 (looked for /usr/bin/chromium and chromium on PATH)"
            );
        }
        println!("chromium not found: browser check skipped");
    }
    found
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

fn close(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
    a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= tolerance)
}

#[test]
fn the_page_runs_in_a_browser() {
    let Some(chromium) = required_chromium() else {
        return;
    };
    let started = Instant::now();
    let (dir, url, dom) = checked_dom(&chromium, "browser", &render_html(&recorded().1));
    // The script ran to its end without an error, and drew the tooltip and the highlight when
    // the page moved the cursor (`#check`).
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

#[test]
fn flame_graphs_run_in_a_browser() {
    let Some(chromium) = required_chromium() else {
        return;
    };
    let html = render_html(&profiled_recording());
    let (dir, url, dom) = checked_dom(&chromium, "browser-flame", &html);
    // The script ran to its end without an error, and the browser built every flame graph,
    // each box with its tooltip.
    let body = between(&dom, "<body", ">");
    assert!(
        !body.contains("data-errors"),
        "the page's script failed: {body}"
    );
    assert!(
        body.contains("data-ready=\"1\""),
        "the page's script did not finish: {body}"
    );
    let sites = between(&dom, "<section id=\"sites\">", "</section>");
    let graphs = sites.matches("<svg class=\"flame").count();
    assert_eq!(
        graphs, 10,
        "two graphs for each of the four that grew, one for the others"
    );
    assert_eq!(graphs, html.matches("<svg class=\"flame").count());
    assert_eq!(
        sites.matches("<g><title>").count(),
        html.matches("<g><title>").count(),
        "every box and its title"
    );
    assert!(
        sites.contains(&format!("<g><title>{}\n", escape(MARKUP_FUNCTION))),
        "the markup function is text"
    );
    assert!(!dom.contains(MARKUP_FUNCTION));

    // Drawn: the scopes' grey boxes and the frames' warm colours fill a good part of the page.
    let shot = dir.join("flame.png");
    run_chromium(
        &chromium,
        &dir,
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            // Tall enough for the whole page: the last switch of a kind is the one that counts.
            "--window-size=1200,6000".to_string(),
        ],
    );
    let (pixels, width, height) = decode_png(&shot);
    let total = pixels.len() as f64;
    let scope = pixels
        .iter()
        .filter(|&&p| close(p, [0xc5, 0xcc, 0xd4], 4))
        .count() as f64;
    // Warm: red well above blue, as the live-bytes and growth colours are.
    let warm = pixels
        .iter()
        .filter(|p| p[0] > 200 && i32::from(p[0]) - i32::from(p[2]) > 60)
        .count() as f64;
    println!(
        "flame screenshot {width}x{height}: scope boxes {:.1}%, warm {:.1}% of the pixels",
        scope * 100.0 / total,
        warm * 100.0 / total
    );
    assert!(scope * 100.0 / total > 0.5, "the scopes' boxes are drawn");
    assert!(warm * 100.0 / total > 2.0, "the frames' boxes are drawn");
    let _ = std::fs::remove_dir_all(&dir);
}
