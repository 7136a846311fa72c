//! JSON Lines recordings: what the recorder writes reads back as the very samples the sampler
//! made, and unreadable files say which line is wrong.

use std::io::Write;
use std::time::Duration;

use memledger_monitor::{Recording, RecordingErrorKind, RecordingWriter, Sampler};

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("memledger-{}-{name}.jsonl", std::process::id()))
}

#[test]
fn a_recording_reads_back_as_the_samples_sent() {
    let path = temp("roundtrip");
    let sampler = Sampler::builder()
        .interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    let recorder = RecordingWriter::create(&sampler, &path).unwrap();
    assert_eq!(recorder.path(), Some(path.as_path()));
    let mut held = Vec::new();
    let mut sent = Vec::new();
    for i in 0..5 {
        held.push(memledger::in_scope("rec_grows", || vec![i as u8; 10_000]));
        sent.push(sampler.sample_now());
    }
    let stats = recorder.stop().unwrap();
    assert_eq!(stats.dropped, 0);
    let recording = Recording::open(&path).unwrap();
    // The sampler also ticks on its own when it starts: find the sent samples by sequence.
    assert_eq!(recording.samples.len() as u64, stats.samples);
    let read: Vec<&memledger_monitor::Sample> = sent
        .iter()
        .map(|sent| {
            let read = recording
                .samples
                .iter()
                .find(|r| r.sequence == sent.sequence)
                .expect("a sent sample is missing");
            assert_eq!(read, &**sent);
            read
        })
        .collect();
    let lives: Vec<u64> = read
        .iter()
        .map(|s| s.snapshot.scope("rec_grows").unwrap().live_bytes)
        .collect();
    assert_eq!(lives, [10_000, 20_000, 30_000, 40_000, 50_000]);
    assert_eq!(recording.header.pid, std::process::id());
    assert_eq!(
        recording.header.memledger_recording,
        memledger_monitor::RECORDING_VERSION
    );
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(stats.bytes, size);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn the_recorder_ends_with_its_sampler() {
    let path = temp("ends");
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(5))
        .start()
        .unwrap();
    let recorder = RecordingWriter::create(&sampler, &path).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    sampler.stop();
    let stats = recorder.stop().unwrap();
    assert!(stats.samples >= 2, "{stats:?}");
    let recording = Recording::open(&path).unwrap();
    assert_eq!(recording.samples.len() as u64, stats.samples);
    // Ticks in order.
    assert!(recording
        .samples
        .windows(2)
        .all(|w| w[0].sequence < w[1].sequence));
    std::fs::remove_file(&path).unwrap();
}

/// A writer that fails after a few bytes.
struct Failing(usize);

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0 < buf.len() {
            return Err(std::io::Error::other("disk full"));
        }
        self.0 -= buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_is_reported() {
    let sampler = Sampler::builder()
        .interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    let recorder = RecordingWriter::to_writer(&sampler, Failing(1000)).unwrap();
    for _ in 0..20 {
        sampler.sample_now();
    }
    let err = recorder.stop().unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
}

#[test]
fn unreadable_recordings_name_the_line() {
    let sampler = Sampler::builder()
        .interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    let mut buffer = Vec::new();
    {
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let recorder = RecordingWriter::to_writer(&sampler, Shared(shared.clone())).unwrap();
        sampler.sample_now();
        sampler.sample_now();
        recorder.stop().unwrap();
        buffer.extend_from_slice(&shared.lock().unwrap());
    }
    let text = String::from_utf8(buffer).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3);
    assert!(Recording::read(text.as_bytes()).is_ok());

    // Cut short in the middle of the last line.
    let cut = &text[..text.len() - 40];
    let err = Recording::read(cut.as_bytes()).unwrap_err();
    assert_eq!(err.line, lines.len());
    assert!(matches!(err.kind, RecordingErrorKind::Sample(_)));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("line {}: ", lines.len())) && message.contains("cut short"),
        "{message}"
    );

    // A newer format.
    let newer = text.replacen("\"memledger_recording\":1", "\"memledger_recording\":2", 1);
    let err = Recording::read(newer.as_bytes()).unwrap_err();
    assert_eq!(err.line, 1);
    assert!(matches!(err.kind, RecordingErrorKind::Version { found: 2 }));
    assert_eq!(
        err.to_string(),
        "line 1: recording format version 2, but this build reads version 1"
    );

    // Not a recording at all, empty, and a sample that is not one.
    let err = Recording::read("{\"hello\": 1}\n".as_bytes()).unwrap_err();
    assert_eq!(err.line, 1);
    assert!(
        err.to_string().contains("not a memledger recording"),
        "{err}"
    );
    let err = Recording::read("\n\n".as_bytes()).unwrap_err();
    assert!(matches!(err.kind, RecordingErrorKind::Empty));
    let garbled = format!("{}\n{}\n[1, 2]\n", lines[0], lines[1]);
    let err = Recording::read(garbled.as_bytes()).unwrap_err();
    assert_eq!(err.line, 3);

    // A missing file.
    let err = Recording::open("/nonexistent/recording.jsonl").unwrap_err();
    assert_eq!(err.line, 0);
    assert!(matches!(err.kind, RecordingErrorKind::Io(_)));
}

/// A recorder dropped without `stop` still writes what it was sent, whole.
#[test]
fn a_dropped_recorder_writes_what_it_was_sent() {
    let path = temp("dropped");
    let sampler = Sampler::builder()
        .interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    let recorder = RecordingWriter::create(&sampler, &path).unwrap();
    let sent: Vec<u64> = (0..3).map(|_| sampler.sample_now().sequence).collect();
    drop(recorder);
    let recording = Recording::open(&path).unwrap();
    let read: Vec<u64> = recording.samples.iter().map(|s| s.sequence).collect();
    assert!(
        sent.iter().all(|s| read.contains(s)),
        "{read:?} lacks some of {sent:?}"
    );
    std::fs::remove_file(&path).unwrap();
}

/// Lines are flushed as they are written: the file can be read while the recorder runs.
#[test]
fn the_file_can_be_read_while_recording() {
    let path = temp("live");
    let sampler = Sampler::builder()
        .interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    let recorder = RecordingWriter::create(&sampler, &path).unwrap();
    let sent = sampler.sample_now().sequence;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let recording = Recording::open(&path).unwrap();
        if recording.samples.iter().any(|s| s.sequence == sent) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sample never reached the file"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    recorder.stop().unwrap();
    std::fs::remove_file(&path).unwrap();
}
