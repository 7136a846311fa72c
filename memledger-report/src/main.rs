//! `memledger-report`: a JSON Lines recording (`memledger_monitor::RecordingWriter`) to one self-contained HTML
//! page of charts and tables.
//!
//! ```text
//! memledger-report <recording.jsonl> [-o|--output <report.html>]
//! ```
//!
//! Exits with 0 once the page is written, 1 when the recording cannot be read or the page cannot
//! be written (the message names the file and, for a bad recording, the line), and 2 on a usage
//! error.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: memledger-report <recording.jsonl> [-o|--output <report.html>]

Writes one self-contained HTML page (charts of live bytes per scope, the budget status, the
scope table and the reconciliation) from a recording made by memledger_monitor::RecordingWriter.

options:
  -o, --output <path>  where to write the page (default: the recording's path with the
                       extension .html; `-` writes it to standard output)
  -h, --help           print this help
";

/// What the command line asks for.
enum Command {
    Help,
    Render {
        input: PathBuf,
        output: Option<PathBuf>,
    },
}

/// Reads the command line; an error is a usage error.
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let mut input: Option<PathBuf> = None;
    let mut output: Option<PathBuf> = None;
    let mut flags = true;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if flags && text.starts_with('-') && text != "-" {
            match text.as_ref() {
                "--" => flags = false,
                "-h" | "--help" => return Ok(Command::Help),
                "-o" | "--output" => match args.next() {
                    Some(path) => {
                        if output.replace(PathBuf::from(path)).is_some() {
                            return Err("the output is given twice".to_string());
                        }
                    }
                    None => return Err(format!("{text} needs a path")),
                },
                _ => match text.strip_prefix("--output=") {
                    Some(path) if !path.is_empty() => {
                        if output.replace(PathBuf::from(path)).is_some() {
                            return Err("the output is given twice".to_string());
                        }
                    }
                    _ => return Err(format!("unknown option {text}")),
                },
            }
            continue;
        }
        if input.replace(PathBuf::from(arg)).is_some() {
            return Err("give one recording".to_string());
        }
    }
    match input {
        Some(input) => Ok(Command::Render { input, output }),
        None => Err("give the recording to read".to_string()),
    }
}

/// The recording's path with the extension `.html`, never the recording itself.
fn default_output(input: &Path) -> PathBuf {
    let output = input.with_extension("html");
    if output == input {
        let mut name = input.as_os_str().to_owned();
        name.push(".html");
        PathBuf::from(name)
    } else {
        output
    }
}

fn main() -> ExitCode {
    let command = match parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(why) => {
            eprintln!("memledger-report: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (input, output) = match command {
        Command::Help => {
            // A closed standard output is no reason to panic.
            let _ = write!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Render { input, output } => {
            let output = output.unwrap_or_else(|| default_output(&input));
            (input, output)
        }
    };
    let recording = match memledger_monitor::Recording::open(&input) {
        Ok(recording) => recording,
        Err(e) => {
            eprintln!("memledger-report: {}: {e}", input.display());
            return ExitCode::FAILURE;
        }
    };
    let html = memledger_report::render_html(&recording);
    if output.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = stdout
            .write_all(html.as_bytes())
            .and_then(|()| stdout.flush())
        {
            eprintln!("memledger-report: standard output: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::write(&output, &html) {
        eprintln!("memledger-report: {}: cannot write: {e}", output.display());
        return ExitCode::FAILURE;
    }
    let samples = recording.samples.len();
    // The page is written: a closed standard output only loses this line.
    let _ = writeln!(
        std::io::stdout(),
        "memledger-report: wrote {} ({samples} sample{}, {} KiB)",
        output.display(),
        if samples == 1 { "" } else { "s" },
        html.len().div_ceil(1024)
    );
    ExitCode::SUCCESS
}
