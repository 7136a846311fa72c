//! Where the memory was allocated: the scopes that get flame graphs from the last profile a
//! sample carries, and for each its figures, its graphs and its top sites.

use core::fmt::{self, Write as _};
use std::borrow::Cow;

use memledger::__private::human_bytes;
use memledger::OWN_SCOPE;
use memledger_monitor::{Profile, ProfileValue, Sample, ScopeProfile, Site};

use crate::flame::flame_graph;
use crate::text::{human_duration, scope_label, signed_bytes, Esc};
use crate::Page;

/// Scopes given flame graphs, at most.
const MAX_FLAME_SCOPES: usize = 6;

/// The largest scopes, by estimated live bytes, that get a flame graph whether or not they grew.
const LARGEST_FLAME_SCOPES: usize = 3;

/// Sites listed under a scope's graphs.
const TABLE_SITES: usize = 5;

impl Page<'_> {
    /// Where the memory of the largest and the growing scopes was allocated, from the last
    /// profile a sample carries: a flame graph of each scope's sites and its top sites.
    pub(crate) fn sites(&self, out: &mut String, last: &Sample) -> fmt::Result {
        out.push_str("<section id=\"sites\">\n<h2>Where the memory was allocated</h2>\n");
        let profiled: Vec<(&Sample, &Profile)> = self
            .samples
            .iter()
            .filter_map(|s| s.profile.as_deref().map(|p| (*s, p)))
            .collect();
        let (Some(&(first_sample, first)), Some(&(latest_sample, latest))) =
            (profiled.first(), profiled.last())
        else {
            out.push_str(
                "<p class=\"note\">No sample in this recording carries a profile of the sampled \
                 allocation sites, so there is nothing to show here. A sampler started with \
                 <code>SamplerBuilder::profile_every(interval)</code> takes one on that interval \
                 (and one when it first suspects a leak); sampling is on by default where the \
                 monitor's <code>profile</code> feature is.</p>\n</section>\n",
            );
            return Ok(());
        };
        // With a second profile, each site's `live_change` is its growth since the first; a
        // lone profile's `live_change` only repeats its live bytes, which is no growth.
        let compared = profiled.len() > 1;
        let profile: Cow<'_, Profile> = if compared {
            Cow::Owned(latest.since(first))
        } else {
            Cow::Borrowed(latest)
        };
        let sampled: u64 = profile.scopes.iter().map(|s| s.live.samples).sum();
        write!(
            out,
            "<p class=\"meta\">From the profile of the sample at {} after the sampler started",
            human_duration(latest_sample.uptime)
        )?;
        if compared {
            write!(
                out,
                " (the last of {} samples with a profile); growth is each site's change in live \
                 bytes since the first profile, at {}",
                profiled.len(),
                human_duration(first_sample.uptime)
            )?;
        }
        out.push_str(". ");
        if profile.rate > 0 {
            write!(
                out,
                "One allocation in every {} allocated, on average, was sampled: every figure \
                 here is an estimate scaled up from the sampled blocks ({sampled} live sample{} \
                 in all), and the fewer samples behind a figure, the rougher it is.",
                human_bytes(profile.rate),
                if sampled == 1 { "" } else { "s" }
            )?;
        } else {
            out.push_str("Sampling was off when the profile was taken.");
        }
        out.push_str("</p>\n");
        if !compared {
            out.push_str(
                "<p class=\"note\">Only one sample carries a profile, so there is no growth to \
                 show: <code>SamplerBuilder::profile_every</code> takes profiles on an interval, \
                 and the page compares the last one with the first.</p>\n",
            );
        }
        if profile.missing_line_tables {
            // Once for the whole section: every site's name is as rough for the same reason.
            out.push_str(
                "<p class=\"note\">The program was built without line tables, so sites name \
                 functions without files or lines, and functions inlined into their callers are \
                 not seen (a site with none of the program's own frames left says so). Add \
                 <code>debug = \"line-tables-only\"</code> (or <code>debug = 1</code>) under \
                 <code>[profile.release]</code> in <code>Cargo.toml</code>.</p>\n",
            );
        }
        if profile.usage.dropped_samples > 0 {
            writeln!(
                out,
                "<p class=\"note\">{} sample{} found no room in the sampling tables: the \
                 estimates are too low.</p>",
                profile.usage.dropped_samples,
                if profile.usage.dropped_samples == 1 {
                    ""
                } else {
                    "s"
                }
            )?;
        }

        let (chosen, left_out) = chosen_scopes(&profile, last, compared);
        if chosen.is_empty() {
            out.push_str("<p class=\"note\">The profile holds no sampled live blocks.</p>\n");
        }
        for pick in &chosen {
            scope_sites(out, pick, compared)?;
        }
        if !left_out.is_empty() {
            let names: Vec<String> = left_out
                .iter()
                .take(10)
                .map(|s| Esc(scope_label(&s.path)).to_string())
                .collect();
            writeln!(
                out,
                "<p class=\"note\">Also growing or suspected, not drawn (at most \
                 {MAX_FLAME_SCOPES} scopes are): {}{}.</p>",
                names.join(", "),
                if left_out.len() > names.len() {
                    format!(" and {} more", left_out.len() - names.len())
                } else {
                    String::new()
                }
            )?;
        }
        let unsampled: Vec<String> = last
            .leaks
            .iter()
            // memledger takes no samples in its own scope, so it never has sites to show.
            .filter(|l| l.path != OWN_SCOPE && !profile.scopes.iter().any(|s| s.path == l.path))
            .map(|l| Esc(scope_label(&l.path)).to_string())
            .collect();
        if !unsampled.is_empty() {
            writeln!(
                out,
                "<p class=\"note\">Suspected leak{} without sampled sites in the profile: {}.</p>",
                if unsampled.len() == 1 { "" } else { "s" },
                unsampled.join(", ")
            )?;
        }
        out.push_str("</section>\n");
        Ok(())
    }
}

/// One chosen scope: its figures, its flame graphs and its top sites.
fn scope_sites(out: &mut String, pick: &Chosen<'_>, compared: bool) -> fmt::Result {
    let scope = pick.scope;
    writeln!(
        out,
        "<div class=\"flame-scope\" data-scope=\"{}\">",
        Esc(&scope.path)
    )?;
    write!(out, "<h3>{}", Esc(scope_label(&scope.path)))?;
    if pick.leak {
        out.push_str(" <span class=\"badge small leak\">suspected leak</span>");
    }
    let mut why = Vec::new();
    if pick.largest {
        why.push(format!("one of the {LARGEST_FLAME_SCOPES} largest"));
    }
    if pick.grows() {
        why.push("grew".to_string());
    }
    if !why.is_empty() {
        write!(out, " <span class=\"dim\">{}</span>", why.join(", "))?;
    }
    out.push_str("</h3>\n");
    write!(
        out,
        "<p class=\"meta\">{} live in about {} block{}, estimated from {} sampled block{}",
        human_bytes(scope.live.bytes),
        scope.live.blocks,
        if scope.live.blocks == 1 { "" } else { "s" },
        scope.live.samples,
        if scope.live.samples == 1 { "" } else { "s" }
    )?;
    if compared {
        match (pick.net, pick.growth) {
            (0, 0) => out.push_str("; no change since the first profile"),
            (net, growth) if net == growth as i64 || growth == 0 => {
                write!(out, "; {} since the first profile", signed_bytes(net))?
            }
            (net, growth) => write!(
                out,
                "; {} since the first profile ({} at the sites that grew)",
                signed_bytes(net),
                signed_bytes(growth as i64)
            )?,
        }
    }
    out.push_str(".</p>\n");
    if scope.live.bytes > 0 {
        writeln!(
            out,
            "<h4>{}: by estimated live bytes</h4>",
            Esc(scope_label(&scope.path))
        )?;
        flame_graph(out, scope, ProfileValue::LiveBytes)?;
    } else {
        out.push_str("<p class=\"note\">No sampled block is live.</p>\n");
    }
    if pick.grows() {
        writeln!(
            out,
            "<h4>{}: by growth of live bytes since the first profile</h4>",
            Esc(scope_label(&scope.path))
        )?;
        flame_graph(out, scope, ProfileValue::GrowthBytes)?;
    }

    // The sites behind the graph that says the most about the scope.
    let mut sites: Vec<&Site> = scope.sites.iter().collect();
    if pick.grows() {
        sites.sort_by_key(|s| std::cmp::Reverse(s.live_change));
    } else {
        sites.sort_by_key(|s| std::cmp::Reverse(s.live.bytes));
    }
    sites.truncate(TABLE_SITES);
    writeln!(
        out,
        "<table class=\"sites\"><caption>Top sites by {}</caption>\n<thead><tr>\
         <th>site</th><th>live</th><th>blocks</th><th>growth</th><th>samples</th></tr>\
         </thead>\n<tbody>",
        if pick.grows() { "growth" } else { "live bytes" }
    )?;
    for site in sites {
        write!(
            out,
            "<tr><td class=\"path\">{}{}</td><td>{}</td><td>{}</td>",
            Esc(&site.label()),
            if site.truncated && !site.frames.is_empty() {
                " <span class=\"dim\">(stack cut)</span>"
            } else {
                ""
            },
            human_bytes(site.live.bytes),
            site.live.blocks
        )?;
        if compared {
            write!(out, "<td>{}</td>", signed_bytes(site.live_change))?;
        } else {
            out.push_str("<td class=\"dim\">-</td>");
        }
        writeln!(out, "<td>{}</td></tr>", site.live.samples)?;
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    Ok(())
}

/// A scope picked for a flame graph, and why.
struct Chosen<'p> {
    scope: &'p ScopeProfile,
    /// One of the [`LARGEST_FLAME_SCOPES`] largest by live bytes.
    largest: bool,
    /// A suspected leak in the last sample.
    leak: bool,
    /// The growth of the sites that grew since the first profile (0 without one).
    growth: u64,
    /// The change of the scope's live bytes since the first profile.
    net: i64,
}

impl Chosen<'_> {
    /// Whether the scope grew since the first profile. Sampled estimates wander, so some site
    /// of almost any scope seems to grow a little: a scope counts as growing when its sites
    /// grew on the whole, or when it is a suspected leak whose sites grew at all.
    fn grows(&self) -> bool {
        self.growth > 0 && (self.net > 0 || self.leak)
    }
}

/// The scopes of `profile` that get flame graphs, in the order drawn: the largest, the
/// suspected leaks of `last`, then the scopes that grew the most, each once and at most
/// [`MAX_FLAME_SCOPES`]; and the growing or suspected scopes that found no room.
fn chosen_scopes<'p>(
    profile: &'p Profile,
    last: &Sample,
    compared: bool,
) -> (Vec<Chosen<'p>>, Vec<&'p ScopeProfile>) {
    let mut all: Vec<Chosen<'p>> = profile
        .scopes
        .iter()
        .map(|scope| {
            let (growth, net) = if compared {
                scope.sites.iter().fold((0u64, 0i64), |(g, n), s| {
                    (
                        g.saturating_add(ProfileValue::GrowthBytes.of(s)),
                        n.saturating_add(s.live_change),
                    )
                })
            } else {
                (0, 0)
            };
            Chosen {
                scope,
                largest: false,
                leak: last.leaks.iter().any(|l| l.path == scope.path),
                growth,
                net,
            }
        })
        .collect();
    let mut by_live: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].scope.live.bytes > 0)
        .collect();
    by_live.sort_by(|&a, &b| {
        let (a, b) = (all[a].scope, all[b].scope);
        b.live
            .bytes
            .cmp(&a.live.bytes)
            .then_with(|| a.path.cmp(&b.path))
    });
    for &i in by_live.iter().take(LARGEST_FLAME_SCOPES) {
        all[i].largest = true;
    }
    let mut leaks: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].leak && !all[i].largest)
        .collect();
    leaks.sort_by(|&a, &b| all[b].growth.cmp(&all[a].growth));
    let mut growing: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].grows() && !all[i].largest && !all[i].leak)
        .collect();
    growing.sort_by(|&a, &b| {
        all[b]
            .growth
            .cmp(&all[a].growth)
            .then_with(|| all[a].scope.path.cmp(&all[b].scope.path))
    });
    let order: Vec<usize> = by_live
        .iter()
        .take(LARGEST_FLAME_SCOPES)
        .chain(&leaks)
        .chain(&growing)
        .copied()
        .collect();
    let left_out = order
        .iter()
        .skip(MAX_FLAME_SCOPES)
        .map(|&i| all[i].scope)
        .collect();
    let mut slots: Vec<Option<Chosen<'p>>> = all.into_iter().map(Some).collect();
    let chosen = order
        .iter()
        .take(MAX_FLAME_SCOPES)
        .filter_map(|&i| slots[i].take())
        .collect();
    (chosen, left_out)
}
