//! The room's waits as tables: each step is a time in seconds from the
//! start, what happened, and what the room answered.

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// Door 0 wants card plus PIN for everyone; door 1 only for staff.
fn room() -> Room {
    Room::new(2, CardPinPolicy { doors: vec![true, false], roles: vec![Role::Staff], pin_after_card: WAIT })
}

/// A key presented at `door` from `device`, decided for `holder` with
/// `reason` (`None`: granted).
struct Key {
    at_s: u64,
    door: usize,
    device: usize,
    kind: KeyKind,
    holder: Option<(&'static str, Role)>,
    reason: Option<Reason>,
    want: CardPin,
}

fn run(table: &[Key]) {
    let start = Instant::now();
    let mut r = room();
    for (i, k) in table.iter().enumerate() {
        let now = start + Duration::from_secs(k.at_s);
        let got = r.card_plus_pin(k.door, k.device, k.kind, k.holder, k.reason, now);
        assert_eq!(got, k.want, "step {i}");
    }
}

const ANN: Option<(&str, Role)> = Some(("ann", Role::Courier));
const BOB: Option<(&str, Role)> = Some(("bob", Role::Courier));
const STAFF: Option<(&str, Role)> = Some(("sue", Role::Staff));

fn key(at_s: u64, kind: KeyKind, holder: Option<(&'static str, Role)>, want: CardPin) -> Key {
    Key { at_s, door: 0, device: if kind == KeyKind::Card { 1 } else { 0 }, kind, holder, reason: None, want }
}

#[test]
fn card_then_the_holders_pin_opens() {
    run(&[
        key(0, KeyKind::Card, ANN, CardPin::Wait(WAIT)),
        key(3, KeyKind::Pin, ANN, CardPin::Completed { card_device: 1 }),
        // The wait is used up: a PIN alone wants its card again.
        key(4, KeyKind::Pin, ANN, CardPin::Refused(Reason::CardRequired)),
    ]);
}

#[test]
fn a_pin_without_a_card_a_qr_and_another_holders_pin_are_refused() {
    run(&[
        key(0, KeyKind::Pin, ANN, CardPin::Refused(Reason::CardRequired)),
        key(0, KeyKind::Qr, ANN, CardPin::Refused(Reason::CardRequired)),
        key(1, KeyKind::Card, ANN, CardPin::Wait(WAIT)),
        key(2, KeyKind::Pin, BOB, CardPin::Refused(Reason::PinMismatch)),
        // The mismatch ended the wait.
        key(3, KeyKind::Pin, ANN, CardPin::Refused(Reason::CardRequired)),
    ]);
}

#[test]
fn a_pin_after_the_wait_is_refused() {
    run(&[
        key(0, KeyKind::Card, ANN, CardPin::Wait(WAIT)),
        key(10, KeyKind::Pin, ANN, CardPin::Refused(Reason::CardRequired)),
    ]);
}

#[test]
fn a_refused_pin_ends_the_wait_but_a_locked_out_keypad_does_not() {
    let mut wrong = key(2, KeyKind::Pin, None, CardPin::NotRequired);
    wrong.reason = Some(Reason::Unknown);
    let mut locked = key(1, KeyKind::Pin, None, CardPin::NotRequired);
    locked.reason = Some(Reason::LockedOut);
    run(&[
        key(0, KeyKind::Card, ANN, CardPin::Wait(WAIT)),
        locked,
        key(1, KeyKind::Pin, ANN, CardPin::Completed { card_device: 1 }),
        key(1, KeyKind::Card, ANN, CardPin::Wait(WAIT)),
        wrong,
        key(3, KeyKind::Pin, ANN, CardPin::Refused(Reason::CardRequired)),
    ]);
}

#[test]
fn a_refused_card_does_not_wait() {
    let mut expired = key(0, KeyKind::Card, ANN, CardPin::NotRequired);
    expired.reason = Some(Reason::Expired);
    run(&[expired, key(1, KeyKind::Pin, ANN, CardPin::Refused(Reason::CardRequired))]);
}

#[test]
fn a_role_wants_card_plus_pin_at_every_door() {
    let at_1 = |k: Key| Key { door: 1, ..k };
    run(&[
        at_1(key(0, KeyKind::Pin, ANN, CardPin::NotRequired)),
        at_1(key(0, KeyKind::Card, ANN, CardPin::NotRequired)),
        at_1(key(0, KeyKind::Pin, STAFF, CardPin::Refused(Reason::CardRequired))),
        at_1(key(1, KeyKind::Card, STAFF, CardPin::Wait(WAIT))),
        at_1(key(2, KeyKind::Pin, STAFF, CardPin::Completed { card_device: 1 })),
    ]);
}

#[test]
fn waits_and_windows_run_out_on_time() {
    let start = Instant::now();
    let s = |n: u64| start + Duration::from_secs(n);
    let mut r = room();
    assert_eq!(r.next_deadline(), None);
    r.open_window(1, "ann".into(), Duration::from_secs(30), s(0));
    assert_eq!(r.card_plus_pin(0, 3, KeyKind::Card, ANN, None, s(5)), CardPin::Wait(WAIT));
    assert_eq!(r.next_deadline(), Some(s(15)));
    assert_eq!(r.expire_pending(s(14)), []);
    let ended = r.expire_pending(s(15));
    assert_eq!(ended.len(), 1);
    assert_eq!((ended[0].0, ended[0].1.holder.as_str(), ended[0].1.device), (0, "ann", 3));
    assert_eq!(r.pending(0), None);
    assert_eq!(r.next_deadline(), Some(s(30)));
    assert_eq!(r.expire_windows(s(29)), []);
    assert_eq!(r.expire_windows(s(30)), [(1, "ann".to_string())]);
    assert_eq!((r.window(1), r.next_deadline()), (None, None));
}

#[test]
fn a_card_in_an_open_window_takes_it_once() {
    let start = Instant::now();
    let s = |n: u64| start + Duration::from_secs(n);
    let mut r = room();
    r.open_window(0, "ann".into(), Duration::from_secs(30), s(0));
    // A new window replaces the open one.
    r.open_window(0, "bob".into(), Duration::from_secs(30), s(1));
    assert_eq!(r.take_window(1, s(2)), None, "another door's card");
    assert_eq!(r.take_window(0, s(2)), Some("bob".to_string()));
    assert_eq!(r.take_window(0, s(3)), None, "the window is closed");
    // A window whose time is up catches no card; it stays for
    // `expire_windows`, which reports it (`enroll.expired`).
    r.open_window(0, "ann".into(), Duration::from_secs(30), s(10));
    assert_eq!(r.take_window(0, s(40)), None);
    assert_eq!(r.expire_windows(s(40)), [(0, "ann".to_string())]);
}
