//! `porterctl doctor`: what an installer needs to know before the room works.
//! It checks the config, lists what is attached (serial ports, PC/SC readers,
//! GPIO chips, input devices), checks each configured device against what is
//! there and whether the service's user may open it, and whether the broker
//! takes the configured credentials; each finding says in plain words what
//! to fix.

use crate::config::Config;
use porter_drivers::Check;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Information: what is attached.
    Info(String),
    /// A check that passed.
    Ok(String),
    /// Something to fix, and how.
    Fix(String),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Info(t) => write!(f, "      {t}"),
            Finding::Ok(t) => write!(f, "ok    {t}"),
            Finding::Fix(t) => write!(f, "FIX   {t}"),
        }
    }
}

/// Who the service runs as, for the permission checks.
#[derive(Debug, Clone)]
pub struct ServiceUser {
    pub name: String,
    pub uid: u32,
    pub gids: Vec<u32>,
}

impl ServiceUser {
    /// The user `name` and its groups, from the system's user database.
    #[allow(unsafe_code)]
    pub fn lookup(name: &str) -> Option<ServiceUser> {
        let cname = std::ffi::CString::new(name).ok()?;
        // SAFETY: getpwnam returns a pointer into static storage or null; its
        // fields are read at once, before any other passwd call.
        let (uid, gid) = unsafe {
            let pw = libc::getpwnam(cname.as_ptr());
            if pw.is_null() {
                return None;
            }
            ((*pw).pw_uid, (*pw).pw_gid)
        };
        let mut n: libc::c_int = 64;
        let mut gids = vec![0 as libc::gid_t; n as usize];
        // SAFETY: gids has room for n entries; getgrouplist writes at most n
        // and sets n to the count (or to the size needed, returning -1).
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, gids.as_mut_ptr(), &mut n) };
        if rc < 0 {
            gids.resize(n.max(0) as usize, 0);
            // SAFETY: as above, with the size getgrouplist asked for.
            unsafe { libc::getgrouplist(cname.as_ptr(), gid, gids.as_mut_ptr(), &mut n) };
        }
        gids.truncate(n.max(0) as usize);
        Some(ServiceUser { name: name.to_string(), uid, gids })
    }

    /// Whether this user may read (and, with `write`, write) `meta`'s file.
    pub fn may_open(&self, meta: &std::fs::Metadata, write: bool) -> bool {
        if self.uid == 0 {
            return true;
        }
        let mode = meta.mode();
        let want = if write { 0o6 } else { 0o4 };
        let bits = if meta.uid() == self.uid {
            (mode >> 6) & 0o7
        } else if self.gids.contains(&meta.gid()) {
            (mode >> 3) & 0o7
        } else {
            mode & 0o7
        };
        bits & want == want
    }
}

fn group_name(gid: u32) -> String {
    #[allow(unsafe_code)]
    // SAFETY: getgrgid returns static storage or null; the name is copied at once.
    unsafe {
        let gr = libc::getgrgid(gid);
        if gr.is_null() {
            return gid.to_string();
        }
        std::ffi::CStr::from_ptr((*gr).gr_name).to_string_lossy().into_owned()
    }
}

fn glob_dev(dir: &str, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// What is attached now.
pub fn inventory() -> Vec<Finding> {
    let mut out = Vec::new();
    let mut serial: Vec<PathBuf> = ["ttyUSB", "ttyACM", "ttyAMA"].iter().flat_map(|p| glob_dev("/dev", p)).collect();
    serial.extend(glob_dev("/dev/serial/by-id", ""));
    serial.extend(glob_dev("/dev/porter", ""));
    if serial.is_empty() {
        out.push(Finding::Info("serial ports: none (no USB serial adapter, scanner or relay board plugged in)".into()));
    }
    for p in serial {
        let target = std::fs::canonicalize(&p).ok().filter(|t| *t != p);
        out.push(Finding::Info(match target {
            Some(t) => format!("serial port {} -> {}", p.display(), t.display()),
            None => format!("serial port {}", p.display()),
        }));
    }
    #[cfg(feature = "pcsc")]
    match porter_drivers::pcsc::readers() {
        Ok(r) if r.is_empty() => out.push(Finding::Info("PC/SC readers: none (pcscd runs, no reader attached)".into())),
        Ok(r) => out.extend(r.into_iter().map(|n| Finding::Info(format!("PC/SC reader \"{n}\"")))),
        Err(e) => out.push(Finding::Info(format!("PC/SC readers: cannot list them: {e}"))),
    }
    #[cfg(not(feature = "pcsc"))]
    out.push(Finding::Info("PC/SC readers: not listed (this porterctl was built without PC/SC)".into()));
    let chips = glob_dev("/dev", "gpiochip");
    if chips.is_empty() {
        out.push(Finding::Info("GPIO chips: none (not a Raspberry Pi, or no GPIO driver)".into()));
    }
    out.extend(chips.into_iter().map(|c| Finding::Info(format!("GPIO chip {}", c.display()))));
    for ev in glob_dev("/dev/input", "event") {
        let name = ev
            .file_name()
            .and_then(|n| std::fs::read_to_string(Path::new("/sys/class/input").join(n).join("device/name")).ok())
            .map(|n| n.trim().to_string())
            .unwrap_or_default();
        out.push(Finding::Info(format!("input device {} \"{name}\"", ev.display())));
    }
    out
}

/// Checks the configured devices against what is attached and `user`'s access.
pub fn devices(cfg: &Config, user: Option<&ServiceUser>) -> Vec<Finding> {
    let mut out = Vec::new();
    // Every GPIO device opens the same chip: one finding names them all.
    let mut gpio: Vec<&str> = Vec::new();
    let mut gpio_at = None;
    for d in &cfg.devices {
        for check in d.kind.checks() {
            match check {
                Check::PcscReader(pattern) => out.push(pcsc_check(&d.id, pattern.as_deref())),
                Check::GpioMemory => {
                    gpio_at.get_or_insert(out.len());
                    if !gpio.contains(&d.id.as_str()) {
                        gpio.push(&d.id);
                    }
                }
                Check::Node { path, write } => {
                    out.push(path_check(&format!("device `{}`", d.id), Path::new(&path), write, user, "its device"))
                }
            }
        }
    }
    if let Some(at) = gpio_at {
        out.insert(at, gpio_check(&gpio, &cfg.gpio, user));
    }
    // The files the daemon reads as its user: the MQTT password and TLS files.
    if let Some(m) = &cfg.mqtt {
        let files = [
            ("password_file", &m.password_file),
            ("ca_file", &m.ca_file),
            ("cert_file", &m.cert_file),
            ("key_file", &m.key_file),
        ];
        for (key, path) in files {
            let Some(path) = path else { continue };
            out.push(file_check(key, path, user));
        }
    }
    out.dedup();
    out
}

fn file_check(key: &str, path: &Path, user: Option<&ServiceUser>) -> Finding {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return Finding::Fix(format!(
                "mqtt.{key}: {}: {e}; porterd cannot connect to the broker without it",
                path.display()
            ))
        }
    };
    match user {
        Some(u) if !u.may_open(&meta, false) => Finding::Fix(format!(
            "mqtt.{key}: {} may not read {} (owner {}, group {}, mode {:04o}): sudo chown root:porter {} && sudo chmod 0640 {}",
            u.name,
            path.display(),
            meta.uid(),
            group_name(meta.gid()),
            meta.mode() & 0o7777,
            path.display(),
            path.display()
        )),
        Some(u) => Finding::Ok(format!("mqtt.{key}: {} may read {}", u.name, path.display())),
        None => Finding::Ok(format!("mqtt.{key}: {} is there", path.display())),
    }
}

/// The device the configured GPIO backend opens, for all the GPIO devices
/// `ids`: the chip for `cdev`, the register window for `rppal`.
fn gpio_check(ids: &[&str], gpio: &porter_drivers::gpio::GpioSettings, user: Option<&ServiceUser>) -> Finding {
    use porter_drivers::gpio::Backend;
    let named: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
    let who = match named.as_slice() {
        [one] => format!("device {one}"),
        many => format!("GPIO devices {}", many.join(", ")),
    };
    let path = match gpio.backend {
        Backend::Cdev => match gpio.chip_sel().resolve() {
            Ok(chip) => chip,
            Err(e) => return Finding::Fix(format!("{who}: [gpio] backend = \"cdev\": {e}")),
        },
        // rppal opens the register window first: /dev/gpiomem on a Pi 4 and
        // before, /dev/gpiomem0 on a Pi 5.
        Backend::Rppal => ["/dev/gpiomem", "/dev/gpiomem0"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("/dev/gpiomem")),
    };
    if !path.exists() {
        return Finding::Fix(format!(
            "{who}: {} is not there: no GPIO on this machine, or its kernel driver is not loaded (GPIO kinds need a board with GPIO lines; on a PC use USB or serial kinds)",
            path.display()
        ));
    }
    path_check(&who, &path, true, user, "GPIO")
}

/// `who` (`device `x``) needs `path`, to read or also to `write`.
fn path_check(who: &str, path: &Path, write: bool, user: Option<&ServiceUser>, what: &str) -> Finding {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Finding::Fix(format!(
                "{who}: {} is not there. Plug it in, or fix its path in the config (the serial ports and input devices attached are listed above)",
                path.display()
            ))
        }
        Err(e) => return Finding::Fix(format!("{who}: cannot look at {}: {e}", path.display())),
    };
    let Some(user) = user else {
        return Finding::Ok(format!("{who}: {} is there", path.display()));
    };
    if user.may_open(&meta, write) {
        return Finding::Ok(format!("{who}: {} is there and {} may open it", path.display(), user.name));
    }
    let group = group_name(meta.gid());
    Finding::Fix(format!(
        "{who}: {} may not open {} (owner {}, group {group}, mode {:04o}). Add {} to group {group}: sudo usermod -aG {group} {}, then sudo systemctl restart porterd (Porter's udev rules give group porter {what}, unless a later rule, such as Raspberry Pi OS's 99-com.rules, takes it back)",
        user.name,
        path.display(),
        meta.uid(),
        meta.mode() & 0o7777,
        user.name,
        user.name,
    ))
}

#[cfg(feature = "pcsc")]
fn pcsc_check(id: &str, pattern: Option<&str>) -> Finding {
    // The config checked the pattern: it parses again.
    let pattern = pattern.and_then(|p| porter_drivers::pcsc::ReaderPattern::new(p).ok());
    let pattern = pattern.as_ref();
    match porter_drivers::pcsc::readers() {
        Err(e) => Finding::Fix(format!("device `{id}`: {e}")),
        Ok(names) => match names.iter().find(|n| pattern.is_none_or(|p| p.matches(n))) {
            Some(n) => Finding::Ok(format!("device `{id}`: PC/SC reader \"{n}\" is there")),
            None if names.is_empty() => Finding::Fix(format!(
                "device `{id}`: no PC/SC reader is attached; plug it in (pcsc_scan lists readers)"
            )),
            None => Finding::Fix(format!(
                "device `{id}`: no PC/SC reader matches `{}`; attached: {}. Set reader to a part of one of these names",
                pattern.map(|p| p.as_str()).unwrap_or("*"),
                names.join(", ")
            )),
        },
    }
}

#[cfg(not(feature = "pcsc"))]
fn pcsc_check(id: &str, _pattern: Option<&str>) -> Finding {
    Finding::Info(format!("device `{id}`: a PC/SC reader, not checked (this porterctl was built without PC/SC)"))
}

/// Connects to the configured broker with the configured credentials.
pub async fn broker(cfg: &Config, within: Duration) -> Option<Finding> {
    let m = cfg.mqtt.as_ref()?;
    // Not the daemon's client id (the broker would drop the running daemon),
    // and no Last Will (it would mark the controller offline).
    let id = format!("{}-doctor-{}", m.client_id, std::process::id());
    let mut opts = match crate::provision::mqtt::connection(m, &id) {
        Ok(o) => o,
        Err(e) => return Some(Finding::Fix(format!("broker: {e}"))),
    };
    opts.set_clean_start(true);
    let (client, mut ev) = rumqttc::v5::AsyncClient::new(opts, 4);
    let result = tokio::time::timeout(within, async {
        loop {
            match ev.poll().await {
                Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    Some(match result {
        Ok(Ok(())) => Finding::Ok(format!("broker: {} takes this controller's credentials", m.url)),
        Ok(Err(rumqttc::v5::ConnectionError::ConnectionRefused(code))) => Finding::Fix(format!(
            "broker: {} refused the connection ({code:?}): check mqtt.username and mqtt.password_file, and the broker's ACL for this controller",
            m.url
        )),
        Ok(Err(e)) => Finding::Fix(format!(
            "broker: cannot reach {} ({e}): check mqtt.url, the network, and for mqtts:// mqtt.ca_file",
            m.url
        )),
        Err(_) => Finding::Fix(format!("broker: no answer from {} within {within:?}: check mqtt.url and the network", m.url)),
    })
}

/// The checks porterd makes at start of the paths it trusts (docs/security.md,
/// "Files and folders"), for a daemon running as `me`, changing nothing:
/// data_dir, the admin socket's folder, secret_file and identity_file, each
/// with its folder and every folder above it. A refusal is the very error the
/// daemon stops with (or, for identity_file, logs as it runs without MQTT),
/// fix included. `user`, when given, is who the service runs as: a secret file
/// it may not read is a fix too. `porterctl doctor` and `porterd check-config`
/// print these.
pub fn files(cfg: &Config, me: u32, user: Option<&ServiceUser>) -> Vec<Finding> {
    use crate::ownership::{check_dir, DATA_DIR, SOCKET_DIR};
    let mut out = Vec::new();
    let missing = |key: &str, p: &Path, then: &str| {
        Finding::Info(format!("{key}: {} is not there yet; porterd makes it{then} at its first start", p.display()))
    };
    out.push(match check_dir(&DATA_DIR, &cfg.data_dir, me) {
        Err(e) => Finding::Fix(e.to_string()),
        Ok(()) if !cfg.data_dir.exists() => missing("data_dir", &cfg.data_dir, " (mode 0750)"),
        Ok(()) => Finding::Ok(format!(
            "data_dir: {} and the folders above it only root and uid {me} may change",
            cfg.data_dir.display()
        )),
    });
    if let Some(dir) = cfg.admin.socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        out.push(match check_dir(&SOCKET_DIR, dir, me) {
            Err(e) => Finding::Fix(format!("admin.socket: {e}")),
            Ok(()) => Finding::Ok(format!("admin.socket: no other user may replace {}", cfg.admin.socket.display())),
        });
    }
    out.push(secret_file(&cfg.secret_file, me, user));
    out.push(match crate::store::identity::inspect("identity_file", &cfg.identity_file, me) {
        Err(e) => Finding::Fix(e.to_string()),
        Ok(None) => missing(
            "identity_file",
            &cfg.identity_file,
            " (the controller's key; pin its public key, porterctl identity, in the portal)",
        ),
        Ok(Some(id)) => Finding::Ok(format!(
            "identity_file: {} holds the controller's Ed25519 key (key id {})",
            cfg.identity_file.display(),
            id.key_id()
        )),
    });
    out
}

/// secret_file as the daemon will find it: its checks, then whether the
/// service's user may read it; a mode open to others that the daemon tightens
/// itself (its own file) is information, not a fix.
fn secret_file(path: &Path, me: u32, user: Option<&ServiceUser>) -> Finding {
    use crate::store::secret::{inspect, SecretError};
    let (f, _) = match inspect(path, me) {
        Err(e) => return Finding::Fix(e.to_string()),
        Ok(None) => {
            return Finding::Info(format!(
                "secret_file: {} is not there yet; porterd makes it (mode 0600) at its first start",
                path.display()
            ))
        }
        Ok(Some(found)) => found,
    };
    let Ok(meta) = f.metadata() else {
        return Finding::Fix(format!("secret_file: {} cannot be examined", path.display()));
    };
    let mode = meta.mode() & 0o777;
    if let Some(u) = user.filter(|u| !u.may_open(&meta, false)) {
        return Finding::Fix(format!(
            "secret_file: {} may not read {} (owner uid {}, mode {mode:04o}): sudo chown {}: {}; sudo chmod 0600 {}",
            u.name,
            path.display(),
            meta.uid(),
            u.name,
            path.display(),
            path.display()
        ));
    }
    match (mode & 0o077 != 0, meta.uid() == me) {
        (true, true) => Finding::Info(format!(
            "secret_file: {} has mode {mode:04o}; porterd sets it to 0600 at start",
            path.display()
        )),
        (true, false) => Finding::Fix(SecretError::Loose { path: path.display().to_string(), mode }.to_string()),
        (false, _) => Finding::Ok(format!("secret_file: {} is the daemon's alone (mode {mode:04o})", path.display())),
    }
}
