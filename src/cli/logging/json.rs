//! JSON log lines: one object per line, with the fields Google Cloud
//! Logging's agents (Cloud Run, GKE) and Fly's log shipper read at the top
//! level: `severity` (Cloud Logging's names), `message` and `time` (RFC 3339,
//! UTC), then `target`, the fields of the enclosing spans (outermost first)
//! and the event's own fields.
//!
//! [`JsonLayer`] does the I/O; [`render`] builds a line and is pure.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The keys every line starts with. An event or span field with one of these
/// names is written as `field.<name>` so that it cannot replace them.
const RESERVED: [&str; 4] = ["severity", "time", "message", "target"];

/// Cloud Logging's severity for a tracing level. Cloud Logging has no
/// TRACE; trace events are DEBUG there.
pub fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// The fields of one event or span, in the order they were recorded; a
/// later value for the same name replaces the earlier one.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Fields(Vec<(String, Value)>);

impl Fields {
    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: Value) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(i).1)
    }

    fn extend(&mut self, other: &Fields) {
        for (n, v) in &other.0 {
            self.set(n, v.clone());
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let v = i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.set(field.name(), v);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let v = u64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.set(field.name(), v);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those are written as strings.
        let v = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::from(value.to_string()), Value::Number);
        self.set(field.name(), v);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // The message (`info!("a {x}")`) arrives here as format arguments,
        // whose Debug is their Display.
        self.set(field.name(), Value::from(format!("{value:?}")));
    }
}

/// One log line, without the newline.
///
/// `spans` are the enclosing spans' fields, outermost first; `event` the
/// event's own fields, its `message` among them. Events forwarded from the
/// `log` crate carry their real target in `log.target`, which replaces
/// `target`; their `log.module_path`, `log.file` and `log.line` are dropped.
pub fn render(
    time: DateTime<Utc>,
    level: &Level,
    target: &str,
    spans: &[&Fields],
    event: &Fields,
) -> String {
    let mut fields = Fields::default();
    for s in spans {
        fields.extend(s);
    }
    let mut event = event.clone();
    let message = event.take("message");
    let target = match event.take("log.target") {
        Some(Value::String(t)) => t,
        _ => target.to_string(),
    };
    for drop in ["log.module_path", "log.file", "log.line"] {
        event.take(drop);
    }
    fields.extend(&event);

    let message = match message {
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let mut line = String::with_capacity(128);
    line.push('{');
    push_pair(&mut line, "severity", &Value::from(severity(level)));
    let time = time.to_rfc3339_opts(SecondsFormat::Micros, true);
    push_pair(&mut line, "time", &Value::from(time));
    push_pair(&mut line, "message", &Value::from(message));
    push_pair(&mut line, "target", &Value::from(target));
    for (name, value) in &fields.0 {
        if RESERVED.contains(&name.as_str()) {
            push_pair(&mut line, &format!("field.{name}"), value);
        } else {
            push_pair(&mut line, name, value);
        }
    }
    line.push('}');
    line
}

fn push_pair(line: &mut String, key: &str, value: &Value) {
    if !line.ends_with('{') {
        line.push(',');
    }
    // Serialising a string or a Value cannot fail; serde_json escapes quotes,
    // backslashes and control characters, newlines included.
    line.push_str(&serde_json::to_string(key).unwrap_or_default());
    line.push(':');
    line.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "null".into()));
}

/// A tracing layer that writes every event it sees as a JSON line to the
/// writers `make_writer` makes (`std::io::stderr`, `std::io::stdout`).
pub struct JsonLayer<W> {
    make_writer: W,
}

impl<W> JsonLayer<W>
where
    W: for<'a> MakeWriter<'a> + 'static,
{
    /// Lines go to the writers `make_writer` makes.
    pub fn new(make_writer: W) -> Self {
        JsonLayer { make_writer }
    }

    fn write(&self, line: &str) {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        // One write_all per line: stdout and stderr hold their lock for it,
        // so lines from different threads never interleave. A closed stream
        // loses the line and nothing else: logging must never stop
        // replication.
        let _ = self.make_writer.make_writer().write_all(&buf);
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let scope: Vec<Fields> = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .filter_map(|span| span.extensions().get::<Fields>().cloned())
                    .collect()
            })
            .unwrap_or_default();
        let spans: Vec<&Fields> = scope.iter().collect();
        let line = render(Utc::now(), meta.level(), meta.target(), &spans, &fields);
        self.write(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, Value)]) -> Fields {
        let mut f = Fields::default();
        for (n, v) in pairs {
            f.set(n, v.clone());
        }
        f
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T14:02:03.456789Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn severity_uses_cloud_loggings_names() {
        assert_eq!(severity(&Level::TRACE), "DEBUG");
        assert_eq!(severity(&Level::DEBUG), "DEBUG");
        assert_eq!(severity(&Level::INFO), "INFO");
        assert_eq!(severity(&Level::WARN), "WARNING");
        assert_eq!(severity(&Level::ERROR), "ERROR");
    }

    #[test]
    fn line_starts_with_severity_time_message_target_then_fields() {
        let event = fields(&[
            ("message", Value::from("replicating")),
            ("txid", Value::from("0000000000000001")),
            ("files", Value::from(3)),
        ]);
        let line = render(at(), &Level::INFO, "litevault::replicate", &[], &event);
        assert_eq!(
            line,
            r#"{"severity":"INFO","time":"2026-12-06T14:02:03.456789Z","message":"replicating","target":"litevault::replicate","txid":"0000000000000001","files":3}"#
        );
    }

    #[test]
    fn quotes_newlines_and_control_characters_stay_one_valid_line() {
        let nasty = "say \"hi\"\nthen \\ leave\t\u{1}é";
        let event = fields(&[
            ("message", Value::from(nasty)),
            ("path", Value::from(nasty)),
        ]);
        let line = render(at(), &Level::ERROR, "t", &[], &event);
        assert!(!line.contains('\n'), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["message"], nasty);
        assert_eq!(v["path"], nasty);
        assert_eq!(v["severity"], "ERROR");
    }

    #[test]
    fn span_fields_come_first_and_the_event_overrides_them() {
        let outer = fields(&[("db", Value::from("/a.db")), ("replica", Value::from("x"))]);
        let inner = fields(&[("replica", Value::from("s3://b/a"))]);
        let event = fields(&[
            ("message", Value::from("sent")),
            ("bytes", Value::from(10)),
            ("db", Value::from("/b.db")),
        ]);
        let line = render(at(), &Level::DEBUG, "t", &[&outer, &inner], &event);
        assert!(
            line.ends_with(r#""target":"t","db":"/b.db","replica":"s3://b/a","bytes":10}"#),
            "{line}"
        );
    }

    #[test]
    fn reserved_names_and_log_crate_fields() {
        let event = fields(&[
            ("message", Value::from("connecting")),
            ("time", Value::from("not the time")),
            ("log.target", Value::from("hyper::client")),
            ("log.module_path", Value::from("hyper::client::pool")),
            ("log.file", Value::from("src/pool.rs")),
            ("log.line", Value::from(12)),
        ]);
        let line = render(at(), &Level::TRACE, "log", &[], &event);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-12-06T14:02:03.456789Z");
        assert_eq!(v["field.time"], "not the time");
        assert_eq!(v["target"], "hyper::client");
        assert_eq!(v["severity"], "DEBUG");
        assert!(v.get("log.file").is_none() && v.get("log.line").is_none());
    }

    #[test]
    fn an_event_without_a_message_has_an_empty_one() {
        let line = render(
            at(),
            &Level::WARN,
            "t",
            &[],
            &fields(&[("n", Value::from(1))]),
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["message"].as_str(), v["n"].as_u64()),
            (Some(""), Some(1))
        );
    }

    /// A writer that keeps what is written, for the layer's own test.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn the_layer_writes_one_line_per_event_with_span_fields() {
        use tracing_subscriber::layer::SubscriberExt;
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("sync", db = "/a.db", n = tracing::field::Empty);
            let _g = span.enter();
            span.record("n", 7u64);
            tracing::warn!(replica = %"s3://b/a", "slow \"upload\"\nretrying");
            tracing::trace!(ok = true, "done");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["severity"], "WARNING");
        assert_eq!(lines[0]["message"], "slow \"upload\"\nretrying");
        assert_eq!(lines[0]["db"], "/a.db");
        assert_eq!(lines[0]["n"], 7);
        assert_eq!(lines[0]["replica"], "s3://b/a");
        assert_eq!(lines[1]["severity"], "DEBUG");
        assert_eq!(lines[1]["ok"], true);
        let time = lines[1]["time"].as_str().unwrap();
        assert!(
            DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z'),
            "{time}"
        );
    }
}
