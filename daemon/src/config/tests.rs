use super::*;

/// The required top-level keys of the wiring tests' configs.
const HEAD: &str = "site = \"s\"\ncontroller = \"c\"\ndata_dir = \"/tmp/x\"\nsecret_file = \"/tmp/x/key\"\n";

fn no_env() -> std::iter::Empty<(String, String)> {
    std::iter::empty()
}

#[test]
fn the_demo_config_is_valid() {
    let c = Config::from_toml_with_env(DEMO_TOML, no_env()).unwrap();
    assert_eq!(c.doors.len(), 1);
    assert_eq!(c.devices.len(), 2);
    assert_eq!(c.keys.pin_length, 6);
    assert_eq!(c.lockout, LockoutPolicy::default());
    assert!(c.demo.seed);
    assert_eq!(c.devices[0].door, Some(0));
}

#[test]
fn environment_overrides_top_level_and_nested_keys() {
    let env = vec![
        ("PORTER_DATA_DIR".to_string(), "/tmp/elsewhere".to_string()),
        ("PORTER_KEYS__PIN_LENGTH".to_string(), "8".to_string()),
        ("PORTER_ADMIN__SOCKET".to_string(), "/tmp/a.sock".to_string()),
        ("HOME".to_string(), "/root".to_string()),
    ];
    let c = Config::from_toml_with_env(DEMO_TOML, env.into_iter()).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/tmp/elsewhere"));
    assert_eq!(c.keys.pin_length, 8);
    assert_eq!(c.admin.socket, PathBuf::from("/tmp/a.sock"));
}

#[test]
fn every_error_is_reported_with_its_path() {
    let text = r#"
site = "oak street"
data_dir = "./d"
secret_file = "./k"
timezone = "Mars/Olympus"
colour = "blue"

[keys]
pin_length = 12

[lockout]
treshold = 3

[[doors]]
id = "main"
lock = "keypad1"

[[doors]]
id = "back"
lock = "nope"

[[devices]]
id = "keypad1"
kind = "console"
door = "main"

[[devices]]
id = "keypad2"
kind = "console"

[[devices]]
id = "relay"
kind = "warp_drive"
door = "side"

[[devices]]
id = "lock2"
kind = "sim_lock"
door = "main"

[[doors]]
id = "back"
lock = "lock2"
contact = "lock2"
"#;
    let errs = Config::from_toml_with_env(text, no_env()).unwrap_err();
    let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "site",
        "controller",
        "timezone",
        "colour",
        "keys.pin_length",
        "lockout.treshold",
        "doors[0].lock",
        "doors[1].lock",
        "devices[1].door",
        "devices[1]",
        "devices[2].kind",
        "devices[2].door",
        "devices[3].door",
        "doors[2].contact",
    ] {
        assert!(paths.contains(&want), "missing {want} in {errs}");
    }
    assert!(errs.0.iter().any(|e| e.message == "standard input is already used by devices[0]"), "{errs}");
    let treshold = errs.0.iter().find(|e| e.path == "lockout.treshold").unwrap();
    assert!(treshold.hint.as_deref().unwrap().contains("did you mean `threshold`"), "{treshold}");
}

#[test]
fn a_broken_toml_file_is_one_clear_error() {
    let errs = Config::from_toml_with_env("site = \"x\n", no_env()).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs.0[0].message.contains("TOML"), "{errs}");
}

#[test]
fn environment_overrides_array_entries_and_ignores_foreign_variables() {
    let env = vec![
        ("PORTER_DOORS__0__UNLOCK_MS".to_string(), "1234".to_string()),
        ("PORTER_DEVICES__0__ID".to_string(), "front-keypad".to_string()),
        ("PORTER_LOG".to_string(), "debug".to_string()),
    ];
    let c = Config::from_toml_with_env(DEMO_TOML, env.into_iter()).unwrap();
    assert_eq!(c.doors[0].unlock, Duration::from_millis(1234));
    assert_eq!(c.devices[0].id, "front-keypad");
    assert_eq!(c.env_ignored, ["PORTER_LOG"]);

    let env = vec![
        ("PORTER_DOORS__3__UNLOCK_MS".to_string(), "1234".to_string()),
        ("PORTER_KEYS__PIN_LENGHT".to_string(), "7".to_string()),
    ];
    let errs = Config::from_toml_with_env(DEMO_TOML, env.into_iter()).unwrap_err();
    let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["doors[3]", "keys.pin_lenght"], "{errs}");
}

#[test]
fn mqtt_urls() {
    assert_eq!(parse_mqtt_url("mqtt://localhost"), Some((false, "localhost".into(), 1883)));
    assert_eq!(parse_mqtt_url("mqtts://broker.example:8884/"), Some((true, "broker.example".into(), 8884)));
    assert_eq!(parse_mqtt_url("mqtt://[::1]:1999"), Some((false, "::1".into(), 1999)));
    assert_eq!(parse_mqtt_url("http://x"), None);
    assert_eq!(parse_mqtt_url("mqtt://:1883"), None);
    assert_eq!(parse_mqtt_url("mqtt://h:0"), None);
    let text = format!("{DEMO_TOML}\n[mqtt]\nurl = \"mqtt://127.0.0.1:1999\"\n");
    let c = Config::from_toml_with_env(&text, no_env()).unwrap();
    let m = c.mqtt.unwrap();
    assert_eq!(m.client_id, "porter-demo-room-1");
    assert!(!m.clean_start);
    assert_eq!(m.keep_alive, Duration::from_secs(30));
}

#[test]
fn doors_name_their_contact_exit_button_and_indicators() {
    let base = &format!(
        r#"{HEAD}
[[doors]]
id = "main"
lock = "relay"
contact = "dc"
exit_button = "rex"
led = "led"
buzzer = "buzz"
held_open_s = 90
relock_on_close = true

[[devices]]
id = "keypad1"
kind = "console"
door = "main"

[[devices]]
id = "relay"
kind = "gpio_relay"
line = 17

[[devices]]
id = "dc"
kind = "gpio_input"
line = 22

[[devices]]
id = "rex"
kind = "gpio_input"
line = 23

[[devices]]
id = "led"
kind = "gpio_relay"
line = 24

[[devices]]
id = "buzz"
kind = "gpio_relay"
line = 25
"#
    );
    let c = Config::from_toml_with_env(base, no_env()).unwrap();
    let d = &c.doors[0];
    assert_eq!((d.contact, d.exit_button, d.led, d.buzzer), (Some(2), Some(3), Some(4), Some(5)));
    assert_eq!((d.held_open, d.relock_on_close), (Duration::from_secs(90), true));
    assert_eq!((c.devices[2].door, c.devices[2].purpose), (Some(0), Purpose::Contact));
    assert_eq!((c.devices[3].door, c.devices[3].purpose), (Some(0), Purpose::ExitButton));
    assert_eq!(c.devices[0].purpose, Purpose::Credentials);

    // Wrong roles, a device in two roles, a contact with a door of its own.
    let bad = base
        .replace("led = \"led\"", "led = \"dc\"")
        .replace("buzzer = \"buzz\"", "buzzer = \"relay\"")
        .replace("exit_button = \"rex\"", "exit_button = \"led\"")
        .replace("line = 22\n", "line = 22\ndoor = \"main\"\n");
    let errs = Config::from_toml_with_env(&bad, no_env()).unwrap_err();
    let find = |path: &str| errs.0.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("no {path} in {errs}"));
    assert!(find("doors[0].led").message.contains("is an input, not an output"), "{errs}");
    assert!(find("doors[0].buzzer").message.contains("already used as doors[0].lock"), "{errs}");
    assert!(find("doors[0].exit_button").message.contains("is an output, not an input"), "{errs}");
    assert!(find("devices[2].door").hint.as_deref().unwrap().contains("remove door here"), "{errs}");
}

#[test]
fn wirings_that_cannot_work_are_refused_with_their_fix() {
    let text = &format!(
        r#"{HEAD}
[[doors]]
id = "main"
lock = "relay"
contact = "keypad"
held_open_s = 30

[[doors]]
id = "back"
lock = "relay2"
relock_on_close = true

[[devices]]
id = "keypad"
kind = "serial_keypad"
door = "main"
port = "/dev/ttyUSB0"
baudrate = 9600

[[devices]]
id = "relay"
kind = "serial_relay"
port = "/dev/ttyUSB0"

[[devices]]
id = "relay2"
kind = "serial_relay"
port = "/dev/ttyUSB1"

[[devices]]
id = "button"
kind = "gpio_input"
door = "main"
line = 4

[[devices]]
id = "reader"
kind = "wiegan"
door = "main"
d0 = 5
d1 = 6
"#
    );
    let errs = Config::from_toml_with_env(text, no_env()).unwrap_err();
    let find = |path: &str| errs.0.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("no {path} in {errs}"));
    assert!(find("doors[0].contact").message.contains("cannot report a contact"), "{errs}");
    assert!(find("doors[1].relock_on_close").message.contains("needs a door contact"), "{errs}");
    assert!(find("devices[0].baudrate").hint.as_deref().unwrap().contains("did you mean `baud`"), "{errs}");
    assert!(find("devices[1].port").message.contains("is also read by devices[0]"), "{errs}");
    assert!(find("devices[3]").hint.as_deref().unwrap().contains("exit_button = \"button\""), "{errs}");
    assert!(find("devices[4].kind").hint.as_deref().unwrap().contains("did you mean `wiegand`"), "{errs}");
    assert!(!errs.0.iter().any(|e| e.path == "devices[4].d0"), "keys of an unknown kind are not reported: {errs}");
    // held_open_s with a contact that is refused is still only the contact's error.
    assert!(!errs.0.iter().any(|e| e.path == "doors[0].held_open_s"), "{errs}");
}

#[test]
fn enrolment_roles_and_window() {
    use crate::access::Role;
    let c = Config::from_toml_with_env(DEMO_TOML, no_env()).unwrap();
    assert_eq!(
        (c.enroll.roles.as_slice(), c.enroll.window),
        ([Role::Courier, Role::Staff].as_slice(), Duration::from_secs(30))
    );
    let c =
        Config::from_toml_with_env(&format!("{DEMO_TOML}\n[enroll]\nroles = [\"manager\"]\nwindow_s = 60\n"), no_env())
            .unwrap();
    assert_eq!((c.enroll.roles.as_slice(), c.enroll.window), ([Role::Manager].as_slice(), Duration::from_secs(60)));
    let c = Config::from_toml_with_env(&format!("{DEMO_TOML}\n[enroll]\nroles = []\n"), no_env()).unwrap();
    assert!(c.enroll.roles.is_empty());
    let errs = Config::from_toml_with_env(
        &format!("{DEMO_TOML}\n[enroll]\nroles = [\"courier\", \"janitor\"]\nwindow_s = 2\nwindow = 30\n"),
        no_env(),
    )
    .unwrap_err();
    let find = |path: &str| errs.0.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("no {path} in {errs}"));
    assert!(find("enroll.roles[1]").message.contains("unknown role `janitor`"), "{errs}");
    assert!(find("enroll.window_s").hint.as_deref().unwrap().contains("5 to 600"), "{errs}");
    assert!(find("enroll.window").hint.as_deref().unwrap().contains("window_s"), "{errs}");
}

#[test]
fn role_schedules() {
    use crate::access::schedule::Window;
    use crate::access::Role;
    let c = Config::from_toml_with_env(DEMO_TOML, no_env()).unwrap();
    assert!(c.role_schedules.iter().all(Vec::is_empty));
    let text = format!(
        "{DEMO_TOML}\n[roles.courier]\nschedule = [{{ days = \"daily\", from = \"07:00\", to = \"21:00\" }}]\n\
         [roles.staff]\nschedule = [{{ days = [\"mon\", \"tue\"], from = \"22:00\", to = \"06:00\" }}]\n"
    );
    let c = Config::from_toml_with_env(&text, no_env()).unwrap();
    assert_eq!(c.role_schedules[Role::Courier.index()], [Window { days: 0x7f, from: 420, to: 1260 }]);
    assert_eq!(c.role_schedules[Role::Staff.index()], [Window { days: 0b11, from: 1320, to: 360 }]);
    assert!(c.role_schedules[Role::Resident.index()].is_empty());
    let text = format!(
        "{DEMO_TOML}\n[roles.courier]\nschedule = [{{ days = \"daily\", from = \"7am\", to = \"21:00\" }}]\n\
         hours = 3\n[roles.janitor]\nschedule = []\n"
    );
    let errs = Config::from_toml_with_env(&text, no_env()).unwrap_err();
    let find = |path: &str| errs.0.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("no {path} in {errs}"));
    assert!(find("roles.courier.schedule").message.contains("`from` must be HH:MM"), "{errs}");
    find("roles.courier.hours");
    find("roles.janitor");
}

#[test]
fn clock_policy_and_source() {
    use crate::runtime::clock::{SyncSource, Unsynchronized};
    let c = Config::from_toml_with_env(DEMO_TOML, no_env()).unwrap();
    assert_eq!((c.clock.unsynchronized, &c.clock.source), (Unsynchronized::Deny, &SyncSource::Kernel));
    let text = format!(
        "{DEMO_TOML}\n[clock]\nunsynchronized = \"allow\"\nsync_file = \"/run/systemd/timesync/synchronized\"\n"
    );
    let c = Config::from_toml_with_env(&text, no_env()).unwrap();
    assert_eq!(c.clock.unsynchronized, Unsynchronized::Allow);
    assert_eq!(c.clock.source, SyncSource::File("/run/systemd/timesync/synchronized".into()));
    let errs = Config::from_toml_with_env(&format!("{DEMO_TOML}\n[clock]\nunsynchronized = \"maybe\"\n"), no_env())
        .unwrap_err();
    let e = errs.0.iter().find(|e| e.path == "clock.unsynchronized").unwrap_or_else(|| panic!("{errs}"));
    assert!(e.hint.as_deref().unwrap().contains("\"deny\""), "{e}");
}

#[test]
fn card_plus_pin_by_door_and_role() {
    use crate::access::Role;
    let c = Config::from_toml_with_env(DEMO_TOML, no_env()).unwrap();
    assert!(!c.doors[0].card_plus_pin && c.card_plus_pin_roles.is_empty());
    assert_eq!(c.keypad.pin_after_card, Duration::from_secs(10));
    let text = DEMO_TOML.replacen("[[doors]]", "[keypad]\npin_after_card_s = 5\n\n[[doors]]\ncard_plus_pin = true", 1);
    let text = format!("{text}\n[roles.staff]\ncard_plus_pin = true\n");
    let c = Config::from_toml_with_env(&text, no_env()).unwrap();
    assert!(c.doors[0].card_plus_pin);
    assert_eq!(
        (c.card_plus_pin_roles.as_slice(), c.keypad.pin_after_card),
        ([Role::Staff].as_slice(), Duration::from_secs(5))
    );
    let errs = Config::from_toml_with_env(&format!("{DEMO_TOML}\n[roles.staff]\ncard_plus_pin = \"yes\"\n"), no_env())
        .unwrap_err();
    assert!(errs.0.iter().any(|e| e.path == "roles.staff.card_plus_pin"), "{errs}");
}
