//! Log output: human-readable lines, or JSON lines for log shippers.
//!
//! Field values often carry what a client sent (a stream name from a URL, a parser's
//! message quoting an offer). In the text format every field value has its control
//! characters escaped, so a client cannot end a line and forge the next one, or send a
//! terminal escape sequence to whoever tails the log; the JSON format escapes by
//! construction (RFC 8259 §7). One place, so code that logs need not remember.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt as _;

/// The default filter when `WHIPCAST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "whipcast=info,tower_http=warn";

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?} (text, json)")),
        }
    }
}

/// `s` with every control character written as a Rust escape (`\n`, `\u{1b}`, …);
/// borrowed when there is none.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Installs the global subscriber: `WHIPCAST_LOG` (or [`DEFAULT_FILTER`]) to stderr.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("WHIPCAST_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colours only on a terminal: a file, journald or a log shipper gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.fmt_fields(escaping_fields()).init(),
    }
}

/// The text format's field formatter: `name=value` pairs separated by spaces, the
/// message bare, every value escaped.
pub fn escaping_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = write!(text, "{value:?}");
        let text = escape_controls(&text);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_client_string_cannot_forge_a_line_or_an_escape() {
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(escaping_fields())
            .with_writer(move || sink.clone())
            .finish();
        let forged = "a\n2026-12-06T20:00:00Z  INFO whipcast: FORGED\u{1b}[31m";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("ws", stream = %forged);
            let _e = span.enter();
            tracing::warn!(message = %forged, "refused: {}", forged);
        });
        let out = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
        assert!(out.contains(r"a\n2026-12-06T20:00:00Z  INFO whipcast: FORGED\u{1b}[31m"));
    }

    #[test]
    fn escaping() {
        assert!(matches!(escape_controls("cam-1"), Cow::Borrowed("cam-1")));
        assert_eq!(escape_controls("a\r\nb\tc"), r"a\r\nb\tc");
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
