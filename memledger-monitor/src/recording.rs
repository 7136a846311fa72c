//! JSON Lines recordings of the sampler's ticks: [`RecordingWriter`] writes them, [`Recording`] reads
//! them back (feature `serde`).
//!
//! A recording is a text file of one JSON document per line. The first line is a
//! [`RecordingHeader`] whose `memledger_recording` field holds the format's version
//! ([`RECORDING_VERSION`]); every other line is one [`Sample`], in the order the sampler ran them.
//! The recorder writes each line whole and flushes it, so a recording cut short (a process
//! killed mid-write) loses at most its last line, which is then partial: [`Recording::read`]
//! names it, and the lines before it read once it is removed.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use crossbeam_channel::{select, Sender};

use crate::error::Error;
use crate::sampler::{Event, Sample, Sampler};

/// The version of the recording format this crate writes and reads.
pub const RECORDING_VERSION: u32 = 1;

/// The first line of a recording.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordingHeader {
    /// The format's version: [`RECORDING_VERSION`].
    pub memledger_recording: u32,
    /// When the recording started.
    pub started_at: SystemTime,
    /// The recorded process.
    pub pid: u32,
    /// The recorded program's name (its first argument), if it had one.
    pub program: Option<String>,
}

impl RecordingHeader {
    /// A header for this process, now.
    pub fn now() -> RecordingHeader {
        RecordingHeader {
            memledger_recording: RECORDING_VERSION,
            started_at: SystemTime::now(),
            pid: std::process::id(),
            program: std::env::args_os()
                .next()
                .map(|arg| arg.to_string_lossy().into_owned()),
        }
    }
}

/// A recording read back: its header and its samples.
///
/// ```
/// let text = concat!(
///     r#"{"memledger_recording":1,"started_at":{"secs_since_epoch":0,"nanos_since_epoch":0},"#,
///     r#""pid":7,"program":null}"#,
///     "\n",
/// );
/// let recording = memledger_monitor::Recording::read(text.as_bytes()).unwrap();
/// assert_eq!(recording.header.pid, 7);
/// assert!(recording.samples.is_empty());
///
/// let err = memledger_monitor::Recording::read("".as_bytes()).unwrap_err();
/// assert_eq!(err.to_string(), "the recording is empty: it has no header line");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    /// The first line.
    pub header: RecordingHeader,
    /// Every tick, oldest first.
    pub samples: Vec<Sample>,
}

/// Why a recording could not be read, and on which line.
#[derive(Debug)]
pub struct RecordingError {
    /// The line (from 1) where reading failed; 0 when no line was read (the file could not be
    /// opened, or it is empty).
    pub line: usize,
    /// What failed.
    pub kind: RecordingErrorKind,
}

/// What made a recording unreadable.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecordingErrorKind {
    /// The file could not be opened or read.
    Io(io::Error),
    /// There is nothing in it.
    Empty,
    /// The first line is not a recording header.
    NotARecording(String),
    /// The header names a version this crate does not read.
    Version {
        /// The version in the header.
        found: u32,
    },
    /// A line is not a sample: malformed JSON, a line cut short, or inconsistent figures.
    Sample(String),
}

impl fmt::Display for RecordingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        match &self.kind {
            RecordingErrorKind::Io(e) => write!(f, "cannot read the recording: {e}"),
            RecordingErrorKind::Empty => {
                f.write_str("the recording is empty: it has no header line")
            }
            RecordingErrorKind::NotARecording(why) => write!(
                f,
                "not a memledger recording (the first line must be its header): {why}"
            ),
            RecordingErrorKind::Version { found } => write!(
                f,
                "recording format version {found}, but this build reads version \
                 {RECORDING_VERSION}"
            ),
            RecordingErrorKind::Sample(why) => write!(f, "not a sample: {why}"),
        }
    }
}

impl std::error::Error for RecordingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            RecordingErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Just the version, read before the rest of the header so that a newer header with other fields
/// is reported as a version mismatch.
#[derive(serde::Deserialize)]
struct VersionOnly {
    memledger_recording: u32,
}

impl Recording {
    /// Reads a recording. Blank lines are skipped; anything else that is not a sample is an error
    /// naming its line.
    pub fn read(reader: impl BufRead) -> Result<Recording, RecordingError> {
        let mut header = None;
        let mut samples = Vec::new();
        for (index, line) in reader.lines().enumerate() {
            let number = index + 1;
            let at = |kind| RecordingError { line: number, kind };
            let line = line.map_err(|e| at(RecordingErrorKind::Io(e)))?;
            if line.trim().is_empty() {
                continue;
            }
            if header.is_none() {
                let version: VersionOnly = serde_json::from_str(&line)
                    .map_err(|e| at(RecordingErrorKind::NotARecording(e.to_string())))?;
                if version.memledger_recording != RECORDING_VERSION {
                    return Err(at(RecordingErrorKind::Version {
                        found: version.memledger_recording,
                    }));
                }
                header = Some(
                    serde_json::from_str(&line)
                        .map_err(|e| at(RecordingErrorKind::NotARecording(e.to_string())))?,
                );
                continue;
            }
            let sample: Sample = serde_json::from_str(&line).map_err(|e| {
                let why = if e.is_eof() {
                    format!("the line is cut short ({e})")
                } else {
                    e.to_string()
                };
                at(RecordingErrorKind::Sample(why))
            })?;
            samples.push(sample);
        }
        match header {
            Some(header) => Ok(Recording { header, samples }),
            None => Err(RecordingError {
                line: 0,
                kind: RecordingErrorKind::Empty,
            }),
        }
    }

    /// Reads the recording at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Recording, RecordingError> {
        let file = File::open(path).map_err(|e| RecordingError {
            line: 0,
            kind: RecordingErrorKind::Io(e),
        })?;
        Recording::read(BufReader::new(file))
    }
}

/// Appends every tick of a sampler to a JSON Lines file, on a thread of its own.
///
/// The recorder subscribes to the sampler like any reader: a recorder that falls behind loses
/// the oldest ticks, never blocks the sampler, and counts what it lost
/// ([`RecordingWriterStats::dropped`]). Each line is written whole and flushed at once, so the file can
/// be read while the program runs. The recorder ends when it is stopped or dropped (after writing
/// what is queued), or when the sampler stops. In the child of a `fork` it has no thread, and
/// dropping it there does nothing.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::env::temp_dir().join(format!("memledger-doc-{}.jsonl", std::process::id()));
/// let sampler = memledger_monitor::Sampler::builder()
///     .interval(std::time::Duration::from_millis(10))
///     .start()?;
/// let recorder = memledger_monitor::RecordingWriter::create(&sampler, &path)?;
/// let index = memledger::in_scope("global_index", || vec![0u8; 1 << 20]);
/// sampler.sample_now();
/// let stats = recorder.stop()?;
/// assert!(stats.samples >= 1);
///
/// let recording = memledger_monitor::Recording::open(&path)?;
/// assert_eq!(recording.samples.len() as u64, stats.samples);
/// # drop(index);
/// # std::fs::remove_file(&path)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RecordingWriter {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<io::Result<RecordingWriterStats>>>,
    path: Option<PathBuf>,
    /// The process that started the thread: a child of `fork` has no such thread.
    pid: u32,
}

/// What a recorder wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordingWriterStats {
    /// Sample lines written.
    pub samples: u64,
    /// Bytes written, the header included.
    pub bytes: u64,
    /// Ticks lost because the recorder fell behind the sampler.
    pub dropped: u64,
}

impl RecordingWriter {
    /// Creates (or truncates) the file at `path` and records `sampler`'s ticks into it.
    pub fn create(sampler: &Sampler, path: impl AsRef<Path>) -> Result<RecordingWriter, Error> {
        let path = path.as_ref();
        let file = {
            let _own = memledger::__private::own_scope();
            File::create(path).map_err(|e| Error::Io {
                path: path.to_path_buf(),
                error: e,
            })?
        };
        let mut recorder = RecordingWriter::to_writer(sampler, file)?;
        recorder.path = Some(path.to_path_buf());
        Ok(recorder)
    }

    /// Records `sampler`'s ticks into `writer` (buffered by the recorder).
    pub fn to_writer(
        sampler: &Sampler,
        writer: impl Write + Send + 'static,
    ) -> Result<RecordingWriter, Error> {
        let _own = memledger::__private::own_scope();
        let subscription = sampler.subscribe();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let mut out = Lines::new(BufWriter::new(writer));
        out.write(&RecordingHeader::now())
            .map_err(|error| Error::Io {
                path: PathBuf::new(),
                error,
            })?;
        let thread = std::thread::Builder::new()
            .name("memledger-recorder".into())
            .spawn(move || {
                let _own = memledger::__private::own_scope();
                loop {
                    select! {
                        recv(subscription.receiver()) -> event => match event {
                            Ok(event) => out.event(event)?,
                            Err(_) => break,
                        },
                        recv(stopped) -> _ => {
                            while let Some(event) = subscription.try_recv() {
                                out.event(event)?;
                            }
                            break;
                        }
                    }
                }
                out.writer.flush()?;
                out.stats.dropped = subscription.dropped();
                Ok(out.stats)
            })
            .map_err(Error::Spawn)?;
        Ok(RecordingWriter {
            stop: Some(stop),
            thread: Some(thread),
            path: None,
            pid: std::process::id(),
        })
    }

    /// The file being written, for a recorder made by [`create`](Self::create).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes what is queued, flushes, and says what was written.
    pub fn stop(mut self) -> Result<RecordingWriterStats, Error> {
        self.finish()
    }

    fn finish(&mut self) -> Result<RecordingWriterStats, Error> {
        drop(self.stop.take());
        let joined = self
            .thread
            .take()
            .and_then(|thread| memledger::__private::join_unless_forked(thread, self.pid));
        match joined {
            Some(Ok(result)) => result.map_err(|error| Error::Io {
                path: self.path.clone().unwrap_or_default(),
                error,
            }),
            Some(Err(_)) => Err(Error::Io {
                path: self.path.clone().unwrap_or_default(),
                error: io::Error::other("the recorder thread panicked"),
            }),
            // Already stopped, or in the child of a fork.
            None => Ok(RecordingWriterStats::default()),
        }
    }
}

impl Drop for RecordingWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// A writer of JSON lines, counting what it wrote.
struct Lines<W: Write> {
    writer: W,
    stats: RecordingWriterStats,
}

impl<W: Write> Lines<W> {
    fn new(writer: W) -> Self {
        Lines {
            writer,
            stats: RecordingWriterStats::default(),
        }
    }

    fn write<T: serde::Serialize>(&mut self, value: &T) -> io::Result<()> {
        let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        self.writer.flush()?;
        self.stats.bytes += line.len() as u64;
        Ok(())
    }

    fn event(&mut self, event: Event) -> io::Result<()> {
        if let Event::Sample(sample) = event {
            self.write::<Arc<Sample>>(&sample)?;
            self.stats.samples += 1;
        }
        Ok(())
    }
}
