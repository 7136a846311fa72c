//! The pprof export read back by real readers: a protobuf decoder (prost, over messages written
//! here from pprof's `proto/profile.proto`) and, where Go is installed, `go tool pprof` itself.
//! The encoder writes the format by hand, so a wrong field number or a dangling id would go
//! unnoticed by any test that only reads its own output.
//!
//! Names must reach people whole: pprof cuts `<...>` out of a name it takes for demangled C++,
//! so each function's `name` is written without them and its `system_name` keeps the whole
//! demangled name. A copy of this test binary stripped of its debug information stands for a
//! release build without line tables, whose profile must say so and how to fix it.
//!
//! The workload is known: 16 MiB live in 8 KiB blocks, allocated in one scope from one function,
//! sampled at 64 KiB. A block is sampled with probability `p = 1 - exp(-8192 / 65536)`, about
//! 0.118, so some 240 samples are expected and the estimate's standard error is about 6 % of the
//! truth; the 40 % bound is more than six of them away, so a miss by chance is out of reach.
#![cfg(all(feature = "profile", feature = "jemalloc"))]

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use memledger_monitor::{Profile, ProfileValue};

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

const SCOPE: &str = "pprof_test";
const RATE: u64 = 64 * 1024;
const BLOCK: usize = 8 * 1024;
const TOTAL: usize = 16 * 1024 * 1024;

/// The messages of pprof's `profile.proto` (package `perftools.profiles`), with its field
/// numbers; fields this test does not read are declared all the same, so that a field written
/// under the wrong number lands somewhere visible rather than being skipped.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        #[prost(int64, tag = "8")]
        pub keep_frames: i64,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, packed = "true", tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, packed = "true", tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
        #[prost(bool, tag = "5")]
        pub is_folded: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

/// The known allocation site: the name the profile must carry.
#[inline(never)]
fn pprof_known_site() -> Vec<Vec<u8>> {
    let mut blocks = Vec::with_capacity(TOTAL / BLOCK);
    for _ in 0..TOTAL / BLOCK {
        blocks.push(black_box(vec![1u8; BLOCK]));
    }
    blocks
}

/// The workload's blocks, kept alive for the whole run, and the profile taken while they live.
/// Both tests share them, so that running in parallel they do not count each other's blocks.
struct Known {
    _blocks: Vec<Vec<u8>>,
    profile: Profile,
}

fn known() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| {
        memledger::sampling::set_rate(RATE).unwrap();
        let blocks = memledger::in_scope(SCOPE, pprof_known_site);
        let profile = memledger_monitor::profile();
        Known {
            _blocks: blocks,
            profile,
        }
    })
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("to_pprof's output is gzip");
    out
}

fn decode(profile: &Profile) -> proto::Profile {
    let raw = gunzip(&profile.to_pprof());
    <proto::Profile as prost::Message>::decode(raw.as_slice()).expect("a valid profile.proto")
}

/// The string at `index`, which must be in the table.
fn string(p: &proto::Profile, index: i64, what: &str) -> String {
    usize::try_from(index)
        .ok()
        .and_then(|i| p.string_table.get(i))
        .unwrap_or_else(|| {
            panic!(
                "{what}: string index {index} outside the table of {}",
                p.string_table.len()
            )
        })
        .clone()
}

#[test]
fn pprof_decodes_with_consistent_ids_and_the_known_estimate() {
    let known = known();
    let p = decode(&known.profile);

    assert_eq!(
        p.string_table.first().map(String::as_str),
        Some(""),
        "string 0 is the empty string"
    );
    let types: Vec<(String, String)> = p
        .sample_type
        .iter()
        .map(|t| {
            (
                string(&p, t.r#type, "sample type"),
                string(&p, t.unit, "sample unit"),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("live_bytes", "bytes"),
        ("live_blocks", "count"),
        ("allocated_bytes", "bytes"),
        ("allocated_blocks", "count"),
    ]
    .iter()
    .map(|&(t, u)| (t.to_string(), u.to_string()))
    .collect();
    assert_eq!(types, expected);
    assert_eq!(p.period, RATE as i64, "the period is the sampling rate");
    let period_type = p.period_type.as_ref().expect("a period type");
    assert_eq!(
        (
            string(&p, period_type.r#type, "period type"),
            string(&p, period_type.unit, "period unit")
        ),
        ("space".to_string(), "bytes".to_string())
    );
    assert_eq!(
        string(&p, p.default_sample_type, "default sample type"),
        "live_bytes"
    );

    // Every id is defined once, and every reference lands on one.
    let mappings: HashSet<u64> = p.mapping.iter().map(|m| m.id).collect();
    let mut functions: HashMap<u64, String> = HashMap::new();
    for f in &p.function {
        assert_ne!(f.id, 0, "function ids start at 1");
        let name = string(&p, f.name, "function name");
        string(&p, f.system_name, "function system name");
        string(&p, f.filename, "function file");
        assert!(
            functions.insert(f.id, name).is_none(),
            "function {} twice",
            f.id
        );
    }
    let mut locations: HashMap<u64, &proto::Location> = HashMap::new();
    for l in &p.location {
        assert_ne!(l.id, 0, "location ids start at 1");
        assert!(
            l.mapping_id == 0 || mappings.contains(&l.mapping_id),
            "location {} names mapping {}, which is not there",
            l.id,
            l.mapping_id
        );
        assert!(!l.line.is_empty(), "location {} has no line", l.id);
        for line in &l.line {
            assert!(
                functions.contains_key(&line.function_id),
                "location {} names function {}, which is not there",
                l.id,
                line.function_id
            );
        }
        assert!(
            locations.insert(l.id, l).is_none(),
            "location {} twice",
            l.id
        );
    }
    // Names: pprof shows `name`, which keeps a qualified path's type and trait without the
    // brackets it would cut out; `system_name` is the whole demangled name the profile holds.
    let demangled: HashSet<String> = known
        .profile
        .scopes
        .iter()
        .flat_map(|s| &s.sites)
        .flat_map(|site| &site.frames)
        .map(|f| f.function.to_string())
        .collect();
    let mut qualified = 0;
    for f in &p.function {
        let name = string(&p, f.name, "function name");
        let system = string(&p, f.system_name, "function system name");
        if system.is_empty() {
            // The scope's frame and placeholders are no function of the binary.
            assert!(name.starts_with(['[', '(']), "{name:?} has no system name");
            continue;
        }
        assert!(
            demangled.contains(&system),
            "system name {system:?} is not a function of the profile"
        );
        assert!(
            !name.contains(['<', '>']) || name.contains("->"),
            "{name:?} (of {system:?}) has brackets pprof would cut out"
        );
        assert!(!name.starts_with("::"), "{name:?} lost its path");
        if system.starts_with('<') && system.contains(" as ") {
            qualified += 1;
            let (ty, _) = system[1..].split_once(" as ").unwrap();
            let ty = ty.split('<').next().unwrap();
            assert!(
                name.starts_with(ty) && name.contains(" as "),
                "{name:?} lost the type or the trait of {system:?}"
            );
        }
    }
    assert!(
        qualified > 0,
        "no `<Type as Trait>::method` in the profile to check: {demangled:?}"
    );

    // The main binary is the first mapping, named, with its functions, files and lines given.
    let exe = std::env::current_exe().unwrap().display().to_string();
    let main = p.mapping.first().expect("a mapping for the main binary");
    assert_eq!(main.id, 1);
    assert_eq!(string(&p, main.filename, "mapping file"), exe);
    assert!(main.has_functions && main.has_filenames && main.has_line_numbers);
    if cfg!(target_os = "linux") {
        assert!(main.memory_start < main.memory_limit, "{main:?}");
        let known_site = p
            .location
            .iter()
            .filter(|l| {
                l.line
                    .iter()
                    .any(|line| functions[&line.function_id].ends_with("pprof_known_site"))
            })
            .collect::<Vec<_>>();
        assert!(!known_site.is_empty());
        for l in known_site {
            assert_eq!(
                l.mapping_id, 1,
                "a location of the binary's own code: {l:?}"
            );
            assert!((main.memory_start..main.memory_limit).contains(&l.address));
        }
    }
    assert!(
        p.comment.is_empty(),
        "a note on a build with line tables: {:?}",
        p.comment
    );
    assert!(!known.profile.missing_line_tables);

    let location_names = |l: &proto::Location| -> Vec<&str> {
        l.line
            .iter()
            .map(|line| functions[&line.function_id].as_str())
            .collect()
    };

    let scope_key = p
        .string_table
        .iter()
        .position(|s| s == "scope")
        .expect("the label key `scope` is in the table") as i64;
    let mut sums = [0i64; 4];
    let mut known_site_in_scope = false;
    for sample in &p.sample {
        assert_eq!(sample.value.len(), 4, "one value per sample type");
        assert!(!sample.location_id.is_empty(), "a sample without locations");
        for id in &sample.location_id {
            assert!(
                locations.contains_key(id),
                "a sample names location {id}, which is not there"
            );
        }
        let scopes: Vec<String> = sample
            .label
            .iter()
            .filter(|l| l.key == scope_key)
            .map(|l| string(&p, l.str, "scope label"))
            .collect();
        let [scope] = scopes.as_slice() else {
            panic!("a sample with scope labels {scopes:?}: one was expected");
        };
        // The outermost location (the last: pprof lists a stack leaf first) is the scope.
        let outermost = locations[sample.location_id.last().unwrap()];
        assert_eq!(
            location_names(outermost),
            vec![format!("[scope {scope}]").as_str()],
            "the outermost frame of a sample in {scope:?}"
        );
        if scope == SCOPE {
            for (sum, v) in sums.iter_mut().zip(&sample.value) {
                *sum += v;
            }
            known_site_in_scope |= sample.location_id.iter().any(|id| {
                location_names(locations[id])
                    .iter()
                    .any(|name| name.ends_with("pprof_known_site"))
            });
        }
    }
    assert!(
        known_site_in_scope,
        "no sample of {SCOPE:?} passes through pprof_known_site: {:?}",
        functions.values().collect::<Vec<_>>()
    );

    // The values are the profile's own estimates, and they estimate the workload.
    let scope = known.profile.scope(SCOPE).expect("the workload's scope");
    assert_eq!(
        sums,
        [
            scope.live.bytes as i64,
            scope.live.blocks as i64,
            scope.allocated.bytes as i64,
            scope.allocated.blocks as i64
        ]
    );
    let live = sums[0] as f64;
    let truth = TOTAL as f64;
    assert!(
        (live - truth).abs() <= 0.4 * truth,
        "{SCOPE:?} estimates {live} live bytes for {truth} ({} samples)",
        scope.live.samples
    );
}

#[test]
fn folded_lines_are_frames_and_a_value() {
    let folded = known().profile.to_folded(ProfileValue::LiveBytes);
    let mut in_scope = 0u64;
    for line in folded.lines() {
        let (frames, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("{line:?} has no value"));
        let value: u64 = value
            .parse()
            .unwrap_or_else(|e| panic!("{line:?}: the value is not an integer: {e}"));
        assert!(
            frames.split(';').all(|f| !f.is_empty()),
            "{line:?} has an empty frame"
        );
        if frames.starts_with(&format!("{SCOPE};")) {
            in_scope += value;
        }
    }
    assert!(
        folded
            .lines()
            .any(|l| l.starts_with(&format!("{SCOPE};")) && l.contains("pprof_known_site")),
        "no folded line of {SCOPE:?} through pprof_known_site:\n{folded}"
    );
    assert_eq!(
        in_scope,
        known().profile.scope(SCOPE).unwrap().live.bytes,
        "the folded lines of {SCOPE:?} add up to its live bytes"
    );
}

#[test]
fn the_default_sample_type_is_chosen_and_growth_adds_a_type() {
    let known = known();
    assert_eq!(
        known.profile.to_pprof_as(ProfileValue::LiveBytes),
        known.profile.to_pprof(),
        "to_pprof_as(LiveBytes) is to_pprof"
    );
    let decode_as = |profile: &Profile, value| {
        let raw = gunzip(&profile.to_pprof_as(value));
        <proto::Profile as prost::Message>::decode(raw.as_slice()).expect("a valid profile.proto")
    };
    let types = |p: &proto::Profile| -> Vec<String> {
        p.sample_type
            .iter()
            .map(|t| string(p, t.r#type, "sample type"))
            .collect()
    };
    for (value, name) in [
        (ProfileValue::LiveBlocks, "live_blocks"),
        (ProfileValue::AllocatedBytes, "allocated_bytes"),
    ] {
        let p = decode_as(&known.profile, value);
        assert_eq!(string(&p, p.default_sample_type, "default"), name);
        assert_eq!(types(&p).len(), 4, "no fifth type for {name}");
        assert!(p.sample.iter().all(|s| s.value.len() == 4));
    }

    // Against an empty baseline, every site grew by its live bytes.
    let empty = Profile {
        scopes: Vec::new(),
        ..known.profile.clone()
    };
    let grown = known.profile.since(&empty);
    let p = decode_as(&grown, ProfileValue::GrowthBytes);
    assert_eq!(types(&p).last().map(String::as_str), Some("growth_bytes"));
    assert_eq!(string(&p, p.default_sample_type, "default"), "growth_bytes");
    let growth: i64 = p.sample.iter().map(|s| s.value[4]).sum();
    let live: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    assert!(growth > 0);
    assert_eq!(growth, live, "growth against nothing is the live bytes");
}

/// A folder of its own under the target's scratch space, emptied first.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("memledger-pprof-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn go_is_installed() -> bool {
    Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn go_tool_pprof_reads_the_profile() {
    if !go_is_installed() {
        if std::env::var_os("MEMLEDGER_REQUIRE_GO").is_some() {
            panic!("MEMLEDGER_REQUIRE_GO is set but `go version` does not run (no go on PATH)");
        }
        println!("go not found: go tool pprof check skipped");
        return;
    }
    let dir = temp_dir("go");
    let file = dir.join("heap.pb.gz");
    std::fs::write(&file, known().profile.to_pprof()).unwrap();
    // Go's caches and pprof's own files go into the folder, and nothing is fetched: the tool
    // is part of the toolchain and reads a local file.
    let output = Command::new("go")
        .args([
            "tool",
            "pprof",
            "-top",
            "-nodecount=1000",
            "-sample_index=live_bytes",
        ])
        .arg(&file)
        .env("HOME", &dir)
        .env("GOPATH", dir.join("gopath"))
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("PPROF_TMPDIR", dir.join("pprof"))
        .output()
        .expect("go tool pprof runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "go tool pprof failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("{stdout}");
    assert!(
        stdout.contains("pprof_known_site"),
        "go tool pprof -top does not list pprof_known_site:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("[scope {SCOPE}]")),
        "go tool pprof -top does not list the scope's frame:\n{stdout}\n{stderr}"
    );
    // pprof names the binary, and shows whole names: none cut down to `::method`.
    let exe = std::env::current_exe().unwrap();
    let exe_name = exe.file_name().unwrap().to_string_lossy();
    assert!(
        stdout.contains(&format!("File: {exe_name}")),
        "go tool pprof does not name the binary:\n{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("Main binary filename not available"),
        "{stderr}"
    );
    let cut: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(5)
                .is_some_and(|name| name.starts_with("::"))
        })
        .collect();
    assert!(cut.is_empty(), "names pprof cut down:\n{}", cut.join("\n"));
    assert!(
        stdout.contains(" as "),
        "no `Type as Trait::method` name in go tool pprof -top:\n{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The environment variable that makes `stripped_child` run, naming the file its pprof goes to.
const STRIPPED_CHILD: &str = "MEMLEDGER_PPROF_STRIPPED_CHILD";

/// What a copy of this binary without debug information reports: run by the test below.
#[test]
#[ignore = "run by a_build_without_line_tables_says_so, in a copy of this binary without debug \
            information"]
fn stripped_child() {
    let Some(out) = std::env::var_os(STRIPPED_CHILD) else {
        panic!("{STRIPPED_CHILD} is not set: this test is run by another, in a stripped copy");
    };
    let profile = &known().profile;
    std::fs::write(out, profile.to_pprof()).unwrap();
    let scope = profile.scope(SCOPE).expect("the workload's scope");
    println!(
        "stripped-child missing_line_tables={}",
        profile.missing_line_tables
    );
    println!("stripped-child label={}", scope.sites[0].label());
    println!("{profile}");
}

/// A release build without line tables (Cargo's default) resolves functions but no file or
/// line. A copy of this binary with its debug information stripped stands for one: its profile,
/// its text and its pprof say so once, with the line of `Cargo.toml` that fixes it.
#[test]
fn a_build_without_line_tables_says_so() {
    let dir = temp_dir("stripped");
    let copy = dir.join("pprof-stripped");
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(std::env::current_exe().unwrap())
        .arg(&copy)
        .status();
    match stripped {
        Ok(status) if status.success() => {}
        other => {
            if std::env::var_os("MEMLEDGER_REQUIRE_GO").is_some() {
                panic!("objcopy --strip-debug failed: {other:?}");
            }
            println!("objcopy not found ({other:?}): the stripped build's check is skipped");
            return;
        }
    }
    let pprof_file = dir.join("stripped.pb.gz");
    let output = Command::new(&copy)
        .args(["stripped_child", "--exact", "--ignored", "--nocapture"])
        .env(STRIPPED_CHILD, &pprof_file)
        .output()
        .expect("the stripped copy runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the stripped copy failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("stripped-child missing_line_tables=true"),
        "the profile of a binary without line tables does not say so:\n{stdout}"
    );
    // The site is named after the program's own function, without a file.
    assert!(
        stdout.contains("stripped-child label=pprof::pprof_known_site\n"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches(memledger_monitor::LINE_TABLES_NOTE).count(),
        1,
        "the text says it once:\n{stdout}"
    );
    assert!(memledger_monitor::LINE_TABLES_NOTE
        .contains("`debug = \"line-tables-only\"` (or `debug = 1`) under `[profile.release]`"));

    let raw = gunzip(&std::fs::read(&pprof_file).unwrap());
    let p = <proto::Profile as prost::Message>::decode(raw.as_slice()).unwrap();
    let comments: Vec<String> = p
        .comment
        .iter()
        .map(|&c| string(&p, c, "comment"))
        .collect();
    assert_eq!(
        comments,
        [format!(
            "memledger: {}",
            memledger_monitor::LINE_TABLES_NOTE
        )]
    );
    let main = p.mapping.first().expect("a mapping for the main binary");
    assert_eq!(
        string(&p, main.filename, "mapping file"),
        copy.display().to_string()
    );
    assert!(main.has_functions && !main.has_filenames && !main.has_line_numbers);
    let _ = std::fs::remove_dir_all(&dir);
}
