//! Headless Chromium on the live page: the page loads from the server without an error, and as
//! the program allocates, the page refetched in place shows the new scope. Without Chromium the
//! test is skipped, or fails where `MEMLEDGER_REQUIRE_BROWSER` is set.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{fixture, get, temp_dir};

/// The scope allocated once the page has loaded.
const LATE_SCOPE: &str = "grew_after_the_page_loaded";

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

#[test]
fn chromium_sees_the_live_page_change_as_the_program_allocates() {
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
    let f = fixture();
    let addr = f.server.local_addr();
    let url = format!("http://{addr}/debug/memledger/");
    let first = get(addr, "/debug/memledger/").text();
    assert!(!first.contains(LATE_SCOPE));

    // Once Chromium has loaded the page (the server has drawn one more), the program
    // allocates in a new scope; the page's refetches must bring it in.
    let pages = f.server.endpoints().stats().pages_rendered;
    let requests = f.server.endpoints().stats().requests;
    let sampler = std::sync::Arc::clone(&f.sampler);
    let server_endpoints = f.server.endpoints().clone();
    let late = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while server_endpoints.stats().requests <= requests
            && server_endpoints.stats().pages_rendered <= pages
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let kept = memledger::in_scope(LATE_SCOPE, || vec![5u8; 3 << 20]);
        sampler.sample_now();
        kept
    });

    let dir = temp_dir("browser");
    let profile = dir.join("profile");
    let mut child = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,900",
            // Timers run on a virtual clock, so that many refreshes take little real time;
            // the clock waits for each refetch.
            "--virtual-time-budget=20000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
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
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within 90 s: {}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(status.success(), "chromium failed ({status}): {stderr}");
    drop(late.join().unwrap());

    let body = dom
        .find("<body")
        .map(|at| &dom[at..dom[at..].find('>').map_or(dom.len(), |end| at + end)])
        .unwrap_or_else(|| panic!("no body in the DOM:\n{dom}"));
    assert!(!body.contains("data-errors"), "script errors: {body}");
    assert!(
        !body.contains("data-refresh-error"),
        "a refetch failed: {body}"
    );
    assert!(
        body.contains("data-ready=\"1\""),
        "the page's script ran: {body}"
    );
    let refreshes: u32 = body
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the page never refreshed: {body}"));
    assert!(refreshes >= 2, "{refreshes} refreshes");
    assert!(
        dom.contains(LATE_SCOPE),
        "the scope allocated after the page loaded is not on the page after {refreshes} \
         refreshes"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
