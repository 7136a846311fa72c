//! The check of the `recording` fuzz target (`fuzz/fuzz_targets/recording.rs`), shared with the
//! test that replays its kept inputs (`kept_fuzz_inputs_pass_the_check` in `main.rs`): any input
//! either fails to read with an error that names a line of the input (or none), or reads as a
//! recording that renders to one whole page, with nothing from the input left unescaped.

use memledger_monitor::Recording;
use memledger_report::render_html;

/// The elements the report writes.
const PAGE_TAGS: &[&str] = &[
    "b", "body", "caption", "circle", "code", "details", "div", "footer", "g", "h1", "h2", "h3",
    "h4", "head", "header", "html", "li", "line", "meta", "p", "path", "polyline", "pre", "rect",
    "script", "section", "span", "style", "summary", "svg", "table", "tbody", "td", "text", "th",
    "thead", "title", "tr", "ul",
];

/// Panics where `data` breaks a guarantee.
pub fn check(data: &[u8]) {
    match Recording::read(data) {
        Ok(recording) => {
            let html = render_html(&recording);
            assert!(html.starts_with("<!DOCTYPE html>"), "a page starts as one");
            assert!(html.ends_with("</html>\n"), "a page is written whole");
            // The page's own scripts only: the error handler, the chart's figures (with
            // samples) and the main script. Text from the input never opens or closes one.
            let scripts = if recording.samples.is_empty() { 2 } else { 3 };
            assert_eq!(html.matches("<script").count(), scripts);
            assert_eq!(html.matches("</script>").count(), scripts);
            // Every tag is one the page itself writes: a scope name such as `<img onerror=..>`
            // arrives escaped.
            for (at, _) in html.match_indices('<') {
                let name: String = html[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                assert!(
                    name.is_empty() || PAGE_TAGS.contains(&name.as_str()),
                    "a tag the page does not write: <{name}"
                );
            }
        }
        Err(e) => {
            let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
            assert!(e.line <= lines, "line {} of {lines}: {e}", e.line);
            let _ = e.to_string();
        }
    }
}
