//! A command as it arrives on MQTT or the admin socket: `command::parse`,
//! then `Op::parse` of its arguments. Properties: no panic; a refusal is an
//! error reply; a parsed command, written out again, parses to the same id,
//! op and argument names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porterd::provision::command::{self, Op, ParseContext};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let cmd = match command::parse(data) {
        Ok(cmd) => cmd,
        Err(reply) => {
            assert_eq!(reply["ok"], Value::Bool(false), "a refusal is an error reply: {reply}");
            assert!(reply["error"]["code"].is_string(), "an error reply has a code: {reply}");
            return;
        }
    };
    let again = serde_json::to_vec(&json!({"id": cmd.id, "op": cmd.op, "args": cmd.args})).unwrap();
    let back = command::parse(&again).expect("a parsed command, written out again, parses");
    assert_eq!(back.id, cmd.id);
    assert_eq!(back.op, cmd.op);
    assert!(back.args.keys().eq(cmd.args.keys()));
    for pin_length in [4, 6, 8] {
        let cx = ParseContext { now_ms: 1_764_720_000_000, pin_length };
        if let Err(e) = Op::parse(&cmd.op, &cmd.args, cx) {
            assert!(!e.message.is_empty(), "an op's refusal says why");
        }
    }
});
