//! `PORTER_` environment overrides, applied to the file's tree before
//! anything is checked (see [`Config::from_toml_with_env`](super::Config::from_toml_with_env)).

use porter_drivers::settings::ConfigErrors;

/// A TOML document as a JSON tree.
pub(super) fn parse_toml(text: &str) -> Result<serde_json::Value, ::config::ConfigError> {
    ::config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<serde_json::Value>())
}

/// The top-level keys and sections, as the environment may name them.
pub(super) const TOP_LEVEL: &[&str] = &[
    "site",
    "controller",
    "data_dir",
    "secret_file",
    "identity_file",
    "timezone",
    "log_level",
    "store",
    "keys",
    "keypad",
    "lockout",
    "enroll",
    "roles",
    "clock",
    "audit",
    "admin",
    "mqtt",
    "demo",
    "gpio",
    "doors",
    "devices",
];

/// Sets the key that the variable `name` (`PORTER_DEVICES__1__DOOR`) names
/// to `value`. The name after `PORTER_`, split at `__` and lowercased, is the
/// key path; a number picks an entry of an array, which the file must have.
/// Sections the file leaves out are created. Returns the key path of the
/// outermost table created, else of the key set.
pub(super) fn apply_env(
    tree: &mut serde_json::Value,
    name: &str,
    value: &str,
    errs: &mut ConfigErrors,
) -> Option<String> {
    let var = Var::new(name, errs)?;
    let path = var.paths.last()?;
    let value = env_value(name, path, value, errs)?;
    let (node, created) = var.walk(tree, errs)?;
    if node.is_object() && !value.is_object() {
        errs.push(
            name,
            format!("{path} is a table: set its keys one by one"),
            Some(var.example(var.segs.len(), "__<KEY>")),
        );
        return None;
    }
    *node = value;
    Some(created.unwrap_or_else(|| path.clone()))
}

/// A `PORTER_` variable's name, split into its parts, with the key path up
/// to each part: `devices`, `devices[1]`, `devices[1].door`.
struct Var<'n> {
    name: &'n str,
    segs: Vec<&'n str>,
    paths: Vec<String>,
}

impl<'n> Var<'n> {
    fn new(name: &'n str, errs: &mut ConfigErrors) -> Option<Self> {
        let segs: Vec<&str> = name["PORTER_".len()..].split("__").collect();
        if segs.iter().any(|s| s.is_empty()) {
            errs.push(
                name,
                "an empty part between `__` separators",
                Some("join a section and its key with two underscores, such as PORTER_KEYS__PIN_LENGTH=6".into()),
            );
            return None;
        }
        let mut paths: Vec<String> = Vec::with_capacity(segs.len());
        for (i, s) in segs.iter().enumerate() {
            let prev = if i == 0 { "" } else { paths[i - 1].as_str() };
            paths.push(match s.parse::<usize>() {
                Ok(ix) => format!("{prev}[{ix}]"),
                Err(_) if prev.is_empty() => s.to_ascii_lowercase(),
                Err(_) => format!("{prev}.{}", s.to_ascii_lowercase()),
            });
        }
        let var = Var { name, segs, paths };
        // The one table whose keys are not config keys: an exec program's
        // environment, whose names keep their case, which a variable's name
        // cannot carry. It is set whole.
        let env = var.segs.iter().position(|s| s.eq_ignore_ascii_case("env"));
        if let Some(i) = env.filter(|&i| i > 0 && i + 1 < var.segs.len()) {
            errs.push(
                name,
                format!("{} is set whole from the environment: the names in it keep their case", var.paths[i]),
                Some(format!("{}='{{ NAME = \"value\" }}'", var.example(i + 1, "").trim_end_matches("=..."))),
            );
            return None;
        }
        Some(var)
    }

    /// `PORTER_<the first n parts><tail>=...`.
    fn example(&self, n: usize, tail: &str) -> String {
        format!("PORTER_{}{tail}=...", self.segs[..n].join("__"))
    }

    fn no_entry(&self, errs: &mut ConfigErrors, i: usize, ix: usize, len: usize) {
        errs.push(
            self.paths[i].clone(),
            format!("{} names entry {ix}, but the file has {len} of them", self.name),
            Some("override only entries the file defines; indexes start at 0".into()),
        );
    }

    /// The node the variable names, creating the tables the file leaves
    /// out, and the key path of the outermost one created.
    fn walk<'t>(
        &self,
        tree: &'t mut serde_json::Value,
        errs: &mut ConfigErrors,
    ) -> Option<(&'t mut serde_json::Value, Option<String>)> {
        use serde_json::Value;
        let name = self.name;
        let mut created = None;
        let mut node = tree;
        for (i, seg) in self.segs.iter().enumerate() {
            let last = i + 1 == self.segs.len();
            node = match node {
                Value::Array(items) => {
                    let Ok(ix) = seg.parse::<usize>() else {
                        let mut fixed = self.segs.clone();
                        fixed[i] = "0";
                        errs.push(
                            name,
                            format!("{seg} is not an entry number"),
                            Some(format!("PORTER_{}=...", fixed.join("__"))),
                        );
                        return None;
                    };
                    let len = items.len();
                    match items.get_mut(ix) {
                        Some(v) => v,
                        None => {
                            self.no_entry(errs, i, ix, len);
                            return None;
                        }
                    }
                }
                Value::Object(_) if seg.parse::<usize>().is_ok() => {
                    errs.push(
                        name,
                        format!("{} is a table, not a list: it has no entry {seg}", self.paths[i - 1]),
                        Some(self.example(i, "__<KEY>")),
                    );
                    return None;
                }
                Value::Object(map) => {
                    let key = seg.to_ascii_lowercase();
                    if !last && !map.contains_key(&key) {
                        self.may_create(i, &key, errs)?;
                        created.get_or_insert_with(|| self.paths[i].clone());
                    }
                    map.entry(key).or_insert_with(|| if last { Value::Null } else { Value::Object(Default::default()) })
                }
                _ => {
                    errs.push(
                        name,
                        format!(
                            "{} holds a value, not a table: it has no key `{}`",
                            self.paths[i - 1],
                            seg.to_ascii_lowercase()
                        ),
                        Some(self.example(i, "")),
                    );
                    return None;
                }
            };
        }
        Some((node, created))
    }

    /// Whether the table `key` at part `i`, which the file leaves out, may be
    /// created: from there on every table is new, so an entry number below
    /// names an entry of a list that the file leaves out.
    fn may_create(&self, i: usize, key: &str, errs: &mut ConfigErrors) -> Option<()> {
        let entry = self.segs.iter().enumerate().skip(i + 1).find_map(|(j, s)| Some((j, s.parse().ok()?)));
        match entry {
            // A top-level section that is not a list: `[admin]` left out.
            Some((1, ix)) if !matches!(key, "doors" | "devices") => {
                errs.push(
                    self.name,
                    format!("{key} is a table, not a list: it has no entry {ix}"),
                    Some(self.example(1, "__<KEY>")),
                );
                None
            }
            Some((j, ix)) => {
                self.no_entry(errs, j, ix, 0);
                None
            }
            None => Some(()),
        }
    }
}

/// An environment value: text, or a TOML value when it starts with `[` or
/// `{` (`["courier", "staff"]`, `{ days = "daily", from = "07:00", to = "21:00" }`).
fn env_value(name: &str, path: &str, value: &str, errs: &mut ConfigErrors) -> Option<serde_json::Value> {
    if !value.trim_start().starts_with(['[', '{']) {
        return Some(serde_json::Value::String(value.to_string()));
    }
    match parse_toml(&format!("v = {value}")) {
        Ok(mut t) => Some(t["v"].take()),
        Err(e) => {
            // The parser's last line says what is wrong; those above point into `v = ...`.
            let e = e.to_string();
            let why = e.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or_default().to_string();
            errs.push(
                path,
                format!("{name} is not a TOML value: {why}"),
                Some(format!(
                    "write a list as {name}='[\"first\", \"second\"]' and a table as {name}='{{ key = \"value\" }}', \
                     text inside in double quotes"
                )),
            );
            None
        }
    }
}
