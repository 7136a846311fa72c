//! The flame graphs of a scope's sampled allocation sites: the tree of their stacks, with
//! unbranched runs of library frames folded into one box, drawn as an SVG icicle.

use core::fmt::{self, Write as _};
use std::collections::HashMap;
use std::sync::Arc;

use memledger::__private::{human_bytes, percent};
use memledger_monitor::{Frame, ProfileValue, ScopeProfile};

use crate::text::{scope_label, Esc};

/// The shortest run of library frames folded into one box.
const MIN_FOLDED: usize = 3;

/// A flame graph's width and the height of one of its rows, in SVG units.
const FLAME_W: f64 = 1100.0;
const FLAME_ROW: f64 = 17.0;

/// Frames narrower than this are left out, with the frames they called: nobody could point at
/// them, and a profile may hold many.
const FLAME_MIN_W: f64 = 0.3;

/// About the widest a label's character is at the graph's font size, in SVG units: labels are
/// cut to what fits at this width, so that they stay inside their frames.
const FLAME_CHAR_W: f64 = 6.8;

/// What a flame graph's box stands for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    /// The scope, at the top.
    Scope,
    /// A function of the program.
    Program,
    /// A function of one of the [`LIBRARY_CRATES`], drawn paler so that the program's own
    /// frames stand out.
    Library,
    /// Not a function: the sites a trimmed profile merged, a stack that found no room, or the
    /// outer frames of a stack cut at its depth limit.
    Placeholder,
}

/// Where a box's function was: one place, several lines of one file, or several files.
#[derive(Clone, PartialEq, Eq)]
enum Place {
    Unknown,
    At(Arc<str>, Option<u32>),
    Lines(Arc<str>),
    Several,
}

impl Place {
    fn of(frame: &Frame) -> Place {
        match &frame.file {
            Some(file) => Place::At(Arc::clone(file), frame.line),
            None => Place::Unknown,
        }
    }

    /// Where the frames merged into one box were, together.
    fn merge(&mut self, other: Place) {
        let merged = match (&*self, other) {
            (_, Place::Unknown) => return,
            (Place::Unknown, other) => other,
            (Place::At(a, la), Place::At(b, lb)) if *a == b => {
                if *la == lb {
                    return;
                }
                Place::Lines(b)
            }
            (Place::Lines(a), Place::At(b, _) | Place::Lines(b)) if *a == b => return,
            (Place::At(a, _), Place::Lines(b)) if *a == b => Place::Lines(b),
            _ => Place::Several,
        };
        *self = merged;
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Unknown => Ok(()),
            Place::At(file, Some(line)) => write!(f, "{file}:{line}"),
            Place::At(file, None) => f.write_str(file),
            Place::Lines(file) => write!(f, "{file}, several lines"),
            Place::Several => f.write_str("several files"),
        }
    }
}

/// One box of a flame graph: the frames of one function at one depth under the same callers.
struct FlameNode {
    name: String,
    kind: NodeKind,
    place: Place,
    /// The sum of the figure over the sites through this box.
    value: u64,
    /// Sites through this box.
    sites: usize,
    /// The functions it called, the largest first once built.
    children: Vec<FlameNode>,
    /// For a box that stands for a run of library frames, their functions, outermost first.
    folded: Vec<String>,
    /// Where each child is in `children`, by function, while the tree is built.
    index: HashMap<String, usize>,
}

impl FlameNode {
    fn new(name: &str, kind: NodeKind, place: Place) -> FlameNode {
        FlameNode {
            name: name.to_string(),
            kind,
            place,
            value: 0,
            sites: 0,
            children: Vec::new(),
            folded: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The tree of `scope`'s sites by `value`: the scope, then each site's frames from the
    /// outermost inwards, frames of the same function under the same box merged into one.
    fn of(scope: &ScopeProfile, value: ProfileValue) -> FlameNode {
        let mut root = FlameNode::new(scope_label(&scope.path), NodeKind::Scope, Place::Unknown);
        for site in &scope.sites {
            let v = value.of(site);
            if v == 0 {
                continue;
            }
            root.add(v);
            let mut node = &mut root;
            if site.frames.is_empty() {
                node = node.child(&site.label(), NodeKind::Placeholder, Place::Unknown);
                node.add(v);
                continue;
            }
            // The walk keeps the innermost frames of a deep stack: its outer ones are lost.
            if site.truncated {
                node = node.child("(outer frames cut)", NodeKind::Placeholder, Place::Unknown);
                node.add(v);
            }
            for frame in site.frames.iter().rev() {
                let kind = if is_library_function(&frame.function) {
                    NodeKind::Library
                } else {
                    NodeKind::Program
                };
                node = node.child(&frame.function, kind, Place::of(frame));
                node.add(v);
            }
        }
        root.sort();
        root.folded()
    }

    /// Whether this box and its only child are library frames that the same sites go through.
    fn continues_library_run(&self) -> bool {
        self.kind == NodeKind::Library
            && self.children.len() == 1
            && self.children[0].kind == NodeKind::Library
            && self.children[0].value == self.value
    }

    /// The tree with every unbranched run of [`MIN_FOLDED`] library frames or more folded into
    /// one box. A stack may pass through a couple of dozen frames of thread start-up,
    /// `catch_unwind` and closure calls, and into as many frames of `Vec` and `RawVec`, that
    /// would each take a row of the same width while saying nothing about where the program
    /// asked for the memory.
    fn folded(self) -> FlameNode {
        let mut run = 1;
        let mut at = &self;
        while at.continues_library_run() {
            at = &at.children[0];
            run += 1;
        }
        let mut node = self;
        if run >= MIN_FOLDED {
            let (value, sites) = (node.value, node.sites);
            let mut folded = Vec::with_capacity(run);
            for _ in 1..run {
                folded.push(node.name);
                node = node
                    .children
                    .pop()
                    .expect("a run continues through the only child");
            }
            folded.push(node.name);
            node = FlameNode {
                name: format!("({run} library frames)"),
                kind: NodeKind::Library,
                place: Place::Unknown,
                value,
                sites,
                children: node.children,
                folded,
                index: HashMap::new(),
            };
        }
        node.children = std::mem::take(&mut node.children)
            .into_iter()
            .map(FlameNode::folded)
            .collect();
        node
    }

    fn add(&mut self, value: u64) {
        self.value = self.value.saturating_add(value);
        self.sites += 1;
    }

    /// The child box for `name`, made if there is none yet.
    fn child(&mut self, name: &str, kind: NodeKind, place: Place) -> &mut FlameNode {
        // A profile read from elsewhere may hold thousands of sites under one function.
        let at = match self.index.get(name) {
            Some(&at) => {
                self.children[at].place.merge(place);
                at
            }
            None => {
                self.index.insert(name.to_string(), self.children.len());
                self.children.push(FlameNode::new(name, kind, place));
                self.children.len() - 1
            }
        };
        &mut self.children[at]
    }

    /// Sorts the children, the largest first, once the tree is built.
    fn sort(&mut self) {
        // Positions change: the index is of no more use.
        self.index = HashMap::new();
        self.children
            .sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
        for child in &mut self.children {
            child.sort();
        }
    }

    /// Rows drawn at `scale` (SVG units per unit of the figure): boxes too narrow to draw add
    /// none.
    fn rows(&self, scale: f64) -> usize {
        if (self.value as f64 * scale) < FLAME_MIN_W {
            return 0;
        }
        1 + self
            .children
            .iter()
            .map(|c| c.rows(scale))
            .max()
            .unwrap_or(0)
    }

    /// Draws this box at (`x`, row `depth`) and its children under it, left to right.
    fn draw(&self, out: &mut String, graph: &Graph, x: f64, depth: usize) -> fmt::Result {
        let w = self.value as f64 * graph.scale;
        if w < FLAME_MIN_W {
            return Ok(());
        }
        let y = depth as f64 * FLAME_ROW;
        let share = percent(self.value, graph.total);
        let mut title = self.name.clone();
        if self.place != Place::Unknown {
            let _ = write!(title, "\n{}", self.place);
        }
        let _ = match graph.value {
            ProfileValue::GrowthBytes => write!(
                title,
                "\ngrew {} ({share:.1}% of the growth in the scope)",
                human_bytes(self.value)
            ),
            _ => write!(
                title,
                "\n{} live ({share:.1}% of the scope)",
                human_bytes(self.value)
            ),
        };
        let _ = write!(
            title,
            ", estimated; {} site{}",
            self.sites,
            if self.sites == 1 { "" } else { "s" }
        );
        if !self.folded.is_empty() {
            title.push_str("\noutermost first:");
            for function in &self.folded {
                title.push('\n');
                title.push_str(function);
            }
        }
        write!(
            out,
            "<g><title>{}</title><rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" \
             height=\"{:.1}\" fill=\"{}\"/>",
            Esc(&title),
            FLAME_ROW - 1.0,
            flame_color(&self.name, self.kind, graph.value)
        )?;
        if let Some(label) = fit_label(&self.name, w - 6.0) {
            write!(
                out,
                "<text x=\"{:.2}\" y=\"{:.1}\">{}</text>",
                x + 3.0,
                y + FLAME_ROW - 5.0,
                Esc(&label)
            )?;
        }
        out.push_str("</g>\n");
        let mut at = x;
        for child in &self.children {
            child.draw(out, graph, at, depth + 1)?;
            at += child.value as f64 * graph.scale;
        }
        Ok(())
    }
}

/// What every box of one flame graph is drawn against.
struct Graph {
    value: ProfileValue,
    /// The root's figure.
    total: u64,
    /// SVG units per unit of the figure.
    scale: f64,
}

/// The crates whose frames are drawn pale and whose unbranched runs are folded into one box:
/// the standard library, its test harness and the hash map under its collections.
const LIBRARY_CRATES: [&str; 5] = ["std", "core", "alloc", "hashbrown", "test"];

/// The crate a path starts with (`alloc` for `&mut alloc::vec::Vec<T>`), if it names one.
fn leading_crate(path: &str) -> Option<&str> {
    let path = path.trim_start_matches(['&', '*', ' ']);
    let path = ["mut ", "const ", "dyn "]
        .iter()
        .find_map(|word| path.strip_prefix(word))
        .unwrap_or(path);
    let name = &path[..path.find("::")?];
    (!name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')).then_some(name)
}

/// The trait of a qualified path's inside (`Type as Trait>::method`): what follows the first
/// ` as ` outside any brackets.
fn qualified_trait(inside: &str) -> Option<&str> {
    let bytes = inside.as_bytes();
    let mut depth = 0i32;
    for (at, &b) in bytes.iter().enumerate() {
        match b {
            b'<' | b'(' | b'[' => depth += 1,
            // The arrow of `fn() -> T` closes nothing.
            b'>' if at > 0 && bytes[at - 1] == b'-' => {}
            b'>' | b')' | b']' => depth -= 1,
            b' ' if depth == 0 && inside[at..].starts_with(" as ") => {
                return Some(&inside[at + 4..]);
            }
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    None
}

/// Whether `function` belongs to the standard library, its test harness or hashbrown:
/// `alloc::vec::from_elem`, and `<alloc::vec::Vec<T> as core::clone::Clone>::clone` or
/// `<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem` too, but not a program's own
/// type's impl of a library trait (`<app::Index as core::fmt::Display>::fmt`).
fn is_library_function(function: &str) -> bool {
    let library = |path: &str| leading_crate(path).is_some_and(|c| LIBRARY_CRATES.contains(&c));
    match function.strip_prefix('<') {
        Some(inside) if leading_crate(inside).is_none() => {
            qualified_trait(inside).is_some_and(library)
        }
        Some(inside) => library(inside),
        None => library(function),
    }
}

/// `name`, whole or cut in its middle with an ellipsis, to fit `room` SVG units; `None` where
/// not even a few characters fit.
fn fit_label(name: &str, room: f64) -> Option<String> {
    let fits = (room / FLAME_CHAR_W).floor();
    if fits < 4.0 {
        return None;
    }
    let fits = fits as usize;
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= fits {
        return Some(name.to_string());
    }
    // A function is told apart by both ends of its path: its crate and its own name.
    let tail = (fits - 1) / 2;
    let head = fits - 1 - tail;
    let mut label: String = chars[..head].iter().collect();
    label.push('\u{2026}');
    label.extend(&chars[chars.len() - tail..]);
    Some(label)
}

/// A box's colour: warm for live bytes, red to magenta for growth, the same for a function in
/// every graph; pale for the library's frames, grey for the scope and the placeholders.
fn flame_color(name: &str, kind: NodeKind, value: ProfileValue) -> String {
    // FNV-1a: stable across runs, unlike the standard library's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let spread = (hash % 1000) as f64 / 1000.0;
    let shade = (hash / 1000 % 1000) as f64 / 1000.0;
    let growth = value == ProfileValue::GrowthBytes;
    match kind {
        NodeKind::Scope => "#c5ccd4".to_string(),
        NodeKind::Placeholder => "#dcdcdc".to_string(),
        NodeKind::Library => format!(
            "hsl({:.0},{}%,{:.0}%)",
            if growth { 345.0 } else { 32.0 } + spread * 12.0,
            if growth { 28 } else { 35 },
            76.0 + shade * 8.0
        ),
        NodeKind::Program => {
            let hue = if growth {
                (330.0 + spread * 36.0) % 360.0
            } else {
                8.0 + spread * 40.0
            };
            format!(
                "hsl({hue:.0},{}%,{:.0}%)",
                if growth { 62 } else { 80 },
                58.0 + shade * 10.0
            )
        }
    }
}

/// The flame graph of `scope`'s sites by `value`, as an SVG icicle: the scope on top, each
/// row the functions called by the row above, widths in proportion to the figure.
pub(crate) fn flame_graph(
    out: &mut String,
    scope: &ScopeProfile,
    value: ProfileValue,
) -> fmt::Result {
    let tree = FlameNode::of(scope, value);
    if tree.value == 0 {
        return Ok(());
    }
    let graph = Graph {
        value,
        total: tree.value,
        scale: FLAME_W / tree.value as f64,
    };
    let height = tree.rows(graph.scale) as f64 * FLAME_ROW;
    writeln!(
        out,
        "<svg class=\"flame{}\" viewBox=\"0 0 {FLAME_W} {height:.0}\" role=\"img\" \
         aria-label=\"Flame graph of {} by {}\">",
        if value == ProfileValue::GrowthBytes {
            " growth"
        } else {
            ""
        },
        Esc(scope_label(&scope.path)),
        if value == ProfileValue::GrowthBytes {
            "growth of live bytes"
        } else {
            "estimated live bytes"
        }
    )?;
    tree.draw(out, &graph, 0.0, 0)?;
    out.push_str("</svg>\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use memledger_monitor::{Frame, ProfileValue, ScopeProfile, Site};

    use super::{fit_label, is_library_function, FlameNode, Place, FLAME_CHAR_W};

    #[test]
    fn library_functions() {
        for library in [
            "alloc::vec::from_elem",
            "<alloc::vec::Vec<T> as core::clone::Clone>::clone",
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "<[T] as alloc::slice::hack::ConvertVec>::to_vec",
            "<&mut alloc::string::String as core::fmt::Write>::write_fmt",
            "<fn() -> core::result::Result<(), alloc::string::String> as \
             core::ops::function::FnOnce<()>>::call_once",
            "test::run_test_in_process",
            "hashbrown::raw::RawTable<T>::reserve_rehash",
        ] {
            assert!(is_library_function(library), "{library}");
        }
        for program in [
            "app::main",
            "<app::Index<&str> as core::fmt::Display>::fmt",
            "<u8 as app::Parse>::parse",
            "stdx::thing",
            "clone3",
            "??",
            "<broken as",
        ] {
            assert!(!is_library_function(program), "{program}");
        }
    }

    #[test]
    fn labels_fit_their_boxes() {
        assert_eq!(fit_label("app::main", 100.0).as_deref(), Some("app::main"));
        assert_eq!(fit_label("app::main", 20.0), None);
        let cut = fit_label("memledger_report::flame::draw_everything", 70.0).unwrap();
        assert_eq!(cut, "memle\u{2026}hing");
        assert!(cut.chars().count() as f64 * FLAME_CHAR_W <= 70.0);
        // Cut between characters, never inside one.
        let cut = fit_label("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}", 40.0).unwrap();
        assert_eq!(cut, "\u{e9}\u{e9}\u{2026}\u{e9}\u{e9}");
    }

    #[test]
    fn places_merge() {
        let file: Arc<str> = "src/app.rs".into();
        let mut place = Place::Unknown;
        place.merge(Place::At(Arc::clone(&file), Some(3)));
        assert_eq!(place.to_string(), "src/app.rs:3");
        place.merge(Place::At(Arc::clone(&file), Some(3)));
        assert_eq!(place.to_string(), "src/app.rs:3");
        place.merge(Place::Unknown);
        assert_eq!(place.to_string(), "src/app.rs:3");
        place.merge(Place::At(Arc::clone(&file), Some(9)));
        assert_eq!(place.to_string(), "src/app.rs, several lines");
        place.merge(Place::At("src/other.rs".into(), Some(1)));
        assert_eq!(place.to_string(), "several files");
    }

    #[test]
    fn library_runs_fold_only_where_the_stack_does_not_branch() {
        let frame = |function: &str| Frame {
            address: function.len() as u64,
            function: function.into(),
            file: None,
            line: None,
        };
        let site = |functions: &[&str], bytes: u64| Site {
            frames: functions.iter().rev().map(|f| frame(f)).collect(),
            truncated: false,
            live: memledger_monitor::Estimate {
                bytes,
                blocks: 1,
                samples: 1,
            },
            allocated: memledger_monitor::Estimate::default(),
            live_change: 0,
        };
        let run = ["std::a", "std::b", "core::c", "alloc::d", "alloc::e"];
        let scope = ScopeProfile {
            path: "s".to_string(),
            sites: vec![
                site(&[&["app::main"][..], &run[..], &["app::leaf"]].concat(), 30),
                // Ends inside the run: the run folds only down to where it ends.
                site(&[&["app::main"][..], &run[..2]].concat(), 10),
            ],
            live: memledger_monitor::Estimate::default(),
            allocated: memledger_monitor::Estimate::default(),
        };
        let tree = FlameNode::of(&scope, ProfileValue::LiveBytes);
        assert_eq!(tree.value, 40);
        let main = &tree.children[0];
        assert_eq!(
            (main.name.as_str(), main.value, main.sites),
            ("app::main", 40, 2)
        );
        // `std::a` and `std::b` carry both sites: two boxes, too short a run to fold.
        let a = &main.children[0];
        assert_eq!((a.name.as_str(), a.value), ("std::a", 40));
        let b = &a.children[0];
        assert_eq!((b.name.as_str(), b.value), ("std::b", 40));
        // The three under them carry one site: one box, which lists them.
        let folded = &b.children[0];
        assert_eq!(
            (folded.name.as_str(), folded.value),
            ("(3 library frames)", 30)
        );
        assert_eq!(folded.folded, ["core::c", "alloc::d", "alloc::e"]);
        assert_eq!(folded.children[0].name, "app::leaf");
    }
}
