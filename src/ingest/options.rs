//! The publish options of a URL query (`?record=1`, `?height=720`), read the same way by
//! the WHIP and the WebSocket edges. Pure parsing: a `record` or `height` value it cannot
//! read is a 400, never silently dropped; unknown parameters are ignored.

use super::IngestError;

/// The query parameters of a publish URL (WHIP and WebSocket alike).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PublishOptions {
    /// The publisher asked for a recording (`?record=1`); honoured with
    /// `record.allow_request`.
    pub record: bool,
    /// The capture height the publisher will send at full quality (`?height=720`): the
    /// ladder is planned for it rather than for a first frame that bandwidth estimation
    /// made small.
    pub height: Option<u32>,
    /// The operator's authorization callback decided the recording (`{"record": …}`):
    /// final, whatever `record` and `record.allow_request` say.
    pub record_override: Option<bool>,
}

/// The publish options of a query string: `record=1` (or `true`, `yes`) and `height=N`.
/// Unknown parameters are ignored (`token` is read by the edges).
pub(crate) fn publish_options(query: Option<&str>) -> Result<PublishOptions, IngestError> {
    let mut o = PublishOptions::default();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "record" => o.record = record_flag(&v)?,
            "height" => o.height = Some(height(&v)?),
            _ => {}
        }
    }
    Ok(o)
}

/// A declared capture height: lines, 90 to 4320 (8K).
fn height(value: &str) -> Result<u32, IngestError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|h| (90..=4320).contains(h))
        .ok_or_else(|| IngestError::BadHeight(value.chars().take(32).collect()))
}

/// The value of a `record` query parameter: yes, no, or a 400 (a typo must not silently
/// lose a recording).
pub(crate) fn record_flag(value: &str) -> Result<bool, IngestError> {
    match value {
        "1" | "true" | "yes" => Ok(true),
        "" | "0" | "false" | "no" => Ok(false),
        other => Err(IngestError::BadRecordFlag(
            other.chars().take(32).collect::<String>(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_flag_in_query() {
        let rec = |q| publish_options(q).map(|o| o.record);
        assert_eq!(rec(Some("record=1")), Ok(true));
        assert_eq!(rec(Some("a=b&record=true")), Ok(true));
        assert_eq!(rec(Some("record=0")), Ok(false));
        assert_eq!(rec(Some("record=")), Ok(false));
        assert_eq!(rec(Some("recording=1")), Ok(false));
        assert_eq!(rec(None), Ok(false));
        assert!(matches!(
            rec(Some("record=please")),
            Err(IngestError::BadRecordFlag(_))
        ));
    }

    #[test]
    fn height_in_query() {
        let h = |q| publish_options(Some(q)).map(|o| o.height);
        assert_eq!(h("height=720"), Ok(Some(720)));
        assert_eq!(h("record=1&height=1080"), Ok(Some(1080)));
        assert_eq!(h("x=1"), Ok(None));
        for bad in [
            "height=",
            "height=abc",
            "height=12",
            "height=99999",
            "height=-1",
        ] {
            assert!(matches!(h(bad), Err(IngestError::BadHeight(_))), "{bad}");
        }
    }
}
