//! The chart of every scope's live bytes over the recording: the series and the samples drawn,
//! the stacked areas, the RSS and the budget's limits over them, the legend, and the figures
//! for the cursor's tooltip.

use core::fmt::{self, Write as _};
use std::collections::HashMap;

use memledger::__private::human_bytes;
use memledger_monitor::{Budget, Sample};

use crate::text::{
    byte_tick_label, byte_ticks, json_numbers, json_string, scope_label, time_step,
    time_tick_label, Esc,
};
use crate::Page;

/// Scopes drawn in a colour of their own; the rest are summed as "other".
const MAX_SERIES: usize = 12;

/// Most points drawn along the time axis; longer recordings are thinned to this many.
const MAX_POINTS: usize = 1200;

/// A limit this many times the data's highest value or less is drawn on the chart.
const NEAR_LIMIT: f64 = 1.5;

/// The colours of the series, in order of their highest live bytes.
const PALETTE: [&str; MAX_SERIES] = [
    "#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
    "#9c755f", "#17becf", "#bcbd22", "#7f3c8d",
];

/// The colour of the "other" series.
const OTHER_COLOR: &str = "#b8b0a8";

/// The chart's size and margins, in SVG units.
const CHART_W: f64 = 1100.0;
const CHART_H: f64 = 420.0;
const MARGIN_L: f64 = 78.0;
const MARGIN_R: f64 = 16.0;
const MARGIN_T: f64 = 14.0;
const MARGIN_B: f64 = 38.0;

/// The plotting area inside the margins, in SVG units.
const PLOT_W: f64 = CHART_W - MARGIN_L - MARGIN_R;
const PLOT_H: f64 = CHART_H - MARGIN_T - MARGIN_B;

/// One coloured band of the chart.
pub(crate) struct Series {
    /// The scope's path, or `None` for the sum of the scopes without a colour of their own.
    pub(crate) path: Option<String>,
    /// What the legend says.
    label: String,
    pub(crate) color: &'static str,
    /// Live bytes at each chart point.
    values: Vec<f64>,
    /// The highest live bytes seen in any sample.
    peak: u64,
}

impl<'a> Page<'a> {
    /// The samples drawn on the chart: all of them, or at most [`MAX_POINTS`] picked so that
    /// each stretch of time keeps its highest ledger total.
    fn chart_samples(&self) -> Vec<&'a Sample> {
        let n = self.samples.len();
        if n <= MAX_POINTS {
            return self.samples.clone();
        }
        (0..MAX_POINTS)
            .filter_map(|bucket| {
                let start = bucket * n / MAX_POINTS;
                let end = ((bucket + 1) * n / MAX_POINTS).max(start + 1).min(n);
                self.samples[start..end]
                    .iter()
                    .copied()
                    .max_by_key(|s| s.snapshot.total_live_bytes())
            })
            .collect()
    }

    /// The chart's series: the scopes with the highest live bytes, then "other".
    pub(crate) fn series(&self) -> Vec<Series> {
        // Every scope that held bytes in some sample, with the most it held.
        let mut peaks: Vec<(String, u64)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for sample in &self.samples {
            for scope in sample.snapshot.scopes() {
                if scope.live_bytes == 0 {
                    continue;
                }
                match index.get(scope.path.as_str()) {
                    Some(&i) => peaks[i].1 = peaks[i].1.max(scope.live_bytes),
                    None => {
                        index.insert(scope.path.as_str(), peaks.len());
                        peaks.push((scope.path.clone(), scope.live_bytes));
                    }
                }
            }
        }
        peaks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let points = self.chart_samples();
        let mut series: Vec<Series> = peaks
            .iter()
            .take(MAX_SERIES)
            .enumerate()
            .map(|(i, (path, peak))| Series {
                path: Some(path.clone()),
                label: scope_label(path).to_string(),
                color: PALETTE[i],
                values: vec![0.0; points.len()],
                peak: *peak,
            })
            .collect();
        let rest = peaks.len().saturating_sub(MAX_SERIES);
        if rest > 0 {
            series.push(Series {
                path: None,
                label: format!("other ({rest} scopes)"),
                color: OTHER_COLOR,
                values: vec![0.0; points.len()],
                peak: 0,
            });
        }
        let other = series.len().saturating_sub(1);
        let slot: HashMap<&str, usize> = peaks
            .iter()
            .enumerate()
            .map(|(i, (path, _))| (path.as_str(), i.min(MAX_SERIES).min(other)))
            .collect();
        for (point, sample) in points.iter().enumerate() {
            let mut other_total = 0u64;
            for scope in sample.snapshot.scopes() {
                if scope.live_bytes == 0 {
                    continue;
                }
                if let Some(&s) = slot.get(scope.path.as_str()) {
                    series[s].values[point] += scope.live_bytes as f64;
                    if series[s].path.is_none() {
                        other_total = other_total.saturating_add(scope.live_bytes);
                    }
                }
            }
            if rest > 0 {
                series[other].peak = series[other].peak.max(other_total);
            }
        }
        series
    }

    /// The stacked-area chart, its legend and its notes.
    pub(crate) fn chart(&self, out: &mut String, series: &[Series], last: &Sample) -> fmt::Result {
        let points = self.chart_samples();
        let n = points.len();
        let times: Vec<f64> = points.iter().map(|s| s.uptime.as_secs_f64()).collect();
        let rss: Vec<Option<f64>> = points
            .iter()
            .map(|s| {
                s.reconciliation
                    .as_ref()
                    .ok()
                    .map(|r| r.process.rss_bytes as f64)
            })
            .collect();
        // Tops of the stack at each point.
        let mut stack = vec![vec![0.0f64; n]; series.len() + 1];
        for (k, s) in series.iter().enumerate() {
            let (below, above) = stack.split_at_mut(k + 1);
            for ((top, base), value) in above[0].iter_mut().zip(&below[k]).zip(&s.values) {
                *top = base + value;
            }
        }
        let totals = &stack[series.len()];
        let data_max = totals
            .iter()
            .copied()
            .chain(rss.iter().flatten().copied())
            .fold(0.0f64, f64::max);

        let limits = budget_limits(last.status.budget);
        let near = |bytes: u64| bytes > 0 && (bytes as f64) <= data_max.max(1.0) * NEAR_LIMIT;
        let top = limits
            .iter()
            .filter(|(_, b)| near(*b))
            .map(|(_, b)| *b as f64)
            .fold(data_max, f64::max)
            .max(1024.0);
        let plot = Plot::new(&times, top);

        out.push_str("<section id=\"timeline\">\n<h2>Live bytes per scope</h2>\n");
        out.push_str("<div class=\"chart-wrap\" id=\"chart-wrap\">\n");
        writeln!(
            out,
            "<svg id=\"chart\" class=\"chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" \
             role=\"img\" aria-label=\"Live bytes per scope over time\">"
        )?;
        plot.axes(out)?;
        plot.areas(out, series, &stack)?;
        let far = plot.limit_lines(out, &limits, near)?;
        let rss_drawn = plot.rss_line(out, &rss)?;
        writeln!(
            out,
            "<line id=\"cursor\" class=\"cursor\" x1=\"0\" x2=\"0\" y1=\"{MARGIN_T}\" \
             y2=\"{:.1}\" visibility=\"hidden\"/>",
            MARGIN_T + PLOT_H
        )?;
        writeln!(
            out,
            "<rect class=\"frame\" x=\"{MARGIN_L}\" y=\"{MARGIN_T}\" width=\"{PLOT_W:.1}\" \
             height=\"{PLOT_H:.1}\"/>"
        )?;
        out.push_str("</svg>\n<div id=\"tooltip\" class=\"tooltip\" hidden></div>\n</div>\n");

        legend(out, series, rss_drawn)?;
        if series.is_empty() {
            out.push_str("<p class=\"note\">No scope held any bytes in this recording.</p>\n");
        }
        if !far.is_empty() {
            writeln!(
                out,
                "<p class=\"note\">Budget: {}, off the chart (its top is {}).</p>",
                Esc(&far.join(", ")),
                byte_tick_label(plot.y_end, plot.y_unit)
            )?;
        }
        if n < self.samples.len() {
            writeln!(
                out,
                "<p class=\"note\">Drawn from {n} of the {} samples: each stretch of time \
                 keeps its sample with the most live bytes.</p>",
                self.samples.len()
            )?;
        }

        plot.figures(out, &times, &rss, series)?;
        out.push_str("</section>\n");
        Ok(())
    }
}

/// The budget's limits, merged where they coincide: their names and their bytes.
fn budget_limits(budget: Budget) -> Vec<(Vec<&'static str>, u64)> {
    let mut limits: Vec<(Vec<&str>, u64)> = Vec::new();
    for (name, bytes) in [
        ("soft", budget.soft),
        ("prompt", budget.prompt),
        ("hard", budget.hard),
    ] {
        match limits.iter_mut().find(|(_, b)| *b == bytes) {
            Some((names, _)) => names.push(name),
            None => limits.push((vec![name], bytes)),
        }
    }
    limits
}

/// Where the chart draws: the scales of its two axes, and the points along the time axis.
struct Plot {
    /// The time at the left end of the axis (seconds since the sampler started).
    t0: f64,
    /// The seconds the time axis spans.
    span: f64,
    /// Whether there is no time between the points.
    flat: bool,
    /// The step between byte ticks, the index of their unit, and the top of the byte axis.
    y_step: f64,
    y_unit: usize,
    y_end: f64,
    /// The x of each point drawn.
    xs: Vec<f64>,
    /// The chart sample each point draws.
    drawn: Vec<usize>,
}

impl Plot {
    /// The axes for the chart samples at `times` and figures up to `top` bytes.
    fn new(times: &[f64], top: f64) -> Plot {
        let n = times.len();
        let (y_step, y_unit, y_end) = byte_ticks(top * 1.04);

        let (first, t1) = (
            times.first().copied().unwrap_or(0.0),
            times.last().copied().unwrap_or(0.0),
        );
        let flat = t1 <= first;
        // The axis starts when the sampler did, unless the recording started much later.
        let t0 = if !flat && first > 0.0 && first <= (t1 - first) * 0.1 {
            0.0
        } else {
            first
        };
        let span = if flat { 1.0 } else { t1 - t0 };
        let mut plot = Plot {
            t0,
            span,
            flat,
            y_step,
            y_unit,
            y_end,
            xs: Vec::new(),
            drawn: Vec::new(),
        };
        // The x of each point; with no time between the points, the last one fills the width.
        (plot.xs, plot.drawn) = if flat {
            (vec![MARGIN_L, MARGIN_L + PLOT_W], vec![n - 1, n - 1])
        } else {
            (
                times.iter().map(|&t| plot.x_of(t)).collect(),
                (0..n).collect(),
            )
        };
        plot
    }

    fn x_of(&self, t: f64) -> f64 {
        MARGIN_L + (t - self.t0) / self.span * PLOT_W
    }

    fn y_of(&self, v: f64) -> f64 {
        MARGIN_T + PLOT_H - (v / self.y_end).clamp(0.0, 1.05) * PLOT_H
    }

    /// The grid, the byte and time ticks, and the time axis's label.
    fn axes(&self, out: &mut String) -> fmt::Result {
        // Grid and byte ticks.
        out.push_str("<g class=\"grid\">\n");
        let mut tick = 0.0;
        while tick <= self.y_end + self.y_step * 0.001 {
            let y = self.y_of(tick);
            writeln!(
                out,
                "<line x1=\"{MARGIN_L}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text class=\"ytick\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                MARGIN_L + PLOT_W,
                MARGIN_L - 6.0,
                y + 4.0,
                byte_tick_label(tick, self.y_unit)
            )?;
            tick += self.y_step;
        }
        // Time ticks.
        let (t0, span, flat) = (self.t0, self.span, self.flat);
        let t_step = time_step(span);
        let mut t = if flat {
            t0
        } else {
            (t0 / t_step).ceil() * t_step
        };
        let mut ticks = 0;
        while t <= t0 + span + t_step * 0.001 && ticks < 100 {
            let x = if flat {
                MARGIN_L + PLOT_W / 2.0
            } else {
                self.x_of(t)
            };
            writeln!(
                out,
                "<line class=\"xgrid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{MARGIN_T}\" \
                 y2=\"{:.1}\"/><text class=\"xtick\" x=\"{x:.1}\" y=\"{:.1}\">{}</text>",
                MARGIN_T + PLOT_H,
                MARGIN_T + PLOT_H + 16.0,
                time_tick_label(t, t_step)
            )?;
            if flat {
                break;
            }
            t += t_step;
            ticks += 1;
        }
        writeln!(
            out,
            "<text class=\"axis-label\" x=\"{:.1}\" y=\"{:.1}\">time since the sampler \
             started</text>",
            MARGIN_L + PLOT_W / 2.0,
            CHART_H - 3.0
        )?;
        out.push_str("</g>\n");
        Ok(())
    }

    /// The stacked areas, the largest scope at the bottom: each series between the tops of the
    /// stack below it (`stack[k]`) and with it (`stack[k + 1]`).
    fn areas(&self, out: &mut String, series: &[Series], stack: &[Vec<f64>]) -> fmt::Result {
        out.push_str("<g class=\"areas\">\n");
        for (k, s) in series.iter().enumerate() {
            let mut d = String::with_capacity(self.drawn.len() * 24);
            for (j, (&x, &i)) in self.xs.iter().zip(&self.drawn).enumerate() {
                let _ = write!(
                    d,
                    "{}{x:.1} {:.1}",
                    if j == 0 { "M" } else { "L" },
                    self.y_of(stack[k + 1][i])
                );
            }
            for (&x, &i) in self.xs.iter().zip(&self.drawn).rev() {
                let _ = write!(d, "L{x:.1} {:.1}", self.y_of(stack[k][i]));
            }
            d.push('Z');
            let scope_attr = match &s.path {
                Some(path) => format!(" data-scope=\"{}\"", Esc(path)),
                None => String::new(),
            };
            writeln!(
                out,
                "<path class=\"area\" data-series=\"{k}\"{scope_attr} fill=\"{}\" d=\"{d}\">\
                 <title>{}</title></path>",
                s.color,
                Esc(&s.label)
            )?;
        }
        out.push_str("</g>\n");
        Ok(())
    }

    /// The budget's limits within reach (`near`) as dashed lines; the others, as text for a
    /// note under the chart.
    fn limit_lines(
        &self,
        out: &mut String,
        limits: &[(Vec<&str>, u64)],
        near: impl Fn(u64) -> bool,
    ) -> Result<Vec<String>, fmt::Error> {
        let mut far = Vec::new();
        for (names, bytes) in limits {
            let label = format!("{} limit", names.join(" = "));
            if near(*bytes) {
                let y = self.y_of(*bytes as f64);
                writeln!(
                    out,
                    "<g class=\"limit limit-{}\"><line x1=\"{MARGIN_L}\" x2=\"{:.1}\" \
                     y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\">{label} {}</text>\
                     </g>",
                    names.last().copied().unwrap_or("hard"),
                    MARGIN_L + PLOT_W,
                    MARGIN_L + PLOT_W - 4.0,
                    y - 4.0,
                    human_bytes(*bytes)
                )?;
            } else {
                far.push(format!("{label} {}", human_bytes(*bytes)));
            }
        }
        Ok(far)
    }

    /// The RSS on top, broken where a sample could not read it; whether any of it was drawn.
    fn rss_line(&self, out: &mut String, rss: &[Option<f64>]) -> Result<bool, fmt::Error> {
        let mut d = String::new();
        let mut pen_down = false;
        for (&x, &i) in self.xs.iter().zip(&self.drawn) {
            match rss[i] {
                Some(v) => {
                    // A line starts with a dot, so that a point between two unread samples
                    // shows.
                    let _ = write!(
                        d,
                        "{}{x:.1} {:.1}{}",
                        if pen_down { "L" } else { "M" },
                        self.y_of(v),
                        if pen_down { "" } else { "l0 0" }
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !d.is_empty() {
            writeln!(
                out,
                "<path class=\"rss\" d=\"{d}\"><title>process RSS</title></path>"
            )?;
        }
        Ok(!d.is_empty())
    }

    /// The figures for the cursor's tooltip, as JSON for the page's script.
    fn figures(
        &self,
        out: &mut String,
        times: &[f64],
        rss: &[Option<f64>],
        series: &[Series],
    ) -> fmt::Result {
        let drawn = &self.drawn;
        out.push_str("<script type=\"application/json\" id=\"chart-data\">{\"x\":");
        json_numbers(out, self.xs.iter().map(|&x| Some(x)));
        out.push_str(",\"t\":");
        json_numbers(out, drawn.iter().map(|&i| Some(times[i])));
        out.push_str(",\"rss\":");
        json_numbers(out, drawn.iter().map(|&i| rss[i]));
        write!(out, ",\"width\":{CHART_W},\"series\":[")?;
        for (k, s) in series.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            out.push_str("{\"label\":");
            json_string(out, &s.label);
            out.push_str(",\"color\":");
            json_string(out, s.color);
            out.push_str(",\"v\":");
            json_numbers(out, drawn.iter().map(|&i| Some(s.values[i])));
            out.push('}');
        }
        out.push_str("]}</script>\n");
        Ok(())
    }
}

/// The legend: each series' colour, label and peak, and the RSS's line where it is drawn.
fn legend(out: &mut String, series: &[Series], rss_drawn: bool) -> fmt::Result {
    out.push_str("<ul class=\"legend\" id=\"legend\">\n");
    for (k, s) in series.iter().enumerate() {
        writeln!(
            out,
            "<li data-series=\"{k}\"><span class=\"swatch\" style=\"background:{}\"></span>\
             {} <span class=\"dim\">peak {}</span></li>",
            s.color,
            Esc(&s.label),
            human_bytes(s.peak)
        )?;
    }
    if rss_drawn {
        out.push_str("<li class=\"rss-key\"><span class=\"swatch line\"></span>process RSS</li>\n");
    }
    out.push_str("</ul>\n");
    Ok(())
}
