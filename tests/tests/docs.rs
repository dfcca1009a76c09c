//! The docs agree with each other and with what the daemon does: a newcomer
//! reading two pages must never meet two answers to one question.

use porter_tests::workspace_root;

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file a user reads for setting up the MQTT password.
const PASSWORD_PAGES: [&str; 7] = [
    "docs/mqtt.md",
    "docs/install.md",
    "docs/config.md",
    "packaging/porter.toml",
    "configs/raspberry-pi.toml",
    "configs/usb.toml",
    "configs/larger-room.toml",
];

/// One path for the MQTT password file, and one owner and mode: the ones
/// `porterctl doctor` advises (root:porter 0640: the daemon reads it and
/// cannot change it) and the package removes on purge.
#[test]
fn the_mqtt_password_file_has_one_path_and_one_mode_everywhere() {
    let doctor = read("daemon/src/doctor.rs");
    assert!(doctor.contains("sudo chown root:porter {} && sudo chmod 0640 {}"), "doctor's advice changed");
    assert!(read("packaging/debian/postrm").contains("/etc/porter/mqtt.pass"), "postrm no longer purges it");
    for page in PASSWORD_PAGES {
        let text = read(page);
        for line in text.lines().filter(|l| l.trim_start_matches(['#', ' ']).starts_with("password_file =")) {
            assert!(line.contains("\"/etc/porter/mqtt.pass\""), "{page}: another password file path: {line}");
        }
        for line in text.lines().filter(|l| l.contains("password") && (l.contains("0600") || l.contains("0400"))) {
            panic!("{page}: the password file with another mode than root:porter 0640: {line}");
        }
    }
    let mqtt = read("docs/mqtt.md");
    let row = mqtt.lines().find(|l| l.starts_with("| `password_file`")).expect("mqtt.md's password_file row");
    assert!(row.contains("root:porter") && row.contains("0640"), "mqtt.md's row says no owner and mode: {row}");
}
