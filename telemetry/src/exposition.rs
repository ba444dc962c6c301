//! The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per
//! metric family, then its samples, one per line.

use std::fmt::Write as _;

use crate::HistogramSnapshot;

/// Builds one scrape's text. Each method writes a whole family (help, type, samples), so a
/// family's samples are always together, as the format requires.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// The finished text (`text/plain; version=0.0.4`).
    pub fn finish(self) -> String {
        self.out
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        self.out.push('\n');
    }

    /// A counter without labels (`name` should end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        self.sample(name, &[], value as f64);
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        self.sample(name, &[], value);
    }

    /// A counter family with one label: one sample per `(label value, count)`.
    pub fn counters<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.header(name, help, "counter");
        for (v, n) in values {
            self.sample(name, &[(label, v)], n as f64);
        }
    }

    /// A gauge family with one label: one sample per `(label value, value)`.
    pub fn gauges<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, f64)>,
    ) {
        self.header(name, help, "gauge");
        for (v, x) in values {
            self.sample(name, &[(label, v)], x);
        }
    }

    /// A counter family with several labels: one sample per `(label values, count)`, the
    /// values in the order of `labels`.
    pub fn counters_multi(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        values: impl IntoIterator<Item = (Vec<String>, u64)>,
    ) {
        self.header(name, help, "counter");
        for (vs, n) in values {
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .copied()
                .zip(vs.iter().map(String::as_str))
                .collect();
            self.sample(name, &pairs, n as f64);
        }
    }

    /// A histogram (`name_bucket{le=..}`, `name_sum`, `name_count`); times in seconds.
    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.header(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        for (i, n) in h.cumulative.iter().enumerate() {
            let le = h
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| format_value(*b));
            self.sample(&bucket, &[("le", &le)], *n as f64);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum_secs);
        self.sample(&format!("{name}_count"), &[], h.count as f64);
    }
}

/// A sample value: integers without a fraction, `+Inf`, `-Inf`, `NaN` as the format spells them.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Histogram;
    use std::time::Duration;

    #[test]
    fn renders_families_with_help_type_and_samples() {
        static BOUNDS: &[f64] = &[0.001, 0.5];
        let h = Histogram::new(BOUNDS);
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_secs(1));
        let mut e = Exposition::new();
        e.counter("x_total", "Things.\nMore", 3);
        e.counters(
            "req_total",
            "Requests",
            "type",
            [("send", 2), ("a\"b\\", 1)],
        );
        e.gauge("g", "A gauge", 1.5);
        e.histogram("lat_seconds", "Latency", &h.snapshot());
        let text = e.finish();
        let expected = "# HELP x_total Things.\\nMore\n# TYPE x_total counter\nx_total 3\n\
# HELP req_total Requests\n# TYPE req_total counter\nreq_total{type=\"send\"} 2\n\
req_total{type=\"a\\\"b\\\\\"} 1\n\
# HELP g A gauge\n# TYPE g gauge\ng 1.5\n\
# HELP lat_seconds Latency\n# TYPE lat_seconds histogram\n\
lat_seconds_bucket{le=\"0.001\"} 1\nlat_seconds_bucket{le=\"0.5\"} 1\n\
lat_seconds_bucket{le=\"+Inf\"} 2\nlat_seconds_sum 1.0001\nlat_seconds_count 2\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn special_values() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(42.0), "42");
        assert_eq!(format_value(0.00025), "0.00025");
    }
}
