//! Every place that lists the ops lists the same ones as the dispatcher
//! (`command::OPS`): docs/ops.md has a heading for each, the unknown-op
//! reply shown in docs/mqtt.md names them all in order, and porterctl's
//! help prints them.

use porterd::provision::command::OPS;

fn doc(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(name)).unwrap()
}

#[test]
fn every_op_has_its_heading_in_ops_md() {
    let ops = doc("ops.md");
    let headings: Vec<&str> = ops.lines().filter(|l| l.starts_with("### `")).collect();
    for op in OPS {
        assert!(
            headings.iter().any(|h| h.contains(&format!("`{op} {{")) || h.contains(&format!("`{op}`"))),
            "docs/ops.md has no heading for `{op}`"
        );
    }
}

#[test]
fn the_unknown_op_reply_in_mqtt_md_lists_every_op() {
    let mqtt = doc("mqtt.md");
    let listed = mqtt.split("ops are: ").nth(1).and_then(|r| r.split('"').next()).expect("an unknown-op reply");
    assert_eq!(listed, OPS.join(", "));
}

#[test]
fn porterctl_help_lists_every_op() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_porterctl")).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains(&format!("Ops: {}\n", OPS.join(", "))), "{help}");
}
