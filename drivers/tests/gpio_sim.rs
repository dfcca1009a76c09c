//! The `cdev` backend against a real GPIO character device: the kernel's
//! gpio-sim module, a simulated chip whose inputs are driven and whose
//! outputs are read through sysfs. It needs root, configfs and gpio-sim
//! (`modprobe gpio-sim`), which Debian's amd64 kernels and this project's
//! machines lack, so the tests are ignored by default: run them on a machine
//! that has it with `cargo test -p porter-drivers --test gpio_sim -- --ignored`
//! (they fail there, not pass, when the chip cannot be made).
//!
//! Not yet run anywhere: no machine of this project has gpio-sim.

use porter_drivers::gpio::cdev::{CdevGpio, ChipSel};
use porter_drivers::gpio::{GpioBackend, LineNo};
use porter_drivers::gpio_relay::{GpioRelay, GpioRelayConfig};
use porter_drivers::wiegand::{Wiegand, WiegandConfig};
use porter_drivers::{fake::Reports, CardUid, Input, InputDriver, Output};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const CONFIGFS: &str = "/sys/kernel/config/gpio-sim";

/// A live simulated chip of 8 lines; removed on drop.
struct SimChip {
    dir: PathBuf,
    chip: String,
    sysfs: PathBuf,
}

impl SimChip {
    fn create() -> Option<SimChip> {
        // None only when the chip cannot be set up once configfs is there.
        if !Path::new(CONFIGFS).is_dir() {
            let _ = std::process::Command::new("modprobe").arg("gpio-sim").status();
        }
        if !Path::new(CONFIGFS).is_dir() {
            panic!("no {CONFIGFS}: needs root, configfs and the gpio-sim module (modprobe gpio-sim)");
        }
        let dir = Path::new(CONFIGFS).join(format!("porter-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        std::fs::create_dir(dir.join("bank0")).ok()?;
        std::fs::write(dir.join("bank0/num_lines"), "8").ok()?;
        std::fs::write(dir.join("live"), "1").ok()?;
        let chip = std::fs::read_to_string(dir.join("bank0/chip_name")).ok()?.trim().to_string();
        let dev = std::fs::read_to_string(dir.join("dev_name")).ok()?.trim().to_string();
        let sysfs = Path::new("/sys/devices/platform").join(dev).join(&chip);
        Some(SimChip { dir, chip, sysfs })
    }

    fn backend(&self) -> Arc<dyn GpioBackend> {
        Arc::new(CdevGpio::new(ChipSel::Named(self.chip.clone())))
    }

    /// Drives an input line from outside, as a reader would.
    fn pull(&self, line: LineNo, high: bool) {
        let p = self.sysfs.join(format!("sim_gpio{line}/pull"));
        std::fs::write(p, if high { "pull-up" } else { "pull-down" }).unwrap();
    }

    /// The level an output line is driven at.
    fn value(&self, line: LineNo) -> bool {
        std::fs::read_to_string(self.sysfs.join(format!("sim_gpio{line}/value"))).unwrap().trim() == "1"
    }
}

impl Drop for SimChip {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("live"), "0");
        let _ = std::fs::remove_dir(self.dir.join("bank0"));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A 26-bit card sent as a reader sends it: 26 low pulses of about 100 us,
/// 2 ms apart, timed by the kernel's edge timestamps on the other side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the gpio-sim kernel module: cargo test -p porter-drivers --test gpio_sim -- --ignored"]
async fn wiegand_reads_a_card_through_the_kernels_character_device() {
    let sim = SimChip::create().expect("a gpio-sim chip");
    let (d0, d1): (LineNo, LineNo) = (1, 2);
    let cfg = WiegandConfig { d0, d1, frame_gap: Duration::from_millis(25), raw: None };
    let mut w = Wiegand::with_backend(cfg, "reader", sim.backend());
    let (sink, mut reports) = Reports::channel(0, 64, Duration::from_secs(5));
    let task = tokio::spawn(async move { w.run(&sink).await });
    reports.online().await;
    let frame = "1 01111011 0001000111010111 0";
    let sim = tokio::task::spawn_blocking(move || {
        for b in frame.chars().filter(|c| !c.is_whitespace()) {
            let line = if b == '1' { d1 } else { d0 };
            sim.pull(line, false);
            std::thread::sleep(Duration::from_micros(100));
            sim.pull(line, true);
            std::thread::sleep(Duration::from_millis(2));
        }
        sim
    })
    .await
    .unwrap();
    assert_eq!(reports.input().await, Input::Card(CardUid::from_bytes(&[0x7b, 0x11, 0xd7]).unwrap()));
    task.abort();
    drop(sim);
}

/// A relay line: requested at its safe level, then driven on and off.
#[tokio::test]
#[ignore = "needs the gpio-sim kernel module: cargo test -p porter-drivers --test gpio_sim -- --ignored"]
async fn gpio_relay_drives_a_line_of_the_kernels_character_device() {
    let sim = SimChip::create().expect("a gpio-sim chip");
    let mut relay = GpioRelay::with_backend(GpioRelayConfig { line: 5, active_low: true }, "lock", sim.backend());
    assert!(sim.value(5), "active-low: off is high from the request on");
    relay.set(true).await.unwrap();
    assert!(!sim.value(5));
    relay.set(false).await.unwrap();
    assert!(sim.value(5));
}
