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
use std::path::PathBuf;

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

/// What a value is, precisely enough to see the mistake: `a negative
/// number -5`, `a decimal 1.5`, `the string "six"`. Text that reads as a
/// number (as every environment value does) is described as that number.
fn describe(v: &Value) -> String {
    fn number(t: &str) -> String {
        if t.starts_with('-') {
            format!("a negative number {t}")
        } else if t.contains(['.', 'e', 'E']) {
            format!("a decimal {t}")
        } else {
            format!("the number {t}")
        }
    }
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => number(&n.to_string()),
        Value::String(s) => match s.trim().parse::<serde_json::Number>() {
            Ok(_) => number(s.trim()),
            Err(_) => format!("the string {s:?}"),
        },
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "a table".into(),
    }
}

impl<'a> Section<'a> {
    /// A section over `value`, or an error at `path` when it is not a table.
    pub fn new(path: impl Into<String>, value: &'a Value, errs: &mut ConfigErrors) -> Option<Self> {
        let path = path.into();
        Self::table(path, value, |p| format!("write [{p}] with its keys on the lines below it"), errs)
    }

    fn table(
        path: String,
        value: &'a Value,
        hint: impl FnOnce(&str) -> String,
        errs: &mut ConfigErrors,
    ) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Section { path, map, seen: Vec::new() }),
            other => {
                let hint = hint(&path);
                errs.push(path, format!("expected a table, found {}", describe(other)), Some(hint));
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

    fn wrong_type(&self, key: &str, want: &str, got: &Value, hint: String, errs: &mut ConfigErrors) {
        errs.push(self.key_path(key), format!("expected {want}, found {}", describe(got)), Some(hint));
    }

    /// A required string. An empty one is an error too: no required key
    /// (a path, an id, a URL) can be empty.
    pub fn string(&mut self, key: &'static str, hint: &str, errs: &mut ConfigErrors) -> Option<String> {
        let r = self.opt_string(key, errs);
        if r.as_deref() == Some("") {
            errs.push(self.key_path(key), "must not be empty", Some(hint.to_string()));
            return None;
        }
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
                self.wrong_type(key, "a string", other, format!("put the text in quotes: {key} = \"...\""), errs);
                None
            }
        }
    }

    /// A string with a default.
    pub fn string_or(&mut self, key: &'static str, default: &str, errs: &mut ConfigErrors) -> String {
        self.opt_string(key, errs).unwrap_or_else(|| default.to_string())
    }

    /// An optional path. An empty one is an error, with `hint`: it would
    /// name nothing, or the working directory.
    pub fn opt_path(&mut self, key: &'static str, hint: &str, errs: &mut ConfigErrors) -> Option<PathBuf> {
        match self.opt_string(key, errs)? {
            s if s.is_empty() => {
                errs.push(self.key_path(key), "must not be empty", Some(hint.to_string()));
                None
            }
            s => Some(PathBuf::from(s)),
        }
    }

    /// An optional whole number within `range`.
    pub fn opt_u64(&mut self, key: &'static str, range: RangeInclusive<u64>, errs: &mut ConfigErrors) -> Option<u64> {
        let example = *range.start();
        self.whole(key, range, example, errs)
    }

    /// A whole number with a default.
    pub fn u64_or(
        &mut self,
        key: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
        errs: &mut ConfigErrors,
    ) -> u64 {
        self.whole(key, range, default, errs).unwrap_or(default)
    }

    /// A whole number within `range`; `example` shows the form in a hint.
    fn whole(
        &mut self,
        key: &'static str,
        range: RangeInclusive<u64>,
        example: u64,
        errs: &mut ConfigErrors,
    ) -> Option<u64> {
        let v = self.raw(key)?;
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        let (from, to) = (range.start(), range.end());
        match n {
            Some(n) if range.contains(&n) => Some(n),
            Some(n) => {
                errs.push(
                    self.key_path(key),
                    format!("{n} is out of range"),
                    Some(format!("use a value from {from} to {to}")),
                );
                None
            }
            None => {
                let hint =
                    format!("write a whole number from {from} to {to} without quotes, such as {key} = {example}");
                self.wrong_type(key, "a whole number", v, hint, errs);
                None
            }
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&mut self, key: &'static str, errs: &mut ConfigErrors) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            // Text as the environment gives it, in any case.
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
            other => {
                let hint = format!("write {key} = true or {key} = false, without quotes");
                self.wrong_type(key, "true or false", other, hint, errs);
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
        let hint = |_: &str| format!("write each entry as [[{path}]] with its keys on the lines below it");
        match self.raw(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Self::table(format!("{path}[{i}]"), v, hint, errs))
                .collect(),
            Some(other) => {
                errs.push(
                    path.clone(),
                    format!("expected an array of tables, found {}", describe(other)),
                    Some(hint("")),
                );
                Vec::new()
            }
        }
    }

    /// An optional list of names (roles, days): a list of strings, or text
    /// with the names separated by commas (`courier, staff`), as the
    /// environment gives it; empty text is the empty list.
    pub fn opt_names(&mut self, key: &'static str, errs: &mut ConfigErrors) -> Option<Vec<String>> {
        match self.raw(key)? {
            Value::String(s) => Some(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()),
            _ => self.list_of_strings(key, true, errs),
        }
    }

    /// An optional list of strings, each kept whole (commas included).
    pub fn opt_strings(&mut self, key: &'static str, errs: &mut ConfigErrors) -> Option<Vec<String>> {
        self.list_of_strings(key, false, errs)
    }

    fn list_of_strings(&mut self, key: &'static str, names: bool, errs: &mut ConfigErrors) -> Option<Vec<String>> {
        let path = self.key_path(key);
        let example = format!("{key} = [\"first\", \"second\"]");
        match self.raw(key)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        other => errs.push(
                            format!("{path}[{i}]"),
                            format!("expected a string, found {}", describe(other)),
                            Some(format!("quote each item: {example}")),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                let hint = if names {
                    format!("write {example}, or the items separated by commas: {key} = \"first,second\"")
                } else {
                    format!("write {example}")
                };
                self.wrong_type(key, "an array of strings", other, hint, errs);
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
        self.report_unknown(false, errs);
    }

    /// Reports only the unknown keys that differ from a known key by case or
    /// one letter (`Kind`, `dor`): for a table whose other keys cannot be
    /// told from typos, such as a device whose kind is missing or unknown.
    pub fn finish_typos(self, errs: &mut ConfigErrors) {
        self.report_unknown(true, errs);
    }

    fn report_unknown(self, typos_only: bool, errs: &mut ConfigErrors) {
        let mut unknown: Vec<&String> = self.map.keys().filter(|k| !self.seen.iter().any(|s| s == k)).collect();
        unknown.sort();
        let mut known: Vec<&str> = self.seen.clone();
        known.sort_unstable();
        known.dedup();
        for k in unknown {
            let near = closest(k, &known);
            if typos_only && near.is_none_or(|c| edit_distance(&k.to_lowercase(), c) > 1) {
                continue;
            }
            let hint = match near {
                Some(c) => format!("did you mean `{c}`? known keys here: {}", known.join(", ")),
                None => format!("known keys here: {}", known.join(", ")),
            };
            errs.push(self.key_path(k), "unknown key", Some(hint));
        }
    }
}

/// The known word nearest to `word` by edit distance, case aside, when it is
/// close (`Site` for `site`), or one that `word` extends or abbreviates
/// (`baudrate` for `baud`).
pub fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let word = word.to_lowercase();
    let near = known
        .iter()
        .map(|k| (edit_distance(&word, &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    near.or_else(|| {
        known
            .iter()
            .copied()
            .filter(|k| k.len() >= 3 && (word.starts_with(&k.to_lowercase()) || k.to_lowercase().starts_with(&word)))
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

    #[test]
    fn a_wrong_type_says_what_was_found_and_every_error_has_a_hint() {
        let v = json!({
            "neg": -5, "dec": 1.5, "word": "six", "text_neg": "-5", "flag": true, "list": [1], "t": {},
            "b": "yes", "s": ["a"], "l": ["a", 2], "n": 3, "rows": [{}, 7], "row": 1, "p": "",
        });
        let mut errs = ConfigErrors::default();
        let mut s = Section::new("x", &v, &mut errs).unwrap();
        for key in ["neg", "dec", "word", "text_neg", "flag", "list", "t"] {
            assert_eq!(s.opt_u64(key, 1..=9, &mut errs), None);
        }
        assert_eq!(s.opt_bool("b", &mut errs), None);
        assert_eq!(s.opt_string("s", &mut errs), None);
        assert_eq!(s.opt_strings("l", &mut errs), Some(vec!["a".to_string()]));
        assert_eq!(s.opt_names("n", &mut errs), None);
        assert_eq!(s.tables("rows", &mut errs).len(), 1);
        assert!(s.tables("row", &mut errs).is_empty());
        assert_eq!(s.opt_path("p", "set p", &mut errs), None);
        let found: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            found,
            [
                "x.neg: expected a whole number, found a negative number -5 \
                 (hint: write a whole number from 1 to 9 without quotes, such as neg = 1)",
                "x.dec: expected a whole number, found a decimal 1.5 \
                 (hint: write a whole number from 1 to 9 without quotes, such as dec = 1)",
                "x.word: expected a whole number, found the string \"six\" \
                 (hint: write a whole number from 1 to 9 without quotes, such as word = 1)",
                "x.text_neg: expected a whole number, found a negative number -5 \
                 (hint: write a whole number from 1 to 9 without quotes, such as text_neg = 1)",
                "x.flag: expected a whole number, found the boolean true \
                 (hint: write a whole number from 1 to 9 without quotes, such as flag = 1)",
                "x.list: expected a whole number, found an array \
                 (hint: write a whole number from 1 to 9 without quotes, such as list = 1)",
                "x.t: expected a whole number, found a table \
                 (hint: write a whole number from 1 to 9 without quotes, such as t = 1)",
                "x.b: expected true or false, found the string \"yes\" \
                 (hint: write b = true or b = false, without quotes)",
                "x.s: expected a string, found an array (hint: put the text in quotes: s = \"...\")",
                "x.l[1]: expected a string, found the number 2 (hint: quote each item: l = [\"first\", \"second\"])",
                "x.n: expected an array of strings, found the number 3 \
                 (hint: write n = [\"first\", \"second\"], or the items separated by commas: n = \"first,second\")",
                "x.rows[1]: expected a table, found the number 7 \
                 (hint: write each entry as [[x.rows]] with its keys on the lines below it)",
                "x.row: expected an array of tables, found the number 1 \
                 (hint: write each entry as [[x.row]] with its keys on the lines below it)",
                "x.p: must not be empty (hint: set p)",
            ]
        );
        let mut errs = ConfigErrors::default();
        assert!(Section::new("keys", &json!(6), &mut errs).is_none());
        assert_eq!(errs.0[0].hint.as_deref(), Some("write [keys] with its keys on the lines below it"));
    }

    #[test]
    fn names_may_be_comma_separated_text_and_a_required_key_is_not_empty() {
        let v = json!({
            "roles": "courier, staff,", "none": "", "id": "", "args": ["--map=a,b"], "text_args": "--map=a,b",
            "on": " True", "off": "FALSE",
        });
        let mut errs = ConfigErrors::default();
        let mut s = Section::new("", &v, &mut errs).unwrap();
        assert_eq!(s.opt_names("roles", &mut errs), Some(vec!["courier".to_string(), "staff".to_string()]));
        assert_eq!(s.opt_names("none", &mut errs), Some(vec![]));
        // A list of strings keeps each whole, and is not split from text.
        assert_eq!(s.opt_strings("args", &mut errs), Some(vec!["--map=a,b".to_string()]));
        assert_eq!((s.opt_bool("on", &mut errs), s.opt_bool("off", &mut errs)), (Some(true), Some(false)));
        assert_eq!(s.string("id", "name it", &mut errs), None);
        assert_eq!(
            errs.0,
            [ConfigError { path: "id".into(), message: "must not be empty".into(), hint: Some("name it".into()) }]
        );
        assert_eq!(s.opt_strings("text_args", &mut errs), None);
        assert_eq!(errs.0[1].path, "text_args");
    }

    #[test]
    fn near_misses_are_found_whatever_their_case() {
        assert_eq!(closest("SITE", &["site", "controller"]), Some("site"));
        assert_eq!(closest("Kind", &["door", "id", "kind"]), Some("kind"));
        assert_eq!(closest("BaudRate", &["baud"]), Some("baud"));
        // A table whose other keys cannot be known reports only near misses.
        let v = json!({"Kind": "console", "dor": "main", "line": 4, "d0": 5});
        let mut errs = ConfigErrors::default();
        let mut s = Section::new("devices[0]", &v, &mut errs).unwrap();
        for key in ["id", "kind", "door"] {
            s.has(key);
        }
        s.finish_typos(&mut errs);
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["devices[0].Kind", "devices[0].dor"]);
        assert!(errs.0[0].hint.as_deref().unwrap().starts_with("did you mean `kind`?"));
    }
}
