//! Raw TOML plus `PORTER_` environment overrides, to a validated [`Config`].
//!
//! The file (read by the `config` crate) and the environment (`PORTER_DATA_DIR`
//! for a top-level key, `PORTER_MQTT__URL` for a nested one,
//! `PORTER_DOORS__0__UNLOCK_MS` for a key of an entry) make one tree;
//! [`Section`] then walks it, collecting every error with its key path and a
//! hint, and rejecting unknown keys. After this module, nothing checks the
//! config again: a [`Config`] is valid by construction. Every key is
//! documented, with its default, in docs/config.md.

use crate::access::lockout::LockoutPolicy;
use porter_drivers::settings::{ConfigErrors, Section};
use porter_drivers::{Claim, KindConfig, Role};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The demo configuration embedded in the binary (`porterd --demo`).
pub const DEMO_TOML: &str = include_str!("../../configs/demo.toml");

/// The default config path.
pub const DEFAULT_PATH: &str = "/etc/porter/porter.toml";

/// The most doors one controller drives (a door set is a 64-bit mask).
pub const MAX_DOORS: usize = 64;

#[derive(Debug, Clone)]
pub struct Config {
    pub site: String,
    pub controller: String,
    pub data_dir: PathBuf,
    pub secret_file: PathBuf,
    pub timezone: chrono_tz::Tz,
    pub log_level: String,
    pub store: StoreConfig,
    pub keys: KeysConfig,
    pub keypad: KeypadConfig,
    pub lockout: LockoutPolicy,
    pub enroll: EnrollConfig,
    /// Whether the clock is synchronised, and what to do while it is not.
    pub clock: ClockConfig,
    /// Each role's default schedule (`[roles.<role>] schedule`).
    pub role_schedules: crate::access::RoleSchedules,
    /// The roles whose cards open only with their PIN (`[roles.<role>] card_plus_pin`).
    pub card_plus_pin_roles: Vec<crate::access::Role>,
    pub audit: AuditConfig,
    pub admin: AdminConfig,
    pub mqtt: Option<MqttConfig>,
    pub demo: DemoConfig,
    pub doors: Vec<DoorConfig>,
    pub devices: Vec<DeviceConfig>,
    /// `PORTER_*` variables that name no config key and were ignored.
    pub env_ignored: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub cache_capacity: u64,
    /// What a start does with a store found damaged (docs/ops.md).
    pub on_damage: crate::store::recover::OnDamage,
    /// What a recovery restores from the newest snapshot.
    pub restore: crate::store::recover::Restore,
    /// How many snapshots to keep (0: none are written).
    pub snapshots: u32,
    /// The reserve held back in `data_dir` for a full disk, in bytes.
    pub reserve: u64,
    /// Below this many free bytes on data_dir's disk, `storage.low`.
    pub low_space: u64,
    /// How long an open full sync waits for its next `sync.put` before its
    /// staged set is dropped (`sync_idle_s`).
    pub sync_idle: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct KeysConfig {
    pub pin_length: usize,
}

#[derive(Debug, Clone)]
pub struct KeypadConfig {
    pub entry_timeout: Duration,
    pub submit_at_length: bool,
    /// Card plus PIN: how long the PIN is awaited after the card.
    pub pin_after_card: Duration,
}

/// `[clock]`.
#[derive(Debug, Clone)]
pub struct ClockConfig {
    pub unsynchronized: crate::runtime::clock::Unsynchronized,
    pub source: crate::runtime::clock::SyncSource,
}

/// Card enrolment at the room (`*` `*` PIN `#`, then a card).
#[derive(Debug, Clone)]
pub struct EnrollConfig {
    /// The roles whose PIN may open an enrolment window at a keypad.
    pub roles: Vec<crate::access::Role>,
    /// How long a window waits for a card (also `enroll.start`'s default).
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub retain: u64,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub socket: PathBuf,
}

#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub url: String,
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS through rustls with the ring provider.
    pub tls: bool,
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub keep_alive: Duration,
    pub clean_start: bool,
    pub session_expiry_s: u32,
    pub max_packet_bytes: u32,
}

/// Splits `mqtt[s]://host[:port][/]` into (tls, host, port).
pub fn parse_mqtt_url(u: &str) -> Option<(bool, String, u16)> {
    let (tls, rest) =
        if let Some(r) = u.strip_prefix("mqtts://") { (true, r) } else { (false, u.strip_prefix("mqtt://")?) };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (rest.to_string(), default_port),
        }
    };
    if host.is_empty() || host.contains('/') || port == 0 {
        return None;
    }
    Some((tls, host, port))
}

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub seed: bool,
}

#[derive(Debug, Clone)]
pub struct DoorConfig {
    pub id: String,
    /// Index into `devices` of the lock output.
    pub lock: usize,
    pub unlock: Duration,
    /// Index into `devices` of the door contact, when wired.
    pub contact: Option<usize>,
    /// Index into `devices` of the request-to-exit button, when wired.
    pub exit_button: Option<usize>,
    /// Indices into `devices` of the feedback outputs, when fitted.
    pub led: Option<usize>,
    pub buzzer: Option<usize>,
    /// How long the door may stand open before `door.held_open`.
    pub held_open: Duration,
    /// Relock as soon as the contact reports the door closed again.
    pub relock_on_close: bool,
    /// A card opens only with its holder's PIN typed after it.
    pub card_plus_pin: bool,
}

/// What an input device is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Reads keys, cards or QR codes for its door.
    Credentials,
    /// The door's contact: active means open.
    Contact,
    /// The door's request-to-exit button: active means pressed.
    ExitButton,
}

#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub id: String,
    pub kind: KindConfig,
    /// Index into `doors` of the door an input reports to.
    pub door: Option<usize>,
    /// What an input device is for (`Credentials` for outputs too).
    pub purpose: Purpose,
}

impl Config {
    /// Loads `path` with `PORTER_` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push(
                path.display().to_string(),
                format!("cannot read the config file: {e}"),
                Some(format!("pass an existing file with --config (the default is {DEFAULT_PATH})")),
            );
            errs
        })?;
        Self::from_toml(&text)
    }

    /// Parses TOML text with `PORTER_` environment overrides.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        Self::from_toml_with_env(text, std::env::vars())
    }

    /// Parses TOML text with the overrides found in `env`.
    ///
    /// Each `PORTER_` variable is applied to the file's tree by [`apply_env`]
    /// before anything is checked: `PORTER_DATA_DIR`, `PORTER_MQTT__URL`, or a
    /// key of a `[[doors]]` or `[[devices]]` entry by its index,
    /// `PORTER_DEVICES__1__DOOR`. A variable whose first part names no
    /// top-level key (`PORTER_LOG`) is not Porter's: it is ignored and listed
    /// in [`Config::env_ignored`] rather than failing the config. An error
    /// about a key that a variable set ends with `(from PORTER_...)`.
    pub fn from_toml_with_env(text: &str, env: impl Iterator<Item = (String, String)>) -> Result<Config, ConfigErrors> {
        let mut raw = parse_toml(text).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push(
                "(file)",
                format!("not valid TOML: {e}"),
                Some("check quoting and brackets near the line named".into()),
            );
            errs
        })?;
        let mut vars: Vec<(String, String)> = env.filter(|(name, _)| name.starts_with("PORTER_")).collect();
        vars.sort();
        let mut errs = ConfigErrors::default();
        let mut ignored = Vec::new();
        // The key path each variable set (or the section it created), and the variable.
        let mut set_by: Vec<(String, String)> = Vec::new();
        for (name, value) in vars {
            let first = name["PORTER_".len()..].split("__").next().unwrap_or_default().to_ascii_lowercase();
            if !TOP_LEVEL.contains(&first.as_str()) {
                ignored.push(name);
            } else if let Some(path) = apply_env(&mut raw, &name, &value, &mut errs) {
                set_by.push((path, name));
            }
        }
        let from_env = errs.len();
        let cfg = validate(&raw, &mut errs);
        for e in &mut errs.0[from_env..] {
            let within =
                |p: &str| e.path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']));
            // The most specific override that the key lies in.
            if let Some((_, name)) = set_by.iter().filter(|(p, _)| within(p)).max_by_key(|(p, _)| p.len()) {
                e.message.push_str(&format!(" (from {name})"));
            }
        }
        match cfg {
            Some(mut c) if errs.is_empty() => {
                c.env_ignored = ignored;
                Ok(c)
            }
            _ => Err(errs),
        }
    }
}

/// A TOML document as a JSON tree.
fn parse_toml(text: &str) -> Result<serde_json::Value, config::ConfigError> {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<serde_json::Value>())
}

/// The top-level keys and sections, as the environment may name them.
const TOP_LEVEL: &[&str] = &[
    "site",
    "controller",
    "data_dir",
    "secret_file",
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
    "doors",
    "devices",
];

/// Sets the key that the variable `name` (`PORTER_DEVICES__1__DOOR`) names
/// to `value`. The name after `PORTER_`, split at `__` and lowercased, is the
/// key path; a number picks an entry of an array, which the file must have.
/// Sections the file leaves out are created. Returns the key path of the
/// outermost table created, else of the key set.
fn apply_env(tree: &mut serde_json::Value, name: &str, value: &str, errs: &mut ConfigErrors) -> Option<String> {
    use serde_json::Value;
    let segs: Vec<&str> = name["PORTER_".len()..].split("__").collect();
    let var = |segs: &[&str], tail: &str| format!("PORTER_{}{tail}=...", segs.join("__"));
    if segs.iter().any(|s| s.is_empty()) {
        errs.push(
            name,
            "an empty part between `__` separators",
            Some("join a section and its key with two underscores, such as PORTER_KEYS__PIN_LENGTH=6".into()),
        );
        return None;
    }
    // The key path up to each part: `devices`, `devices[1]`, `devices[1].door`.
    let mut paths: Vec<String> = Vec::with_capacity(segs.len());
    for (i, s) in segs.iter().enumerate() {
        let prev = if i == 0 { "" } else { paths[i - 1].as_str() };
        paths.push(match s.parse::<usize>() {
            Ok(ix) => format!("{prev}[{ix}]"),
            Err(_) if prev.is_empty() => s.to_ascii_lowercase(),
            Err(_) => format!("{prev}.{}", s.to_ascii_lowercase()),
        });
    }
    let path = paths.last()?;
    // The one table whose keys are not config keys: an exec program's
    // environment, whose names keep their case, which a variable's name
    // cannot carry. It is set whole.
    if let Some(i) = segs.iter().position(|s| s.eq_ignore_ascii_case("env")).filter(|&i| i > 0 && i + 1 < segs.len()) {
        errs.push(
            name,
            format!("{} is set whole from the environment: the names in it keep their case", paths[i]),
            Some(format!("{}='{{ NAME = \"value\" }}'", var(&segs[..=i], "").trim_end_matches("=..."))),
        );
        return None;
    }
    let value = env_value(name, path, value, errs)?;
    let no_entry = |errs: &mut ConfigErrors, i: usize, ix: usize, len: usize| {
        errs.push(
            paths[i].clone(),
            format!("{name} names entry {ix}, but the file has {len} of them"),
            Some("override only entries the file defines; indexes start at 0".into()),
        );
    };
    let mut created = None;
    let mut node = tree;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        node = match node {
            Value::Array(items) => {
                let Ok(ix) = seg.parse::<usize>() else {
                    let mut fixed = segs.clone();
                    fixed[i] = "0";
                    errs.push(name, format!("{seg} is not an entry number"), Some(var(&fixed, "")));
                    return None;
                };
                let len = items.len();
                match items.get_mut(ix) {
                    Some(v) => v,
                    None => {
                        no_entry(errs, i, ix, len);
                        return None;
                    }
                }
            }
            Value::Object(_) if seg.parse::<usize>().is_ok() => {
                errs.push(
                    name,
                    format!("{} is a table, not a list: it has no entry {seg}", paths[i - 1]),
                    Some(var(&segs[..i], "__<KEY>")),
                );
                return None;
            }
            Value::Object(map) => {
                let key = seg.to_ascii_lowercase();
                if !last && !map.contains_key(&key) {
                    // From here on every table is new: an entry number below
                    // names an entry of a list that the file leaves out.
                    let entry = segs.iter().enumerate().skip(i + 1).find_map(|(j, s)| Some((j, s.parse().ok()?)));
                    match entry {
                        // A top-level section that is not a list: `[admin]` left out.
                        Some((1, ix)) if !matches!(key.as_str(), "doors" | "devices") => {
                            errs.push(
                                name,
                                format!("{key} is a table, not a list: it has no entry {ix}"),
                                Some(var(&segs[..1], "__<KEY>")),
                            );
                            return None;
                        }
                        Some((j, ix)) => {
                            no_entry(errs, j, ix, 0);
                            return None;
                        }
                        None => {}
                    }
                    created.get_or_insert_with(|| paths[i].clone());
                }
                map.entry(key).or_insert_with(|| if last { Value::Null } else { Value::Object(Default::default()) })
            }
            _ => {
                errs.push(
                    name,
                    format!(
                        "{} holds a value, not a table: it has no key `{}`",
                        paths[i - 1],
                        seg.to_ascii_lowercase()
                    ),
                    Some(var(&segs[..i], "")),
                );
                return None;
            }
        };
    }
    if node.is_object() && !value.is_object() {
        errs.push(name, format!("{path} is a table: set its keys one by one"), Some(var(&segs, "__<KEY>")));
        return None;
    }
    *node = value;
    Some(created.unwrap_or_else(|| path.clone()))
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

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An id; `example` is one that suits `what` (`main` for a door).
fn id_field(
    sec: &mut Section<'_>,
    key: &'static str,
    what: &str,
    example: &str,
    errs: &mut ConfigErrors,
) -> Option<String> {
    let v = sec.string(key, &format!("give the {what} an id such as {key} = \"{example}\""), errs)?;
    if !valid_id(&v) {
        errs.push(
            sec.key_path(key),
            format!("`{v}` is not a valid id"),
            Some("use 1-64 letters, digits, `-` or `_`".into()),
        );
        return None;
    }
    Some(v)
}

/// `schedule = [{ days = "daily", from = "07:00", to = "21:00" }, ...]` of a
/// `[roles.<role>]`, with every error of every window.
fn schedule(role: &mut Section<'_>, errs: &mut ConfigErrors) -> Vec<crate::access::schedule::Window> {
    use crate::access::schedule::{parse_days, parse_hhmm, Window, MAX_WINDOWS};
    let example = "schedule = [{ days = \"daily\", from = \"07:00\", to = \"21:00\" }]";
    let windows = role.tables("schedule", errs);
    if windows.len() > MAX_WINDOWS {
        errs.push(
            role.key_path("schedule"),
            format!("{} windows; a schedule holds at most {MAX_WINDOWS}", windows.len()),
            Some("join windows that share their times: days takes a list, such as days = [\"mon\", \"tue\"]".into()),
        );
    }
    let mut out = Vec::new();
    for mut w in windows {
        let days = match w.opt_names("days", errs) {
            None => Some(0x7f),
            Some(names) => {
                let mut mask = Some(0u8);
                for n in &names {
                    match parse_days(n) {
                        Some(d) => mask = mask.map(|m| m | d),
                        None => {
                            errs.push(
                                w.key_path("days"),
                                format!("unknown day {n:?}"),
                                Some("use mon, tue, wed, thu, fri, sat, sun, daily, weekdays or weekends, or a list of them".into()),
                            );
                            mask = None;
                        }
                    }
                }
                if mask == Some(0) {
                    errs.push(w.key_path("days"), "no day given", Some(format!("name at least one day: {example}")));
                    mask = None;
                }
                mask
            }
        };
        let mut time = |key: &'static str| {
            let t = w.string(key, &format!("a window has both from and to: {example}"), errs)?;
            let m = parse_hhmm(&t);
            if m.is_none() {
                errs.push(
                    w.key_path(key),
                    format!("{t:?} is not a time"),
                    Some(format!("write HH:MM from 00:00 to 24:00, such as {key} = \"07:00\"")),
                );
            }
            m
        };
        let (from, to) = (time("from"), time("to"));
        if from.is_some() && from == to {
            errs.push(
                w.key_path("to"),
                "the window is empty: from and to are the same time",
                Some("a to at or before from runs past midnight; from = \"00:00\", to = \"24:00\" is all day".into()),
            );
        }
        if let (Some(days), Some(from), Some(to)) = (days, from, to) {
            out.push(Window { days, from, to });
        }
        w.finish(errs);
    }
    out
}

fn validate(raw: &serde_json::Value, errs: &mut ConfigErrors) -> Option<Config> {
    let mut top = Section::new("", raw, errs)?;
    let segment_hint = "letters, digits, `-` and `_` only: it is an MQTT topic segment";
    let segment = |top: &mut Section<'_>, key: &'static str, errs: &mut ConfigErrors| {
        let v = top.string(key, &format!("set {key} = \"...\" ({segment_hint})"), errs);
        if let Some(s) = &v {
            if !valid_id(s) {
                errs.push(key, format!("`{s}` cannot be used"), Some(segment_hint.into()));
            }
        }
        v
    };
    let site = segment(&mut top, "site", errs);
    let controller = segment(&mut top, "controller", errs);
    if controller.as_deref() == Some("all") {
        errs.push(
            "controller",
            "`all` is reserved: porter/{site}/all/cmd reaches every controller of the site",
            Some("give this controller its own name, such as \"room-1\"".into()),
        );
    }
    let data_dir = top.string("data_dir", "set data_dir = \"/var/lib/porter\"", errs).map(PathBuf::from);
    let secret_file =
        top.string("secret_file", "set secret_file = \"/etc/porter/device.key\"", errs).map(PathBuf::from);
    let tz_name = top.string_or("timezone", "UTC", errs);
    let timezone = tz_name.parse::<chrono_tz::Tz>().map_err(|_| {
        errs.push(
            "timezone",
            format!("unknown time zone `{tz_name}`"),
            Some("use an IANA name such as \"America/New_York\" or \"UTC\"".into()),
        );
    });
    let log_level = top.string_or("log_level", "info", errs);
    if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
        errs.push(
            "log_level",
            format!("unknown level `{log_level}`"),
            Some("use error, warn, info, debug or trace".into()),
        );
    }

    let store = {
        let s = top.opt_table("store", errs);
        use crate::store::recover::{OnDamage, Restore};
        let mut c = StoreConfig {
            cache_capacity: 4 * 1024 * 1024,
            on_damage: OnDamage::Recover,
            restore: Restore::Restrictive,
            snapshots: 3,
            sync_idle: std::time::Duration::from_secs(600),
            reserve: 16 << 20,
            low_space: 64 << 20,
        };
        if let Some(mut s) = s {
            c.cache_capacity = s.u64_or("cache_capacity_mb", 4, 1..=4096, errs) * 1024 * 1024;
            match s.string_or("on_damage", "recover", errs).as_str() {
                "recover" => {}
                "refuse" => c.on_damage = OnDamage::Refuse,
                other => errs.push(
                    s.key_path("on_damage"),
                    format!("unknown policy `{other}`"),
                    Some("use \"recover\" (move a damaged store aside and start from the newest snapshot) or \"refuse\" (do not start)".into()),
                ),
            }
            match s.string_or("restore", "restrictive", errs).as_str() {
                "restrictive" => {}
                "all" => c.restore = Restore::All,
                other => errs.push(
                    s.key_path("restore"),
                    format!("unknown choice `{other}`"),
                    Some("use \"restrictive\" (only what refuses: retired PINs, lockouts, spent uses) or \"all\" (holders and keys too)".into()),
                ),
            }
            c.snapshots = s.u64_or("snapshots", 3, 0..=10, errs) as u32;
            c.reserve = s.u64_or("reserve_mb", 16, 0..=4096, errs) << 20;
            c.low_space = s.u64_or("low_space_mb", 64, 1..=1_000_000, errs) << 20;
            c.sync_idle = std::time::Duration::from_secs(s.u64_or("sync_idle_s", 600, 1..=86400, errs));
            s.finish(errs);
        }
        c
    };
    let keys = {
        let mut s = top.opt_table("keys", errs);
        let n = s.as_mut().map(|s| s.u64_or("pin_length", 6, 4..=8, errs)).unwrap_or(6);
        if let Some(s) = s {
            s.finish(errs);
        }
        KeysConfig { pin_length: n as usize }
    };
    let keypad = {
        let mut s = top.opt_table("keypad", errs);
        let (t, sal, pac) = match s.as_mut() {
            Some(s) => (
                s.u64_or("entry_timeout_ms", 5000, 500..=60_000, errs),
                s.bool_or("submit_at_length", false, errs),
                s.u64_or("pin_after_card_s", 10, 2..=60, errs),
            ),
            None => (5000, false, 10),
        };
        if let Some(s) = s {
            s.finish(errs);
        }
        KeypadConfig {
            entry_timeout: Duration::from_millis(t),
            submit_at_length: sal,
            pin_after_card: Duration::from_secs(pac),
        }
    };
    let lockout = {
        let d = LockoutPolicy::default();
        let mut s = top.opt_table("lockout", errs);
        let p = match s.as_mut() {
            Some(s) => LockoutPolicy {
                threshold: s.u64_or("threshold", d.threshold.into(), 1..=100, errs) as u32,
                base_ms: s.u64_or("base_s", d.base_ms / 1000, 1..=86_400, errs) * 1000,
                max_ms: s.u64_or("max_s", d.max_ms / 1000, 1..=86_400, errs) * 1000,
                daily_cap: s.u64_or("daily_cap", d.daily_cap.into(), 1..=100_000, errs) as u32,
            },
            None => d,
        };
        if let Some(s) = s {
            if p.max_ms < p.base_ms {
                errs.push(
                    s.key_path("max_s"),
                    "max_s is shorter than base_s",
                    Some("make max_s at least base_s".into()),
                );
            }
            s.finish(errs);
        }
        p
    };
    let enroll = {
        use crate::access::Role;
        let mut s = top.opt_table("enroll", errs);
        let mut roles = vec![Role::Courier, Role::Staff];
        let mut window_s = crate::runtime::enroll::DEFAULT_WINDOW.as_secs();
        if let Some(s) = s.as_mut() {
            let path = s.key_path("roles");
            if let Some(names) = s.opt_names("roles", errs) {
                roles.clear();
                for (i, n) in names.iter().enumerate() {
                    match Role::parse(n) {
                        Some(r) if !roles.contains(&r) => roles.push(r),
                        Some(_) => {}
                        None => errs.push(
                            format!("{path}[{i}]"),
                            format!("unknown role `{n}`"),
                            Some("use courier, staff, resident or manager; [] lets nobody enroll at a keypad".into()),
                        ),
                    }
                }
            }
            window_s = s.u64_or("window_s", window_s, crate::runtime::enroll::WINDOW_RANGE_S, errs);
        }
        if let Some(s) = s {
            s.finish(errs);
        }
        EnrollConfig { roles, window: Duration::from_secs(window_s) }
    };
    let mut card_plus_pin_roles = Vec::new();
    let role_schedules = {
        let mut out: crate::access::RoleSchedules = Default::default();
        if let Some(mut s) = top.opt_table("roles", errs) {
            for role in crate::access::Role::ALL {
                let Some(mut r) = s.opt_table(role.as_str(), errs) else { continue };
                if r.bool_or("card_plus_pin", false, errs) {
                    card_plus_pin_roles.push(role);
                }
                out[role.index()] = schedule(&mut r, errs);
                r.finish(errs);
            }
            s.finish(errs);
        }
        out
    };
    let clock = {
        use crate::runtime::clock::{SyncSource, Unsynchronized};
        let mut c = ClockConfig { unsynchronized: Unsynchronized::Deny, source: SyncSource::Kernel };
        if let Some(mut s) = top.opt_table("clock", errs) {
            match s.string_or("unsynchronized", "deny", errs).as_str() {
                "deny" => {}
                "allow" => c.unsynchronized = Unsynchronized::Allow,
                other => errs.push(
                    s.key_path("unsynchronized"),
                    format!("unknown policy `{other}`"),
                    Some("use \"deny\" (keys bound by time are refused while the clock is not synchronised) or \"allow\"".into()),
                ),
            }
            let hint = "name the file a time source keeps, such as \"/run/systemd/timesync/synchronized\", \
                        or leave sync_file out to ask the kernel";
            if let Some(p) = s.opt_path("sync_file", hint, errs) {
                c.source = SyncSource::File(p);
            }
            s.finish(errs);
        }
        c
    };
    let audit = {
        let mut s = top.opt_table("audit", errs);
        let r = s.as_mut().map(|s| s.u64_or("retain", 100_000, 1000..=10_000_000, errs)).unwrap_or(100_000);
        if let Some(s) = s {
            s.finish(errs);
        }
        AuditConfig { retain: r }
    };
    let admin = {
        let mut s = top.opt_table("admin", errs);
        let default = "/run/porter/admin.sock";
        let hint = format!("set socket = \"{default}\", or leave socket out for that default");
        let p = s.as_mut().and_then(|s| s.opt_path("socket", &hint, errs)).unwrap_or_else(|| default.into());
        if let Some(s) = s {
            s.finish(errs);
        }
        AdminConfig { socket: p }
    };
    let mqtt = top.opt_table("mqtt", errs).and_then(|mut s| {
        let url =
            s.string("url", "set url = \"mqtts://broker.example:8883\", or remove [mqtt] to run standalone", errs);
        let parsed = url.as_deref().and_then(|u| {
            let p = parse_mqtt_url(u);
            if p.is_none() {
                errs.push(
                    s.key_path("url"),
                    format!("`{u}` is not an MQTT URL"),
                    Some("use mqtt://host:1883 or mqtts://host:8883".into()),
                );
            }
            p
        });
        let client_id = s.opt_string("client_id", errs);
        let username = s.opt_string("username", errs);
        let mut path = |k: &'static str, example: &str, without: &str| {
            s.opt_path(k, &format!("set {k} = \"{example}\", or leave {k} out {without}"), errs)
        };
        let password_file = path("password_file", "/etc/porter/mqtt.pass", "to log in without a password");
        let ca_file = path("ca_file", "/etc/porter/ca.pem", "to trust the system's CA certificates");
        let cert_file = path("cert_file", "/etc/porter/client.pem", "without mutual TLS");
        let key_file = path("key_file", "/etc/porter/client.key", "without mutual TLS");
        if cert_file.is_some() != key_file.is_some() {
            errs.push(
                s.key_path("cert_file"),
                "cert_file and key_file go together",
                Some("set both for mutual TLS, or neither".into()),
            );
        }
        if password_file.is_some() && username.is_none() {
            errs.push(s.key_path("password_file"), "a password needs a username", Some("set username too".into()));
        }
        if let (Some((false, ..)), true) = (&parsed, ca_file.is_some() || cert_file.is_some()) {
            errs.push(
                s.key_path("url"),
                "TLS files are set but the URL is mqtt://",
                Some("use mqtts:// to connect with TLS".into()),
            );
        }
        let keep_alive = Duration::from_secs(s.u64_or("keep_alive_s", 30, 5..=3600, errs));
        let clean_start = s.bool_or("clean_start", false, errs);
        let session_expiry_s = s.u64_or("session_expiry_s", 86_400, 0..=u32::MAX as u64, errs) as u32;
        let max_packet_bytes = (s.u64_or("max_packet_kb", 2048, 16..=65_536, errs) * 1024) as u32;
        s.finish(errs);
        let (tls, host, port) = parsed?;
        Some(MqttConfig {
            url: url?,
            host,
            port,
            tls,
            client_id: client_id.unwrap_or_default(),
            username,
            password_file,
            ca_file,
            cert_file,
            key_file,
            keep_alive,
            clean_start,
            session_expiry_s,
            max_packet_bytes,
        })
    });
    let demo = {
        let mut s = top.opt_table("demo", errs);
        let seed = s.as_mut().map(|s| s.bool_or("seed", false, errs)).unwrap_or(false);
        if let Some(s) = s {
            s.finish(errs);
        }
        DemoConfig { seed }
    };

    // Devices first (doors refer to them), then doors, then the cross-checks.
    struct RawDevice {
        path: String,
        id: Option<String>,
        kind: Option<KindConfig>,
        door: Option<String>,
    }
    let mut devices_raw = Vec::new();
    for mut d in top.tables("devices", errs) {
        let id = id_field(&mut d, "id", "device", "keypad1", errs);
        let kind_name = d.string("kind", &format!("set kind to one of: {}", porter_drivers::KINDS.join(", ")), errs);
        let door = d.opt_string("door", errs);
        let kind = kind_name.and_then(|k| KindConfig::parse(&k, &mut d, errs));
        // Without a known kind, its keys cannot be told from typos: report
        // only near misses of the keys every device has (`Kind`).
        let known = kind.is_some();
        devices_raw.push(RawDevice { path: d.path().to_string(), id, kind, door });
        if known {
            d.finish(errs);
        } else {
            d.finish_typos(errs);
        }
    }
    struct RawDoor {
        path: String,
        id: Option<String>,
        lock: Option<String>,
        unlock_ms: u64,
        refs: [(&'static str, Option<String>); 5],
        held_open_s: u64,
        relock_on_close: bool,
        card_plus_pin: bool,
    }
    let mut doors_raw = Vec::new();
    for mut d in top.tables("doors", errs) {
        let id = id_field(&mut d, "id", "door", "main", errs);
        let lock = d.string("lock", "name the id of the lock output device (such as a sim_lock or gpio_relay)", errs);
        let unlock_ms = d.u64_or("unlock_ms", 5000, 100..=600_000, errs);
        let refs = [
            ("contact", d.opt_string("contact", errs)),
            ("exit_button", d.opt_string("exit_button", errs)),
            ("led", d.opt_string("led", errs)),
            ("buzzer", d.opt_string("buzzer", errs)),
            ("lock", None),
        ];
        let held_open_s = d.u64_or("held_open_s", 60, 1..=86_400, errs);
        let relock_on_close = d.bool_or("relock_on_close", false, errs);
        let card_plus_pin = d.bool_or("card_plus_pin", false, errs);
        if refs[0].1.is_none() {
            for key in ["held_open_s", "relock_on_close"] {
                if d.has(key) {
                    errs.push(
                        d.key_path(key),
                        "needs a door contact",
                        Some("set contact = \"...\" to the door's contact device, or remove this key".into()),
                    );
                }
            }
        }
        doors_raw.push(RawDoor {
            path: d.path().to_string(),
            id,
            lock,
            unlock_ms,
            refs,
            held_open_s,
            relock_on_close,
            card_plus_pin,
        });
        d.finish(errs);
    }
    top.finish(errs);

    let dup = |items: Vec<(&String, &String)>, what: &str, errs: &mut ConfigErrors| {
        let mut seen: HashMap<&String, &String> = HashMap::new();
        for (id, path) in items {
            if let Some(first) = seen.insert(id, path) {
                errs.push(
                    format!("{path}.id"),
                    format!("{what} id `{id}` is used twice (first at {first})"),
                    Some("give each one its own id".into()),
                );
            }
        }
    };
    dup(devices_raw.iter().filter_map(|d| d.id.as_ref().map(|i| (i, &d.path))).collect(), "device", errs);
    dup(doors_raw.iter().filter_map(|d| d.id.as_ref().map(|i| (i, &d.path))).collect(), "door", errs);
    if doors_raw.len() > MAX_DOORS {
        errs.push(
            "doors",
            format!("{} doors; one controller drives at most {MAX_DOORS}", doors_raw.len()),
            Some("split the doors between controllers, each with its own porterd and config".into()),
        );
    }
    // Channels of one relay board share its port, so they must agree on its framing.
    // A port or path that is empty is missing, and reported already: it is no
    // resource to compare.
    let relays: Vec<(String, &porter_drivers::serial_relay::SerialRelayConfig)> = devices_raw
        .iter()
        .filter_map(|d| match &d.kind {
            Some(KindConfig::SerialRelay(c)) if !c.serial.port.is_empty() => Some((d.path.clone(), c)),
            _ => None,
        })
        .collect();
    porter_drivers::serial_relay::check_shared_ports(&relays, errs);
    for (path, relay) in &relays {
        let port = &relay.serial.port;
        let other = devices_raw
            .iter()
            .find(|d| d.kind.as_ref().is_some_and(|k| k.claims().contains(&Claim::Path(port.clone()))));
        if let Some(other) = other {
            errs.push(
                format!("{path}.port"),
                format!("{port} is also read by {}", other.path),
                Some("a relay board and an input device cannot share a serial port; give each its own".into()),
            );
        }
    }
    let mut claims: HashMap<Claim, String> = HashMap::new();
    for d in &devices_raw {
        let mut own = d.kind.iter().flat_map(|k| k.claims()).collect::<Vec<_>>();
        own.sort();
        own.dedup();
        own.retain(|c| *c != Claim::Path(String::new()));
        for c in own {
            if let Some(first) = claims.insert(c.clone(), d.path.clone()) {
                errs.push(
                    d.path.clone(),
                    format!("{c} is already used by {first}"),
                    Some("each port, line or stream can belong to one device only".into()),
                );
            }
        }
    }

    let device_index = |id: &str| devices_raw.iter().position(|d| d.id.as_deref() == Some(id));
    let door_index = |id: &str| doors_raw.iter().position(|d| d.id.as_deref() == Some(id));
    // Each id once, in file order (a duplicate is reported above).
    let ids = |ids: Vec<&String>| {
        let mut once: Vec<&str> = Vec::new();
        for id in ids {
            if !once.contains(&id.as_str()) {
                once.push(id);
            }
        }
        once.join(", ")
    };
    let device_ids = || ids(devices_raw.iter().filter_map(|d| d.id.as_ref()).collect());
    let door_ids = || ids(doors_raw.iter().filter_map(|d| d.id.as_ref()).collect());

    let mut doors = Vec::new();
    // Each output and each contact or button belongs to one door, in one role.
    let mut used: HashMap<usize, String> = HashMap::new();
    let mut door_inputs: HashMap<usize, (usize, Purpose)> = HashMap::new();
    for (di, d) in doors_raw.iter().enumerate() {
        let mut resolve = |key: &str, name: &str, errs: &mut ConfigErrors| -> Option<usize> {
            let path = format!("{}.{key}", d.path);
            let want_output = matches!(key, "lock" | "led" | "buzzer");
            let Some(i) = device_index(name) else {
                errs.push(path, format!("no device with id `{name}`"), Some(format!("devices are: {}", device_ids())));
                return None;
            };
            let kind = devices_raw[i].kind.as_ref();
            if want_output && kind.is_some_and(|k| !k.can_output()) {
                let hint = match key {
                    "lock" => "point lock at an output device such as a sim_lock, gpio_relay or serial_relay",
                    _ => "point it at an output device such as a gpio_relay or serial_relay channel",
                };
                errs.push(path, format!("device `{name}` is an input, not an output"), Some(hint.into()));
                return None;
            }
            if !want_output && kind.is_some_and(|k| k.role() == Role::Input && !k.reports_levels()) {
                errs.push(
                    path,
                    format!("device `{name}` reads keys or cards; it cannot report a {}", key.replace('_', " ")),
                    Some("use a gpio_input (or an exec program writing {\"level\": ...}) here".into()),
                );
                return None;
            }
            if !want_output && kind.is_some_and(|k| k.role() != Role::Input) {
                errs.push(
                    path,
                    format!("device `{name}` is an output, not an input"),
                    Some(format!("point {key} at the input device wired to the door's {}", key.replace('_', " "))),
                );
                return None;
            }
            if let Some(first) = used.insert(i, path.clone()) {
                errs.push(
                    path,
                    format!("device `{name}` is already used as {first}"),
                    Some("give each door its own lock, contact, button and indicators".into()),
                );
                return None;
            }
            Some(i)
        };
        let lock = d.lock.as_deref().and_then(|l| resolve("lock", l, errs));
        let mut got = [None; 4];
        for (slot, (key, name)) in got.iter_mut().zip(&d.refs) {
            *slot = name.as_deref().and_then(|n| resolve(key, n, errs));
        }
        let [contact, exit_button, led, buzzer] = got;
        for (i, p) in [(contact, Purpose::Contact), (exit_button, Purpose::ExitButton)] {
            if let Some(i) = i {
                door_inputs.insert(i, (di, p));
            }
        }
        if let (Some(id), Some(lock)) = (&d.id, lock) {
            doors.push(DoorConfig {
                id: id.clone(),
                lock,
                unlock: Duration::from_millis(d.unlock_ms),
                contact,
                exit_button,
                led,
                buzzer,
                held_open: Duration::from_secs(d.held_open_s),
                relock_on_close: d.relock_on_close,
                card_plus_pin: d.card_plus_pin,
            });
        }
    }

    let mut devices = Vec::new();
    for (i, d) in devices_raw.iter().enumerate() {
        if let Some(&(door, purpose)) = door_inputs.get(&i) {
            if d.door.is_some() {
                let what = if purpose == Purpose::Contact { "contact" } else { "exit_button" };
                errs.push(
                    format!("{}.door", d.path),
                    format!("this device is a door's {what}, which reads no keys"),
                    Some(format!("remove door here: the door that names it with `{what} = ...` is its door")),
                );
            }
            if let (Some(id), Some(kind)) = (&d.id, &d.kind) {
                devices.push(DeviceConfig { id: id.clone(), kind: kind.clone(), door: Some(door), purpose });
            }
            continue;
        }
        if d.kind.as_ref().is_some_and(|k| k.reports_levels() && k.kind() != "exec") {
            // Reaching here, no door names it: its level would go nowhere.
            let id = d.id.as_deref().unwrap_or("...");
            errs.push(
                d.path.clone(),
                "a gpio_input reports a level, not keys: no door uses it",
                Some(format!("name it in its door's [[doors]] entry as contact = \"{id}\" or exit_button = \"{id}\"")),
            );
            continue;
        }
        let door = match (&d.door, &d.kind) {
            (Some(_), Some(k)) if k.role() == Role::Output => {
                errs.push(
                    format!("{}.door", d.path),
                    "an output device has no door of its own",
                    Some("remove door here; a door names its lock with `lock = \"...\"` in [[doors]]".into()),
                );
                None
            }
            (Some(door), _) => match door_index(door) {
                Some(i) => Some(i),
                None => {
                    errs.push(
                        format!("{}.door", d.path),
                        format!("no door with id `{door}`"),
                        Some(format!("doors are: {}", door_ids())),
                    );
                    None
                }
            },
            // An `exec` program that only drives a door's output needs no door.
            (None, Some(k)) if k.role() == Role::Input && !used.contains_key(&i) => {
                errs.push(
                    format!("{}.door", d.path),
                    "an input device needs the door it opens",
                    Some(format!("set door = \"...\" to one of: {}", door_ids())),
                );
                None
            }
            _ => None,
        };
        if let (Some(id), Some(kind)) = (&d.id, &d.kind) {
            devices.push(DeviceConfig { id: id.clone(), kind: kind.clone(), door, purpose: Purpose::Credentials });
        }
    }
    if devices.len() > u16::MAX as usize {
        errs.push(
            "devices",
            format!("{} devices; one controller drives at most {}", devices.len(), u16::MAX),
            Some("split the devices between controllers, each with its own porterd and config".into()),
        );
    }

    let mut mqtt = mqtt;
    if let (Some(m), Some(site), Some(controller)) = (mqtt.as_mut(), &site, &controller) {
        if m.client_id.is_empty() {
            m.client_id = format!("porter-{site}-{controller}");
        }
    }
    Some(Config {
        site: site?,
        controller: controller?,
        data_dir: data_dir?,
        secret_file: secret_file?,
        timezone: timezone.ok()?,
        log_level,
        store,
        keys,
        keypad,
        lockout,
        enroll,
        role_schedules,
        card_plus_pin_roles,
        clock,
        audit,
        admin,
        mqtt,
        demo,
        doors,
        devices,
        env_ignored: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
