//! Escaping for the two places user-controlled text lands: HTML (text and attribute values)
//! and URL path segments or query values.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Text made safe to put into HTML text or a double- or single-quoted attribute value: `&`, `<`,
/// `>`, `"` and `'` become character references. Implements `Display`, so it writes into the
/// page without an intermediate `String`.
pub(crate) struct Html<'a>(pub &'a str);

impl fmt::Display for Html<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Every byte but letters, digits, `-`, `_`, `.` and `~` is percent-encoded: safe in a path
/// segment and in a query value.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `text` encoded for one URL path segment or query value.
pub(crate) fn url(text: &str) -> impl fmt::Display + '_ {
    utf8_percent_encode(text, COMPONENT)
}

/// The path of a run's page.
pub(crate) fn run_path(run_id: &str) -> String {
    format!("/runs/{}", url(run_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(text: &str) -> String {
        Html(text).to_string()
    }

    #[test]
    fn html_escapes_the_five_special_characters() {
        assert_eq!(
            html(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn html_leaves_plain_and_non_ascii_text_alone() {
        assert_eq!(
            html("extract_2024.v2 — ünïcode ✓"),
            "extract_2024.v2 — ünïcode ✓"
        );
        assert_eq!(html(""), "");
    }

    #[test]
    fn html_escapes_a_script_injection_attempt() {
        let out = html("</script><script>alert(1)</script>");
        assert!(!out.contains('<'));
        assert!(!out.contains('>'));
    }

    #[test]
    fn html_escapes_an_attribute_breakout() {
        let out = html("x\" onmouseover=\"alert(1)");
        assert!(!out.contains('"'));
        assert_eq!(out, "x&quot; onmouseover=&quot;alert(1)");
    }

    #[test]
    fn url_encodes_everything_but_unreserved_characters() {
        assert_eq!(url("a-b_c.d~e").to_string(), "a-b_c.d~e");
        assert_eq!(url("a b/c?d&e=#").to_string(), "a%20b%2Fc%3Fd%26e%3D%23");
        assert_eq!(url("é").to_string(), "%C3%A9");
    }

    #[test]
    fn run_path_encodes_the_run_id() {
        assert_eq!(run_path("r-1"), "/runs/r-1");
        assert_eq!(run_path("a/../b"), "/runs/a%2F..%2Fb");
    }
}
