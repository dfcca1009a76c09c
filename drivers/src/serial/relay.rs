//! `serial_relay`: a channel of a USB relay board, as a lock output.
//!
//! Two protocols (`protocol`):
//! - `lcus`: the LCUS/CH340 boards' 4-byte command `A0 ch state sum`, with
//!   `state` 1 for on and `sum = (0xA0 + ch + state) & 0xFF`. The boards do not
//!   answer, so a write that reached the port is success.
//! - `modbus`: Modbus RTU "write single coil" (function 0x05) to slave
//!   `address`, coil `channel - 1`, value `FF 00` (on) or `00 00` (off), then
//!   CRC-16/MODBUS low byte first. The board echoes the request; the echo must
//!   arrive within [`REPLY_TIMEOUT`] and match, else the call fails with a
//!   protocol error (an exception reply names its code).
//!
//! `on` energises the relay (for a lock: unlocked).
//!
//! Several doors share one board: devices naming the same `port` share one
//! open port through a process-wide registry keyed by the configured path,
//! so each claims only `port#channel`. The port is opened on the first
//! `set`, kept open, and dropped after any failure so the next `set` reopens
//! it (a replugged board comes back without a restart). The port closes when
//! the last driver using it is dropped. Devices sharing a port must use the
//! same baud and framing: [`check_shared_ports`] reports a mismatch at config
//! time, and a driver built with a mismatch fails every `set`.

use crate::contract::Output;
use crate::error::{DriverError, ErrorKind};
use crate::serial::{disconnected, PortSettings};
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::time::{timeout_at, Instant};
use tokio_serial::{SerialPort, SerialStream};

/// How long a Modbus board has to echo a command.
pub const REPLY_TIMEOUT: Duration = Duration::from_millis(200);
/// The longest a `set` waits for another channel of the same board.
const LOCK_TIMEOUT: Duration = Duration::from_millis(1000);
/// The longest one command (open, write, echo) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);

/// The board's command set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayProtocol {
    Lcus,
    Modbus,
}

/// The `serial_relay` kind's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialRelayConfig {
    pub serial: PortSettings,
    /// `protocol`: "lcus" (default) or "modbus".
    pub protocol: RelayProtocol,
    /// `channel`: the relay, from 1 (default 1; up to 255 for lcus, 65536 for modbus).
    pub channel: u32,
    /// `address`: the Modbus slave id, 1-247 (default 1; modbus only).
    pub address: u8,
}

impl SerialRelayConfig {
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let serial = PortSettings::parse(sec, errs);
        let protocol = match sec.string_or("protocol", "lcus", errs).as_str() {
            "lcus" => RelayProtocol::Lcus,
            "modbus" => RelayProtocol::Modbus,
            other => {
                errs.push(
                    sec.key_path("protocol"),
                    format!("unknown protocol `{other}`"),
                    Some("use \"lcus\" (LCUS/CH340 boards, A0 commands) or \"modbus\" (Modbus RTU boards)".into()),
                );
                RelayProtocol::Lcus
            }
        };
        let max_channel = match protocol {
            RelayProtocol::Lcus => 255,
            RelayProtocol::Modbus => 65536,
        };
        let channel = sec.u64_or("channel", 1, 1..=max_channel, errs) as u32;
        let address = if protocol == RelayProtocol::Modbus {
            sec.u64_or("address", 1, 1..=247, errs) as u8
        } else {
            if sec.has("address") {
                errs.push(
                    sec.key_path("address"),
                    "`address` applies to modbus boards only",
                    Some("remove it, or set protocol = \"modbus\"".into()),
                );
            }
            1
        };
        SerialRelayConfig { serial, protocol, channel, address }
    }

    /// The command that sets this channel.
    pub fn command(&self, on: bool) -> Vec<u8> {
        match self.protocol {
            RelayProtocol::Lcus => lcus_command(self.channel as u8, on).to_vec(),
            RelayProtocol::Modbus => modbus_write_coil(self.address, (self.channel - 1) as u16, on).to_vec(),
        }
    }
}

/// Reports devices that share a port with different baud or framing. The
/// daemon calls it with every `serial_relay` device and its key path prefix
/// (`devices[3]`); one kind's own parse cannot see the other devices.
pub fn check_shared_ports(devices: &[(String, &SerialRelayConfig)], errs: &mut ConfigErrors) {
    let mut first: HashMap<&str, (&str, &PortSettings)> = HashMap::new();
    for (path, cfg) in devices {
        match first.get(cfg.serial.port.as_str()) {
            Some((other, settings)) if !settings.same_framing(&cfg.serial) => errs.push(
                format!("{path}.port"),
                format!("{} is also used by {other} with another baud or framing", cfg.serial.port),
                Some(
                    "devices on one relay board must use the same baud, data_bits, parity, stop_bits and flow_control"
                        .into(),
                ),
            ),
            Some(_) => {}
            None => {
                first.insert(&cfg.serial.port, (path, &cfg.serial));
            }
        }
    }
}

/// LCUS: `A0 ch state (A0 + ch + state)`.
pub fn lcus_command(channel: u8, on: bool) -> [u8; 4] {
    let state = u8::from(on);
    [0xA0, channel, state, 0xA0u8.wrapping_add(channel).wrapping_add(state)]
}

/// Modbus RTU write single coil, CRC appended low byte first.
pub fn modbus_write_coil(address: u8, coil: u16, on: bool) -> [u8; 8] {
    let [hi, lo] = coil.to_be_bytes();
    let value = if on { 0xFF } else { 0x00 };
    let mut f = [address, 0x05, hi, lo, value, 0x00, 0, 0];
    let [crc_lo, crc_hi] = crc16_modbus(&f[..6]).to_le_bytes();
    f[6] = crc_lo;
    f[7] = crc_hi;
    f
}

/// What a board has answered so far to a write-coil `frame`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModbusReply {
    /// Too few bytes yet to tell: read more.
    Incomplete,
    /// A valid exception reply (address, `0x85`, code, CRC): the code.
    Exception(u8),
    /// The exact echo of the command: it was carried out.
    Echo,
    /// Anything else.
    Mismatch,
}

/// Judges the bytes a Modbus board has sent back after `frame` (a reply is
/// read until 8 bytes came, or 5 that start an exception reply). Public and
/// free of I/O so that the fuzz target (fuzz/fuzz_targets/serial_relay_reply.rs)
/// and the tests reach the one parser of bytes from a relay board.
pub fn modbus_reply(frame: &[u8], reply: &[u8]) -> ModbusReply {
    // An exception reply is 5 bytes: address, 0x85, code, CRC.
    let exception = reply.len() >= 5 && reply[1] == 0x85;
    if reply.len() < 8 && !exception {
        return ModbusReply::Incomplete;
    }
    if exception && crc16_modbus(&reply[..3]).to_le_bytes() == reply[3..5] {
        return ModbusReply::Exception(reply[2]);
    }
    if reply == frame {
        ModbusReply::Echo
    } else {
        ModbusReply::Mismatch
    }
}

/// CRC-16/MODBUS: polynomial 0xA001 (reflected 0x8005), initial 0xFFFF.
pub fn crc16_modbus(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

/// One board's port, shared by the channels on it.
struct Board {
    /// The settings of the device that registered the port first.
    settings: PortSettings,
    /// Open while healthy; `None` after a failure, reopened on the next use.
    /// The lock also keeps one command on the wire at a time.
    stream: Mutex<Option<SerialStream>>,
}

/// Process-wide: configured path -> the board's port. Weak, so a port closes
/// once no driver uses it.
fn registry() -> &'static StdMutex<HashMap<String, Weak<Board>>> {
    static PORTS: OnceLock<StdMutex<HashMap<String, Weak<Board>>>> = OnceLock::new();
    PORTS.get_or_init(Default::default)
}

/// The shared board for `settings.port`.
fn board(settings: &PortSettings) -> Arc<Board> {
    let mut ports = registry().lock().unwrap_or_else(|p| p.into_inner());
    ports.retain(|_, w| w.strong_count() > 0);
    if let Some(board) = ports.get(&settings.port).and_then(Weak::upgrade) {
        return board;
    }
    let board = Arc::new(Board { settings: settings.clone(), stream: Mutex::new(None) });
    ports.insert(settings.port.clone(), Arc::downgrade(&board));
    board
}

/// The `serial_relay` driver: one channel of one board.
pub struct SerialRelay {
    id: String,
    config: SerialRelayConfig,
    board: Arc<Board>,
    conflict: bool,
}

impl SerialRelay {
    /// A relay channel; `id` names the device in logs. Nothing is opened
    /// until the first `set`.
    pub fn new(id: &str, config: SerialRelayConfig) -> Self {
        let board = board(&config.serial);
        let conflict = !board.settings.same_framing(&config.serial);
        if conflict {
            tracing::error!(device = id, port = %config.serial.port, "serial port shared with different settings");
        }
        SerialRelay { id: id.to_string(), config, board, conflict }
    }

    async fn command(&self, slot: &mut Option<SerialStream>, frame: &[u8]) -> Result<(), DriverError> {
        let path = &self.config.serial.port;
        let stream = match slot {
            Some(s) => s,
            None => {
                let s = slot.insert(self.board.settings.open()?);
                tracing::info!(device = %self.id, port = %path, "relay port open");
                s
            }
        };
        let modbus = self.config.protocol == RelayProtocol::Modbus;
        if modbus {
            // Stale bytes (a late echo from a timed-out command) must not be
            // taken for this command's echo. (An LCUS board answers nothing:
            // its command goes out without this system call first.)
            let _ = stream.clear(tokio_serial::ClearBuffer::Input);
        }
        stream.write_all(frame).await.map_err(|e| disconnected(path, &format!("write failed: {e}")))?;
        if modbus {
            self.modbus_echo(stream, frame).await?;
        }
        Ok(())
    }

    async fn modbus_echo(&self, stream: &mut SerialStream, frame: &[u8]) -> Result<(), DriverError> {
        let path = &self.config.serial.port;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut reply = [0u8; 8];
        let mut got = 0;
        while modbus_reply(frame, &reply[..got]) == ModbusReply::Incomplete {
            match timeout_at(deadline, stream.read(&mut reply[got..])).await {
                Err(_) => {
                    return Err(DriverError::new(
                        ErrorKind::Protocol,
                        format!(
                            "{path}: no reply from modbus slave {} within {} ms",
                            self.config.address,
                            REPLY_TIMEOUT.as_millis()
                        ),
                    )
                    .with_hint("check `address`, `baud` and the wiring; the board must echo write-coil commands"))
                }
                Ok(Ok(0)) => return Err(disconnected(path, "end of file")),
                Ok(Ok(n)) => got += n,
                Ok(Err(e)) => return Err(disconnected(path, &e.to_string())),
            }
        }
        match modbus_reply(frame, &reply[..got]) {
            ModbusReply::Exception(code) => Err(DriverError::new(
                ErrorKind::Protocol,
                format!("{path}: modbus slave {} refused the command (exception {code})", self.config.address),
            )
            .with_hint("check `channel` against the board's coil count")),
            ModbusReply::Mismatch | ModbusReply::Incomplete => Err(DriverError::new(
                ErrorKind::Protocol,
                format!("{path}: modbus reply does not echo the command ({got} bytes)"),
            )
            .with_hint("check that `address` is this board's and that no other master talks on the bus")),
            ModbusReply::Echo => Ok(()),
        }
    }
}

#[async_trait]
impl Output for SerialRelay {
    async fn set(&mut self, on: bool) -> Result<(), DriverError> {
        let path = &self.config.serial.port;
        if self.conflict {
            return Err(DriverError::new(
                ErrorKind::Other,
                format!("{path}: shared with another relay device that uses another baud or framing"),
            )
            .with_hint("give every device on one board the same baud, data_bits, parity, stop_bits and flow_control"));
        }
        let frame = self.config.command(on);
        let Ok(mut slot) = tokio::time::timeout(LOCK_TIMEOUT, self.board.stream.lock()).await else {
            return Err(DriverError::new(ErrorKind::Other, format!("{path}: board busy with other channels"))
                .with_hint("the board is not answering its other channels in time; check it"));
        };
        let result = match tokio::time::timeout(COMMAND_TIMEOUT, self.command(&mut slot, &frame)).await {
            Ok(r) => r,
            Err(_) => Err(DriverError::new(
                ErrorKind::Protocol,
                format!("{path}: command not accepted within {} ms", COMMAND_TIMEOUT.as_millis()),
            )
            .with_hint("check `flow_control`: with \"hardware\" the board must assert CTS")),
        };
        match &result {
            Ok(()) => tracing::debug!(device = %self.id, on, "relay set"),
            Err(e) => {
                // Drop the port: the next set reopens it, which also recovers
                // a replugged board.
                *slot = None;
                tracing::warn!(device = %self.id, on, error = %e, "relay command failed");
            }
        }
        result
    }
}

/// The checks across devices for relay boards: channels of one board share
/// its port, so they must agree on its framing ([`check_shared_ports`]), and
/// no input device may read that port. A port that is empty is missing, and
/// reported already.
fn cross_check(devices: &[(String, &crate::kinds::KindConfig)], errs: &mut ConfigErrors) {
    let relays: Vec<(String, &SerialRelayConfig)> = devices
        .iter()
        .filter_map(|(path, k)| Some((path.clone(), k.downcast_ref::<SerialRelayConfig>()?)))
        .filter(|(_, c)| !c.serial.port.is_empty())
        .collect();
    check_shared_ports(&relays, errs);
    for (path, relay) in &relays {
        let port = &relay.serial.port;
        let node = crate::kinds::Claim::Node(port.clone());
        if let Some((other, _)) = devices.iter().find(|(_, k)| k.claims().contains(&node)) {
            errs.push(
                format!("{path}.port"),
                format!("{port} is also read by {other}"),
                Some("a relay board and an input device cannot share a serial port; give each its own".into()),
            );
        }
    }
}

/// `kind = "serial_relay"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "serial_relay",
    role: crate::kinds::Role::Output,
    reports: crate::kinds::Reports { keys: false, levels: false },
    drives_outputs: true,
    output_through_input: false,
    access: crate::kinds::Access::ReadWrite,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(SerialRelayConfig::parse(sec, errs))),
    cross_check: Some(cross_check),
};

impl crate::kinds::DeviceKind for SerialRelayConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        use crate::kinds::Claim;
        vec![Claim::RelayChannel { port: self.serial.port.clone(), channel: self.channel }]
    }

    fn output_driver(&self, id: &str) -> Option<Box<dyn crate::contract::Output>> {
        Some(Box::new(SerialRelay::new(id, self.clone())))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lcus_commands() {
        assert_eq!(lcus_command(1, true), [0xA0, 0x01, 0x01, 0xA2]);
        assert_eq!(lcus_command(1, false), [0xA0, 0x01, 0x00, 0xA1]);
        assert_eq!(lcus_command(0xFF, true), [0xA0, 0xFF, 0x01, 0xA0]);
    }

    #[test]
    fn modbus_replies_are_judged_from_their_bytes() {
        let frame = modbus_write_coil(1, 0, true);
        assert_eq!(modbus_reply(&frame, &frame), ModbusReply::Echo);
        assert_eq!(modbus_reply(&frame, &frame[..7]), ModbusReply::Incomplete);
        assert_eq!(modbus_reply(&frame, &[]), ModbusReply::Incomplete);
        let mut other = frame;
        other[4] = 0;
        assert_eq!(modbus_reply(&frame, &other), ModbusReply::Mismatch);
        let mut exception = vec![1, 0x85, 2];
        exception.extend(crc16_modbus(&exception).to_le_bytes());
        assert_eq!(modbus_reply(&frame, &exception), ModbusReply::Exception(2));
        exception[4] ^= 1;
        assert_eq!(modbus_reply(&frame, &exception), ModbusReply::Mismatch);
    }

    #[test]
    fn modbus_frames_match_published_examples() {
        // Write single coil 0 of slave 1, on and off, as printed in relay
        // board manuals.
        assert_eq!(modbus_write_coil(1, 0, true), [0x01, 0x05, 0x00, 0x00, 0xFF, 0x00, 0x8C, 0x3A]);
        assert_eq!(modbus_write_coil(1, 0, false), [0x01, 0x05, 0x00, 0x00, 0x00, 0x00, 0xCD, 0xCA]);
        // CRC-16/MODBUS check value.
        assert_eq!(crc16_modbus(b"123456789"), 0x4B37);
    }

    fn parse(v: serde_json::Value) -> (SerialRelayConfig, ConfigErrors) {
        let (c, errs) = Section::read("d", &v, SerialRelayConfig::parse);
        (c.expect("a table"), errs)
    }

    #[test]
    fn parses_keys() {
        let (c, errs) = parse(json!({"port": "/dev/r", "protocol": "modbus", "channel": 3, "address": 17}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!((c.protocol, c.channel, c.address), (RelayProtocol::Modbus, 3, 17));
        assert_eq!(c.command(true), modbus_write_coil(17, 2, true));

        let (c, errs) = parse(json!({"port": "/dev/r"}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!((c.protocol, c.channel), (RelayProtocol::Lcus, 1));

        let (_, errs) = parse(json!({"port": "/dev/r", "channel": 256, "address": 2}));
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["d.channel", "d.address"]);

        let (_, errs) = parse(json!({"port": "/dev/r", "protocol": "x10", "channel": 0}));
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["d.protocol", "d.channel"]);
    }

    #[test]
    fn shared_ports_must_agree_on_framing() {
        let a = SerialRelayConfig {
            serial: PortSettings::new("/dev/board"),
            protocol: RelayProtocol::Lcus,
            channel: 1,
            address: 1,
        };
        let b = SerialRelayConfig { channel: 2, ..a.clone() };
        let mut c = SerialRelayConfig { channel: 3, ..a.clone() };
        c.serial.baud = 115200;
        let mut errs = ConfigErrors::default();
        check_shared_ports(&[("devices[0]".into(), &a), ("devices[1]".into(), &b)], &mut errs);
        assert!(errs.is_empty());
        check_shared_ports(
            &[("devices[0]".into(), &a), ("devices[1]".into(), &b), ("devices[4]".into(), &c)],
            &mut errs,
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs.0[0].path, "devices[4].port");
        assert!(errs.0[0].message.contains("devices[0]"), "{}", errs.0[0].message);
    }
}
