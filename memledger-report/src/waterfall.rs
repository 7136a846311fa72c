//! From the ledger to the RSS: the reconciliation of the last sample that has one, as a
//! waterfall of the layers under the ledger and the gaps between them.

use core::fmt::{self, Write as _};

use memledger::__private::{human_bytes, percent};
use memledger_monitor::{AllocatorStats, GapKind, Reconciliation};

use crate::text::{human_duration, Esc};
use crate::Page;

impl Page<'_> {
    /// The reconciliation of the last sample that has one, as a waterfall.
    pub(crate) fn waterfall(&self, out: &mut String) -> fmt::Result {
        out.push_str("<section id=\"reconciliation\">\n<h2>From the ledger to the RSS</h2>\n");
        let found = self
            .samples
            .iter()
            .rev()
            .find_map(|s| s.reconciliation.as_ref().ok().map(|r| (s, r)));
        let Some((sample, r)) = found else {
            out.push_str(
                "<p class=\"note\">No sample could read the process's memory, so there is no \
                 reconciliation to show.</p>\n",
            );
            if let Some(Err(e)) = self.samples.last().map(|s| &s.reconciliation) {
                writeln!(out, "<p class=\"note\">{}</p>", Esc(&e.to_string()))?;
            }
            out.push_str("</section>\n");
            return Ok(());
        };
        writeln!(
            out,
            "<p class=\"meta\">The sample at {} after the sampler started: the bytes the ledger \
             books, each layer under it, and every gap between them named and sized.</p>",
            human_duration(sample.uptime)
        )?;
        let rows = waterfall_rows(r);
        let scale = rows
            .iter()
            .map(|row| row.from.max(row.to))
            .fold(1u64, u64::max) as f64;
        const ROW_H: f64 = 26.0;
        const LABEL_W: f64 = 360.0;
        const VALUE_W: f64 = 170.0;
        const WIDTH: f64 = 1100.0;
        let bar_w = WIDTH - LABEL_W - VALUE_W - 10.0;
        let height = rows.len() as f64 * ROW_H + 8.0;
        let x_of = |v: u64| LABEL_W + v as f64 / scale * bar_w;
        let rss = r.process.rss_bytes;
        let pct = |v: u64| percent(v, rss);
        writeln!(
            out,
            "<svg class=\"waterfall\" viewBox=\"0 0 {WIDTH} {height:.0}\" role=\"img\" \
             aria-label=\"Reconciliation waterfall\">"
        )?;
        for (i, row) in rows.iter().enumerate() {
            let y = 4.0 + i as f64 * ROW_H;
            let (lo, hi) = (row.from.min(row.to), row.from.max(row.to));
            let w = (x_of(hi) - x_of(lo)).max(if hi > lo { 1.0 } else { 0.0 });
            let sign = match row.kind {
                RowKind::Gap => "+ ",
                RowKind::Overlap => "\u{2212} ",
                RowKind::Layer => "",
            };
            writeln!(
                out,
                "<g class=\"row {}\"><text class=\"label\" x=\"{:.1}\" y=\"{:.1}\">{sign}{}\
                 </text><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\"/>\
                 <text class=\"value\" x=\"{:.1}\" y=\"{:.1}\">{} ({:.1}%)</text></g>",
                row.kind.class(),
                LABEL_W - 8.0,
                y + 17.0,
                Esc(&row.label),
                x_of(lo),
                y + 3.0,
                ROW_H - 6.0,
                WIDTH - 4.0,
                y + 17.0,
                human_bytes(hi - lo),
                pct(hi - lo)
            )?;
        }
        out.push_str("</svg>\n");
        if let Err(why) = &r.allocator {
            writeln!(out, "<p class=\"note\">{}</p>", Esc(&why.to_string()))?;
        }
        if let Some(cgroup) = &r.cgroup {
            write!(
                out,
                "<p class=\"meta\">cgroup usage {}",
                human_bytes(cgroup.usage_bytes)
            )?;
            match cgroup.limit_bytes {
                Some(limit) => writeln!(out, ", limit {}.</p>", human_bytes(limit))?,
                None => out.push_str(", no limit.</p>\n"),
            }
        }
        writeln!(
            out,
            "<details><summary>The reconciliation as text</summary><pre>{}</pre></details>",
            Esc(&r.to_string())
        )?;
        out.push_str("</section>\n");
        Ok(())
    }
}

/// What a waterfall row is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowKind {
    /// A layer, from zero to its bytes.
    Layer,
    /// A gap, from the layers below it to the next.
    Gap,
    /// Layers that overlap: taken off the running sum.
    Overlap,
}

impl RowKind {
    fn class(self) -> &'static str {
        match self {
            RowKind::Layer => "layer",
            RowKind::Gap => "gap",
            RowKind::Overlap => "overlap",
        }
    }
}

/// One row of the waterfall: a bar from `from` to `to`.
struct Row {
    label: String,
    kind: RowKind,
    from: u64,
    to: u64,
}

/// The waterfall: the ledger, each gap on top of the running sum, each of jemalloc's layers
/// after the gaps that lead to it, the overlap between layers if any, and the RSS.
fn waterfall_rows(r: &Reconciliation) -> Vec<Row> {
    let layer = |label: &str, bytes: u64| Row {
        label: label.to_string(),
        kind: RowKind::Layer,
        from: 0,
        to: bytes,
    };
    let allocator: Option<&AllocatorStats> = r.allocator.as_ref().ok();
    let mut rows = vec![layer("ledger (requested bytes)", r.ledger_bytes)];
    let mut sum = r.ledger_bytes;
    for gap in r.gaps() {
        let to = sum.saturating_add(gap.bytes);
        rows.push(Row {
            label: gap.kind.describe().to_string(),
            kind: RowKind::Gap,
            from: sum,
            to,
        });
        sum = to;
        if let Some(a) = allocator {
            match gap.kind {
                GapKind::SizeClassRounding => rows.push(layer("jemalloc allocated", a.allocated)),
                GapKind::Fragmentation => rows.push(layer("jemalloc active", a.active)),
                GapKind::DirtyPages => rows.push(layer("jemalloc resident", a.resident)),
                _ => {}
            }
        }
    }
    let remainder = r.remainder();
    if remainder < 0 {
        let to = sum.saturating_sub(remainder.unsigned_abs());
        rows.push(Row {
            label: "overlap between layers".to_string(),
            kind: RowKind::Overlap,
            from: sum,
            to,
        });
    }
    rows.push(layer("process RSS", r.process.rss_bytes));
    rows
}
