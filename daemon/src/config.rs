//! Raw TOML plus `PORTER_` environment overrides, to a validated [`Config`].
//!
//! The `config` crate merges the file and the environment (`PORTER_DATA_DIR`
//! for a top-level key, `PORTER_MQTT__URL` for a nested one) into one tree;
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
    /// `PORTER_<KEY>` and `PORTER_<SECTION>__<KEY>` go through the `config`
    /// crate. Keys inside `[[doors]]` and `[[devices]]` are addressed by index,
    /// `PORTER_DEVICES__1__DOOR`, which the `config` crate cannot do, so those
    /// are applied here to the merged tree. A variable whose first part names
    /// no top-level key (`PORTER_LOG`) is not Porter's: it is ignored and
    /// listed in [`Config::env_ignored`] rather than failing the config.
    pub fn from_toml_with_env(text: &str, env: impl Iterator<Item = (String, String)>) -> Result<Config, ConfigErrors> {
        let mut plain = HashMap::new();
        let mut indexed = Vec::new();
        let mut ignored = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("PORTER_") else { continue };
            let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            if !TOP_LEVEL.contains(&parts[0].as_str()) {
                ignored.push(name);
            } else if parts.iter().any(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
                indexed.push((name, parts, value));
            } else {
                plain.insert(name, value);
            }
        }
        let mut raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("PORTER")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(plain)),
            )
            .build()
            .and_then(|c| c.try_deserialize::<serde_json::Value>())
            .map_err(|e| {
                let mut errs = ConfigErrors::default();
                errs.push(
                    "(file)",
                    format!("not valid TOML: {e}"),
                    Some("check quoting and brackets near the line named".into()),
                );
                errs
            })?;
        let mut errs = ConfigErrors::default();
        for (name, parts, value) in indexed {
            apply_indexed(&mut raw, &name, &parts, &value, &mut errs);
        }
        let cfg = validate(&raw, &mut errs);
        match cfg {
            Some(mut c) if errs.is_empty() => {
                ignored.sort();
                c.env_ignored = ignored;
                Ok(c)
            }
            _ => Err(errs),
        }
    }
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

/// Sets `tree[parts...] = value` for a variable such as
/// `PORTER_DEVICES__1__DOOR`; the indexed entry must exist in the file.
fn apply_indexed(tree: &mut serde_json::Value, name: &str, parts: &[String], value: &str, errs: &mut ConfigErrors) {
    use serde_json::Value;
    let mut path = String::new();
    let mut node = tree;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let next: &mut Value = match (node, part.parse::<usize>()) {
            (Value::Array(items), Ok(ix)) => {
                path.push_str(&format!("[{ix}]"));
                let len = items.len();
                match items.get_mut(ix) {
                    Some(v) => v,
                    None => {
                        errs.push(
                            path,
                            format!("{name} names entry {ix}, but the file has {len} of them"),
                            Some("override only entries the file defines; indexes start at 0".into()),
                        );
                        return;
                    }
                }
            }
            (Value::Object(map), _) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(part);
                if last {
                    let v = if let Ok(n) = value.parse::<i64>() {
                        Value::from(n)
                    } else if let Ok(b) = value.parse::<bool>() {
                        Value::from(b)
                    } else {
                        Value::from(value)
                    };
                    map.insert(part.clone(), v);
                    return;
                }
                map.entry(part.clone()).or_insert_with(|| Value::Object(Default::default()))
            }
            _ => {
                errs.push(
                    if path.is_empty() { part.clone() } else { path },
                    format!("{name} does not fit the file's structure"),
                    Some("use PORTER_DEVICES__<index>__<key> for keys of [[devices]] entries".into()),
                );
                return;
            }
        };
        node = next;
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn id_field(sec: &mut Section<'_>, key: &'static str, what: &str, errs: &mut ConfigErrors) -> Option<String> {
    let v = sec.string(key, &format!("give the {what} an id such as \"main\""), errs)?;
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
        let mut s = top.opt_table("store", errs);
        let mb = s.as_mut().map(|s| s.u64_or("cache_capacity_mb", 4, 1..=4096, errs)).unwrap_or(4);
        if let Some(s) = s {
            s.finish(errs);
        }
        StoreConfig { cache_capacity: mb * 1024 * 1024 }
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
            if let Some(names) = s.opt_strings("roles", errs) {
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
        use crate::access::schedule::Window;
        let mut out: crate::access::RoleSchedules = Default::default();
        if let Some(mut s) = top.opt_table("roles", errs) {
            for role in crate::access::Role::ALL {
                let Some(mut r) = s.opt_table(role.as_str(), errs) else { continue };
                if r.bool_or("card_plus_pin", false, errs) {
                    card_plus_pin_roles.push(role);
                }
                if let Some(v) = r.raw("schedule") {
                    match crate::provision::command::parse_schedule(Some(v)) {
                        Ok(ws) => {
                            out[role.index()] = ws.iter().map(|w| Window { days: w.days, from: w.from, to: w.to }).collect()
                        }
                        Err(e) => errs.push(
                            r.key_path("schedule"),
                            e.message,
                            Some("write schedule = [{ days = \"daily\", from = \"07:00\", to = \"21:00\" }]; days also take mon..sun, weekdays, weekends or a list".into()),
                        ),
                    }
                }
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
            if let Some(p) = s.opt_string("sync_file", errs) {
                c.source = SyncSource::File(PathBuf::from(p));
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
        let p = s
            .as_mut()
            .map(|s| s.string_or("socket", "/run/porter/admin.sock", errs))
            .unwrap_or_else(|| "/run/porter/admin.sock".into());
        if let Some(s) = s {
            s.finish(errs);
        }
        AdminConfig { socket: PathBuf::from(p) }
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
        let mut path = |k: &'static str| s.opt_string(k, errs).map(PathBuf::from);
        let (password_file, ca_file, cert_file, key_file) =
            (path("password_file"), path("ca_file"), path("cert_file"), path("key_file"));
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
        let id = id_field(&mut d, "id", "device", errs);
        let kind_name = d.string("kind", &format!("set kind to one of: {}", porter_drivers::KINDS.join(", ")), errs);
        let door = d.opt_string("door", errs);
        let kind = kind_name.and_then(|k| KindConfig::parse(&k, &mut d, errs));
        // Without a known kind, its keys cannot be told from typos: say only
        // that the kind is unknown.
        let known = kind.is_some();
        devices_raw.push(RawDevice { path: d.path().to_string(), id, kind, door });
        if known {
            d.finish(errs);
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
        let id = id_field(&mut d, "id", "door", errs);
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
        errs.push("doors", format!("{} doors; one controller drives at most {MAX_DOORS}", doors_raw.len()), None);
    }
    // Channels of one relay board share its port, so they must agree on its framing.
    let relays: Vec<(String, &porter_drivers::serial_relay::SerialRelayConfig)> = devices_raw
        .iter()
        .filter_map(|d| match &d.kind {
            Some(KindConfig::SerialRelay(c)) => Some((d.path.clone(), c)),
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
    let device_ids = || devices_raw.iter().filter_map(|d| d.id.clone()).collect::<Vec<_>>().join(", ");
    let door_ids = || doors_raw.iter().filter_map(|d| d.id.clone()).collect::<Vec<_>>().join(", ");

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
        errs.push("devices", "too many devices", None);
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
