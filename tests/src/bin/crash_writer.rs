//! A test tool for the crash test: applies key operations to a store through
//! the real KeyService and prints one line per operation *after* it returned
//! done. The test kills it with SIGKILL at a random moment and then checks
//! that every printed operation survived.
//!
//! `crash_writer DATA_DIR START` — holders are named h<START>, h<START+1>, ...
//! Lines: `holder ID`, `pin ID PIN`, `card ID UID`, `delete ID`.
//! (PINs are printed because this is a test tool working on throwaway data.)

use porter_drivers::CardUid;
use porterd::access::Role;
use porterd::provision::keys::{HolderSpec, KeyService};
use porterd::store::{recover, secret};
use std::io::Write;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("DATA_DIR"));
    let start: u64 = args.next().expect("START").parse().expect("START is a number");
    let key = secret::load_or_create(&dir.join("device.key"), true).expect("secret");
    // Opened as porterd opens it: checked against its record, which every
    // change then keeps current. A kill must never make it look damaged.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let store = recover::open(&dir, 4 << 20, recover::OnDamage::Refuse, recover::Restore::Restrictive, now)
        .unwrap_or_else(|e| panic!("store: {e}"))
        .store;
    let svc = KeyService::open(store, secret::KeyHasher::new(&key), vec!["main".into()], 6).expect("keys");
    let out = std::io::stdout();
    let mut out = out.lock();
    for i in start.. {
        let id = format!("h{i}");
        svc.holder_put(HolderSpec::new(&id, &id, Role::Courier)).expect("holder.put");
        writeln!(out, "holder {id}").unwrap();
        out.flush().unwrap();
        let pin = svc.pin_generate(&id).expect("pin.generate");
        writeln!(out, "pin {id} {pin}").unwrap();
        out.flush().unwrap();
        let uid = format!("{:08x}", i.wrapping_mul(0x9E37_79B9) as u32 | 1);
        svc.card_assign(&id, &CardUid::parse_hex(&uid).unwrap()).expect("card.assign");
        writeln!(out, "card {id} {uid}").unwrap();
        out.flush().unwrap();
        if i % 7 == 3 {
            svc.holder_delete(&id).expect("holder.delete");
            writeln!(out, "delete {id}").unwrap();
            out.flush().unwrap();
        }
    }
}
