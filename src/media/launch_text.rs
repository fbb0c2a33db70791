//! One element as `gst-launch-1.0` text: its factory, its name and the properties that
//! differ from their defaults, each value in a form that needs no quoting (enums and flags
//! by nick, caps without spaces or types, checked to parse back to the same caps).

use std::cmp::Ordering;
use std::str::FromStr;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::describe::DescribeError;

/// The element's factory name. Elements made with their type's builder
/// (`AppSrc::builder`) have no factory: they are named by type.
pub(super) fn factory(e: &gst::Element) -> String {
    if let Some(f) = e.factory() {
        return f.name().to_string();
    }
    if e.is::<gst_app::AppSrc>() {
        "appsrc".into()
    } else if e.is::<gst_app::AppSink>() {
        "appsink".into()
    } else {
        e.type_().name().to_string()
    }
}

/// The properties of `e` that gst-launch-1.0 can set and that differ from their defaults,
/// `name` and `parent` aside. A default is what a fresh element of the same factory has
/// (what gst-inspect-1.0 shows; some elements change the `GParamSpec` default when they are
/// made, e.g. videoconvert turns `qos` on), else the `GParamSpec`'s.
pub(super) fn changed_properties(e: &gst::Element) -> Vec<(String, glib::Value)> {
    let fresh = gst::ElementFactory::make(&factory(e)).build().ok();
    e.list_properties()
        .iter()
        .filter(|p| {
            p.flags()
                .contains(glib::ParamFlags::READABLE | glib::ParamFlags::WRITABLE)
                && !matches!(p.name(), "name" | "parent")
        })
        .filter_map(|p| {
            let value = e.property_value(p.name());
            let default = match &fresh {
                Some(f) if f.has_property_with_type(p.name(), p.value_type()) => {
                    f.property_value(p.name())
                }
                _ => p.default_value().clone(),
            };
            (!is_default(&value, &default)).then(|| (p.name().to_string(), value))
        })
        .collect()
}

fn is_default(value: &glib::Value, default: &glib::Value) -> bool {
    if let Some(order) = value.compare(default) {
        return order == Ordering::Equal;
    }
    match (value.serialize(), default.serialize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The changed properties of `from` that `to` has too (same name and type): what a
/// stand-in keeps of the element it replaces (an appsrc's caps, an appsink's `sync`).
pub(super) fn shared_properties(
    from: &gst::Element,
    to: &gst::Element,
) -> Vec<(String, glib::Value)> {
    changed_properties(from)
        .into_iter()
        .filter(|(name, value)| to.has_property_with_type(name, value.type_()))
        .collect()
}

/// `factory name=NAME prop=value ...` for the given properties of `e`.
pub(super) fn text(
    e: &gst::Element,
    properties: Vec<(String, glib::Value)>,
) -> Result<String, DescribeError> {
    let mut words = vec![factory(e), format!("name={}", e.name())];
    for (name, value) in properties {
        let printed = if let Ok(Some(caps)) = value.get::<Option<gst::Caps>>() {
            caps_text(&caps, e, &name)?
        } else {
            value_text(&value).ok_or_else(|| unprintable(e, &name, &value))?
        };
        words.push(format!("{name}={printed}"));
    }
    if !plain(&e.name()) {
        return Err(unprintable(e, "name", &e.name().to_value()));
    }
    Ok(words.join(" "))
}

fn unprintable(e: &gst::Element, property: &str, value: &glib::Value) -> DescribeError {
    DescribeError::Unprintable {
        element: e.name().to_string(),
        property: property.to_string(),
        value: value
            .serialize()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| format!("<{}>", value.type_())),
    }
}

/// Characters that need no quoting, neither for gst-launch-1.0 nor in a shell word.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-+.,:/=@%".contains(c))
}

/// Enums and flags by nick (what gst-inspect-1.0 shows), strings as they are, the rest as
/// GStreamer serialises it; `None` if that would need quoting.
fn value_text(value: &glib::Value) -> Option<String> {
    let s = if let Some((_, v)) = glib::EnumValue::from_value(value) {
        v.nick().to_string()
    } else if let Some((_, vs)) = glib::FlagsValue::from_value(value) {
        vs.iter().map(|v| v.nick()).collect::<Vec<_>>().join("+")
    } else if let Ok(s) = value.get::<Option<String>>() {
        s?
    } else {
        value.serialize().ok()?.to_string()
    };
    plain(&s).then_some(s)
}

/// Caps without spaces or type annotations (`video/x-raw,format=I420,width=640`), checked to
/// parse back to the very same caps.
pub(super) fn caps_text(
    caps: &gst::Caps,
    e: &gst::Element,
    property: &str,
) -> Result<String, DescribeError> {
    let fail = || DescribeError::Unprintable {
        element: e.name().to_string(),
        property: property.to_string(),
        value: caps.to_string(),
    };
    let mut parts = Vec::new();
    for (s, features) in caps.iter_with_features() {
        if !features.is_empty() && !features.is_equal(&gst::CAPS_FEATURES_MEMORY_SYSTEM_MEMORY) {
            return Err(fail());
        }
        let mut part = s.name().to_string();
        for (field, value) in s.iter() {
            let v = value_text(value).ok_or_else(fail)?;
            part.push_str(&format!(",{field}={v}"));
        }
        parts.push(part);
    }
    let printed = parts.join(";");
    match gst::Caps::from_str(&printed) {
        Ok(back) if back.is_strictly_equal(caps) && plain(&printed) => Ok(printed),
        _ => Err(fail()),
    }
}
