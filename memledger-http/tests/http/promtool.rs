//! Prometheus's own checker reads `/metrics`: `promtool check metrics` parses the text format and
//! lints it (names, units, `_total` on counters, help texts). Without promtool the test is
//! skipped, or fails where `MEMLEDGER_REQUIRE_PROMTOOL` is set.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{fixture, get};

#[test]
fn promtool_checks_the_metrics() {
    let installed = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        if std::env::var_os("MEMLEDGER_REQUIRE_PROMTOOL").is_some() {
            panic!("MEMLEDGER_REQUIRE_PROMTOOL is set but `promtool --version` does not run");
        }
        println!("promtool not found: the check by Prometheus's own parser was skipped");
        return;
    }
    let f = fixture();
    f.sampler.sample_now();
    let answer = get(f.server.local_addr(), "/metrics");
    assert_eq!(answer.status, 200);
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("a pipe to promtool")
        .write_all(&answer.body)
        .expect("promtool reads the metrics");
    let output = child.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool check metrics refused /metrics ({}):\n{said}\n{}",
        output.status,
        answer.text()
    );
    // It parsed every family: a family it could not read would have failed the check above; a
    // lint problem is printed and fails it too.
    assert!(answer.text().contains("memledger_scope_live_bytes"));
}
