//! `go tool pprof` reads the endpoints over HTTP, as a person would. Without Go the test is
//! skipped, or fails where `MEMLEDGER_REQUIRE_GO` is set.

use std::process::Command;

use crate::{fixture, temp_dir, SCOPE};

fn go_is_installed() -> bool {
    Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `go tool pprof -top` with `args` on `url`: its output, or a panic that shows it.
fn pprof_top(name: &str, args: &[&str], url: &str) -> String {
    let dir = temp_dir(name);
    // Go's caches and pprof's own files go into the folder; nothing is fetched but the URL,
    // which is on loopback.
    let output = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .args(args)
        .arg(url)
        .env("HOME", &dir)
        .env("GOPATH", dir.join("gopath"))
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("PPROF_TMPDIR", dir.join("pprof"))
        .output()
        .expect("go tool pprof runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "go tool pprof {url} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
    format!("{stdout}\n{stderr}")
}

#[test]
fn go_tool_pprof_reads_the_endpoints_over_http() {
    if !go_is_installed() {
        if std::env::var_os("MEMLEDGER_REQUIRE_GO").is_some() {
            panic!("MEMLEDGER_REQUIRE_GO is set but `go version` does not run (no go on PATH)");
        }
        println!("go not found: go tool pprof check skipped");
        return;
    }
    let addr = fixture().server.local_addr();
    let heap = pprof_top("heap", &[], &format!("http://{addr}/debug/pprof/heap"));
    assert!(heap.contains("Type: live_bytes"), "{heap}");
    assert!(heap.contains("http_known_site"), "{heap}");
    assert!(heap.contains(&format!("[scope {SCOPE}]")), "{heap}");

    let allocs = pprof_top("allocs", &[], &format!("http://{addr}/debug/pprof/allocs"));
    assert!(allocs.contains("Type: allocated_bytes"), "{allocs}");
    assert!(allocs.contains("http_known_site"), "{allocs}");

    // `-seconds` asks the endpoint for a window, as it asks Go's.
    let tagged = pprof_top(
        "delta",
        &["-seconds", "1", &format!("-tagfocus=scope={SCOPE}")],
        &format!("http://{addr}/debug/pprof/heap"),
    );
    assert!(tagged.contains("Type: growth_bytes"), "{tagged}");
}
