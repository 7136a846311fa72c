//! One self-contained HTML page from a memledger recording.
//!
//! [`render_html`] turns a [`Recording`] into a single HTML page that opens in any browser
//! without a network: every style, chart and script is inline, and the page's content security
//! policy forbids loading anything from elsewhere. The `memledger-report` command of this crate
//! does the same for a recording file:
//!
//! ```text
//! memledger-report recording.jsonl -o report.html
//! ```
//!
//! The page holds:
//!
//! - the budget status of the last sample: its level, its one-line summary, the measured figure
//!   against the soft, prompt and hard limits, and the scopes to look at;
//! - a stacked-area chart of every scope's live bytes over the recording (the twelve scopes with
//!   the highest live bytes get their own colour, the rest are summed as "other"), with the
//!   process's RSS drawn as a line on top and the budget's limits as dashed lines when they are
//!   within reach of the chart (a note gives them otherwise). Hovering shows the figures at the
//!   cursor; hovering a legend entry or a table row picks out its scope;
//! - a table of the scopes in the last sample: live and peak bytes, share of the ledger, growth
//!   rate and fit, suspected leaks, and the allocation, free and resize counts;
//! - where the memory was allocated, from the last sample that carries a profile of the sampled
//!   allocation sites (`SamplerBuilder::profile_every`, or the profile the sampler takes when it
//!   first suspects a leak): for the three largest scopes, the suspected leaks and the scopes
//!   whose sites grew since the first profile (six at most), a flame graph of the scope's sites
//!   by estimated live bytes, another by growth for the scopes that grew, and their top sites.
//!   Each box's tooltip names its function, its file and line, its bytes and its share; runs of
//!   three frames or more of the standard library (or its test harness, or hashbrown) that do
//!   not branch are folded into one box. A recording without a profile says how to get one;
//! - the reconciliation of the last sample that has one, as a waterfall from the ledger through
//!   jemalloc's `allocated`, `active` and `resident` to the RSS, every gap named and sized.
//!
//! Opened with `#check` at the end of its address, the page moves the cursor over the chart and
//! onto the first legend entry once, so that a headless browser can check the interactive parts.
//!
//! A recording without samples gives a page that says so. Scope names and every other text
//! taken from the recording are escaped.
//!
//! ```
//! # #[global_allocator]
//! # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
//! # fn main() -> Result<(), memledger_monitor::Error> {
//! use memledger_monitor::{Recording, RecordingHeader};
//!
//! let sampler = memledger_monitor::Sampler::builder().start()?;
//! let index = memledger::in_scope("global_index", || vec![0u8; 1 << 20]);
//! let recording = Recording {
//!     header: RecordingHeader::now(),
//!     samples: vec![sampler.sample_now().as_ref().clone()],
//! };
//! let html = memledger_report::render_html(&recording);
//! assert!(html.starts_with("<!DOCTYPE html>"));
//! assert!(html.contains("global_index"));
//!
//! // A recording read back from a file works the same way.
//! let header_only = concat!(
//!     r#"{"memledger_recording":1,"started_at":{"secs_since_epoch":0,"nanos_since_epoch":0},"#,
//!     r#""pid":7,"program":null}"#,
//! );
//! let empty = Recording::read(header_only.as_bytes()).unwrap();
//! assert!(memledger_report::render_html(&empty).contains("no samples"));
//! # drop(index);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod chart;
mod flame;
mod sites;
mod table;
mod text;
mod waterfall;

use core::fmt::{self, Write as _};
use core::time::Duration;

use memledger::__private::human_bytes;
use memledger_monitor::{Recording, Sample};

use crate::text::{human_duration, human_rate, level_name, scope_label, utc, Esc};

/// Renders `recording` as one self-contained HTML page.
///
/// Never panics, whatever the recording holds: an empty recording gives a page that says it has
/// no samples, and a single sample is drawn across the whole chart. See the
/// [module documentation](self) for what the page shows.
pub fn render_html(recording: &Recording) -> String {
    let mut out = String::with_capacity(64 * 1024 + recording.samples.len() * 256);
    // Writing to a `String` cannot fail.
    let _ = Page::new(recording).write(&mut out);
    out
}

/// Renders `recording` as the page of [`render_html`], for a running program that serves it
/// (`memledger-http` does, at `/debug/memledger/`): the page fetches its own address again every
/// `refresh` (at least 250 ms) and puts the new content in place of the old, without a reload,
/// keeping the reader's scroll position.
///
/// The differences from [`render_html`]'s page are only these: the content security policy also
/// allows `connect-src 'self'` (the refetch, to the page's own origin and nowhere else), a small
/// inline script in the head does the refetching, the title and footer say the page is live, and
/// the body counts its refreshes in `data-refreshes` (a failed refetch is kept in
/// `data-refresh-error` and tried again at the next interval). Nothing is fetched from
/// elsewhere, so the page works without a network.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
/// # fn main() -> Result<(), memledger_monitor::Error> {
/// use memledger_monitor::{Recording, RecordingHeader};
/// let sampler = memledger_monitor::Sampler::builder().start()?;
/// let recording = Recording {
///     header: RecordingHeader::now(),
///     samples: vec![sampler.sample_now().as_ref().clone()],
/// };
/// let html = memledger_report::render_live_html(&recording, std::time::Duration::from_secs(2));
/// assert!(html.contains("connect-src 'self'"));
/// assert!(!memledger_report::render_html(&recording).contains("connect-src"));
/// # Ok(())
/// # }
/// ```
pub fn render_live_html(recording: &Recording, refresh: Duration) -> String {
    let mut out = String::with_capacity(64 * 1024 + recording.samples.len() * 256);
    let mut page = Page::new(recording);
    page.live = Some(refresh.max(Duration::from_millis(250)));
    // Writing to a `String` cannot fail.
    let _ = page.write(&mut out);
    out
}

/// What the page is drawn from.
struct Page<'a> {
    recording: &'a Recording,
    /// The samples in time order.
    samples: Vec<&'a Sample>,
    /// A live page's refresh interval; `None` for a recording's page.
    live: Option<Duration>,
}

impl<'a> Page<'a> {
    fn new(recording: &'a Recording) -> Page<'a> {
        let mut samples: Vec<&Sample> = recording.samples.iter().collect();
        samples.sort_by(|a, b| a.uptime.cmp(&b.uptime).then(a.sequence.cmp(&b.sequence)));
        Page {
            recording,
            samples,
            live: None,
        }
    }

    fn title(&self) -> String {
        match &self.recording.header.program {
            Some(program) if !program.is_empty() => {
                let name = program.rsplit(['/', '\\']).next().unwrap_or(program);
                format!("memledger {}: {name}", self.kind())
            }
            _ => format!(
                "memledger {}: process {}",
                self.kind(),
                self.recording.header.pid
            ),
        }
    }

    /// What the title calls the page.
    fn kind(&self) -> &'static str {
        match self.live {
            Some(_) => "live",
            None => "report",
        }
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        self.head(out)?;
        out.push_str("<body>\n");
        self.header(out)?;
        match self.samples.last() {
            None => {
                out.push_str(
                    "<section class=\"empty\"><h2>No samples</h2><p>This recording has no \
                     samples: it holds only its header line. The sampler wrote no tick before \
                     the recording stopped.</p></section>\n",
                );
            }
            Some(last) => {
                self.status(out, last)?;
                let series = self.series();
                self.chart(out, &series, last)?;
                self.scope_table(out, &series, last)?;
                self.sites(out, last)?;
                self.waterfall(out)?;
            }
        }
        match self.live {
            None => out.push_str("<footer>Written by memledger from a recording of "),
            Some(refresh) => write!(
                out,
                "<footer>Live from the running process, refreshed every {}; drawn from the last ",
                human_duration(refresh)
            )?,
        }
        write!(
            out,
            "{} sample{}.",
            self.samples.len(),
            if self.samples.len() == 1 { "" } else { "s" }
        )?;
        out.push_str("</footer>\n");
        out.push_str("<script>\n");
        out.push_str(SCRIPT);
        out.push_str("</script>\n</body>\n</html>\n");
        Ok(())
    }

    fn head(&self, out: &mut String) -> fmt::Result {
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        out.push_str(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
             style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        );
        if self.live.is_some() {
            // The refetch of the page itself, and nothing else.
            out.push_str("; connect-src 'self'");
        }
        out.push_str("\">\n");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        writeln!(out, "<title>{}</title>", Esc(&self.title()))?;
        out.push_str("<script>\n");
        out.push_str(ERROR_SCRIPT);
        if let Some(refresh) = self.live {
            out.push_str("</script>\n<script>\n");
            writeln!(
                out,
                "window.__memledgerRefreshMs = {};",
                refresh.as_millis()
            )?;
            out.push_str(LIVE_SCRIPT);
        }
        out.push_str("</script>\n<style>\n");
        out.push_str(STYLE);
        out.push_str("</style>\n</head>\n");
        Ok(())
    }

    fn header(&self, out: &mut String) -> fmt::Result {
        let header = &self.recording.header;
        writeln!(out, "<header>\n<h1>{}</h1>", Esc(&self.title()))?;
        out.push_str("<p class=\"meta\">");
        if let Some(program) = &header.program {
            write!(out, "<span><b>program</b> {}</span> ", Esc(program))?;
        }
        write!(out, "<span><b>pid</b> {}</span> ", header.pid)?;
        write!(
            out,
            "<span><b>started</b> {}</span> ",
            Esc(&utc(header.started_at))
        )?;
        write!(out, "<span><b>samples</b> {}</span> ", self.samples.len())?;
        if let (Some(first), Some(last)) = (self.samples.first(), self.samples.last()) {
            let span = last.uptime.saturating_sub(first.uptime);
            write!(out, "<span><b>span</b> {}</span> ", human_duration(span))?;
            if self.samples.len() > 1 {
                let interval = span / (self.samples.len() as u32 - 1).max(1);
                write!(
                    out,
                    "<span><b>interval</b> about {}</span> ",
                    human_duration(interval)
                )?;
            }
            let failed = self
                .samples
                .iter()
                .filter(|s| s.reconciliation.is_err())
                .count();
            if failed > 0 {
                write!(
                    out,
                    "<span class=\"warn\"><b>unread</b> the process's memory could not be read \
                     in {failed} sample{}</span> ",
                    if failed == 1 { "" } else { "s" }
                )?;
            }
        }
        out.push_str("</p>\n</header>\n");
        Ok(())
    }

    /// The budget status of the last sample.
    fn status(&self, out: &mut String, last: &Sample) -> fmt::Result {
        let status = &last.status;
        let budget = &status.budget;
        let level = level_name(status.level);
        out.push_str("<section id=\"status\">\n");
        writeln!(
            out,
            "<p class=\"status level-{level}\"><span class=\"badge\">{level}</span> {}</p>",
            Esc(&status.summary)
        )?;
        out.push_str("<p class=\"figures\">");
        write!(
            out,
            "<span><b>{}</b> {} ({:.1}% of the total)</span> ",
            Esc(&status.measure.to_string()),
            human_bytes(status.current_bytes),
            status.percent_of_total
        )?;
        write!(
            out,
            "<span><b>soft</b> {} ({:.0}%)</span> <span><b>prompt</b> {} ({:.0}%)</span> \
             <span><b>hard</b> {} ({:.0}%)</span> <span><b>total</b> {}</span> \
             <span><b>available</b> {}</span> <span><b>growth</b> {} over the window</span>",
            human_bytes(budget.soft),
            status.percent_of_soft,
            human_bytes(budget.prompt),
            status.percent_of_prompt,
            human_bytes(budget.hard),
            status.percent_of_hard,
            human_bytes(budget.total),
            human_bytes(status.available_bytes),
            human_rate(status.growth.window),
        )?;
        out.push_str("</p>\n");
        if let Some(note) = &status.note {
            writeln!(out, "<p class=\"note\">{}</p>", Esc(note))?;
        }
        if !status.recommendations.is_empty() {
            out.push_str("<ul class=\"recommendations\">\n");
            for r in &status.recommendations {
                writeln!(
                    out,
                    "<li><b>{}</b>: {}</li>",
                    Esc(scope_label(&r.path)),
                    Esc(&r.message)
                )?;
            }
            out.push_str("</ul>\n");
        }
        if !status.scopes.is_empty() {
            out.push_str(
                "<table class=\"scope-budgets\"><caption>Scopes with budgets of their own\
                 </caption>\n<thead><tr><th>scope</th><th>level</th><th>live</th><th>soft</th>\
                 <th>hard</th><th>of hard</th><th>enforced</th><th>refused</th></tr></thead>\n\
                 <tbody>\n",
            );
            for s in &status.scopes {
                let level = level_name(s.level);
                writeln!(
                    out,
                    "<tr><td class=\"path\">{}</td><td><span class=\"badge small level-{level}\">\
                     {level}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td>\
                     <td>{}</td><td>{}</td></tr>",
                    Esc(scope_label(&s.path)),
                    human_bytes(s.live_bytes),
                    human_bytes(s.budget.soft),
                    human_bytes(s.budget.hard),
                    s.percent_of_hard,
                    if s.budget.enforce { "yes" } else { "no" },
                    s.refused_allocations
                )?;
            }
            out.push_str("</tbody></table>\n");
        }
        writeln!(
            out,
            "<details><summary>The status as text</summary><pre>{}</pre></details>",
            Esc(&status.to_string())
        )?;
        out.push_str("</section>\n");
        Ok(())
    }
}

/// Registered before anything else runs: every script error is kept on the page's body, in
/// `data-errors`, for a reader (or a test) to see.
const ERROR_SCRIPT: &str = include_str!("assets/errors.js");

/// The page's script: the cursor's tooltip and the highlighting of one series. Sets
/// `data-ready="1"` on the body once it is set up.
const SCRIPT: &str = include_str!("assets/page.js");

const STYLE: &str = include_str!("assets/page.css");

/// A live page's refetch: every `window.__memledgerRefreshMs`, the page's own address again, its
/// body put in place of the current one and its scripts run again.
const LIVE_SCRIPT: &str = include_str!("assets/live.js");

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
