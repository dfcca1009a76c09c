//! `porterctl doctor` against what is really attached: a serial scanner on a
//! pseudo-terminal, a missing device, a device the service user may not
//! open, and a broker that runs or does not.

use porter_tests::pty::Pty;
use porter_tests::{config_head, doctor, free_port, start_fails, Broker};

fn config(dir: &std::path::Path, port: &str, mqtt: &str) -> std::path::PathBuf {
    let cfg = dir.join("porter.toml");
    let text = format!(
        r#"{head}
[[doors]]
id = "main"
lock = "lock"

[[devices]]
id = "lock"
kind = "sim_lock"

[[devices]]
id = "scanner"
kind = "serial_qr"
door = "main"
port = "{port}"
{mqtt}"#,
        head = config_head(dir)
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn doctor_finds_the_scanner_and_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("scanner");
    let _scanner = Pty::open(&link);
    let broker = Broker::start();
    let mqtt = format!("\n[mqtt]\nurl = \"{}\"\n", broker.url());
    let cfg = config(dir.path(), &link.display().to_string(), &mqtt);
    let (code, out) = doctor(&cfg, "root");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is valid"), "{out}");
    assert!(out.contains(&format!("device `scanner`: {} is there and root may open it", link.display())), "{out}");
    assert!(out.contains("takes this controller's credentials"), "{out}");
    assert!(out.contains("Nothing to fix."), "{out}");
}

#[test]
fn doctor_says_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    // A missing scanner, and a broker nobody listens on.
    let mqtt = format!("\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\n", free_port());
    let cfg = config(dir.path(), &dir.path().join("gone").display().to_string(), &mqtt);
    let (code, out) = doctor(&cfg, "root");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("gone is not there. Plug it in, or fix its path"), "{out}");
    assert!(out.contains("broker: cannot reach mqtt://127.0.0.1:"), "{out}");

    // A device the service user may not open (a pty slave is root's, mode
    // 0620, group tty): the fix names the group and the udev rules.
    // So is a password file only root may read.
    let link = dir.path().join("scanner");
    let _scanner = Pty::open(&link);
    let pw = dir.path().join("mqtt.pass");
    std::fs::write(&pw, "s3cret\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mqtt = format!(
        "\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nusername = \"u\"\npassword_file = \"{}\"\n",
        free_port(),
        pw.display()
    );
    let cfg = config(dir.path(), &link.display().to_string(), &mqtt);
    let (code, out) = doctor(&cfg, "nobody");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("nobody may not open"), "{out}");
    assert!(out.contains("sudo usermod -aG") && out.contains("then sudo systemctl restart porterd"), "{out}");
    assert!(out.contains("mqtt.password_file: nobody may not read") && out.contains("chmod 0640"), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
    let cfg = config(dir.path(), &link.display().to_string(), "");
    let (_, out) = doctor(&cfg, "nobody");
    assert!(out.contains("broker: none configured"), "{out}");

    // A broken config is reported, key by key.
    std::fs::write(&cfg, "site = \"s\"\n").unwrap();
    let (code, out) = doctor(&cfg, "root");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("porterd will not start") && out.contains("controller"), "{out}");
    // Its device and broker section says why it is empty.
    assert!(out.contains("devices and broker: not checked, the config above has errors"), "{out}");

    // No such service user.
    let cfg = config(dir.path(), &link.display().to_string(), "");
    let (code, out) = doctor(&cfg, "no-such-user-here");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("there is no user `no-such-user-here`"), "{out}");
    // The file checks say whose they are: not a uid the missing user does not have.
    assert!(
        out.contains("Files and folders (as uid ") && out.contains("there is no user no-such-user-here yet)"),
        "{out}"
    );
    // Reinstalling is the fix only where the package is installed; a porterd
    // built by hand is pointed at the steps that make the user.
    if std::path::Path::new("/var/lib/dpkg/info/porter.list").exists() {
        assert!(out.contains("reinstall the porter package"), "{out}");
    } else {
        assert!(!out.contains("reinstall"), "{out}");
        assert!(out.contains("docs/install.md, \"Building by hand\""), "{out}");
        assert!(out.contains("useradd --system"), "{out}");
    }
}

/// configs/raspberry-pi.toml on a machine with no GPIO (this one): one
/// finding for all six GPIO devices, naming them and saying there is no GPIO
/// chip here, not "/dev/gpiomem is not there. Plug it in" for one of them.
#[test]
fn doctor_on_a_machine_without_gpio_says_so_once_for_every_gpio_device() {
    if std::fs::read_dir("/dev").unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("gpiochip")) {
        return; // a board with GPIO: the chip is there
    }
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(porter_tests::workspace_root().join("configs/raspberry-pi.toml"))
        .unwrap()
        .replace("/var/lib/porter", &dir.path().join("data").display().to_string())
        .replace("/run/porter/admin.sock", &dir.path().join("admin.sock").display().to_string());
    let cfg = dir.path().join("porter.toml");
    std::fs::write(&cfg, text).unwrap();
    let (code, out) = doctor(&cfg, "root");
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("Plug it in"), "{out}");
    let gpio: Vec<&str> = out.lines().filter(|l| l.contains("GPIO") && l.trim_start().starts_with("FIX")).collect();
    assert_eq!(gpio.len(), 1, "{out}");
    assert!(gpio[0].contains("no GPIO chip on this machine"), "{out}");
    for id in ["reader", "lock", "door-contact", "exit-button", "reader-led", "reader-buzzer"] {
        assert!(gpio[0].contains(&format!("`{id}`")), "{id} not named: {out}");
    }
}

/// PC/SC readers through pcscd and the virtual reader: a matching reader is
/// found, a pattern that matches none is named with the readers there are.
#[test]
fn doctor_checks_pcsc_readers_through_pcscd() {
    let _lab = porter_tests::vpcd::PcscLab::acquire();
    let dir = tempfile::tempdir().unwrap();
    for (reader, code, says) in [
        ("PCD 00 00", 0, "device `reader`: PC/SC reader \"Virtual PCD 00 00\" is there"),
        ("ACR122", 1, "no PC/SC reader matches `ACR122`; attached: Virtual PCD 00 00"),
    ] {
        let cfg = dir.path().join("porter.toml");
        let text = format!(
            "{head}\n[[doors]]\nid = \"main\"\nlock = \"lock\"\n\n[[devices]]\nid = \"lock\"\nkind = \"sim_lock\"\n\n[[devices]]\nid = \"reader\"\nkind = \"pcsc\"\ndoor = \"main\"\nreader = \"{reader}\"\n",
            head = config_head(dir.path())
        );
        std::fs::write(&cfg, text).unwrap();
        let (got, out) = doctor(&cfg, "root");
        assert!(out.contains(says), "{out}");
        assert_eq!(got, code, "{out}");
        assert!(out.contains("PC/SC reader \"Virtual PCD 00 00\""), "listed as attached: {out}");
    }
}

/// Issue 13, what was left: doctor and check-config did not run the
/// ownership checks porterd runs at start, nor look at identity_file. Now
/// doctor reports each (data_dir, the admin socket's folder, secret_file,
/// identity_file, and every folder above them) with the daemon's own
/// refusal and fix, for the service's user; check-config refuses the same
/// with exit 64; identity_file's states are each told with what to do.
#[test]
fn doctor_and_check_config_run_the_ownership_checks_of_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("scanner");
    let _scanner = Pty::open(&link);
    let cfg = config(dir.path(), &link.display().to_string(), "");
    let data = dir.path().join("data");
    let key = data.join("identity.pem");
    // Nothing made yet: each file is told as made at the first start.
    let (code, out) = doctor(&cfg, "root");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Files and folders (as user root, uid 0)"), "{out}");
    assert!(out.contains(&format!("identity_file: {} is not there yet; porterd makes it", key.display())), "{out}");
    assert!(out.contains("secret_file: ") && out.contains("makes it (mode 0600) at its first start"), "{out}");
    // data_dir writable by every user: the daemon's refusal, word for word.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refusal = format!(
        "data_dir {}: writable by every user (mode 0777); another user could put their own store or device secret there. Fix: chown porter:porter {d}; chmod 0700 {d}",
        data.display(),
        d = data.display()
    );
    let (code, out) = doctor(&cfg, "root");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("FIX   {refusal}")), "{out}");
    let (code, _, err) = porter_tests::check_config(&cfg);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains(&refusal), "{err}");
    let (code, daemon) = start_fails(&cfg);
    assert!(code == 1 && daemon.contains(&refusal), "{daemon}");
    // A folder above it: the folder and its fix.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o757)).unwrap();
    let (code, out) = doctor(&cfg, "root");
    assert_eq!(code, 1, "{out}");
    let above = format!("the folder {} on the way to it is writable by every user (mode 0757)", dir.path().display());
    assert!(
        out.contains(&above)
            && out.contains(&format!("Fix: chown root:root {p}; chmod go-w {p}", p = dir.path().display())),
        "{out}"
    );
    assert!(out.contains("admin.socket: the admin socket's folder"), "{out}");
    let (code, _, err) = porter_tests::check_config(&cfg);
    assert!(code == 64 && err.contains(&above), "{err}");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // For the service's user: a data_dir of root's passes for nobody too
    // (root is trusted), one of nobody's is refused for root only.
    let nobody = 65534;
    std::os::unix::fs::chown(&data, Some(nobody), Some(nobody)).unwrap();
    let (_, out) = doctor(&cfg, "nobody");
    assert!(!out.contains("FIX   data_dir"), "{out}");
    let (_, out) = doctor(&cfg, "root");
    assert!(
        out.contains("FIX   data_dir") && out.contains("owned by uid 65534, not by the daemon's user (uid 0) or root"),
        "{out}"
    );
    std::os::unix::fs::chown(&data, Some(0), Some(0)).unwrap();
    // identity_file: made by a start, then loose, another user's, damaged.
    let sock = dir.path().join("admin.sock");
    let d = porter_tests::Daemon::start(&cfg, &sock);
    let (_, id) = d.ctl("identity", &[]);
    assert!(d.stop().0.success());
    let key_id = id["result"]["key_id"].as_str().unwrap().to_string();
    let (code, out) = doctor(&cfg, "root");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "ok    identity_file: {} holds the controller's Ed25519 key (key id {key_id})",
            key.display()
        )),
        "{out}"
    );
    assert!(!out.contains("PRIVATE KEY"), "{out}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = doctor(&cfg, "root");
    assert!(
        code == 1
            && out.contains(&format!("FIX   identity_file {} has mode 644", key.display()))
            && out.contains("chmod 600"),
        "{out}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out) = doctor(&cfg, "nobody");
    assert!(code == 1 && out.contains("identity_file") && out.contains("chown it to the daemon's user"), "{out}");
    let good = std::fs::read(&key).unwrap();
    std::fs::write(&key, b"not a key").unwrap();
    let (code, out) = doctor(&cfg, "root");
    assert!(
        code == 1 && out.contains("does not hold an Ed25519 private key") && out.contains("restore it from a backup"),
        "{out}"
    );
    // The secret: another user's.
    std::fs::write(&key, good).unwrap();
    let secret = data.join("device.key");
    std::os::unix::fs::chown(&secret, Some(nobody), None).unwrap();
    let (code, out) = doctor(&cfg, "root");
    assert!(code == 1 && out.contains(&format!("FIX   secret_file {}: owned by uid 65534", secret.display())), "{out}");
    let (code, _, err) = porter_tests::check_config(&cfg);
    assert!(code == 64 && err.contains("secret_file") && err.contains("recover PINs"), "{err}");
}

/// The GPIO device doctor checks is the configured backend's: the chip for
/// `cdev` (by path, or found by itself), the register window for `rppal`.
/// No GPIO chip exists on this machine, so each is reported missing, by the
/// path the backend would open; a file standing in for the chip is found.
#[test]
fn doctor_checks_the_chosen_gpio_backends_device() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("porter.toml");
    let write = |gpio: &str| {
        let text = format!(
            "{head}\n{gpio}\n[[doors]]\nid = \"main\"\nlock = \"lock\"\n\n[[devices]]\nid = \"lock\"\nkind = \"gpio_relay\"\nline = 18\n",
            head = config_head(dir.path())
        );
        std::fs::write(&cfg, text).unwrap();
    };
    let absent = dir.path().join("gpiochip7");
    write(&format!("[gpio]\nbackend = \"cdev\"\nchip = \"{}\"\n", absent.display()));
    let (code, out) = doctor(&cfg, "root");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("device `lock`: {} is not there", absent.display())), "{out}");
    assert!(!out.contains("gpiomem"), "{out}");

    std::fs::write(&absent, "").unwrap();
    let (_, out) = doctor(&cfg, "root");
    assert!(out.contains(&format!("device `lock`: {} is there and root may open it", absent.display())), "{out}");

    if !std::path::Path::new("/dev/gpiomem").exists() && !std::path::Path::new("/dev/gpiomem0").exists() {
        write("[gpio]\nbackend = \"rppal\"\n");
        let (code, out) = doctor(&cfg, "root");
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("device `lock`: /dev/gpiomem is not there"), "{out}");
    }
    if std::fs::read_dir("/dev").unwrap().flatten().all(|e| !e.file_name().to_string_lossy().starts_with("gpiochip")) {
        // The default: cdev, the chip found by itself.
        write("");
        let (code, out) = doctor(&cfg, "root");
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("device `lock`: [gpio] backend = \"cdev\": no GPIO chip on this machine"), "{out}");
    }
}
