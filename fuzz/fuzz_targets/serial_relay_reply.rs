//! What a `serial_relay` Modbus board sends back (`modbus_reply`): the first
//! three bytes pick the command (address, coil, on/off), the rest is the
//! reply as read so far (the driver reads at most 8 bytes). Round trip: the
//! encoded command's own echo is accepted, and so is a well-formed exception
//! reply. Properties: no panic; only the exact echo is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porter_drivers::serial::relay::{crc16_modbus, modbus_reply, modbus_write_coil, ModbusReply};

fuzz_target!(|data: &[u8]| {
    let [address, coil, on, reply @ ..] = data else { return };
    let frame = modbus_write_coil(*address, u16::from(*coil), on & 1 == 1);
    let reply = &reply[..reply.len().min(frame.len())];
    match modbus_reply(&frame, reply) {
        ModbusReply::Echo => assert_eq!(reply, frame),
        ModbusReply::Incomplete => assert!(reply.len() < 8),
        ModbusReply::Exception(code) => assert_eq!(code, reply[2]),
        ModbusReply::Mismatch => assert_ne!(reply, frame),
    }
    assert_eq!(modbus_reply(&frame, &frame), ModbusReply::Echo);
    let mut exception = vec![*address, 0x85, *coil];
    exception.extend(crc16_modbus(&exception).to_le_bytes());
    assert_eq!(modbus_reply(&frame, &exception), ModbusReply::Exception(*coil));
});
