//! What the Debian package installs, checked from the source tree: the udev
//! rules parse as udev reads them, and the systemd unit lets the daemon open
//! every device class the rules give it. (scripts/package-test.sh installs
//! and runs the package itself.)

use porter_tests::workspace_root;

/// `KEY=="value"`, `KEY+="value"`, `ATTRS{x}=="value"`, ... as udev takes them.
fn parse_rule(line: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    for part in line.split(", ") {
        let op = ["==", "!=", "+=", ":=", "="]
            .iter()
            .find(|op| part.contains(*op))
            .ok_or_else(|| format!("no operator in `{part}`"))?;
        let (key, value) = part.split_once(op).unwrap();
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || "_{}".contains(c)) || key.is_empty() {
            return Err(format!("bad key `{key}`"));
        }
        let value =
            value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).ok_or_else(|| format!("unquoted `{value}`"))?;
        out.push((key.to_string(), op.to_string(), value.to_string()));
    }
    Ok(out)
}

#[test]
fn the_udev_rules_parse_and_name_devices_under_dev_porter() {
    let text = std::fs::read_to_string(workspace_root().join("udev/60-porter.rules")).unwrap();
    let mut names = 0;
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#')) {
        let rule = parse_rule(line).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1));
        assert!(
            rule.iter().any(|(k, op, _)| (k == "SUBSYSTEM" || k == "KERNEL") && op == "=="),
            "line {}: matches nothing",
            n + 1
        );
        for (k, op, v) in &rule {
            match k.as_str() {
                "ATTRS{idVendor}" | "ATTRS{idProduct}" => {
                    assert!(
                        v.len() == 4 && v.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                        "line {}: id `{v}`",
                        n + 1
                    )
                }
                "SYMLINK" => {
                    assert_eq!(op, "+=", "line {}: SYMLINK must add, not replace", n + 1);
                    assert!(v.starts_with("porter/"), "line {}: a name outside /dev/porter/", n + 1);
                    names += 1;
                }
                "GROUP" => {
                    assert_eq!(v, "porter", "line {}", n + 1);
                    assert_eq!(op, ":=", "line {}: a later rule could take the device back", n + 1);
                }
                "MODE" => assert_eq!(v, "0660", "line {}", n + 1),
                _ => {}
            }
        }
    }
    assert!(names >= 5, "stable names for common devices");
}

#[test]
fn the_unit_allows_the_devices_the_udev_rules_give_porter() {
    let unit = std::fs::read_to_string(workspace_root().join("packaging/porterd.service")).unwrap();
    let allowed: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("DeviceAllow=")).collect();
    for class in ["char-ttyUSB", "char-ttyACM", "char-gpiochip", "/dev/gpiomem", "char-input", "char-hidraw"] {
        assert!(allowed.iter().any(|a| a.starts_with(class)), "DeviceAllow lacks {class}: {allowed:?}");
    }
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "ExecStartPre=/usr/bin/porterd check-config",
        "User=porter",
        "ProtectSystem=strict",
        "DevicePolicy=closed",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "the unit lacks {line}");
    }
    assert!(!unit.lines().any(|l| l.starts_with("PrivateDevices=yes")), "PrivateDevices hides the devices");
}
