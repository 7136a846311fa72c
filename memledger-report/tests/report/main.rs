//! The HTML report: the `memledger-report` command on good and bad recordings, the page rendered
//! from a real recording, and that page in a headless browser (where Chromium is installed).

#[global_allocator]
static GLOBAL: memledger::Ledger<tikv_jemallocator::Jemalloc> =
    memledger::Ledger::new(tikv_jemallocator::Jemalloc);

mod cli;
mod page;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use memledger_monitor::{
    Budget, Estimate, Frame, GrowthRate, LeakDetection, Limit, ProcessMemory, Profile,
    ProfileUsage, Recording, RecordingHeader, RecordingWriter, Sampler, ScopeProfile, Site,
    SuspectedLeak,
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

/// A function name with markup in it, as the names of generic Rust functions have.
const MARKUP_FUNCTION: &str = "<app::Index<&str> as app::Load>::load";

/// A site with `stack` (outermost first, as the graph draws it: each frame its address and
/// function, the address doubling as its line) holding `live` bytes, in blocks of 1 KiB with one
/// sample per 16 KiB.
fn site(stack: &[(u64, &str)], live: u64) -> Site {
    let frames = stack
        .iter()
        .rev()
        .map(|&(address, function)| Frame {
            address,
            function: function.into(),
            file: Some("src/app.rs".into()),
            line: Some(address as u32),
        })
        .collect();
    let estimate = Estimate {
        bytes: live,
        blocks: live / 1024,
        samples: (live / (16 << 10)).max(1),
    };
    Site {
        frames,
        truncated: false,
        live: estimate,
        allocated: estimate,
        live_change: live as i64,
    }
}

/// A scope of `sites`, summed.
fn scope_profile(path: &str, sites: Vec<Site>) -> ScopeProfile {
    let sum = |of: fn(&Site) -> Estimate| {
        sites
            .iter()
            .map(of)
            .fold(Estimate::default(), |a, b| Estimate {
                bytes: a.bytes + b.bytes,
                blocks: a.blocks + b.blocks,
                samples: a.samples + b.samples,
            })
    };
    ScopeProfile {
        path: path.to_string(),
        live: sum(|s| s.live),
        allocated: sum(|s| s.allocated),
        sites,
    }
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// The profile of a program with nine scopes, at its first profile (`last` false) or its last:
/// "big" (4 MiB: three quarters under `load`, reached from two lines of `main`, one quarter
/// under `save`), "mid" (six sites under `worker` and the sites a trimmed profile merged),
/// "small" (with a stack cut at its depth limit), "tiny", and then smaller scopes that grow,
/// leak or shrink between the two.
fn test_profile(last: bool) -> Profile {
    let pick = |first: u64, then: u64| if last { then } else { first };
    let main = (1, "app::main");
    let mut small_cut = site(
        &[(40, "app::deep::inner"), (41, "app::deep::innermost")],
        128 * KIB,
    );
    small_cut.truncated = true;
    let mut other = site(&[], 256 * KIB);
    other.frames.clear();
    let scopes = vec![
        scope_profile(
            "big",
            vec![
                site(
                    &[main, (2, "app::load"), (3, "app::parse")],
                    pick(3 * MIB / 2, 2 * MIB),
                ),
                site(&[main, (8, "app::load"), (4, MARKUP_FUNCTION)], MIB),
                site(&[main, (5, "app::save")], MIB),
            ],
        ),
        scope_profile(
            "mid",
            (0..6u64)
                .map(|k| {
                    site(
                        &[main, (10, "app::worker"), (11 + k, "app::fill")],
                        128 * KIB,
                    )
                })
                .chain([other])
                .collect(),
        ),
        scope_profile(
            "small",
            vec![
                site(
                    &[
                        main,
                        (31, "std::rt::lang_start"),
                        (32, "std::panic::catch_unwind"),
                        (33, "<fn() as core::ops::function::FnOnce<()>>::call_once"),
                        (30, "app::small"),
                    ],
                    512 * KIB,
                ),
                small_cut,
            ],
        ),
        scope_profile("tiny", vec![site(&[main, (50, "app::tiny")], 256 * KIB)]),
        scope_profile(
            "leaky",
            vec![site(&[main, (60, "app::leak")], pick(96 * KIB, 128 * KIB))],
        ),
        scope_profile(
            "grower",
            if last {
                vec![
                    site(
                        &[
                            main,
                            (70, "app::grow_a"),
                            (72, "alloc::vec::Vec<T>::push"),
                            (73, "alloc::raw_vec::RawVec<T>::grow_one"),
                        ],
                        64 * KIB,
                    ),
                    site(&[main, (71, "app::grow_b")], 16 * KIB),
                ]
            } else {
                vec![site(
                    &[
                        main,
                        (70, "app::grow_a"),
                        (72, "alloc::vec::Vec<T>::push"),
                        (73, "alloc::raw_vec::RawVec<T>::grow_one"),
                    ],
                    16 * KIB,
                )]
            },
        ),
        scope_profile(
            "grower2",
            vec![site(&[main, (80, "app::grow_c")], pick(8 * KIB, 40 * KIB))],
        ),
        scope_profile(
            "grower3",
            vec![site(&[main, (90, "app::grow_d")], pick(8 * KIB, 20 * KIB))],
        ),
        scope_profile(
            "shrinker",
            vec![site(&[main, (99, "app::shrink")], pick(64 * KIB, 8 * KIB))],
        ),
    ];
    Profile {
        rate: 512 * KIB,
        scopes,
        usage: ProfileUsage::default(),
    }
}

/// A recording of three samples of this process, the first and the last with the test
/// profiles, and the last suspecting "leaky" and a scope the profile has no sites for.
fn profiled_recording() -> Recording {
    // After the workload's recording, which samples the whole process.
    recorded();
    let sampler = Sampler::builder().start().unwrap();
    let base = sampler.sample_now().as_ref().clone();
    sampler.stop();
    let samples = (0..3u64)
        .map(|i| {
            let mut s = base.clone();
            s.sequence = i;
            s.uptime = Duration::from_secs(i + 1);
            s.profile = match i {
                0 => Some(Arc::new(test_profile(false))),
                2 => Some(Arc::new(test_profile(true))),
                _ => None,
            };
            s.leaks = if i == 2 {
                ["leaky", "unsampled_leak"]
                    .iter()
                    .map(|path| SuspectedLeak {
                        path: path.to_string(),
                        rate: GrowthRate {
                            since_last: 16384.0,
                            window: 16384.0,
                            fit: 0.98,
                            samples: 3,
                            span: Duration::from_secs(2),
                        },
                        live_bytes: 128 * KIB,
                        top_sites: Vec::new(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            s
        })
        .collect();
    Recording {
        header: RecordingHeader::now(),
        samples,
    }
}

/// A box of a flame graph: its title, x, y and width.
struct FlameBox {
    title: String,
    x: f64,
    y: f64,
    width: f64,
}

/// The value of the attribute `name` in `tag`, as a number.
fn number_attr(tag: &str, name: &str) -> f64 {
    let start = format!(" {name}=\"");
    let from = tag
        .find(&start)
        .unwrap_or_else(|| panic!("{name} is not in {tag}"))
        + start.len();
    let len = tag[from..].find('"').unwrap();
    tag[from..from + len].parse().unwrap()
}

/// The boxes of the flame graph `svg`.
fn flame_boxes(svg: &str) -> Vec<FlameBox> {
    svg.split("<g><title>")
        .skip(1)
        .map(|node| {
            let (title, rest) = node.split_once("</title>").unwrap();
            let rect = between(rest, "<rect ", "/>");
            FlameBox {
                title: title.to_string(),
                x: number_attr(rect, "x"),
                y: number_attr(rect, "y"),
                width: number_attr(rect, "width"),
            }
        })
        .collect()
}

/// The boxes of `svg` whose function (the title's first line, escaped) is `function`.
fn boxes_of<'a>(boxes: &'a [FlameBox], function: &str) -> Vec<&'a FlameBox> {
    let first_line = format!("{}\n", escape(function));
    boxes
        .iter()
        .filter(|b| b.title.starts_with(&first_line))
        .collect()
}

/// The one box of `function` in `boxes`.
fn box_of<'a>(boxes: &'a [FlameBox], function: &str) -> &'a FlameBox {
    match boxes_of(boxes, function).as_slice() {
        [one] => one,
        other => panic!("{} boxes of {function}", other.len()),
    }
}

/// The block of the sites section for `scope`, if it has one.
fn scope_block<'a>(sites: &'a str, scope: &str) -> Option<&'a str> {
    let start = format!(
        "<div class=\"flame-scope\" data-scope=\"{}\">",
        escape(scope)
    );
    sites
        .contains(&start)
        .then(|| between(sites, &start, "</div>"))
}

fn assert_near(value: f64, expected: f64, what: &str) {
    assert!(
        (value - expected).abs() < 0.5,
        "{what}: {value}, expected about {expected}"
    );
}

#[test]
fn profiles_are_drawn_as_flame_graphs() {
    let recording = profiled_recording();
    let html = render_html(&recording);
    assert!(!has_non_numbers(&html));
    let at = |section: &str| {
        html.find(&format!("<section id=\"{section}\">"))
            .unwrap_or_else(|| panic!("no {section} section"))
    };
    assert!(at("scopes") < at("sites") && at("sites") < at("reconciliation"));
    let sites = between(&html, "<section id=\"sites\">", "</section>");
    assert!(sites.contains("<h2>Where the memory was allocated</h2>"));

    // The rate, that the figures are estimates, the samples behind them and the comparison.
    let last = test_profile(true);
    let samples: u64 = last.scopes.iter().map(|s| s.live.samples).sum();
    assert!(sites.contains("One allocation in every 512.0 KiB allocated"));
    assert!(
        sites.contains(&format!(
            "estimate scaled up from the sampled blocks ({samples} live samples in all)"
        )),
        "{sites}"
    );
    assert!(sites.contains("the last of 2 samples with a profile"));
    assert!(sites.contains("since the first profile, at 1.0 s"));

    // The three largest, then the suspected leak, then the two that grew the most, in that
    // order; the third that grew finds no room and is named; the rest are not drawn.
    let drawn: Vec<&str> = sites
        .split("<div class=\"flame-scope\" data-scope=\"")
        .skip(1)
        .map(|block| block.split('"').next().unwrap())
        .collect();
    assert_eq!(drawn, ["big", "mid", "small", "leaky", "grower", "grower2"]);
    assert!(
        sites.contains("not drawn (at most 6 scopes are): grower3."),
        "{sites}"
    );
    assert!(sites.contains("Suspected leak without sampled sites in the profile: unsampled_leak."));
    assert!(scope_block(sites, "leaky")
        .unwrap()
        .contains("<span class=\"badge small leak\">suspected leak</span>"));

    // "big" by live bytes: `load` holds three quarters, its two lines of `main` merged into one
    // box under `main`, which spans the whole scope; `save` the last quarter, beside it.
    let big = scope_block(sites, "big").unwrap();
    assert!(big.contains("<h4>big: by estimated live bytes</h4>"));
    assert!(big.contains("4.0 MiB live in about 4096 blocks, estimated from 256 sampled blocks; +512.0 KiB since the first profile."), "{big}");
    assert!(big.contains("<h4>big: by growth of live bytes since the first profile</h4>"));
    let live = between(big, "<svg class=\"flame\"", "</svg>");
    let boxes = flame_boxes(live);
    let root = box_of(&boxes, "big");
    assert_near(root.x, 0.0, "the scope's x");
    assert_near(root.width, 1100.0, "the scope's width");
    assert_near(box_of(&boxes, "app::main").width, root.width, "main");
    let load = box_of(&boxes, "app::load");
    assert_near(load.width, root.width * 0.75, "load");
    assert!(
        load.title.contains("src/app.rs, several lines"),
        "{}",
        load.title
    );
    assert!(
        load.title.contains("3.0 MiB live (75.0% of the scope)"),
        "{}",
        load.title
    );
    assert!(load.title.contains("2 sites"), "{}", load.title);
    let save = box_of(&boxes, "app::save");
    assert_near(save.width, root.width * 0.25, "save");
    assert_near(save.x, load.x + load.width, "save is beside load");
    assert!(save.title.contains("src/app.rs:5\n"), "{}", save.title);
    let parse = box_of(&boxes, "app::parse");
    assert_near(parse.width, root.width * 0.5, "parse");
    assert!(
        parse.y > load.y && load.y > root.y,
        "callees are drawn under their callers"
    );
    let markup = box_of(&boxes, MARKUP_FUNCTION);
    assert_near(markup.width, root.width * 0.25, "the markup function");
    assert_near(
        markup.x,
        parse.x + parse.width,
        "the markup function is beside parse",
    );
    // Escaped in its title and its label; nowhere as markup.
    assert!(live.contains(&format!(">{}</text>", escape(MARKUP_FUNCTION))));
    assert!(!html.contains(MARKUP_FUNCTION));
    assert!(!html.contains("<app::"));
    // By growth: only `parse` grew, so it spans the graph under `load` and `main`.
    let growth = between(big, "<svg class=\"flame growth\"", "</svg>");
    let boxes = flame_boxes(growth);
    assert_near(box_of(&boxes, "app::parse").width, 1100.0, "parse's growth");
    assert!(
        boxes_of(&boxes, "app::save").is_empty(),
        "save did not grow"
    );
    assert!(box_of(&boxes, "app::parse")
        .title
        .contains("grew 512.0 KiB (100.0% of the growth in the scope)"));

    // "grower" by growth: `grow_a` grew by 48 KiB, `grow_b` by 16 KiB.
    let grower = scope_block(sites, "grower").unwrap();
    let boxes = flame_boxes(between(grower, "<svg class=\"flame growth\"", "</svg>"));
    assert_near(
        box_of(&boxes, "app::grow_a").width,
        1100.0 * 0.75,
        "grow_a's growth",
    );
    assert_near(
        box_of(&boxes, "app::grow_b").width,
        1100.0 * 0.25,
        "grow_b's growth",
    );
    let boxes = flame_boxes(between(grower, "<svg class=\"flame\"", "</svg>"));
    assert_near(
        box_of(&boxes, "app::grow_a").width,
        1100.0 * 0.8,
        "grow_a's live bytes",
    );

    // "mid": the six sites of `fill` merge into one box under `worker` (three quarters), the
    // merged sites take the last quarter; its table lists its five top sites.
    let mid = scope_block(sites, "mid").unwrap();
    assert!(
        !mid.contains("<svg class=\"flame growth\""),
        "mid did not grow"
    );
    let boxes = flame_boxes(between(mid, "<svg class=\"flame\"", "</svg>"));
    assert_near(box_of(&boxes, "app::fill").width, 1100.0 * 0.75, "fill");
    assert_near(
        box_of(&boxes, "(other sites)").width,
        1100.0 * 0.25,
        "the merged sites",
    );
    let table = between(mid, "<table class=\"sites\">", "</table>");
    assert_eq!(table.matches("<tr><td").count(), 5, "{table}");
    assert!(
        table.contains("<td>128.0 KiB</td><td>128</td><td>0 B</td><td>8</td>"),
        "{table}"
    );

    // "small": the stack cut at its depth limit is marked so.
    let small = scope_block(sites, "small").unwrap();
    let boxes = flame_boxes(between(small, "<svg class=\"flame\"", "</svg>"));
    let cut = box_of(&boxes, "(outer frames cut)");
    assert_near(cut.width, 1100.0 * 0.2, "the cut stack");
    assert!(box_of(&boxes, "app::deep::inner").y > cut.y);
    // Its three library frames between `main` and `small` make one box, which lists them.
    let folded = box_of(&boxes, "(3 library frames)");
    assert_near(folded.width, 1100.0 * 0.8, "the folded frames");
    assert!(
        folded.title.ends_with(&escape(
            "outermost first:\nstd::rt::lang_start\nstd::panic::catch_unwind\n\
             <fn() as core::ops::function::FnOnce<()>>::call_once"
        )),
        "{}",
        folded.title
    );
    assert!(boxes_of(&boxes, "std::rt::lang_start").is_empty());
    let small_box = box_of(&boxes, "app::small");
    assert!(small_box.y > folded.y && folded.y > box_of(&boxes, "app::main").y);
    // Two library frames in a row stay two boxes.
    let boxes = flame_boxes(between(grower, "<svg class=\"flame\"", "</svg>"));
    assert_near(
        box_of(&boxes, "alloc::raw_vec::RawVec<T>::grow_one").width,
        1100.0 * 0.8,
        "grow_one",
    );
    assert_eq!(boxes_of(&boxes, "alloc::vec::Vec<T>::push").len(), 1);

    // The tables give each site's growth since the first profile, the largest growth first.
    let table = between(big, "<table class=\"sites\">", "</table>");
    assert!(table.contains("<caption>Top sites by growth</caption>"));
    assert!(table.contains("<td class=\"path\">app::parse (app.rs:3)</td><td>2.0 MiB</td><td>2048</td><td>+512.0 KiB</td>"), "{table}");
    let table = between(
        scope_block(sites, "grower2").unwrap(),
        "<table class=\"sites\">",
        "</table>",
    );
    assert!(table.contains("<td>+32.0 KiB</td>"), "{table}");

    // A rect's width never runs past the graph.
    for svg in sites.split("<svg class=\"flame").skip(1) {
        for b in flame_boxes(between(svg, "", "</svg>")) {
            assert!(
                b.x >= 0.0 && b.x + b.width <= 1100.0 + 0.05,
                "{}: {} + {}",
                b.title,
                b.x,
                b.width
            );
        }
    }
}

#[test]
fn one_profile_has_no_growth_and_none_says_how_to_get_one() {
    let recording = profiled_recording();

    // Only the last sample's profile: nothing to compare it with.
    let one = Recording {
        header: RecordingHeader::now(),
        samples: recording.samples[1..].to_vec(),
    };
    let html = render_html(&one);
    let sites = between(&html, "<section id=\"sites\">", "</section>");
    assert!(sites.contains("Only one sample carries a profile, so there is no growth to show"));
    assert!(!sites.contains("<svg class=\"flame growth\""));
    let drawn = sites.matches("<div class=\"flame-scope\"").count();
    assert_eq!(
        drawn, 4,
        "the three largest and the suspected leak: {sites}"
    );
    assert!(scope_block(sites, "leaky").is_some());
    assert!(scope_block(sites, "grower").is_none());
    assert_eq!(sites.matches("<svg class=\"flame\"").count(), 4);
    let table = between(
        scope_block(sites, "big").unwrap(),
        "<table class=\"sites\">",
        "</table>",
    );
    assert!(table.contains("<caption>Top sites by live bytes</caption>"));
    assert!(
        table.contains("<td class=\"dim\">-</td>"),
        "no growth: {table}"
    );

    // No profile at all: the section says why there is nothing, and how to get something.
    let mut none = recording;
    for sample in &mut none.samples {
        sample.profile = None;
    }
    let html = render_html(&none);
    let sites = between(&html, "<section id=\"sites\">", "</section>");
    assert!(sites.contains("No sample in this recording carries a profile"));
    assert!(sites.contains("<code>SamplerBuilder::profile_every(interval)</code>"));
    assert!(!html.contains("<svg class=\"flame"));
    assert!(!html.contains("class=\"flame-scope\""));
}

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
