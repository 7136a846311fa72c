//! The `memledger-report` command: its usage, its errors on bad recordings, and the page it writes
//! next to the recording, elsewhere or to standard output.

use std::path::Path;
use std::process::{Command, Output};

use memledger_report::render_html;

use crate::{recorded, temp_dir};

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
