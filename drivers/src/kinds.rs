//! The registry of device kinds. Each kind describes itself in its own
//! module: a [`Descriptor`] (its name, role, what it reports, the access its
//! device nodes need and how its keys are parsed) and an impl of
//! [`DeviceKind`] on its config (what it claims, its doctor checks, its
//! drivers). The daemon asks these, never a kind's name.
//!
//! A new kind is its module plus one line in [`REGISTRY`]; docs/drivers.md
//! has the recipe.

use crate::contract::{InputDriver, Output};
use crate::settings::{ConfigErrors, Section};
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Every kind this build knows, in the order hints list them.
pub const REGISTRY: &[&Descriptor] = &[
    &crate::console::KIND,
    &crate::sim_lock::KIND,
    &crate::gpio::wiegand::KIND,
    &crate::gpio::input::KIND,
    &crate::gpio::relay::KIND,
    &crate::serial::keypad::KIND,
    &crate::serial::qr::KIND,
    &crate::serial::rfid::KIND,
    &crate::serial::relay::KIND,
    #[cfg(feature = "pcsc")]
    &crate::pcsc::KIND,
    #[cfg(not(feature = "pcsc"))]
    &PCSC_MISSING,
    &crate::hid::KIND,
    &crate::exec::KIND,
    #[cfg(feature = "osdp")]
    &crate::osdp::KIND,
    #[cfg(not(feature = "osdp"))]
    &OSDP_MISSING,
];

/// Every kind this build knows, as written in `kind = "..."`.
pub const KINDS: &[&str] = &names::<{ REGISTRY.len() }>();

const fn names<const N: usize>() -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = REGISTRY[i].name;
        i += 1;
    }
    out
}

/// Whether a device reads credentials or drives a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
}

/// What an input reports: keys (PINs, cards, QR codes) or levels (a door
/// contact, an exit button).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reports {
    pub keys: bool,
    pub levels: bool,
}

/// The access the service's user needs on the device nodes a kind claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// It claims no device node.
    None,
    /// It only reads (an evdev node).
    Read,
    /// It reads and writes (a serial port: settings, replies, relay frames).
    ReadWrite,
}

/// A check across every configured device, each with its key path.
pub type CrossCheck = fn(&[(String, &KindConfig)], &mut ConfigErrors);

/// What a kind is, for the config checks, the doctor and the runtime.
#[derive(Debug)]
pub struct Descriptor {
    /// As written in `kind = "..."`.
    pub name: &'static str,
    /// Input devices are read by a supervised input driver; outputs are driven.
    pub role: Role,
    /// What it reports, for an input.
    pub reports: Reports,
    /// Whether a door may use it as an output (a lock, an LED, a buzzer).
    pub drives_outputs: bool,
    /// Whether its output commands go to what its input driver runs (an
    /// `exec` program), so that it cannot be driven before inputs start.
    pub output_through_input: bool,
    /// What the service's user needs on the device nodes it claims.
    pub access: Access,
    /// Parses the kind's own keys; `None` when the kind cannot be used.
    pub parse: fn(&mut Section<'_>, &mut ConfigErrors) -> Option<KindConfig>,
    /// Checks across every configured device that one device's own keys
    /// cannot (channels of one relay board agreeing on its port's framing).
    pub cross_check: Option<CrossCheck>,
}

impl Descriptor {
    /// The descriptor of the kind named `name`.
    pub fn find(name: &str) -> Option<&'static Descriptor> {
        REGISTRY.iter().copied().find(|d| d.name == name)
    }
}

/// An exclusive resource a device needs; two devices may not claim the same.
/// Two claims are the same when they name the same thing as written in an
/// error (`/dev/ttyUSB0`, `gpio18`, `pcsc:acr122*`, `/dev/ttyUSB1#2`,
/// `/dev/ttyUSB2@0`).
#[derive(Debug, Clone)]
pub enum Claim {
    /// The daemon's standard input.
    Stdin,
    /// A device node opened by its path: a serial port, an evdev node.
    Node(String),
    /// A line of the Pi's GPIO header, by BCM number.
    GpioLine(crate::gpio::LineNo),
    /// A PC/SC reader, by the pattern of its name as configured (`None`: any).
    PcscReader(Option<String>),
    /// One channel of a relay board on a serial port (channels share the port).
    RelayChannel { port: String, channel: u32 },
    /// One reader's address on an OSDP bus (readers share the bus's port).
    BusAddress { port: String, address: u8 },
}

impl Claim {
    /// What makes two claims the same: the text that names them.
    fn key(&self) -> (bool, String) {
        (!matches!(self, Claim::Stdin), self.to_string())
    }

    /// Whether the claim names nothing: a port or path left empty, which is
    /// reported already.
    pub fn is_empty(&self) -> bool {
        matches!(self, Claim::Node(p) if p.is_empty())
    }
}

impl PartialEq for Claim {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Claim {}

impl std::hash::Hash for Claim {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

impl PartialOrd for Claim {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Claim {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Claim::Stdin => f.write_str("standard input"),
            Claim::Node(p) => f.write_str(p),
            Claim::GpioLine(line) => f.write_str(&crate::gpio::line_name(*line)),
            Claim::PcscReader(None) => f.write_str("pcsc:*"),
            Claim::PcscReader(Some(p)) => write!(f, "pcsc:{}", p.to_lowercase()),
            Claim::RelayChannel { port, channel } => write!(f, "{port}#{channel}"),
            Claim::BusAddress { port, address } => write!(f, "{port}@{address}"),
        }
    }
}

/// What `porterctl doctor` checks for a device, before the room works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The node is there and the service's user may open it (and, with
    /// `write`, write it).
    Node { path: String, write: bool },
    /// The service's user may open the GPIO register window.
    GpioMemory,
    /// A PC/SC reader matching the pattern (any, without one) is attached.
    PcscReader(Option<String>),
}

/// A kind's validated config, which knows what it claims and builds its
/// drivers. Each kind implements it on its config struct.
pub trait DeviceKind: fmt::Debug + Send + Sync + 'static {
    fn descriptor(&self) -> &'static Descriptor;

    /// What this device holds exclusively.
    fn claims(&self) -> Vec<Claim>;

    /// The input driver, for input kinds; `id` is the device's id, for logs.
    fn input_driver(&self, id: &str) -> Option<Box<dyn InputDriver>> {
        let _ = id;
        None
    }

    /// The output driver, for kinds that drive outputs.
    fn output_driver(&self, id: &str) -> Option<Box<dyn Output>> {
        let _ = id;
        None
    }

    /// Whether the device, as configured, receives a door's feedback (a
    /// door may name it in its `feedback` list).
    fn takes_feedback(&self) -> bool {
        false
    }

    /// Whether the device takes its own door's feedback without the door
    /// naming it (an OSDP reader lights up where it is badged at).
    fn feedback_at_own_door(&self) -> bool {
        false
    }

    /// The receiver of a door's feedback, for a device that takes it.
    fn feedback_receiver(&self, id: &str) -> Option<Box<dyn crate::contract::FeedbackReceiver>> {
        let _ = id;
        None
    }

    /// The doctor's checks: by default, one per claim, with the kind's access.
    fn checks(&self) -> Vec<Check> {
        let write = self.descriptor().access == Access::ReadWrite;
        self.claims()
            .into_iter()
            .filter_map(|c| match c {
                Claim::Stdin => None,
                Claim::Node(path) | Claim::RelayChannel { port: path, .. } | Claim::BusAddress { port: path, .. } => {
                    Some(Check::Node { path, write })
                }
                Claim::GpioLine(_) => Some(Check::GpioMemory),
                Claim::PcscReader(p) => Some(Check::PcscReader(p)),
            })
            .collect()
    }

    fn as_any(&self) -> &dyn Any;
}

/// A device's validated, kind-specific configuration.
#[derive(Debug, Clone)]
pub struct KindConfig(Arc<dyn DeviceKind>);

impl KindConfig {
    pub fn new(kind: impl DeviceKind) -> Self {
        KindConfig(Arc::new(kind))
    }

    /// Parses the kind's own keys from `sec`; unknown kinds are reported with
    /// the list of known ones.
    pub fn parse(kind: &str, sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Option<Self> {
        if let Some(d) = Descriptor::find(kind) {
            return (d.parse)(sec, errs);
        }
        let hint = match crate::settings::closest(kind, KINDS) {
            Some(k) => format!("did you mean `{k}`? kinds are: {}", KINDS.join(", ")),
            None => format!("use one of: {}", KINDS.join(", ")),
        };
        errs.push(sec.key_path("kind"), format!("unknown device kind `{kind}`"), Some(hint));
        None
    }

    pub fn descriptor(&self) -> &'static Descriptor {
        self.0.descriptor()
    }

    pub fn kind(&self) -> &'static str {
        self.descriptor().name
    }

    pub fn role(&self) -> Role {
        self.descriptor().role
    }

    /// Whether a door may use this device as an output (a lock, an LED, a
    /// buzzer).
    pub fn can_output(&self) -> bool {
        self.descriptor().drives_outputs
    }

    /// Whether the device reports levels (`Input::Level`), so that a door can
    /// use it as its contact or exit button.
    pub fn reports_levels(&self) -> bool {
        self.descriptor().reports.levels
    }

    /// Whether the device reads keys (PINs, cards, QR codes).
    pub fn reads_keys(&self) -> bool {
        self.descriptor().reports.keys
    }

    pub fn claims(&self) -> Vec<Claim> {
        self.0.claims()
    }

    pub fn checks(&self) -> Vec<Check> {
        self.0.checks()
    }

    pub fn input_driver(&self, id: &str) -> Option<Box<dyn InputDriver>> {
        self.0.input_driver(id)
    }

    pub fn output_driver(&self, id: &str) -> Option<Box<dyn Output>> {
        self.0.output_driver(id)
    }

    /// Whether a door may name this device in its `feedback` list.
    pub fn takes_feedback(&self) -> bool {
        self.0.takes_feedback()
    }

    pub fn feedback_receiver(&self, id: &str) -> Option<Box<dyn crate::contract::FeedbackReceiver>> {
        self.0.feedback_receiver(id)
    }

    /// Whether the device takes its own door's feedback unnamed.
    pub fn feedback_at_own_door(&self) -> bool {
        self.0.feedback_at_own_door()
    }

    /// The kind's own config, when it is a `T`.
    pub fn downcast_ref<T: DeviceKind>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }
}

/// A kind this build left out (its cargo feature off): named, so that the
/// error says why and how to get it, instead of "unknown kind".
#[allow(unused_macros)]
macro_rules! missing_kind {
    ($const:ident, $name:literal, $what:literal, $feature:literal, $needs:literal) => {
        const $const: Descriptor = Descriptor {
            name: $name,
            role: Role::Input,
            reports: Reports { keys: true, levels: false },
            drives_outputs: false,
            output_through_input: false,
            access: Access::None,
            parse: |sec, errs| {
                errs.push(
                    sec.key_path("kind"),
                    concat!("this porterd was built without ", $what, " support"),
                    Some(
                        concat!(
                            "install the Debian package, or build with `--features ",
                            $feature,
                            "` (it needs ",
                            $needs,
                            "): `cargo run -p porterd --features pcsc,osdp --bin porterd -- check-config --config FILE`"
                        )
                        .into(),
                    ),
                );
                None
            },
            cross_check: None,
        };
    };
}

#[cfg(not(feature = "pcsc"))]
missing_kind!(PCSC_MISSING, "pcsc", "PC/SC", "pcsc", "libpcsclite-dev");
#[cfg(not(feature = "osdp"))]
missing_kind!(OSDP_MISSING, "osdp", "OSDP", "osdp", "gcc and git");

/// The resources that `devices` (each with its key path) claim twice: first
/// each kind's own cross-checks, in registry order, then every port, line or
/// stream that two devices hold. A port or path that is empty is missing,
/// and reported already: it is no resource to compare.
pub fn check_claims(devices: &[(String, &KindConfig)], errs: &mut ConfigErrors) {
    for check in REGISTRY.iter().filter_map(|d| d.cross_check) {
        check(devices, errs);
    }
    let mut claims: std::collections::HashMap<Claim, String> = std::collections::HashMap::new();
    for (path, k) in devices {
        let mut own = k.claims();
        own.sort();
        own.dedup();
        own.retain(|c| !c.is_empty());
        for c in own {
            if let Some(first) = claims.insert(c.clone(), path.clone()) {
                errs.push(
                    path.clone(),
                    format!("{c} is already used by {first}"),
                    Some("each port, line or stream can belong to one device only".into()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_lists_each_kind_once_in_the_documented_order() {
        let want = [
            "console",
            "sim_lock",
            "wiegand",
            "gpio_input",
            "gpio_relay",
            "serial_keypad",
            "serial_qr",
            "serial_rfid",
            "serial_relay",
            "pcsc",
            "hid",
            "exec",
            "osdp",
        ];
        assert_eq!(KINDS, want);
        for d in REGISTRY {
            assert_eq!(Descriptor::find(d.name).map(|f| f.name), Some(d.name));
        }
    }

    #[test]
    fn a_kind_parsed_through_the_registry_describes_itself() {
        let v = serde_json::json!({ "port": "/dev/ttyUSB1", "channel": 2 });
        let mut errs = ConfigErrors::default();
        let mut sec = Section::new("devices[0]", &v, &mut errs).unwrap();
        let k = KindConfig::parse("serial_relay", &mut sec, &mut errs).unwrap();
        assert!(errs.is_empty(), "{errs}");
        assert_eq!((k.kind(), k.role(), k.can_output()), ("serial_relay", Role::Output, true));
        let claims = k.claims();
        assert_eq!(claims, [Claim::RelayChannel { port: "/dev/ttyUSB1".into(), channel: 2 }]);
        assert_eq!(claims[0].to_string(), "/dev/ttyUSB1#2");
        assert_eq!(k.checks(), [Check::Node { path: "/dev/ttyUSB1".into(), write: true }]);
        assert!(k.downcast_ref::<crate::serial::relay::SerialRelayConfig>().is_some());
    }

    #[test]
    fn claims_are_the_same_when_their_text_is() {
        assert_eq!(Claim::GpioLine(18).to_string(), "gpio18");
        assert_eq!(Claim::PcscReader(None).to_string(), "pcsc:*");
        assert_eq!(Claim::PcscReader(Some("ACR*".into())), Claim::PcscReader(Some("acr*".into())));
        assert_eq!(Claim::Node("gpio18".into()), Claim::GpioLine(18));
        assert_ne!(Claim::Stdin, Claim::Node("standard input".into()));
        // Sorted by text, as the config lists conflicts: gpio18 before gpio5.
        let mut c = vec![Claim::GpioLine(5), Claim::GpioLine(18), Claim::Stdin];
        c.sort();
        assert_eq!(c, [Claim::Stdin, Claim::GpioLine(18), Claim::GpioLine(5)]);
    }
}
