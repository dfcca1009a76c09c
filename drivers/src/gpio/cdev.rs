//! The kernel's GPIO character device (`/dev/gpiochipN`), through gpiocdev.
//!
//! It works on every board whose kernel has a GPIO driver, the Raspberry Pi
//! 5 included, and needs no knowledge of the board: lines are offsets on a
//! chip (on a Raspberry Pi's main chip, the BCM GPIO numbers).
//!
//! - Inputs: one line request per line, with the bias (pull) and the edge
//!   detection asked for. A named thread per input waits for the kernel's
//!   edge events (100 ms at a time, so it notices the line being dropped) and
//!   forwards each, with the kernel's CLOCK_MONOTONIC timestamp, to the
//!   driver's edge queue. Dropping the line stops and joins the thread, then
//!   closes the request.
//! - Outputs: one line request per line, output at the level asked for from
//!   the request on. The kernel keeps the level while the request is open.
//!   After it is closed (the driver dropped, the process gone) the kernel no
//!   longer guarantees the line's state; the Raspberry Pi kernels keep an
//!   output driven (their pinctrl drivers' `persist_gpio_outputs`, on by
//!   default), others may return it to an input. Hence the pull resistor on
//!   a relay's input that docs/drivers.md asks for.
//!
//! Active-low and debounce stay in the drivers (`gpio_input`'s
//! [`Debouncer`](super::input::Debouncer)), the same on both backends: the
//! line is requested active-high and without kernel debounce.

use super::{line_name, Edge, EdgeSender, GpioBackend, InputLine, LineNo, OutputLine, Pull, Trigger};
use crate::error::{DriverError, ErrorKind};
use gpiocdev::line::{Bias, EdgeDetection, EdgeKind, EventClock, Value};
use gpiocdev::Request;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The consumer name the kernel shows for Porter's lines (`gpioinfo`).
pub const CONSUMER: &str = "porterd";

/// How long an input's thread waits for an edge before it looks whether the
/// line was dropped.
const POLL: Duration = Duration::from_millis(100);

/// The labels of the Raspberry Pi's main GPIO chips, which `chip = "auto"`
/// prefers: the Pi 5's RP1, the Pi 5's SoC, the Pi 4's and the older Pis'.
pub const PI_LABELS: [&str; 4] = ["pinctrl-rp1", "pinctrl-bcm2712", "pinctrl-bcm2711", "pinctrl-bcm2835"];

/// Which chip the lines are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChipSel {
    /// A Raspberry Pi's main chip if there is one (by label), else the first
    /// chip (`/dev/gpiochip0`).
    Auto,
    /// A path (`/dev/gpiochip0`), a name (`gpiochip4`) or a label
    /// (`pinctrl-rp1`, as `gpiodetect` shows it).
    Named(String),
}

impl ChipSel {
    /// The chip's device path on this machine.
    pub fn resolve(&self) -> Result<PathBuf, DriverError> {
        let labelled = |want: &dyn Fn(&str) -> bool| -> Option<PathBuf> {
            let chips = gpiocdev::chip::chips().ok()?;
            chips
                .into_iter()
                .find(|p| gpiocdev::Chip::from_path(p).and_then(|c| c.info()).is_ok_and(|info| want(&info.label)))
        };
        match self {
            ChipSel::Auto => {
                if let Some(p) = labelled(&|l| PI_LABELS.contains(&l)) {
                    return Ok(p);
                }
                let chips = gpiocdev::chip::chips().unwrap_or_default();
                chips.into_iter().next().ok_or_else(|| {
                    DriverError::new(ErrorKind::NotFound, "no GPIO chip on this machine (no /dev/gpiochip*)").with_hint(
                        "GPIO kinds need a board with GPIO lines and its kernel driver; on a PC or in a VM use a \
                         USB or serial device kind (serial_relay, serial_rfid, serial_keypad, hid, pcsc)",
                    )
                })
            }
            ChipSel::Named(n) if n.starts_with('/') => Ok(PathBuf::from(n)),
            ChipSel::Named(n) => {
                let dev = Path::new("/dev").join(n);
                if dev.exists() {
                    return Ok(dev);
                }
                labelled(&|l| l == n).ok_or_else(|| {
                    DriverError::new(ErrorKind::NotFound, format!("no GPIO chip named or labelled `{n}`"))
                        .with_hint("`gpiodetect` lists the chips with their labels; set [gpio] chip to one of them")
                })
            }
        }
    }
}

/// The character-device backend.
#[derive(Debug, Clone)]
pub struct CdevGpio {
    chip: ChipSel,
}

impl CdevGpio {
    pub fn new(chip: ChipSel) -> Self {
        CdevGpio { chip }
    }
}

/// The errno inside a gpiocdev error, if it carries one.
fn errno(e: &gpiocdev::Error) -> Option<i32> {
    match e {
        gpiocdev::Error::Os(n) => Some(n.0),
        gpiocdev::Error::Uapi(_, gpiocdev_uapi::Error::Os(n)) => Some(n.0),
        _ => None,
    }
}

/// Maps a gpiocdev error on `line` of `chip` to a driver error that says how
/// to fix it.
pub fn cdev_error(line: LineNo, chip: &Path, e: &gpiocdev::Error) -> DriverError {
    let name = line_name(line);
    let chip = chip.display();
    match errno(e) {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            DriverError::new(ErrorKind::PermissionDenied, format!("{name}: {chip}: permission denied")).with_hint(
                "add the daemon's user to the `gpio` group, which owns /dev/gpiochip* on Raspberry Pi OS, or \
                 install Porter's udev rules (udev/60-porter.rules), then restart porterd",
            )
        }
        Some(libc::ENOENT) | Some(libc::ENODEV) => {
            DriverError::new(ErrorKind::NotFound, format!("{name}: {chip}: no such GPIO chip"))
                .with_hint("`gpiodetect` lists the chips; set [gpio] chip to one of them")
        }
        Some(libc::EBUSY) => {
            DriverError::new(ErrorKind::Other, format!("{name} on {chip} is already in use by another program"))
                .with_hint("`gpioinfo` names the program holding it (its consumer); stop it, or wire another line")
        }
        Some(libc::EINVAL) => DriverError::new(ErrorKind::NotFound, format!("{name} does not exist on {chip}"))
            .with_hint(
                "lines are offsets on the chip: on a Raspberry Pi the BCM GPIO number (GPIO17 is header pin \
                 11), not a header pin number; `gpioinfo` lists a chip's lines",
            ),
        _ => DriverError::new(ErrorKind::Other, format!("{name} on {chip}: {e}")),
    }
}

struct CdevInput {
    req: Arc<Request>,
    line: LineNo,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InputLine for CdevInput {
    fn is_high(&self) -> bool {
        self.req.value(self.line).is_ok_and(|v| v == Value::Active)
    }
}

impl Drop for CdevInput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Forwards the request's edge events until `stop`, or until reading fails
/// (the chip went away): then it returns, dropping its sender, so the driver
/// sees its edge stream end and restarts.
fn forward_edges(req: &Request, line: LineNo, edges: &EdgeSender, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match req.wait_edge_event(POLL) {
            Ok(false) => continue,
            Ok(true) => match req.read_edge_event() {
                Ok(ev) => edges.send(Edge {
                    line,
                    at: Duration::from_nanos(ev.timestamp_ns),
                    high: ev.kind == EdgeKind::Rising,
                }),
                Err(e) => {
                    tracing::warn!(line, error = %e, "gpio: reading edge events failed; closing the line");
                    return;
                }
            },
            Err(e) => {
                tracing::warn!(line, error = %e, "gpio: waiting for edge events failed; closing the line");
                return;
            }
        }
    }
}

struct CdevOutput {
    req: Request,
    line: LineNo,
    chip: PathBuf,
}

impl OutputLine for CdevOutput {
    fn write(&mut self, high: bool) -> Result<(), DriverError> {
        let v = if high { Value::Active } else { Value::Inactive };
        self.req.set_value(self.line, v).map_err(|e| cdev_error(self.line, &self.chip, &e))
    }
}

impl GpioBackend for CdevGpio {
    fn open_input(
        &self,
        line: LineNo,
        pull: Pull,
        trigger: Trigger,
        edges: EdgeSender,
    ) -> Result<Box<dyn InputLine>, DriverError> {
        let chip = self.chip.resolve()?;
        let bias = match pull {
            Pull::Up => Bias::PullUp,
            Pull::Down => Bias::PullDown,
            Pull::Off => Bias::Disabled,
        };
        let edge = match trigger {
            Trigger::Rising => EdgeDetection::RisingEdge,
            Trigger::Falling => EdgeDetection::FallingEdge,
            Trigger::Both => EdgeDetection::BothEdges,
        };
        let req = Request::builder()
            .on_chip(&chip)
            .with_consumer(CONSUMER)
            .with_line(line)
            .as_input()
            .with_bias(bias)
            .with_edge_detection(edge)
            .with_event_clock(EventClock::Monotonic)
            .request()
            .map_err(|e| cdev_error(line, &chip, &e))?;
        let req = Arc::new(req);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (req, stop) = (req.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("gpio-edges-{line}"))
                .spawn(move || forward_edges(&req, line, &edges, &stop))
                .map_err(|e| {
                    DriverError::new(ErrorKind::Other, format!("{}: cannot start its thread: {e}", line_name(line)))
                })?
        };
        Ok(Box::new(CdevInput { req, line, stop, thread: Some(thread) }))
    }

    fn open_output(&self, line: LineNo, high: bool) -> Result<Box<dyn OutputLine>, DriverError> {
        let chip = self.chip.resolve()?;
        let v = if high { Value::Active } else { Value::Inactive };
        // Requested as an output at `v`: the kernel sets the value before the
        // direction, so the line never shows the other level.
        let req = Request::builder()
            .on_chip(&chip)
            .with_consumer(CONSUMER)
            .with_line(line)
            .as_output(v)
            .request()
            .map_err(|e| cdev_error(line, &chip, &e))?;
        Ok(Box::new(CdevOutput { req, line, chip }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(n: i32) -> gpiocdev::Error {
        gpiocdev::Error::Os(gpiocdev_uapi::Errno(n))
    }

    #[test]
    fn cdev_errors_name_their_fix() {
        let chip = Path::new("/dev/gpiochip0");
        let e = cdev_error(17, chip, &os(libc::EACCES));
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(e.message.contains("gpio17") && e.message.contains("/dev/gpiochip0"), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("`gpio` group"), "{e}");
        let e = cdev_error(4, chip, &os(libc::EBUSY));
        assert!(e.message.contains("already in use by another program"), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("gpioinfo"), "{e}");
        let e = cdev_error(60, chip, &os(libc::EINVAL));
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.hint.as_deref().unwrap().contains("BCM"), "{e}");
        let e = cdev_error(4, Path::new("/dev/gpiochip9"), &os(libc::ENOENT));
        assert_eq!(e.kind, ErrorKind::NotFound);
    }

    /// Where no chip exists (this machine, CI), opening a line is a clear
    /// error, not a panic or a hang.
    #[test]
    fn cdev_backend_fails_cleanly_without_a_chip() {
        if gpiocdev::chip::chips().is_ok_and(|c| !c.is_empty()) {
            return; // a machine with GPIO: tests/gpio_sim covers it
        }
        let (tx, _rx) = super::super::edge_channel(4);
        let e = CdevGpio::new(ChipSel::Auto).open_input(17, Pull::Up, Trigger::Both, tx).err().expect("no chip");
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("no GPIO chip"), "{e}");
        let (tx, _rx) = super::super::edge_channel(4);
        let e = CdevGpio::new(ChipSel::Named("/dev/gpiochip7".into()))
            .open_input(17, Pull::Up, Trigger::Both, tx)
            .err()
            .expect("no chip");
        assert!(e.message.contains("gpio17") && e.message.contains("/dev/gpiochip7"), "{e}");
        let e = CdevGpio::new(ChipSel::Named("pinctrl-rp1".into())).open_output(18, false).err().expect("no chip");
        assert!(e.message.contains("pinctrl-rp1"), "{e}");
    }
}
