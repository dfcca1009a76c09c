use super::*;
use porter_drivers::settings::ConfigError;
use std::time::Duration;

/// The required top-level keys of the wiring tests' configs.
const HEAD: &str = "site = \"s\"\ncontroller = \"c\"\ndata_dir = \"/tmp/x\"\nsecret_file = \"/tmp/x/key\"\n";

fn no_env() -> std::iter::Empty<(String, String)> {
    std::iter::empty()
}

fn env(vars: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
}

/// The errors of `text` with `vars`, and a finder by key path.
fn errors(text: &str, vars: &[(&str, &str)]) -> ConfigErrors {
    Config::from_toml_with_env(text, env(vars)).unwrap_err()
}

fn find<'e>(errs: &'e ConfigErrors, path: &str) -> &'e ConfigError {
    errs.0.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("no {path} in {errs}"))
}

fn hint(e: &ConfigError) -> &str {
    e.hint.as_deref().unwrap_or_else(|| panic!("no hint: {e}"))
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
    assert!(errs.0.iter().all(|e| e.hint.is_some()), "every error has a hint: {errs}");
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

/// The kinds' typed claims keep the texts, and the order, that the config's
/// errors named them by when claims were strings: lines sorted as text
/// (`gpio18` before `gpio5`), a relay channel as `port#channel`.
#[test]
fn resources_claimed_twice_are_named_as_before() {
    let text = &format!(
        r#"{HEAD}
[[doors]]
id = "main"
lock = "relay"

[[devices]]
id = "reader"
kind = "wiegand"
door = "main"
d0 = 5
d1 = 18

[[devices]]
id = "reader2"
kind = "wiegand"
door = "main"
d0 = 18
d1 = 5

[[devices]]
id = "relay"
kind = "serial_relay"
port = "/dev/ttyUSB1"
channel = 2

[[devices]]
id = "relay2"
kind = "serial_relay"
port = "/dev/ttyUSB1"
channel = 2
"#
    );
    let errs = errors(text, &[]);
    let claims: Vec<&str> =
        errs.0.iter().filter(|e| e.message.contains("is already used by")).map(|e| e.message.as_str()).collect();
    assert_eq!(
        claims,
        [
            "gpio18 is already used by devices[0]",
            "gpio5 is already used by devices[0]",
            "/dev/ttyUSB1#2 is already used by devices[2]"
        ],
        "{errs}"
    );
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
    assert!(find("roles.courier.schedule[0].from").message.contains("\"7am\" is not a time"), "{errs}");
    find("roles.courier.hours");
    find("roles.janitor");
}

#[test]
fn clock_policy_and_source() {
    use crate::config::clock::{SyncSource, Unsynchronized};
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

#[test]
fn environment_values_can_be_toml_or_comma_separated_lists() {
    use crate::access::schedule::Window;
    use crate::access::Role;
    let roles = |value: &str| {
        let c = Config::from_toml_with_env(DEMO_TOML, env(&[("PORTER_ENROLL__ROLES", value)])).unwrap();
        c.enroll.roles
    };
    assert_eq!(roles(r#"["courier", "staff"]"#), [Role::Courier, Role::Staff]);
    assert_eq!(roles(r#"  ["manager"]"#), [Role::Manager]);
    assert_eq!(roles("courier,staff"), [Role::Courier, Role::Staff]);
    assert_eq!(roles("resident"), [Role::Resident]);
    assert_eq!(roles(""), []);
    // Numbers and booleans from text, booleans in any case.
    let c = Config::from_toml_with_env(
        DEMO_TOML,
        env(&[("PORTER_KEYS__PIN_LENGTH", "4"), ("PORTER_KEYPAD__SUBMIT_AT_LENGTH", "True")]),
    )
    .unwrap();
    assert_eq!((c.keys.pin_length, c.keypad.submit_at_length), (4, true));

    let schedule = r#"[{ days = ["mon"], from = "07:00", to = "21:00" }]"#;
    let c = Config::from_toml_with_env(DEMO_TOML, env(&[("PORTER_ROLES__COURIER__SCHEDULE", schedule)])).unwrap();
    assert_eq!(c.role_schedules[Role::Courier.index()], [Window { days: 1, from: 420, to: 1260 }]);
    // A window's key through an entry's index, as for [[doors]].
    let text = format!("{DEMO_TOML}\n[roles.courier]\nschedule = [{{ from = \"07:00\", to = \"21:00\" }}]\n");
    let c = Config::from_toml_with_env(&text, env(&[("PORTER_ROLES__COURIER__SCHEDULE__0__DAYS", "sat,sun")])).unwrap();
    assert_eq!(c.role_schedules[Role::Courier.index()], [Window { days: 0x60, from: 420, to: 1260 }]);

    let errs = errors(DEMO_TOML, &[("PORTER_ENROLL__ROLES", "[courier]")]);
    let e = find(&errs, "enroll.roles");
    assert!(e.message.starts_with("PORTER_ENROLL__ROLES is not a TOML value"), "{e}");
    assert!(hint(e).contains(r#"PORTER_ENROLL__ROLES='["first", "second"]'"#), "{e}");
    assert_eq!(errs.len(), 1, "{errs}");
}

#[test]
fn empty_paths_are_refused() {
    let mqtt = format!("{DEMO_TOML}\n[mqtt]\nurl = \"mqtts://broker:8883\"\nusername = \"u\"\n");
    for (var, path) in [
        ("PORTER_DATA_DIR", "data_dir"),
        ("PORTER_SECRET_FILE", "secret_file"),
        ("PORTER_IDENTITY_FILE", "identity_file"),
        ("PORTER_ADMIN__SOCKET", "admin.socket"),
        ("PORTER_CLOCK__SYNC_FILE", "clock.sync_file"),
        ("PORTER_MQTT__PASSWORD_FILE", "mqtt.password_file"),
        ("PORTER_MQTT__CA_FILE", "mqtt.ca_file"),
        ("PORTER_MQTT__CERT_FILE", "mqtt.cert_file"),
        ("PORTER_MQTT__KEY_FILE", "mqtt.key_file"),
    ] {
        let errs = errors(&mqtt, &[(var, "")]);
        let e = find(&errs, path);
        assert_eq!(e.message, format!("must not be empty (from {var})"), "{errs}");
        assert!(!hint(e).is_empty());
    }
    let errs = errors(&DEMO_TOML.replace("\"./data/device.key\"", "\"\""), &[]);
    assert_eq!(find(&errs, "secret_file").message, "must not be empty", "{errs}");
    // A device's required paths.
    let text = format!(
        "{HEAD}\n[[doors]]\nid = \"main\"\nlock = \"run\"\n\
         [[devices]]\nid = \"k\"\nkind = \"serial_keypad\"\ndoor = \"main\"\nport = \"\"\n\
         [[devices]]\nid = \"h\"\nkind = \"hid\"\ndoor = \"main\"\nmode = \"qr\"\npath = \"\"\n\
         [[devices]]\nid = \"run\"\nkind = \"exec\"\ncommand = \"\"\n"
    );
    let errs = errors(&text, &[]);
    for path in ["devices[0].port", "devices[1].path", "devices[2].command"] {
        assert_eq!(find(&errs, path).message, "must not be empty", "{errs}");
    }
    assert_eq!(errs.len(), 3, "{errs}");
}

#[test]
fn wrong_types_say_what_was_found_and_how_to_write_it() {
    let text = DEMO_TOML.replacen(
        "[admin]",
        "[lockout]\nbase_s = -5\n[keypad]\nentry_timeout_ms = 1.5\nsubmit_at_length = \"yes\"\n\
         [keys]\npin_length = \"six\"\n[enroll]\nroles = [\"courier\", 3]\n\n[admin]",
        1,
    );
    let errs = errors(&text, &[("PORTER_AUDIT__RETAIN", "-1"), ("PORTER_STORE", "big")]);
    let e = find(&errs, "lockout.base_s");
    assert_eq!(e.message, "expected a whole number, found a negative number -5");
    assert!(hint(e).contains("from 1 to 86400"), "{e}");
    let e = find(&errs, "keypad.entry_timeout_ms");
    assert_eq!(e.message, "expected a whole number, found a decimal 1.5");
    assert!(hint(e).contains("such as entry_timeout_ms = 5000"), "{e}");
    let e = find(&errs, "keys.pin_length");
    assert_eq!(e.message, "expected a whole number, found the string \"six\"");
    assert_eq!(hint(e), "write a whole number from 4 to 8 without quotes, such as pin_length = 6");
    let e = find(&errs, "keypad.submit_at_length");
    assert!(hint(e).contains("submit_at_length = true"), "{e}");
    assert!(hint(find(&errs, "enroll.roles[1]")).contains("quote each item"), "{errs}");
    let e = find(&errs, "audit.retain");
    assert_eq!(e.message, "expected a whole number, found a negative number -1 (from PORTER_AUDIT__RETAIN)");
    let e = find(&errs, "store");
    assert_eq!(e.message, "expected a table, found the string \"big\" (from PORTER_STORE)");
    assert!(hint(e).contains("[store]"), "{e}");
    assert!(errs.0.iter().all(|e| e.hint.is_some()), "{errs}");

    // More doors than a door set holds.
    let mut text = DEMO_TOML.to_string();
    for i in 1..=MAX_DOORS {
        text.push_str(&format!("\n[[doors]]\nid = \"d{i}\"\nlock = \"lock1\"\n"));
    }
    let errs = errors(&text, &[]);
    assert!(hint(find(&errs, "doors")).contains("split the doors"), "{errs}");
    assert!(errs.0.iter().all(|e| e.hint.is_some()), "{errs}");
}

#[test]
fn mqtt_file_errors_name_their_key_first() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.path().join("missing.pass");
    let check = |mqtt: String| {
        let c = Config::from_toml_with_env(&format!("{DEMO_TOML}\n[mqtt]\n{mqtt}"), no_env()).unwrap();
        let topics = crate::provision::mqtt::Topics::new(&c.site, &c.controller);
        crate::provision::mqtt::options(c.mqtt.as_ref().unwrap(), &topics).unwrap_err().to_string()
    };
    let e = check(format!("url = \"mqtts://broker:8883\"\nca_file = {:?}\n", empty.to_str().unwrap()));
    assert!(e.starts_with(&format!("mqtt.ca_file: {} holds no PEM certificate (hint: ", empty.display())), "{e}");
    let e =
        check(format!("url = \"mqtt://broker\"\nusername = \"u\"\npassword_file = {:?}\n", missing.to_str().unwrap()));
    assert!(e.starts_with(&format!("mqtt.password_file: {}: ", missing.display())), "{e}");
    assert!(e.contains("(hint: point password_file at the file holding the broker's password"), "{e}");
}

#[test]
fn override_mistakes_name_their_variable() {
    let errs = errors(DEMO_TOML, &[("PORTER_DOORS__0", "a")]);
    let e = find(&errs, "PORTER_DOORS__0");
    assert_eq!(e.message, "doors[0] is a table: set its keys one by one");
    assert_eq!(hint(e), "PORTER_DOORS__0__<KEY>=...");

    let errs = errors(DEMO_TOML, &[("PORTER_DOORS__X__ID", "a")]);
    assert_eq!(errs.0[0].to_string(), "PORTER_DOORS__X__ID: X is not an entry number (hint: PORTER_DOORS__0__ID=...)");
    assert_eq!(errs.len(), 1, "{errs}");

    let text = DEMO_TOML.replacen("[admin]", "[keys]\npin_length = 6\n\n[admin]", 1);
    let errs = errors(&text, &[("PORTER_KEYS__PIN_LENGTH__X", "1")]);
    let e = find(&errs, "PORTER_KEYS__PIN_LENGTH__X");
    assert_eq!(e.message, "keys.pin_length holds a value, not a table: it has no key `x`");
    assert_eq!(hint(e), "PORTER_KEYS__PIN_LENGTH=...");
    // Without pin_length in the file, the table it makes is refused, naming the variable.
    let errs = errors(DEMO_TOML, &[("PORTER_KEYS__PIN_LENGTH__X", "1")]);
    assert_eq!(
        find(&errs, "keys.pin_length").message,
        "expected a whole number, found a table (from PORTER_KEYS__PIN_LENGTH__X)"
    );

    // A list the file leaves out has no entries; a section it leaves out is made.
    let errs = errors(&DEMO_TOML.replace("[[doors]]", "[[gates]]"), &[("PORTER_DOORS__0__ID", "a")]);
    assert_eq!(find(&errs, "doors[0]").message, "PORTER_DOORS__0__ID names entry 0, but the file has 0 of them");
    // Nothing is made for a variable that is refused.
    let errs = errors(DEMO_TOML, &[("PORTER_MQTT__LIST__0__X", "1")]);
    assert_eq!(
        errs.0[0].to_string(),
        "mqtt.list[0]: PORTER_MQTT__LIST__0__X names entry 0, but the file has 0 of them \
        (hint: override only entries the file defines; indexes start at 0)"
    );
    assert_eq!(errs.len(), 1, "{errs}");
    let errs = errors(DEMO_TOML, &[("PORTER_ADMIN__0", "1")]);
    assert_eq!(
        errs.0[0].to_string(),
        "PORTER_ADMIN__0: admin is a table, not a list: it has no entry 0 \
        (hint: PORTER_ADMIN__<KEY>=...)"
    );
    assert_eq!(errs.len(), 1, "{errs}");
    // The same without [admin] in the file.
    let errs = errors(&DEMO_TOML.replace("[admin]", "[keys]"), &[("PORTER_ADMIN__0", "1")]);
    assert_eq!(find(&errs, "PORTER_ADMIN__0").message, "admin is a table, not a list: it has no entry 0");
    // An exec program's environment keeps its names' case: set whole.
    let errs = errors(DEMO_TOML, &[("PORTER_DEVICES__0__ENV__READER", "/dev/ttyUSB0")]);
    let e = find(&errs, "PORTER_DEVICES__0__ENV__READER");
    assert!(e.message.starts_with("devices[0].env is set whole"), "{errs}");
    assert_eq!(hint(e), "PORTER_DEVICES__0__ENV='{ NAME = \"value\" }'");
    let errs = errors(
        DEMO_TOML,
        &[("PORTER_MQTT__CLIENT_ID", "x"), ("PORTER_KEYS__PIN_LENGTH", "9"), ("PORTER_KEYS____A", "1")],
    );
    assert_eq!(find(&errs, "mqtt.url").message, "missing required key (from PORTER_MQTT__CLIENT_ID)");
    assert_eq!(find(&errs, "keys.pin_length").message, "9 is out of range (from PORTER_KEYS__PIN_LENGTH)");
    assert!(hint(find(&errs, "PORTER_KEYS____A")).contains("two underscores"), "{errs}");
    let errs = errors(DEMO_TOML, &[("PORTER_MQTT__URL", "mqtt://broker:99999"), ("PORTER_MQTT__CLIENT_ID", "x")]);
    assert_eq!(find(&errs, "mqtt.url").message, "`mqtt://broker:99999` is not an MQTT URL (from PORTER_MQTT__URL)");
}

#[test]
fn typos_are_found_whatever_their_case() {
    let errs = errors(&DEMO_TOML.replace("kind = \"console\"", "Kind = \"console\"").replace("site =", "SITE ="), &[]);
    assert_eq!(find(&errs, "devices[0].kind").message, "missing required key");
    assert!(hint(find(&errs, "devices[0].Kind")).starts_with("did you mean `kind`?"), "{errs}");
    assert!(hint(find(&errs, "SITE")).starts_with("did you mean `site`?"), "{errs}");
    // Keys of an unknown kind are not reported, only near misses of the common ones.
    let errs = errors(&DEMO_TOML.replace("kind = \"sim_lock\"", "kind = \"warp\"\nline = 4\ndor = \"main\""), &[]);
    assert!(hint(find(&errs, "devices[1].dor")).starts_with("did you mean `door`?"), "{errs}");
    assert!(!errs.0.iter().any(|e| e.path == "devices[1].line"), "{errs}");

    let text = format!(
        "{DEMO_TOML}\n[roles.courier]\nschedule = [{{ days = [\"mon\", \"someday\"], from = \"25:00\", to = \"21:00\" }}, \
         {{ days = [], from = \"07:00\", to = \"07:00\", form = \"x\" }}]\n"
    );
    let errs = errors(&text, &[]);
    let e = find(&errs, "roles.courier.schedule[0].days");
    assert_eq!(e.message, "unknown day \"someday\"");
    assert!(hint(e).starts_with("use mon, tue, wed"), "{e}");
    assert_eq!(find(&errs, "roles.courier.schedule[0].from").message, "\"25:00\" is not a time");
    assert_eq!(find(&errs, "roles.courier.schedule[1].days").message, "no day given");
    assert!(find(&errs, "roles.courier.schedule[1].to").message.contains("empty"), "{errs}");
    assert!(hint(find(&errs, "roles.courier.schedule[1].form")).starts_with("did you mean `from`?"), "{errs}");
    assert!(errs.0.iter().all(|e| e.hint.is_some()), "{errs}");

    // A device without an id; ids listed once each in a hint.
    let text = DEMO_TOML.replace("id = \"keypad1\"", "").replace("lock = \"lock1\"", "lock = \"nolock\"")
        + "\n[[devices]]\nid = \"lock1\"\nkind = \"sim_lock\"\n";
    let errs = errors(&text, &[]);
    assert!(hint(find(&errs, "devices[0].id")).contains("id = \"keypad1\""), "{errs}");
    assert_eq!(hint(find(&errs, "doors[0].lock")), "devices are: lock1", "{errs}");
}

#[test]
fn the_sync_idle_time_has_a_default_a_range_and_an_environment_override() {
    let c = Config::from_toml_with_env(DEMO_TOML, no_env()).unwrap();
    assert_eq!(c.store.sync_idle, std::time::Duration::from_secs(600));
    let c = Config::from_toml_with_env(DEMO_TOML, env(&[("PORTER_STORE__SYNC_IDLE_S", "2")])).unwrap();
    assert_eq!(c.store.sync_idle, std::time::Duration::from_secs(2));
    let errs = Config::from_toml_with_env(DEMO_TOML, env(&[("PORTER_STORE__SYNC_IDLE_S", "0")])).unwrap_err();
    assert!(errs.to_string().contains("store.sync_idle_s"), "{errs}");
}

#[test]
fn the_identity_file_sits_beside_the_secret_unless_set() {
    let c = Config::from_toml_with_env(HEAD, env(&[])).unwrap();
    assert_eq!(c.identity_file, std::path::Path::new("/tmp/x/identity.pem"));
    let c = Config::from_toml_with_env(&format!("{HEAD}identity_file = \"/etc/porter/id.pem\"\n"), env(&[])).unwrap();
    assert_eq!(c.identity_file, std::path::Path::new("/etc/porter/id.pem"));
    let c = Config::from_toml_with_env(HEAD, env(&[("PORTER_IDENTITY_FILE", "/srv/id.pem")])).unwrap();
    assert_eq!(c.identity_file, std::path::Path::new("/srv/id.pem"));
}

#[test]
fn portal_keys_parse_in_every_format_and_from_the_environment() {
    let raw = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let spki = "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let hex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{spki}\n-----END PUBLIC KEY-----\n");
    let text = format!(
        "{HEAD}[mqtt]\nurl = \"mqtt://b:1883\"\nrequire_signed = true\n\
         [[mqtt.portal_keys]]\nid = \"a\"\npublic_key = \"{raw}\"\n\
         [[mqtt.portal_keys]]\nid = \"b\"\npublic_key = \"{spki}\"\n\
         [[mqtt.portal_keys]]\nid = \"c\"\npublic_key = \"{hex}\"\n\
         [[mqtt.portal_keys]]\nid = \"d\"\npublic_key = '''\n{pem}'''\n"
    );
    let c = Config::from_toml_with_env(&text, no_env()).unwrap();
    let m = c.mqtt.unwrap();
    assert!(m.require_signed);
    assert_eq!(m.portal_keys.len(), 4);
    assert!(m.portal_keys.iter().all(|k| hex::encode(k.key) == hex));

    // From the environment, like every other key.
    let text = format!("{HEAD}[mqtt]\nurl = \"mqtt://b:1883\"\n");
    let vars = [
        ("PORTER_MQTT__REQUIRE_SIGNED", "true"),
        ("PORTER_MQTT__PORTAL_KEYS", &*format!("[{{ id = \"portal-2026\", public_key = \"{spki}\" }}]")),
    ];
    let m = Config::from_toml_with_env(&text, env(&vars)).unwrap().mqtt.unwrap();
    assert!(m.require_signed);
    assert_eq!(m.portal_keys[0].id, "portal-2026");
}

#[test]
fn bad_portal_keys_are_errors_at_their_key_path() {
    let spki = "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let text = format!(
        "{HEAD}[mqtt]\nurl = \"mqtt://b:1883\"\n\
         [[mqtt.portal_keys]]\nid = \"a b\"\npublic_key = \"{spki}\"\n\
         [[mqtt.portal_keys]]\nid = \"k\"\npublic_key = \"not a key\"\n\
         [[mqtt.portal_keys]]\nid = \"k\"\npublic_key = \"{spki}\"\n"
    );
    let errs = errors(&text, &[]);
    assert!(find(&errs, "mqtt.portal_keys[0].id").message.contains("not a key id"), "{errs}");
    assert!(hint(find(&errs, "mqtt.portal_keys[1].public_key")).contains("openssl pkey -pubout"), "{errs}");
    assert!(find(&errs, "mqtt.portal_keys[2].id").message.contains("pinned twice"), "{errs}");
    let none = format!("{HEAD}[mqtt]\nurl = \"mqtt://b:1883\"\nrequire_signed = true\n");
    assert!(hint(find(&errors(&none, &[]), "mqtt.require_signed")).contains("portal_keys"));
}

#[test]
fn gpio_backend_and_chip() {
    use porter_drivers::gpio::{Backend, GpioSettings};
    let parse = |text: &str, vars: &[(&str, &str)]| Config::from_toml_with_env(text, env(vars));
    // Absent: the character device, its chip found by itself.
    let c = parse(HEAD, &[]).unwrap();
    assert_eq!(c.gpio, GpioSettings { backend: Backend::Cdev, chip: None });
    let c = parse(&format!("{HEAD}[gpio]\nbackend = \"cdev\"\nchip = \"pinctrl-rp1\"\n"), &[]).unwrap();
    assert_eq!(c.gpio, GpioSettings { backend: Backend::Cdev, chip: Some("pinctrl-rp1".into()) });
    let c = parse(HEAD, &[("PORTER_GPIO__BACKEND", "rppal")]).unwrap();
    assert_eq!(c.gpio.backend, Backend::Rppal);

    let errs = errors(&format!("{HEAD}[gpio]\nbackend = \"sysfs\"\nchips = \"gpiochip0\"\n"), &[]);
    assert!(hint(find(&errs, "gpio.backend")).contains("\"cdev\""), "{errs}");
    assert!(find(&errs, "gpio.chips").to_string().contains("chip"), "{errs}");
    let errs = errors(&format!("{HEAD}[gpio]\nbackend = \"rppal\"\nchip = \"gpiochip0\"\n"), &[]);
    assert!(hint(find(&errs, "gpio.chip")).contains("rppal finds"), "{errs}");
    let errs = errors(HEAD, &[("PORTER_GPIO__CHIP", "")]);
    assert!(find(&errs, "gpio.chip").message.contains("(from PORTER_GPIO__CHIP)"), "{errs}");
}

#[test]
fn a_door_names_the_devices_that_receive_its_feedback() {
    let base = &format!(
        r#"{HEAD}
[[doors]]
id = "main"
lock = "relay"
led = "led"
feedback = ["screen"]

[[devices]]
id = "keypad1"
kind = "console"
door = "main"

[[devices]]
id = "relay"
kind = "gpio_relay"
line = 17

[[devices]]
id = "led"
kind = "gpio_relay"
line = 24

[[devices]]
id = "screen"
kind = "exec"
command = "/usr/local/lib/porter/screen"
feedback = true
"#
    );
    let c = Config::from_toml_with_env(base, no_env()).unwrap();
    assert_eq!((c.doors[0].led, &c.doors[0].feedback[..]), (Some(2), &[3][..]));
    assert_eq!(c.devices[3].door, None, "a display only needs no door of its own");

    // An exec program that did not ask for feedback, a plain output, a
    // device that does not exist, one named twice.
    let bad = base
        .replace("feedback = true\n", "")
        .replace("feedback = [\"screen\"]", "feedback = [\"screen\", \"led\", \"tv\", \"screen\"]");
    let errs = Config::from_toml_with_env(&bad, no_env()).unwrap_err();
    let find = |path: &str| errs.0.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("no {path} in {errs}"));
    let e = find("doors[0].feedback[0]");
    assert!(e.message.contains("does not take feedback"), "{errs}");
    assert!(e.hint.as_deref().unwrap().contains("set feedback = true on devices[3]"), "{errs}");
    assert!(find("doors[0].feedback[1]").hint.as_deref().unwrap().contains("use led and buzzer"), "{errs}");
    assert!(find("doors[0].feedback[2]").message.contains("no device with id `tv`"), "{errs}");
    // The exec program named by no door as its feedback now needs a door.
    assert!(find("devices[3].door").message.contains("needs the door it opens"), "{errs}");
}

#[cfg(feature = "osdp")]
#[test]
fn an_osdp_reader_takes_its_own_doors_feedback_unless_it_opts_out() {
    let text = |extra: &str| {
        format!(
            r#"{HEAD}
[[doors]]
id = "main"
lock = "relay"

[[doors]]
id = "side"
lock = "relay2"
feedback = ["side-reader", "front-reader"]

[[devices]]
id = "front-reader"
kind = "osdp"
door = "main"
port = "/dev/rs485"
address = 0
secure = false
{extra}

[[devices]]
id = "side-reader"
kind = "osdp"
door = "side"
port = "/dev/rs485"
address = 1
secure = false

[[devices]]
id = "relay"
kind = "gpio_relay"
line = 17

[[devices]]
id = "relay2"
kind = "gpio_relay"
line = 18
"#
        )
    };
    let c = Config::from_toml_with_env(&text(""), no_env()).unwrap();
    // Unnamed at its own door; named at another door too, once each.
    assert_eq!(c.doors[0].feedback, [0]);
    assert_eq!(c.doors[1].feedback, [1, 0]);
    let c = Config::from_toml_with_env(&text("feedback = false"), no_env()).unwrap();
    assert_eq!(c.doors[0].feedback, Vec::<usize>::new(), "opted out at its own door");
    assert_eq!(c.doors[1].feedback, [1, 0], "a door that names it still reaches it");
}

#[test]
fn home_assistant_is_off_by_default_and_checks_its_doors_and_broker() {
    let c = Config::from_toml_with_env(DEMO_TOML, no_env()).unwrap();
    assert!(!c.home_assistant.enabled);
    assert_eq!(c.home_assistant.discovery_prefix, "homeassistant");
    assert!(c.home_assistant.unlock_doors.is_empty(), "no door may be opened from Home Assistant unless listed");
    let text = format!(
        "{DEMO_TOML}\n[home_assistant]\nenabled = true\nunlock_doors = [\"nope\"]\ndiscovery_prefix = \"ha/#\"\n"
    );
    let errs = errors(&text, &[]);
    assert!(find(&errs, "home_assistant.unlock_doors[0]").message.contains("no door `nope`"), "{errs}");
    assert!(find(&errs, "home_assistant.enabled").message.contains("no [mqtt]"), "{errs}");
    find(&errs, "home_assistant.discovery_prefix");
}
