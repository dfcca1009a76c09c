//! Reading one table of the raw configuration with every error kept.
//!
//! The daemon merges the TOML file and the `PORTER_` environment into one
//! `serde_json::Value` tree and then walks it with [`Section`]s. Each accessor
//! records what it consumed, so [`Section::finish`] can reject unknown keys, and
//! every problem is pushed into one [`ConfigErrors`] list with its full key path
//! (`devices[2].port`) and a hint, instead of stopping at the first one as serde
//! would. Drivers parse their own keys with the same type, so a device's table
//! is checked by the code that understands it.

use serde_json::{Map, Value};
use std::fmt;
use std::ops::RangeInclusive;

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Full key path, such as `devices[2].port`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// Every problem found in one configuration, in the order found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>, hint: Option<String>) {
        self.0.push(ConfigError { path: path.into(), message: message.into(), hint });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A view of one TOML table at a known path.
pub struct Section<'a> {
    path: String,
    map: &'a Map<String, Value>,
    seen: Vec<&'static str>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

impl<'a> Section<'a> {
    /// A section over `value`, or an error at `path` when it is not a table.
    pub fn new(path: impl Into<String>, value: &'a Value, errs: &mut ConfigErrors) -> Option<Self> {
        let path = path.into();
        match value {
            Value::Object(map) => Some(Section { path, map, seen: Vec::new() }),
            other => {
                errs.push(path, format!("expected a table, found {}", type_name(other)), None);
                None
            }
        }
    }

    /// The path of this table.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full path of `key` in this table.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Whether `key` is present (marks it as known).
    pub fn has(&mut self, key: &'static str) -> bool {
        self.raw(key).is_some()
    }

    /// The raw value of `key`, marking it as known.
    pub fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.seen.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn wrong_type(&self, key: &str, want: &str, got: &Value, errs: &mut ConfigErrors) {
        errs.push(self.key_path(key), format!("expected {want}, found {}", type_name(got)), None);
    }

    /// A required string.
    pub fn string(&mut self, key: &'static str, hint: &str, errs: &mut ConfigErrors) -> Option<String> {
        let r = self.opt_string(key, errs);
        if r.is_none() && self.raw(key).is_none() {
            errs.push(self.key_path(key), "missing required key", Some(hint.to_string()));
        }
        r
    }

    /// An optional string. Numbers and booleans (as the environment may give
    /// them) are taken as their text.
    pub fn opt_string(&mut self, key: &'static str, errs: &mut ConfigErrors) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.wrong_type(key, "a string", other, errs);
                None
            }
        }
    }

    /// A string with a default.
    pub fn string_or(&mut self, key: &'static str, default: &str, errs: &mut ConfigErrors) -> String {
        self.opt_string(key, errs).unwrap_or_else(|| default.to_string())
    }

    /// An optional whole number within `range`.
    pub fn opt_u64(&mut self, key: &'static str, range: RangeInclusive<u64>, errs: &mut ConfigErrors) -> Option<u64> {
        let v = self.raw(key)?;
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if range.contains(&n) => Some(n),
            Some(n) => {
                errs.push(
                    self.key_path(key),
                    format!("{n} is out of range"),
                    Some(format!("use a value from {} to {}", range.start(), range.end())),
                );
                None
            }
            None => {
                self.wrong_type(key, "a whole number", v, errs);
                None
            }
        }
    }

    /// A whole number with a default.
    pub fn u64_or(
        &mut self,
        key: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
        errs: &mut ConfigErrors,
    ) -> u64 {
        self.opt_u64(key, range, errs).unwrap_or(default)
    }

    /// An optional boolean.
    pub fn opt_bool(&mut self, key: &'static str, errs: &mut ConfigErrors) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            other => {
                self.wrong_type(key, "true or false", other, errs);
                None
            }
        }
    }

    /// A boolean with a default.
    pub fn bool_or(&mut self, key: &'static str, default: bool, errs: &mut ConfigErrors) -> bool {
        self.opt_bool(key, errs).unwrap_or(default)
    }

    /// An optional nested table.
    pub fn opt_table(&mut self, key: &'static str, errs: &mut ConfigErrors) -> Option<Section<'a>> {
        let path = self.key_path(key);
        let v = self.raw(key)?;
        Section::new(path, v, errs)
    }

    /// An optional array of tables (`[[doors]]`), each as a section at `key[i]`.
    pub fn tables(&mut self, key: &'static str, errs: &mut ConfigErrors) -> Vec<Section<'a>> {
        let path = self.key_path(key);
        match self.raw(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                items.iter().enumerate().filter_map(|(i, v)| Section::new(format!("{path}[{i}]"), v, errs)).collect()
            }
            Some(other) => {
                errs.push(
                    path,
                    format!("expected an array of tables, found {}", type_name(other)),
                    Some(format!("write each entry as [[{key}]]")),
                );
                Vec::new()
            }
        }
    }

    /// An optional array of strings.
    pub fn opt_strings(&mut self, key: &'static str, errs: &mut ConfigErrors) -> Option<Vec<String>> {
        let path = self.key_path(key);
        match self.raw(key)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        other => errs.push(
                            format!("{path}[{i}]"),
                            format!("expected a string, found {}", type_name(other)),
                            None,
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.wrong_type(key, "an array of strings", other, errs);
                None
            }
        }
    }

    /// Reads the table `value` at `path` with `parse` and then rejects its
    /// unknown keys, as the daemon does with a device's table; returns what
    /// `parse` made and every error found. Each kind's tests use it.
    pub fn read<T>(
        path: &str,
        value: &Value,
        parse: impl FnOnce(&mut Section<'_>, &mut ConfigErrors) -> T,
    ) -> (Option<T>, ConfigErrors) {
        let mut errs = ConfigErrors::default();
        let Some(mut sec) = Section::new(path, value, &mut errs) else { return (None, errs) };
        let t = parse(&mut sec, &mut errs);
        sec.finish(&mut errs);
        (Some(t), errs)
    }

    /// Reports every key of this table that no accessor asked for.
    pub fn finish(self, errs: &mut ConfigErrors) {
        let mut unknown: Vec<&String> = self.map.keys().filter(|k| !self.seen.iter().any(|s| s == k)).collect();
        unknown.sort();
        let mut known: Vec<&str> = self.seen.clone();
        known.sort_unstable();
        known.dedup();
        for k in unknown {
            let hint = match closest(k, &known) {
                Some(c) => format!("did you mean `{c}`? known keys here: {}", known.join(", ")),
                None => format!("known keys here: {}", known.join(", ")),
            };
            errs.push(self.key_path(k), "unknown key", Some(hint));
        }
    }
}

/// The known word nearest to `word` by edit distance, when it is close, or
/// one that `word` extends or abbreviates (`baudrate` for `baud`).
pub fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let near = known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    near.or_else(|| {
        known
            .iter()
            .copied()
            .filter(|k| k.len() >= 3 && (word.starts_with(k) || k.starts_with(word)))
            .max_by_key(|k| k.len())
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collects_every_error_with_its_path() {
        let v = json!({"a": "x", "n": "many", "big": 99, "typo_kee": 1, "t": [{"id": 3}]});
        let mut errs = ConfigErrors::default();
        let mut s = Section::new("", &v, &mut errs).unwrap();
        assert_eq!(s.string("a", "", &mut errs).as_deref(), Some("x"));
        assert_eq!(s.opt_u64("n", 0..=10, &mut errs), None);
        assert_eq!(s.opt_u64("big", 0..=10, &mut errs), None);
        assert!(s.string("missing", "set it", &mut errs).is_none());
        let _ = s.opt_bool("typo_key", &mut errs);
        for mut t in s.tables("t", &mut errs) {
            assert_eq!(t.opt_string("id", &mut errs).as_deref(), Some("3"));
            t.finish(&mut errs);
        }
        s.finish(&mut errs);
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["n", "big", "missing", "typo_kee"]);
        assert!(errs.0[3].hint.as_deref().unwrap().contains("did you mean `typo_key`"));
    }
}
