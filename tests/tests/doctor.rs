//! `porterctl doctor` against what is really attached: a serial scanner on a
//! pseudo-terminal, a missing device, a device the service user may not
//! open, and a broker that runs or does not.

use porter_tests::pty::Pty;
use porter_tests::{config_head, doctor, free_port, Broker};

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

    // No such service user.
    let cfg = config(dir.path(), &link.display().to_string(), "");
    let (code, out) = doctor(&cfg, "no-such-user-here");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("there is no user `no-such-user-here`"), "{out}");
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
