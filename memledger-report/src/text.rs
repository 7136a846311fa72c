//! The page's words and figures: text escaped for HTML, sizes, rates, times and dates for
//! people, the labels of the chart's ticks, and figures as JSON for the page's script.

use core::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memledger::__private::human_bytes;
use memledger::UNSCOPED;
use memledger_monitor::Level;

/// Text escaped for HTML, in an element or a quoted attribute.
pub(crate) struct Esc<'a>(pub(crate) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// A scope's path for people: the unscoped root has a name.
pub(crate) fn scope_label(path: &str) -> &str {
    if path == UNSCOPED {
        "(unscoped)"
    } else {
        path
    }
}

/// A rate in bytes per second, signed.
pub(crate) fn human_rate(rate: f64) -> String {
    if !rate.is_finite() {
        return "n/a".to_string();
    }
    let sign = if rate > 0.0 {
        "+"
    } else if rate < 0.0 {
        "\u{2212}"
    } else {
        ""
    };
    format!("{sign}{}/s", human_bytes(rate.abs().round() as u64))
}

/// A length of time, to about three figures.
pub(crate) fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        let s = d.as_secs();
        format!("{} min {} s", s / 60, s % 60)
    } else if secs < 86400.0 {
        let s = d.as_secs();
        format!("{} h {} min", s / 3600, s % 3600 / 60)
    } else {
        let s = d.as_secs();
        format!("{} d {} h", s / 86400, s % 86400 / 3600)
    }
}

/// A moment as a UTC date and time, `2024-05-01 12:34:56 UTC`.
pub(crate) fn utc(at: SystemTime) -> String {
    let Ok(since) = at.duration_since(UNIX_EPOCH) else {
        return "before 1970".to_string();
    };
    let secs = since.as_secs();
    // Dates past the year 9999 are not worth a calendar.
    if secs >= 253_402_300_800 {
        return format!("{secs} s after 1970-01-01 UTC");
    }
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A number with two decimals at most, trailing zeros dropped.
pub(crate) fn short_number(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

const BYTE_UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// Ticks of a byte axis from 0 to about `top`: the step, its unit's index and the axis's end.
pub(crate) fn byte_ticks(top: f64) -> (f64, usize, f64) {
    let raw = (top / 5.0).max(1.0);
    let mut choice = None;
    'units: for (index, _) in BYTE_UNITS.iter().enumerate() {
        let unit = 1024f64.powi(index as i32);
        let multipliers: &[f64] = if index == 0 {
            &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0]
        } else {
            &[0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0]
        };
        for &m in multipliers {
            if m * unit >= raw {
                // A fraction of a unit is labelled in that unit ("0.5 MiB").
                choice = Some((m * unit, index));
                break 'units;
            }
        }
    }
    let (step, unit) = choice.unwrap_or((200.0 * 1024f64.powi(6), 6));
    let end = ((top / step).ceil().max(1.0)) * step;
    (step, unit, end)
}

/// A byte tick's label in the unit of the axis.
pub(crate) fn byte_tick_label(value: f64, unit: usize) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let unit = unit.min(BYTE_UNITS.len() - 1);
    format!(
        "{} {}",
        short_number(value / 1024f64.powi(unit as i32)),
        BYTE_UNITS[unit]
    )
}

/// The step between time ticks (seconds) for a span of `span` seconds.
pub(crate) fn time_step(span: f64) -> f64 {
    const STEPS: [f64; 26] = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0,
        60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0,
    ];
    let raw = span / 7.0;
    if let Some(&step) = STEPS.iter().find(|&&s| s >= raw) {
        return step;
    }
    let days = raw / 86400.0;
    let mut magnitude = 1.0;
    while magnitude * 10.0 <= days && magnitude < 1e12 {
        magnitude *= 10.0;
    }
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * magnitude >= days {
            return m * magnitude * 86400.0;
        }
    }
    10.0 * magnitude * 86400.0
}

/// A time tick's label (seconds since the sampler started), in the step's unit.
pub(crate) fn time_tick_label(t: f64, step: f64) -> String {
    if t == 0.0 {
        "0 s".to_string()
    } else if step < 1.0 {
        let decimals = (-step.log10()).ceil().clamp(0.0, 3.0) as usize;
        format!("{t:.decimals$} s")
    } else if step < 60.0 {
        format!("{t:.0} s")
    } else if step < 3600.0 {
        let minutes = (t / 60.0).round() as u64;
        if minutes < 60 {
            format!("{minutes} min")
        } else if minutes % 60 == 0 {
            format!("{} h", minutes / 60)
        } else {
            format!("{} h {} min", minutes / 60, minutes % 60)
        }
    } else if step < 86400.0 {
        let hours = (t / 3600.0).round() as u64;
        if hours < 48 {
            format!("{hours} h")
        } else {
            format!("{} d {} h", hours / 24, hours % 24)
        }
    } else {
        format!("{} d", (t / 86400.0).round() as u64)
    }
}

/// Figures as JSON numbers for the page's script (non-finite figures as `null`).
pub(crate) fn json_numbers(out: &mut String, values: impl IntoIterator<Item = Option<f64>>) {
    out.push('[');
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match value {
            Some(v) if v.is_finite() => {
                let _ = write!(out, "{v}");
            }
            _ => out.push_str("null"),
        }
    }
    out.push(']');
}

/// A string as a JSON string that is safe inside a `<script>` element.
pub(crate) fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Bytes with a sign: `+1.0 MiB`, `−512 B`, `0 B`.
pub(crate) fn signed_bytes(bytes: i64) -> String {
    let sign = match bytes.signum() {
        1 => "+",
        -1 => "\u{2212}",
        _ => "",
    };
    format!("{sign}{}", human_bytes(bytes.unsigned_abs()))
}

pub(crate) fn level_name(level: Level) -> &'static str {
    match level {
        Level::Healthy => "healthy",
        Level::Caution => "caution",
        Level::Warning => "warning",
        Level::Critical => "critical",
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::{
        byte_tick_label, byte_ticks, human_rate, json_string, short_number, time_step,
        time_tick_label, utc, Esc,
    };

    #[test]
    fn escapes_markup() {
        assert_eq!(
            Esc("<a href='x'>&\"</a>").to_string(),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let mut json = String::new();
        json_string(&mut json, "</script>\n\"");
        assert_eq!(json, r#""\u003c/script\u003e\u000a\"""#);
    }

    #[test]
    fn byte_ticks_are_round() {
        let (step, unit, end) = byte_ticks(35.0 * 1024.0 * 1024.0);
        assert_eq!((step, unit, end), (10.0 * 1048576.0, 2, 40.0 * 1048576.0));
        assert_eq!(byte_tick_label(step * 3.0, unit), "30 MiB");
        let (step, unit, _) = byte_ticks(2.0 * 1048576.0);
        assert_eq!(byte_tick_label(step, unit), "0.5 MiB");
        let (step, unit, end) = byte_ticks(u64::MAX as f64);
        assert!(step > 0.0 && end >= u64::MAX as f64);
        assert_eq!(byte_tick_label(0.0, unit), "0");
        let (step, _, end) = byte_ticks(0.0);
        assert!(step >= 1.0 && end >= step);
    }

    #[test]
    fn time_ticks_and_dates() {
        assert_eq!(time_step(1.0), 0.2);
        assert_eq!(time_step(600.0), 120.0);
        assert_eq!(time_tick_label(0.4, 0.2), "0.4 s");
        assert_eq!(time_tick_label(240.0, 120.0), "4 min");
        assert!(time_step(1e12).is_finite());
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00:00 UTC"
        );
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        assert!(utc(UNIX_EPOCH + Duration::from_secs(1 << 40)).contains("after 1970"));
    }

    #[test]
    fn rates_and_numbers() {
        assert_eq!(human_rate(2048.0), "+2.0 KiB/s");
        assert_eq!(human_rate(-10.0), "\u{2212}10 B/s");
        assert_eq!(human_rate(0.0), "0 B/s");
        assert_eq!(human_rate(f64::NAN), "n/a");
        assert_eq!(short_number(1.50), "1.5");
        assert_eq!(short_number(2.0), "2");
    }
}
