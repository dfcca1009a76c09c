//! Every place that lists the ops lists the same ones as the typed ops
//! (`command::OpName`, whose names are `command::OPS`): docs/ops.md has a
//! heading for each with the arguments the op takes, the unknown-op reply
//! shown in docs/mqtt.md names them all in order, the read-only ops whose
//! replies are not stored are those docs/mqtt.md names, and porterctl's
//! help prints them.

use porterd::provision::command::{Op, OpName, ParseContext, OPS};
use serde_json::{json, Map};

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

/// The arguments an op takes, as its unknown-argument error lists them.
fn takes(op: OpName) -> Vec<String> {
    let cx = ParseContext { now_ms: 0, pin_length: 6 };
    let args: Map<_, _> = json!({"no_such_argument": 1}).as_object().unwrap().clone();
    let e = Op::parse(op.as_str(), &args, cx).unwrap_err().message;
    if e.ends_with("this op takes no arguments") {
        return vec![];
    }
    let list = e.split("this op takes: ").nth(1).unwrap_or_else(|| panic!("{}: {e}", op.as_str()));
    list.split(", ").map(String::from).collect()
}

/// Each heading `op {a, b?}` in docs/ops.md names the arguments the op takes.
#[test]
fn the_headings_in_ops_md_give_each_ops_arguments() {
    let ops = doc("ops.md");
    for op in OpName::ALL {
        let needle = format!("`{} {{", op.as_str());
        let heading = ops
            .lines()
            .filter(|l| l.starts_with("### `"))
            .find_map(|l| l.split(&needle).nth(1))
            .unwrap_or_else(|| panic!("docs/ops.md has no heading `{needle}...}}`"));
        let documented: Vec<String> = heading
            .split('}')
            .next()
            .unwrap()
            .split(',')
            .map(|a| a.trim().trim_end_matches('?').to_string())
            .filter(|a| !a.is_empty())
            .collect();
        let mut want = takes(*op);
        let mut got = documented.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "docs/ops.md's heading for {} lists {documented:?}", op.as_str());
    }
}

#[test]
fn the_unknown_op_reply_in_mqtt_md_lists_every_op() {
    let mqtt = doc("mqtt.md");
    let listed = mqtt.split("ops are: ").nth(1).and_then(|r| r.split('"').next()).expect("an unknown-op reply");
    assert_eq!(listed, OPS.join(", "));
}

#[test]
fn the_reads_whose_replies_mqtt_md_says_are_not_stored_are_the_read_only_ops() {
    let mqtt = doc("mqtt.md");
    let text = mqtt.split("**Replies to reads are not stored** either (").nth(1).expect("the reads' paragraph");
    let listed: Vec<&str> = text.split(')').next().unwrap().split(',').map(|s| s.trim().trim_matches('`')).collect();
    let read_only: Vec<&str> = OpName::ALL.iter().filter(|o| o.read_only()).map(|o| o.as_str()).collect();
    assert_eq!(listed, read_only);
}

#[test]
fn porterctl_help_lists_every_op() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_porterctl")).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains(&format!("Ops: {}\n", OPS.join(", "))), "{help}");
}
