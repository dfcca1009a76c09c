//! `[[devices]]` and `[[doors]]`: each entry read with its kind's own keys,
//! then the cross-checks that need them all (ids used twice, resources claimed
//! twice, what a door points at and in which role, which door an input
//! reports to). Devices are read first, as doors refer to them.

use super::valid_id;
use porter_drivers::settings::{ConfigErrors, Section};
use porter_drivers::{KindConfig, Role};
use std::collections::HashMap;
use std::time::Duration;

/// The most doors one controller drives (a door set is a 64-bit mask).
pub const MAX_DOORS: usize = 64;

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
    /// Indices into `devices` of the devices that receive the door's
    /// feedback with its details (an `exec` program with `feedback = true`).
    pub feedback: Vec<usize>,
    /// How long the door may stand open before `door.held_open`.
    pub held_open: Duration,
    /// Relock as soon as the contact reports the door closed again.
    pub relock_on_close: bool,
    /// A card opens only with its holder's PIN typed after it.
    pub card_plus_pin: bool,
}

pub use crate::access::room::Purpose;

#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub id: String,
    pub kind: KindConfig,
    /// Index into `doors` of the door an input reports to.
    pub door: Option<usize>,
    /// What an input device is for (`Credentials` for outputs too).
    pub purpose: Purpose,
}

/// The doors and devices, validated and cross-checked.
pub(crate) struct Wiring {
    pub doors: Vec<DoorConfig>,
    pub devices: Vec<DeviceConfig>,
}

/// The entries as written, before they refer to each other.
pub(crate) struct RawWiring {
    devices: Vec<RawDevice>,
    doors: Vec<RawDoor>,
}

struct RawDevice {
    path: String,
    id: Option<String>,
    kind: Option<KindConfig>,
    door: Option<String>,
}

struct RawDoor {
    path: String,
    id: Option<String>,
    lock: Option<String>,
    unlock_ms: u64,
    refs: [(&'static str, Option<String>); 5],
    feedback: Vec<String>,
    held_open_s: u64,
    relock_on_close: bool,
    card_plus_pin: bool,
}

/// What the doors made of the devices: each device used by a door (the key
/// path that uses it), and each door input's door and purpose.
#[derive(Default)]
struct Uses {
    used: HashMap<usize, String>,
    /// Devices some door names in its `feedback` list.
    feedback: std::collections::HashSet<usize>,
    door_inputs: HashMap<usize, (usize, Purpose)>,
}

impl RawWiring {
    /// Reads `[[devices]]`, then `[[doors]]`, each entry's own keys.
    pub(crate) fn read(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let devices = top.tables("devices", errs).into_iter().map(|d| RawDevice::read(d, errs)).collect();
        let doors = top.tables("doors", errs).into_iter().map(|d| RawDoor::read(d, errs)).collect();
        RawWiring { devices, doors }
    }

    /// The cross-checks, and the doors and devices referring to each other by index.
    pub(crate) fn resolve(self, errs: &mut ConfigErrors) -> Wiring {
        self.check_ids(errs);
        check_claims(&self.devices, errs);
        let mut uses = Uses::default();
        let doors = self.doors.iter().enumerate().filter_map(|(di, d)| self.door(di, d, &mut uses, errs)).collect();
        let devices = self.devices(&uses, errs);
        Wiring { doors, devices }
    }

    fn check_ids(&self, errs: &mut ConfigErrors) {
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
        dup(self.devices.iter().filter_map(|d| d.id.as_ref().map(|i| (i, &d.path))).collect(), "device", errs);
        dup(self.doors.iter().filter_map(|d| d.id.as_ref().map(|i| (i, &d.path))).collect(), "door", errs);
        if self.doors.len() > MAX_DOORS {
            errs.push(
                "doors",
                format!("{} doors; one controller drives at most {MAX_DOORS}", self.doors.len()),
                Some("split the doors between controllers, each with its own porterd and config".into()),
            );
        }
    }

    fn device_index(&self, id: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.id.as_deref() == Some(id))
    }

    fn door_index(&self, id: &str) -> Option<usize> {
        self.doors.iter().position(|d| d.id.as_deref() == Some(id))
    }

    fn device_ids(&self) -> String {
        ids(self.devices.iter().filter_map(|d| d.id.as_ref()).collect())
    }

    fn door_ids(&self) -> String {
        ids(self.doors.iter().filter_map(|d| d.id.as_ref()).collect())
    }

    /// Door `di`, its devices resolved; `None` without an id or a lock.
    fn door(&self, di: usize, d: &RawDoor, uses: &mut Uses, errs: &mut ConfigErrors) -> Option<DoorConfig> {
        let lock = d.lock.as_deref().and_then(|l| self.use_device(d, "lock", l, uses, errs));
        let mut got = [None; 4];
        for (slot, (key, name)) in got.iter_mut().zip(&d.refs) {
            *slot = name.as_deref().and_then(|n| self.use_device(d, key, n, uses, errs));
        }
        let [contact, exit_button, led, buzzer] = got;
        for (i, p) in [(contact, Purpose::Contact), (exit_button, Purpose::ExitButton)] {
            if let Some(i) = i {
                uses.door_inputs.insert(i, (di, p));
            }
        }
        let mut feedback = self.feedback_devices(d, errs);
        // Devices at this door that take its feedback unnamed (OSDP readers).
        for (i, dev) in self.devices.iter().enumerate() {
            let here = d.id.is_some() && dev.door == d.id;
            if here && dev.kind.as_ref().is_some_and(|k| k.feedback_at_own_door()) && !feedback.contains(&i) {
                feedback.push(i);
            }
        }
        uses.feedback.extend(feedback.iter().copied());
        Some(DoorConfig {
            id: d.id.clone()?,
            lock: lock?,
            unlock: Duration::from_millis(d.unlock_ms),
            contact,
            exit_button,
            led,
            buzzer,
            feedback,
            held_open: Duration::from_secs(d.held_open_s),
            relock_on_close: d.relock_on_close,
            card_plus_pin: d.card_plus_pin,
        })
    }

    /// The devices door `d` names in `feedback`: each must take feedback. A
    /// device may take several doors' feedback (a screen by two doors), and
    /// serve in another role too (an exec reader that is also its display).
    fn feedback_devices(&self, d: &RawDoor, errs: &mut ConfigErrors) -> Vec<usize> {
        let mut out = Vec::new();
        for (j, name) in d.feedback.iter().enumerate() {
            let path = format!("{}.feedback[{j}]", d.path);
            let Some(i) = self.device_index(name) else {
                errs.push(
                    path,
                    format!("no device with id `{name}`"),
                    Some(format!("devices are: {}", self.device_ids())),
                );
                continue;
            };
            match self.devices[i].kind.as_ref() {
                Some(k) if !k.takes_feedback() => {
                    let hint = if k.kind() == "exec" {
                        format!("set feedback = true on {} if its program reads feedback lines", self.devices[i].path)
                    } else {
                        "name an exec device with feedback = true or an osdp reader; use led and buzzer for a plain LED or buzzer line"
                            .to_string()
                    };
                    errs.push(path, format!("device `{name}` does not take feedback"), Some(hint));
                }
                _ if out.contains(&i) => errs.push(path, format!("device `{name}` is named twice"), None),
                _ => out.push(i),
            }
        }
        out
    }

    /// The device `name` that door `d` names under `key`, if it may serve
    /// there and no other door or role has it.
    fn use_device(
        &self,
        d: &RawDoor,
        key: &str,
        name: &str,
        uses: &mut Uses,
        errs: &mut ConfigErrors,
    ) -> Option<usize> {
        let path = format!("{}.{key}", d.path);
        let want_output = matches!(key, "lock" | "led" | "buzzer");
        let Some(i) = self.device_index(name) else {
            errs.push(path, format!("no device with id `{name}`"), Some(format!("devices are: {}", self.device_ids())));
            return None;
        };
        let kind = self.devices[i].kind.as_ref();
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
        if let Some(first) = uses.used.insert(i, path.clone()) {
            errs.push(
                path,
                format!("device `{name}` is already used as {first}"),
                Some("give each door its own lock, contact, button and indicators".into()),
            );
            return None;
        }
        Some(i)
    }

    /// Every device with its door and purpose, in file order.
    fn devices(&self, uses: &Uses, errs: &mut ConfigErrors) -> Vec<DeviceConfig> {
        let mut devices = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let placed = match uses.door_inputs.get(&i) {
                Some(&(door, purpose)) => Some(d.door_input(door, purpose, errs)),
                None => self.credentials_door(i, d, uses, errs).map(|door| (door, Purpose::Credentials)),
            };
            if let (Some((door, purpose)), Some(id), Some(kind)) = (placed, &d.id, &d.kind) {
                devices.push(DeviceConfig { id: id.clone(), kind: kind.clone(), door, purpose });
            }
        }
        if devices.len() > u16::MAX as usize {
            errs.push(
                "devices",
                format!("{} devices; one controller drives at most {}", devices.len(), u16::MAX),
                Some("split the devices between controllers, each with its own porterd and config".into()),
            );
        }
        devices
    }

    /// The door a device that no door uses as its contact or button reports
    /// to: `Some(None)` for one with no door, `None` when it is left out.
    fn credentials_door(&self, i: usize, d: &RawDevice, uses: &Uses, errs: &mut ConfigErrors) -> Option<Option<usize>> {
        if d.kind.as_ref().is_some_and(|k| k.reports_levels() && !k.reads_keys()) {
            // Reaching here, no door names it: its level would go nowhere.
            let id = d.id.as_deref().unwrap_or("...");
            errs.push(
                d.path.clone(),
                "a gpio_input reports a level, not keys: no door uses it",
                Some(format!("name it in its door's [[doors]] entry as contact = \"{id}\" or exit_button = \"{id}\"")),
            );
            return None;
        }
        Some(match (&d.door, &d.kind) {
            (Some(_), Some(k)) if k.role() == Role::Output => {
                errs.push(
                    format!("{}.door", d.path),
                    "an output device has no door of its own",
                    Some("remove door here; a door names its lock with `lock = \"...\"` in [[doors]]".into()),
                );
                None
            }
            (Some(door), _) => match self.door_index(door) {
                Some(i) => Some(i),
                None => {
                    errs.push(
                        format!("{}.door", d.path),
                        format!("no door with id `{door}`"),
                        Some(format!("doors are: {}", self.door_ids())),
                    );
                    None
                }
            },
            // An `exec` program that only drives a door's output, or only
            // shows its feedback, needs no door.
            (None, Some(k))
                if k.role() == Role::Input && !uses.used.contains_key(&i) && !uses.feedback.contains(&i) =>
            {
                errs.push(
                    format!("{}.door", d.path),
                    "an input device needs the door it opens",
                    Some(format!("set door = \"...\" to one of: {}", self.door_ids())),
                );
                None
            }
            _ => None,
        })
    }
}

impl RawDevice {
    fn read(mut d: Section<'_>, errs: &mut ConfigErrors) -> Self {
        let id = id_field(&mut d, "id", "device", "keypad1", errs);
        let kind_name = d.string("kind", &format!("set kind to one of: {}", porter_drivers::KINDS.join(", ")), errs);
        let door = d.opt_string("door", errs);
        let kind = kind_name.and_then(|k| KindConfig::parse(&k, &mut d, errs));
        // Without a known kind, its keys cannot be told from typos: report
        // only near misses of the keys every device has (`Kind`).
        let known = kind.is_some();
        let raw = RawDevice { path: d.path().to_string(), id, kind, door };
        if known {
            d.finish(errs);
        } else {
            d.finish_typos(errs);
        }
        raw
    }

    /// A door's contact or exit button, which has the door that names it.
    fn door_input(&self, door: usize, purpose: Purpose, errs: &mut ConfigErrors) -> (Option<usize>, Purpose) {
        if self.door.is_some() {
            let what = if purpose == Purpose::Contact { "contact" } else { "exit_button" };
            errs.push(
                format!("{}.door", self.path),
                format!("this device is a door's {what}, which reads no keys"),
                Some(format!("remove door here: the door that names it with `{what} = ...` is its door")),
            );
        }
        (Some(door), purpose)
    }
}

impl RawDoor {
    fn read(mut d: Section<'_>, errs: &mut ConfigErrors) -> Self {
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
        let feedback = d.opt_strings("feedback", errs).unwrap_or_default();
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
        let raw = RawDoor {
            path: d.path().to_string(),
            id,
            lock,
            unlock_ms,
            refs,
            feedback,
            held_open_s,
            relock_on_close,
            card_plus_pin,
        };
        d.finish(errs);
        raw
    }
}

/// Resources claimed twice: relay boards' ports, and every port, line or
/// stream a device holds. A port or path that is empty is missing, and
/// reported already: it is no resource to compare.
fn check_claims(devices: &[RawDevice], errs: &mut ConfigErrors) {
    let devices: Vec<(String, &KindConfig)> =
        devices.iter().filter_map(|d| Some((d.path.clone(), d.kind.as_ref()?))).collect();
    porter_drivers::kinds::check_claims(&devices, errs);
}

/// Each id once, in file order (a duplicate is reported already).
fn ids(ids: Vec<&String>) -> String {
    let mut once: Vec<&str> = Vec::new();
    for id in ids {
        if !once.contains(&id.as_str()) {
            once.push(id);
        }
    }
    once.join(", ")
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
