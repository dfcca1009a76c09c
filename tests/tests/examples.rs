//! The example configs run as written. configs/larger-room.toml (a Raspberry
//! Pi, two doors, four OSDP readers on one RS-485 bus, a Modbus relay board)
//! is started by the real porterd with only its paths replaced: its two
//! adapters by socat pty pairs with libosdp's own reader (four addresses on
//! one bus) and pymodbus's Modbus RTU server on the far ends, its data folder
//! and socket by a temporary folder. The GPIO contacts and exit buttons have
//! no chip on this machine: they stay offline, which a door survives. Each
//! reader badged at opens its own door's coil and shows the grant on its LED.
//! (check-config of every example: tests/tests/daemon.rs.)

use porter_tests::peers::{frame_hex, h10301, write_key, Peer, Wire};
use porter_tests::{workspace_root, Daemon};

const OSDP_ADAPTER: &str = "/dev/serial/by-id/usb-FTDI_USB-RS485_Cable_FT0SDP01-if00-port0";
const RELAY_ADAPTER: &str = "/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0";
const KEY: &str = "5e2d8c41a7f03b96d1e4c0a8b27f6e13";
/// (reader id, address, door, the door's relay coil: channel - 1)
const READERS: [(&str, u8, &str, u8); 4] = [
    ("street-outside", 0, "street", 0),
    ("street-inside", 1, "street", 0),
    ("lobby-outside", 2, "lobby", 1),
    ("lobby-inside", 3, "lobby", 1),
];

#[test]
fn the_larger_room_example_opens_each_door_from_each_of_its_readers() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let text = std::fs::read_to_string(workspace_root().join("configs/larger-room.toml")).unwrap();
    for (path, what) in [(OSDP_ADAPTER, "the OSDP adapter"), (RELAY_ADAPTER, "the relay adapter")] {
        assert!(text.contains(path), "the example no longer names {what} {path}");
    }
    let (bus, relay) = (Wire::new(p, "rs485"), Wire::new(p, "relay"));
    let text = text
        .replace(OSDP_ADAPTER, bus.near.to_str().unwrap())
        .replace(RELAY_ADAPTER, relay.near.to_str().unwrap())
        .replace("/var/lib/porter", p.join("data").to_str().unwrap())
        .replace("/run/porter/admin.sock", p.join("admin.sock").to_str().unwrap());
    std::fs::create_dir(p.join("data")).unwrap();
    std::fs::set_permissions(p.join("data"), std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    for (id, ..) in READERS {
        write_key(&p.join(format!("data/osdp-{id}.key")), KEY);
    }
    let cfg = p.join("porter.toml");
    std::fs::write(&cfg, text).unwrap();

    let mut readers = Peer::osdp_reader(
        &bus,
        &["--address", "0", "--address", "1", "--address", "2", "--address", "3", "--scbk", KEY],
    );
    let board = Peer::modbus_relay(&relay, &["--baud", "9600"]);
    let d = Daemon::start(&cfg, &p.join("admin.sock"));
    for (id, ..) in READERS {
        d.log.wait_for(0, &["device health", &format!("device={id}"), "device.online"]);
    }
    // Both strikes were driven locked at the start, through the board.
    for coil in ["\"coil\": 0", "\"coil\": 1"] {
        board.out.wait_for(0, &["\"coil\"", coil, "\"on\": false"]);
    }

    assert_eq!(d.ctl("holder.put", &["holder=staff-ann", "name=Ann", "role=staff"]).0, 0);
    assert_eq!(d.ctl("card.assign", &["holder=staff-ann", "uid=070123"]).0, 0);
    // Each door from its outside readers, then (both locked again at the end
    // of unlock_ms) from its inside readers: every reader drives its own
    // door's coil and no other.
    for round in [[READERS[0], READERS[2]], [READERS[1], READERS[3]]] {
        let on = board.out.len();
        for (id, address, door, coil) in round {
            let (mark, shown) = (d.log.len(), readers.out.len());
            readers.say(&format!("@{address} card {} 26", frame_hex(h10301(7, 0x0123), 26)));
            d.log.wait_for(mark, &["access granted", &format!("device={id}"), &format!("door={door}"), "staff-ann"]);
            board.out.wait_for(on, &["\"coil\"", &format!("\"coil\": {coil}"), "\"on\": true"]);
            // The reader badged at shows the grant: its LED green (OSDP's
            // LED command 2, colour 2).
            readers.out.wait(shown, "a green LED command", |l| {
                serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                    v["ev"] == "command" && v["pd"] == address && v["cmd"]["command"] == 2 && v["cmd"]["on_color"] == 2
                })
            });
        }
        for (.., coil) in round {
            board.out.wait_for(on, &["\"coil\"", &format!("\"coil\": {coil}"), "\"on\": false"]);
        }
    }

    // A courier's PIN on the street door's outside keypad.
    assert_eq!(d.ctl("holder.put", &["holder=courier-ups", "name=UPS", "role=courier"]).0, 0);
    let (code, v) = d.ctl("pin.generate", &["holder=courier-ups"]);
    assert_eq!(code, 0, "{v}");
    let pin = v["result"]["pin"].as_str().unwrap().to_string();
    let (mark, on) = (d.log.len(), board.out.len());
    readers.say(&format!("@0 keys {pin}#"));
    d.log.wait_for(mark, &["access granted", "device=street-outside", "courier-ups"]);
    board.out.wait_for(on, &["\"coil\"", "\"coil\": 0", "\"on\": true"]);
    assert!(!board.out.has(on, &["\"coil\": 1", "\"on\": true"]), "the lobby opened for the street door");
    assert!(!porter_tests::shows_pin(&d.log.text(), &pin), "the PIN reached the log");
    assert!(!d.log.text().contains(KEY), "a reader's key reached the log");
    let (status, _) = d.stop();
    assert!(status.success());
    board.stop();
}
