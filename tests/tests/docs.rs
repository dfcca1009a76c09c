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
        let other_mode = text.lines().find(|l| l.contains("password") && (l.contains("0600") || l.contains("0400")));
        assert!(
            other_mode.is_none(),
            "{page}: the password file with another mode than root:porter 0640: {other_mode:?}"
        );
    }
    let mqtt = read("docs/mqtt.md");
    let row = mqtt.lines().find(|l| l.starts_with("| `password_file`")).expect("mqtt.md's password_file row");
    assert!(row.contains("root:porter") && row.contains("0640"), "mqtt.md's row says no owner and mode: {row}");
}

/// An example that needs PC/SC or OSDP says so in its header, with the
/// command that checks it: the README's demo build has neither, and its
/// check-config refuses those kinds (naming the same command).
#[test]
fn examples_that_need_a_feature_say_how_to_check_them() {
    for entry in std::fs::read_dir(workspace_root().join("configs")).unwrap() {
        let p = entry.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let header: String = text.lines().take_while(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n");
        for (kind, feature) in [("pcsc", "PC/SC"), ("osdp", "OSDP")] {
            if text.contains(&format!("kind = \"{kind}\"")) {
                assert!(header.contains(feature), "{}: its header does not say it needs {feature}", p.display());
                assert!(
                    header.contains("--features pcsc,osdp --bin porterd -- check-config"),
                    "{}: its header does not say how to check it",
                    p.display()
                );
            }
        }
    }
    let kinds = read("drivers/src/kinds.rs");
    assert!(kinds.contains("`cargo run -p porterd --features pcsc,osdp --bin porterd -- check-config --config FILE`"));
}
