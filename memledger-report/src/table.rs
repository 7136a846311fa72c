//! The table of the scopes in the last sample: live and peak bytes, share, growth, suspected
//! leaks and counts, each row in its series' colour.

use core::fmt::{self, Write as _};
use std::collections::HashMap;

use memledger::__private::human_bytes;
use memledger::{OVERFLOW_SCOPE, OWN_SCOPE};
use memledger_monitor::{GrowthRate, Sample};

use crate::chart::Series;
use crate::text::{human_duration, human_rate, scope_label, Esc};
use crate::Page;

impl Page<'_> {
    /// The scopes of the last sample.
    pub(crate) fn scope_table(
        &self,
        out: &mut String,
        series: &[Series],
        last: &Sample,
    ) -> fmt::Result {
        let snapshot = &last.snapshot;
        let total = snapshot.total_live_bytes();
        let growth: HashMap<&str, &GrowthRate> = last
            .scope_growth
            .iter()
            .map(|(path, rate)| (path.as_str(), rate))
            .collect();
        let mut scopes: Vec<_> = snapshot
            .scopes()
            .iter()
            .filter(|s| s.live_bytes > 0 || s.allocations > 0 || s.peak_bytes > 0)
            .collect();
        scopes.sort_by(|a, b| {
            b.live_bytes
                .cmp(&a.live_bytes)
                .then(b.peak_bytes.cmp(&a.peak_bytes))
                .then_with(|| a.path.cmp(&b.path))
        });
        let limits = scopes.iter().any(|s| s.limit_bytes.is_some());
        out.push_str("<section id=\"scopes\">\n<h2>Scopes</h2>\n");
        write!(
            out,
            "<p class=\"meta\">In the last sample, at {} after the sampler started: {} live in \
             {} scope{}.",
            human_duration(last.uptime),
            human_bytes(total),
            scopes.len(),
            if scopes.len() == 1 { "" } else { "s" }
        )?;
        if snapshot.refused_scopes() > 0 {
            write!(
                out,
                " {} scope{} refused for lack of room, booked to {}.",
                snapshot.refused_scopes(),
                if snapshot.refused_scopes() == 1 {
                    " was"
                } else {
                    "s were"
                },
                Esc(OVERFLOW_SCOPE)
            )?;
        }
        out.push_str("</p>\n");
        out.push_str(
            "<table class=\"scopes\">\n<thead><tr><th>scope</th><th>live now</th><th>share</th>\
             <th>peak</th><th>growth (window)</th><th>fit</th><th>since last</th>\
             <th>allocations</th><th>frees</th><th>resizes</th><th>live blocks</th>",
        );
        if limits {
            out.push_str("<th>limit</th><th>refused</th>");
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for s in &scopes {
            let k = series
                .iter()
                .position(|x| x.path.as_deref() == Some(s.path.as_str()));
            let leak = last.leaks.iter().any(|l| l.path == s.path);
            let (swatch, attr) = match k {
                Some(k) => (
                    format!(
                        "<span class=\"swatch\" style=\"background:{}\"></span>",
                        series[k].color
                    ),
                    format!(" data-series=\"{k}\""),
                ),
                None => (
                    "<span class=\"swatch none\"></span>".to_string(),
                    String::new(),
                ),
            };
            let kind = match s.path.as_str() {
                OWN_SCOPE => " class=\"own\"",
                _ if leak => " class=\"leak\"",
                _ => "",
            };
            write!(
                out,
                "<tr{attr}{kind}><td class=\"path\">{swatch}{}{}</td><td>{}</td><td>{:.1}%</td>\
                 <td>{}</td>",
                Esc(scope_label(&s.path)),
                if leak {
                    " <span class=\"badge small leak\">suspected leak</span>"
                } else {
                    ""
                },
                human_bytes(s.live_bytes),
                if total == 0 {
                    0.0
                } else {
                    s.live_bytes as f64 * 100.0 / total as f64
                },
                human_bytes(s.peak_bytes)
            )?;
            match growth.get(s.path.as_str()) {
                Some(rate) => write!(
                    out,
                    "<td>{}</td><td>{:.2}</td><td>{}</td>",
                    human_rate(rate.window),
                    rate.fit,
                    human_rate(rate.since_last)
                )?,
                None => out.push_str("<td class=\"dim\">-</td><td></td><td></td>"),
            }
            write!(
                out,
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                s.allocations,
                s.deallocations,
                s.reallocations,
                s.live_blocks()
            )?;
            if limits {
                match s.limit_bytes {
                    Some(limit) => write!(
                        out,
                        "<td>{}</td><td>{}</td>",
                        human_bytes(limit),
                        s.refused_allocations
                    )?,
                    None => out.push_str("<td class=\"dim\">-</td><td></td>"),
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        if !last.leaks.is_empty() {
            out.push_str("<ul class=\"leaks\">\n");
            for leak in &last.leaks {
                writeln!(
                    out,
                    "<li><span class=\"badge small leak\">suspected leak</span> <b>{}</b>: \
                     {} live, growing {} over {} (fit {:.2}, {} samples)</li>",
                    Esc(scope_label(&leak.path)),
                    human_bytes(leak.live_bytes),
                    human_rate(leak.rate.window),
                    human_duration(leak.rate.span),
                    leak.rate.fit,
                    leak.rate.samples
                )?;
            }
            out.push_str("</ul>\n");
        }
        out.push_str("</section>\n");
        Ok(())
    }
}
