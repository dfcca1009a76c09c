//! The registry of device kinds: parsing each kind's keys, what it claims,
//! and building the driver.
//!
//! A new kind adds a variant here, a module with its config and driver, a
//! section in docs/drivers.md, and a test through its real protocol.

use crate::console::{Console, ConsoleConfig};
use crate::contract::{InputDriver, Output};
use crate::exec::{Exec, ExecConfig, ExecOutput};
use crate::gpio::line_name;
use crate::gpio_input::{GpioInput, GpioInputConfig};
use crate::gpio_relay::{GpioRelay, GpioRelayConfig};
use crate::hid::{Hid, HidConfig};
#[cfg(feature = "pcsc")]
use crate::pcsc::{Pcsc, PcscConfig};
use crate::serial_keypad::{SerialKeypad, SerialKeypadConfig};
use crate::serial_qr::{SerialQr, SerialQrConfig};
use crate::serial_relay::{SerialRelay, SerialRelayConfig};
use crate::serial_rfid::{SerialRfid, SerialRfidConfig};
use crate::settings::{ConfigErrors, Section};
use crate::sim_lock::{SimLock, SimLockConfig};
use crate::wiegand::{Wiegand, WiegandConfig};

/// Every kind this build knows, as written in `kind = "..."`.
pub const KINDS: &[&str] = &[
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
];

/// Whether a device reads credentials or drives a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
}

/// An exclusive resource a device needs; two devices may not claim the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Claim {
    Stdin,
    Path(String),
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::Stdin => f.write_str("standard input"),
            Claim::Path(p) => f.write_str(p),
        }
    }
}

/// A device's validated, kind-specific configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindConfig {
    Console(ConsoleConfig),
    #[cfg(feature = "pcsc")]
    Pcsc(PcscConfig),
    SimLock(SimLockConfig),
    SerialKeypad(SerialKeypadConfig),
    SerialQr(SerialQrConfig),
    SerialRfid(SerialRfidConfig),
    SerialRelay(SerialRelayConfig),
    Wiegand(WiegandConfig),
    GpioInput(GpioInputConfig),
    GpioRelay(GpioRelayConfig),
    Hid(HidConfig),
    Exec(ExecConfig),
}

impl KindConfig {
    /// Parses the kind's own keys from `sec`; unknown kinds are reported with
    /// the list of known ones.
    pub fn parse(kind: &str, sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Option<Self> {
        match kind {
            "console" => Some(KindConfig::Console(ConsoleConfig::parse(sec, errs))),
            "sim_lock" => Some(KindConfig::SimLock(SimLockConfig::parse(sec, errs))),
            #[cfg(feature = "pcsc")]
            "pcsc" => Some(KindConfig::Pcsc(PcscConfig::parse(sec, errs))),
            #[cfg(not(feature = "pcsc"))]
            "pcsc" => {
                errs.push(
                    sec.key_path("kind"),
                    "this porterd was built without PC/SC support",
                    Some(
                        "rebuild with `--features pcsc` (it needs libpcsclite-dev), as the Debian package is built"
                            .into(),
                    ),
                );
                None
            }
            "serial_keypad" => Some(KindConfig::SerialKeypad(SerialKeypadConfig::parse(sec, errs))),
            "serial_qr" => Some(KindConfig::SerialQr(SerialQrConfig::parse(sec, errs))),
            "serial_rfid" => Some(KindConfig::SerialRfid(SerialRfidConfig::parse(sec, errs))),
            "serial_relay" => Some(KindConfig::SerialRelay(SerialRelayConfig::parse(sec, errs))),
            "wiegand" => Some(KindConfig::Wiegand(WiegandConfig::parse(sec, errs))),
            "gpio_input" => Some(KindConfig::GpioInput(GpioInputConfig::parse(sec, errs))),
            "gpio_relay" => Some(KindConfig::GpioRelay(GpioRelayConfig::parse(sec, errs))),
            "hid" => Some(KindConfig::Hid(HidConfig::parse(sec, errs))),
            "exec" => Some(KindConfig::Exec(ExecConfig::parse(sec, errs))),
            other => {
                let hint = match crate::settings::closest(other, KINDS) {
                    Some(k) => format!("did you mean `{k}`? kinds are: {}", KINDS.join(", ")),
                    None => format!("use one of: {}", KINDS.join(", ")),
                };
                errs.push(sec.key_path("kind"), format!("unknown device kind `{other}`"), Some(hint));
                None
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            KindConfig::Console(_) => "console",
            KindConfig::SimLock(_) => "sim_lock",
            #[cfg(feature = "pcsc")]
            KindConfig::Pcsc(_) => "pcsc",
            KindConfig::SerialKeypad(_) => "serial_keypad",
            KindConfig::SerialQr(_) => "serial_qr",
            KindConfig::SerialRfid(_) => "serial_rfid",
            KindConfig::SerialRelay(_) => "serial_relay",
            KindConfig::Wiegand(_) => "wiegand",
            KindConfig::GpioInput(_) => "gpio_input",
            KindConfig::GpioRelay(_) => "gpio_relay",
            KindConfig::Hid(_) => "hid",
            KindConfig::Exec(_) => "exec",
        }
    }

    /// Whether a door may use this device as an output (a lock, an LED, a
    /// buzzer): the output kinds, and `exec` programs, which take output
    /// commands on their standard input.
    pub fn can_output(&self) -> bool {
        self.role() == Role::Output || self.kind() == "exec"
    }

    /// Whether the device reports levels (`Input::Level`), so that a door can
    /// use it as its contact or exit button.
    pub fn reports_levels(&self) -> bool {
        matches!(self, KindConfig::GpioInput(_) | KindConfig::Exec(_))
    }

    pub fn role(&self) -> Role {
        match self {
            KindConfig::Console(_) => Role::Input,
            KindConfig::SimLock(_) => Role::Output,
            #[cfg(feature = "pcsc")]
            KindConfig::Pcsc(_) => Role::Input,
            KindConfig::SerialKeypad(_) | KindConfig::SerialQr(_) | KindConfig::SerialRfid(_) => Role::Input,
            KindConfig::SerialRelay(_) => Role::Output,
            KindConfig::Wiegand(_) | KindConfig::GpioInput(_) => Role::Input,
            KindConfig::GpioRelay(_) => Role::Output,
            // An exec program is supervised as an input; a door may still
            // use it as an output (see `can_output`).
            KindConfig::Hid(_) | KindConfig::Exec(_) => Role::Input,
        }
    }

    /// What this device holds exclusively.
    pub fn claims(&self) -> Vec<Claim> {
        match self {
            KindConfig::Console(_) => vec![Claim::Stdin],
            KindConfig::SimLock(_) => vec![],
            #[cfg(feature = "pcsc")]
            KindConfig::Pcsc(c) => vec![Claim::Path(c.claim())],
            KindConfig::SerialKeypad(c) => vec![Claim::Path(c.serial.port.clone())],
            KindConfig::SerialQr(c) => vec![Claim::Path(c.serial.port.clone())],
            KindConfig::SerialRfid(c) => vec![Claim::Path(c.serial.port.clone())],
            // Channels of one board share its port (see serial_relay).
            KindConfig::SerialRelay(c) => vec![Claim::Path(format!("{}#{}", c.serial.port, c.channel))],
            KindConfig::Wiegand(c) => vec![Claim::Path(line_name(c.d0)), Claim::Path(line_name(c.d1))],
            KindConfig::GpioInput(c) => vec![Claim::Path(line_name(c.line))],
            KindConfig::GpioRelay(c) => vec![Claim::Path(line_name(c.line))],
            KindConfig::Hid(c) => vec![Claim::Path(c.path.clone())],
            KindConfig::Exec(_) => vec![],
        }
    }

    /// The input driver, for input kinds; `id` is the device's id, for logs.
    pub fn input_driver(&self, id: &str) -> Option<Box<dyn InputDriver>> {
        let _ = id;
        match self {
            KindConfig::Console(_) => Some(Box::new(Console::new())),
            KindConfig::SimLock(_) => None,
            #[cfg(feature = "pcsc")]
            KindConfig::Pcsc(c) => Some(Box::new(Pcsc::new(id, c.clone()))),
            KindConfig::SerialKeypad(c) => Some(Box::new(SerialKeypad::new(id, c.clone()))),
            KindConfig::SerialQr(c) => Some(Box::new(SerialQr::new(id, c.clone()))),
            KindConfig::SerialRfid(c) => Some(Box::new(SerialRfid::new(id, c.clone()))),
            KindConfig::SerialRelay(_) => None,
            KindConfig::Wiegand(c) => Some(Box::new(Wiegand::new(c.clone(), id))),
            KindConfig::GpioInput(c) => Some(Box::new(GpioInput::new(c.clone(), id))),
            KindConfig::GpioRelay(_) => None,
            KindConfig::Hid(c) => Some(Box::new(Hid::new(id, c.clone()))),
            KindConfig::Exec(c) => Some(Box::new(Exec::new(id, c.clone()))),
        }
    }

    /// The output driver, for output kinds; `id` is the device's id, for logs.
    pub fn output_driver(&self, id: &str) -> Option<Box<dyn Output>> {
        match self {
            KindConfig::SimLock(_) => Some(Box::new(SimLock::new(id))),
            #[cfg(feature = "pcsc")]
            KindConfig::Pcsc(_) => None,
            KindConfig::SerialRelay(c) => Some(Box::new(SerialRelay::new(id, c.clone()))),
            KindConfig::SerialKeypad(_) | KindConfig::SerialQr(_) | KindConfig::SerialRfid(_) => None,
            KindConfig::GpioRelay(c) => Some(Box::new(GpioRelay::new(c.clone(), id))),
            KindConfig::Wiegand(_) | KindConfig::GpioInput(_) => None,
            KindConfig::Console(_) => None,
            KindConfig::Hid(_) => None,
            // Lock commands go to the program run by the input driver.
            KindConfig::Exec(_) => Some(Box::new(ExecOutput::new(id))),
        }
    }
}

/// The resources that `devices` (each with its key path) claim twice: a relay
/// board's port read by an input device or set up two ways by its channels,
/// and every port, line or stream that two devices hold. A port or path that
/// is empty is missing, and reported already: it is no resource to compare.
pub fn check_claims(devices: &[(String, &KindConfig)], errs: &mut ConfigErrors) {
    // Channels of one relay board share its port, so they must agree on its framing.
    let relays: Vec<(String, &SerialRelayConfig)> = devices
        .iter()
        .filter_map(|(path, k)| match k {
            KindConfig::SerialRelay(c) if !c.serial.port.is_empty() => Some((path.clone(), c)),
            _ => None,
        })
        .collect();
    crate::serial_relay::check_shared_ports(&relays, errs);
    for (path, relay) in &relays {
        let port = &relay.serial.port;
        let other = devices.iter().find(|(_, k)| k.claims().contains(&Claim::Path(port.clone())));
        if let Some((other, _)) = other {
            errs.push(
                format!("{path}.port"),
                format!("{port} is also read by {other}"),
                Some("a relay board and an input device cannot share a serial port; give each its own".into()),
            );
        }
    }
    let mut claims: std::collections::HashMap<Claim, String> = std::collections::HashMap::new();
    for (path, k) in devices {
        let mut own = k.claims();
        own.sort();
        own.dedup();
        own.retain(|c| *c != Claim::Path(String::new()));
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
