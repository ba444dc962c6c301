//! A strict reader of the Prometheus text exposition format (version 0.0.4), written from the
//! format's specification, to check what `GET /metrics` serves: metric and label names, label
//! escapes, values, one `# TYPE` per family before its samples, families not interleaved, no
//! duplicate series, and well-formed histograms (`le` buckets ascending and cumulative, a
//! `+Inf` bucket equal to `_count`, a `_sum`).

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Family name -> its `# TYPE`.
    pub types: HashMap<String, String>,
    pub samples: Vec<PromSample>,
}

impl Scrape {
    /// The value of the series `name{labels}` (exactly these labels), if present.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`Scrape::get`], panicking when the series is missing.
    #[track_caller]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in the scrape"))
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    !s.starts_with("__")
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

/// The family a sample belongs to: histogram samples end in `_bucket`, `_sum`, `_count`.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return base;
            }
        }
    }
    name
}

/// `name{a="x",b="y"} value [timestamp]`.
fn parse_sample(line: &str) -> Result<PromSample, String> {
    let name_end = line.find(['{', ' ']).ok_or("sample without a value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => parse_labels(after)?,
        None => (BTreeMap::new(), &line[name_end..]),
    };
    if !rest.starts_with(' ') {
        return Err("no space before the value".into());
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(PromSample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The labels after `{`, and what follows the closing `}`.
fn parse_labels(mut rest: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let key = rest[..eq].trim();
        if !valid_label_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key}: value is not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("label {key}: bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) | None => return Err(format!("label {key}: unterminated value")),
                Some((_, c)) => value.push(c),
            }
        };
        rest = rest[end + 1..].trim_start();
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("label {key}: expected , or }} next"));
        }
    }
}

/// Parses and checks a whole scrape; the error names the line.
pub fn parse_prometheus(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    let mut helps = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            read_comment(comment, &mut scrape, &mut helps).map_err(at)?;
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = family_of(&sample.name, &scrape.types).to_owned();
        if current.as_deref() != Some(family.as_str()) {
            if finished.contains(&family) {
                return Err(at(format!("family {family} is interleaved with another")));
            }
            if let Some(prev) = current.replace(family.clone()) {
                finished.insert(prev);
            }
        }
        let key = format!("{}{:?}", sample.name, sample.labels);
        if !series.insert(key) {
            return Err(at("duplicate series".into()));
        }
        scrape.samples.push(sample);
    }
    check_histograms(&scrape)?;
    Ok(scrape)
}

/// `# HELP name text` and `# TYPE name type` (other comments are ignored).
fn read_comment(
    comment: &str,
    scrape: &mut Scrape,
    helps: &mut HashSet<String>,
) -> Result<(), String> {
    let mut parts = comment.trim_start().splitn(3, ' ');
    let (kw, name) = (parts.next(), parts.next().unwrap_or(""));
    if kw == Some("HELP") && (!valid_metric_name(name) || !helps.insert(name.to_owned())) {
        return Err("bad or repeated HELP".into());
    }
    if kw != Some("TYPE") {
        return Ok(());
    }
    let kind = parts.next().unwrap_or("").trim();
    if !matches!(
        kind,
        "counter" | "gauge" | "histogram" | "summary" | "untyped"
    ) {
        return Err(format!("unknown type {kind:?}"));
    }
    if !valid_metric_name(name) || scrape.types.contains_key(name) {
        return Err("bad or repeated TYPE".into());
    }
    if scrape
        .samples
        .iter()
        .any(|s| family_of(&s.name, &scrape.types) == name)
    {
        return Err("TYPE after samples of its family".into());
    }
    scrape.types.insert(name.to_owned(), kind.to_owned());
    Ok(())
}

fn check_histograms(scrape: &Scrape) -> Result<(), String> {
    for (name, kind) in &scrape.types {
        if kind != "histogram" {
            continue;
        }
        let bucket = format!("{name}_bucket");
        let buckets: Vec<(f64, f64)> = scrape
            .samples
            .iter()
            .filter(|s| s.name == bucket)
            .map(|s| {
                let le = s
                    .labels
                    .get("le")
                    .ok_or_else(|| format!("{bucket} without le"))?;
                Ok((parse_value(le)?, s.value))
            })
            .collect::<Result<_, String>>()?;
        if buckets.last().map(|(le, _)| *le) != Some(f64::INFINITY) {
            return Err(format!("{name}: the last bucket is not le=\"+Inf\""));
        }
        for w in buckets.windows(2) {
            if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
                return Err(format!(
                    "{name}: buckets not ascending and cumulative: {w:?}"
                ));
            }
        }
        let count = scrape
            .get(&format!("{name}_count"), &[])
            .ok_or_else(|| format!("{name}: no _count"))?;
        scrape
            .get(&format!("{name}_sum"), &[])
            .ok_or_else(|| format!("{name}: no _sum"))?;
        if buckets.last().map(|(_, n)| *n) != Some(count) {
            return Err(format!("{name}: +Inf bucket != _count"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_format() {
        let text = "# HELP a_total Things\n# TYPE a_total counter\na_total 3\n\
                    # TYPE b gauge\nb{x=\"1\",y=\"q\\\"\\\\\\n\"} -2.5 1700000000000\n\
                    # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n";
        let s = parse_prometheus(text).unwrap();
        assert_eq!(s.value("a_total", &[]), 3.0);
        assert_eq!(s.value("b", &[("x", "1"), ("y", "q\"\\\n")]), -2.5);
        assert_eq!(s.types["h"], "histogram");
    }

    #[test]
    fn rejects_what_the_format_forbids() {
        for bad in [
            "1abc 3\n",
            "a{1x=\"y\"} 3\n",
            "a{x=y} 3\n",
            "a{x=\"y\\q\"} 3\n",
            "a three\n",
            "a 1 2 3\n",
            "a 1\na 2\n",
            "a 1\n# TYPE a gauge\n",
            "# TYPE a gauge\n# TYPE a counter\na 1\n",
            "# TYPE a wat\na 1\n",
            "a 1\nb 1\na{x=\"1\"} 2\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
        ] {
            assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
        }
    }
}
