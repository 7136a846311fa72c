//! The flame graphs of sampled allocation sites, from profiles made for the test: which scopes
//! get graphs and in what order, the boxes' sizes, places, titles and folding, the tables of top
//! sites, and a recording with one profile or none.

use std::sync::Arc;
use std::time::Duration;

use memledger_monitor::{
    Estimate, Frame, GrowthRate, Profile, ProfileUsage, Recording, RecordingHeader, Sampler,
    ScopeProfile, Site, SuspectedLeak,
};
use memledger_report::render_html;

use crate::{between, escape, has_non_numbers, recorded};

/// A function name with markup in it, as the names of generic Rust functions have.
pub(crate) const MARKUP_FUNCTION: &str = "<app::Index<&str> as app::Load>::load";

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
        missing_line_tables: false,
    }
}

/// A recording of three samples of this process, the first and the last with the test
/// profiles, and the last suspecting "leaky" and a scope the profile has no sites for.
pub(crate) fn profiled_recording() -> Recording {
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

/// A profile of a program built without line tables says so once, with the line of
/// `Cargo.toml` that keeps them; one with them says nothing of it.
#[test]
fn a_profile_without_line_tables_says_how_to_get_them() {
    const NOTE: &str = "The program was built without line tables";
    let mut recording = profiled_recording();
    let html = render_html(&recording);
    assert!(!html.contains(NOTE));

    for sample in &mut recording.samples {
        if let Some(profile) = &mut sample.profile {
            Arc::make_mut(profile).missing_line_tables = true;
        }
    }
    let html = render_html(&recording);
    let sites = between(&html, "<section id=\"sites\">", "</section>");
    assert_eq!(html.matches(NOTE).count(), 1, "{sites}");
    assert!(sites.contains(NOTE));
    assert!(
        sites.contains(
            "<code>debug = \"line-tables-only\"</code> (or <code>debug = 1</code>) under \
             <code>[profile.release]</code>"
        ),
        "{sites}"
    );
}
