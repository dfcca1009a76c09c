//! The room as tables. First its parts (the waits, keypad entry, the
//! lockout count, key uses) each step a time, what happened and what the
//! room answered; then whole flows through [`Room::input`],
//! [`Room::control`] and [`Room::tick`], each step what a person did and
//! the effects, in order, written the way the decision loop carries them
//! out. No store, no threads, no sleeps: time is passed in.

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// Door 0 wants card plus PIN for everyone; door 1 only for staff.
fn room() -> Room {
    let card_pin = CardPinPolicy { doors: vec![true, false], roles: vec![Role::Staff], pin_after_card: WAIT };
    Room::new(vec!["front".into(), "back".into()], Vec::new(), policy(card_pin, LockoutPolicy::default()))
}

/// The policy of the part tables: UTC, couriers and staff enroll for 30 s,
/// an unsynchronised clock denies keys bound by time.
fn policy(card_pin: CardPinPolicy, lockout: LockoutPolicy) -> Policy {
    Policy {
        lockout,
        card_pin,
        tz: chrono_tz::UTC,
        enroll: EnrolPolicy { roles: vec![Role::Courier, Role::Staff], window: Duration::from_secs(30) },
        deny_unsynchronized: true,
    }
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

/// A room of one door and two keypads: device 0 submits on `#`, device 1 also
/// at the PIN's length (6); entries time out after 5 s. Lockout after 3
/// failures for 30 s, doubling to 120 s; 6 failures a day at most.
fn keypads() -> Room {
    let seat = |at_length| Seat {
        keypad: KeypadEntry::new(6, Duration::from_secs(5), at_length),
        lockout: LockoutState::default(),
    };
    let policy = LockoutPolicy { threshold: 3, base_ms: 30_000, max_ms: 120_000, daily_cap: 6 };
    let card_pin = CardPinPolicy { doors: vec![false], roles: Vec::new(), pin_after_card: WAIT };
    let station = |id: &str| Station { id: id.into(), door: Some(0), purpose: Purpose::Credentials };
    let devices = vec![(station("keypad1"), seat(false)), (station("keypad2"), seat(true))];
    Room::new(vec!["main".into()], devices, super::tests::policy(card_pin, policy))
}

/// What a key press produced, as a table reads it.
fn outcome(o: KeyOutcome) -> String {
    let digits = |e: super::super::keypad::Entry| match e.digits() {
        Some(d) => String::from_utf8(d.to_vec()).unwrap(),
        None => "<too long>".into(),
    };
    match o {
        KeyOutcome::Pending => String::new(),
        KeyOutcome::Submit(e) => format!("submit {}", digits(e)),
        KeyOutcome::Enroll(e) => format!("enroll {}", digits(e)),
        KeyOutcome::Cleared => "cleared".into(),
        KeyOutcome::EmptySubmit => "empty".into(),
        KeyOutcome::EnrollArmed => "armed".into(),
    }
}

/// Types `keys` at `device`, one key every `step_ms` from `at_ms`; returns
/// the last key's outcome.
fn typed(r: &mut Room, start: Instant, device: usize, at_ms: u64, step_ms: u64, keys: &str) -> String {
    let mut last = KeyOutcome::Pending;
    for (i, k) in keys.chars().enumerate() {
        last = r.key(device, k, start + Duration::from_millis(at_ms + step_ms * i as u64));
    }
    outcome(last)
}

#[test]
fn keypad_entry() {
    let start = Instant::now();
    let mut r = keypads();
    // (device, start in ms, ms between keys, keys, the last key's outcome)
    let table: &[(usize, u64, u64, &str, &str)] = &[
        (0, 0, 300, "483920#", "submit 483920"),
        (0, 10_000, 300, "12*483920#", "submit 483920"),
        (0, 20_000, 300, "12*", "cleared"),
        (0, 21_000, 300, "#", "empty"),
        // A pause longer than the timeout drops what was typed before.
        (0, 30_000, 100, "999", ""),
        (0, 36_000, 100, "123456#", "submit 123456"),
        // Exactly at the timeout the entry is kept.
        (0, 40_000, 0, "1", ""),
        (0, 45_000, 0, "#", "submit 1"),
        // Submit at length, on the device that wants it only.
        (1, 0, 100, "483920", "submit 483920"),
        (0, 50_000, 100, "483920", ""),
        (0, 51_000, 100, "#", "submit 483920"),
        // `**` starts an enrolment entry; it ends with its entry.
        (0, 60_000, 200, "**", "armed"),
        (0, 61_000, 200, "483920#", "enroll 483920"),
        (0, 63_000, 200, "483920#", "submit 483920"),
        (1, 10_000, 200, "**483920", "enroll 483920"),
        // Star, digit, star is no enrolment; a pause between the stars neither.
        (0, 70_000, 200, "*1*483920#", "submit 483920"),
        (0, 80_000, 0, "*", "cleared"),
        (0, 90_000, 200, "*483920#", "submit 483920"),
        // Too long an entry is kept as too long, never grown.
        (0, 100_000, 10, "12345678901234567890#", "submit <too long>"),
    ];
    for (i, &(device, at_ms, step_ms, keys, want)) in table.iter().enumerate() {
        assert_eq!(typed(&mut r, start, device, at_ms, step_ms, keys), want, "row {i}: {keys:?}");
    }
}

const T0: i64 = 1_795_608_000_000;

/// A failure's count as a table reads it: `deny`, or `deny+30s` with the
/// end of the lockout it engaged in seconds from [`T0`] (`deny+cap` for the
/// daily cap).
fn counted(c: Count) -> String {
    match c {
        Count::Unchanged => "-".into(),
        Count::Persist(s) => format!("persist {}", s.consecutive),
        Count::PersistThenDeny { engaged: None, .. } => "deny".into(),
        Count::PersistThenDeny { engaged: Some(Engaged::Until(t)), state } => {
            assert_eq!(t, state.locked_until_ms);
            format!("deny+{}s", (t - T0) / 1000)
        }
        Count::PersistThenDeny { engaged: Some(Engaged::DailyCap), .. } => "deny+cap".into(),
    }
}

/// A decision counted at a device: (device, seconds from [`T0`], local day,
/// a refusal's reason or `None` for a grant, the count, locked after).
type Counted = (usize, i64, i32, Option<Reason>, &'static str, bool);

#[test]
fn lockout_counts_locks_and_caps_the_day() {
    let mut r = keypads();
    let bad = Some(Reason::Unknown);
    let table: &[Counted] = &[
        (0, 0, 1, None, "-", false),
        (0, 0, 1, bad, "deny", false),
        (0, 0, 1, None, "persist 0", false),
        (0, 0, 1, bad, "deny", false),
        (0, 0, 1, bad, "deny", false),
        (0, 0, 1, bad, "deny+30s", true),
        // Refused by the lockout itself: not counted again.
        (0, 10, 1, Some(Reason::LockedOut), "-", true),
        // The other keypad counts on its own.
        (1, 10, 1, bad, "deny", false),
        // Unlocked at the lockout's end; the next failure doubles it (60 s).
        (0, 30, 1, bad, "deny+90s", true),
        (0, 90, 1, None, "persist 0", false),
        // Five failures so far today: the sixth hits the daily cap, which a
        // grant does not lift, nor the lockout's end.
        (0, 90, 1, bad, "deny+cap", true),
        (0, 90, 1, None, "persist 0", true),
        (0, 80_000, 1, None, "-", true),
        // The next local day lifts it, and starts the counts over.
        (0, 90_000, 2, bad, "deny", false),
    ];
    for (i, &(device, at_s, day, denied, want, locked)) in table.iter().enumerate() {
        let now = T0 + at_s * 1000;
        assert_eq!(counted(r.count(device, denied, now, day)), want, "row {i}");
        assert_eq!(r.is_locked(device, now, day), locked, "row {i}: locked after");
    }
    assert_eq!((r.lockout(0).consecutive, r.lockout(0).day_failures), (1, 1));
}

#[test]
fn clear_unlocks_one_device() {
    let mut r = keypads();
    for d in [0, 1] {
        for _ in 0..3 {
            r.count(d, Some(Reason::Unknown), T0, 1);
        }
    }
    assert!(r.is_locked(0, T0, 1) && r.is_locked(1, T0, 1));
    let state = r.clear_lockout(0);
    assert_eq!(state, LockoutState { day: 1, ..LockoutState::default() }, "the state to persist");
    assert!(!r.is_locked(0, T0, 1));
    assert!(r.is_locked(1, T0, 1), "the other keypad stays locked");
    assert_eq!(counted(r.count(0, Some(Reason::Unknown), T0, 1)), "deny");
}

#[test]
fn a_running_lockout_keeps_its_length_when_the_clock_jumps() {
    let mut r = keypads();
    for _ in 0..3 {
        r.count(0, Some(Reason::Unknown), T0, 1);
    }
    const HOUR: i64 = 3_600_000;
    // An hour forward: the 30 s lockout moves with the clock.
    let now = T0 + HOUR;
    assert_eq!(r.rebase_lockouts(now, HOUR, 1).iter().map(|c| c.0).collect::<Vec<_>>(), [0]);
    assert!(r.is_locked(0, now + 29_999, 1) && !r.is_locked(0, now + 30_000, 1));
    // A year forward and back: it moves both ways, as long as it was.
    let year = 365 * 86_400_000;
    r.rebase_lockouts(now + year, year, 1);
    assert_eq!(r.lockout(0).locked_until_ms, now + year + 30_000);
    r.rebase_lockouts(now, -year, 1);
    assert_eq!(r.lockout(0).locked_until_ms, now + 30_000);
    // Never past the longest lockout from now: a lockout restored on a
    // boot-time clock (1970) does not grow by the whole correction.
    r.rebase_lockouts(now + year, year + 60 * HOUR, 1);
    assert_eq!(r.lockout(0).locked_until_ms, now + year + 120_000);
    r.rebase_lockouts(now, -year, 1);
    // Nothing running, nothing moved: no state to persist.
    let later = now + 10 * HOUR;
    assert_eq!(r.rebase_lockouts(later, HOUR, 1), []);
    // A step back across midnight: the day's counts carry over to today.
    let changed = r.rebase_lockouts(later, -HOUR, 0);
    assert_eq!(changed, [(0, LockoutState { day: 0, ..*r.lockout(0) })]);
    assert_eq!(r.lockout(0).day_failures, 3);
}

#[test]
fn a_limited_keys_use_counts_at_once_and_persists_before_its_lock() {
    let mut r = keypads();
    let (code, other) = (KeyHash([1; KeyHash::LEN]), KeyHash([2; KeyHash::LEN]));
    let once = Limit { uses: Some(1), expires_ms: None, created_ms: T0 };
    let twice = Limit { uses: Some(2), ..once };
    let until = Limit { uses: None, expires_ms: Some(T0 + 60_000), created_ms: T0 };
    // A key of unlimited uses (or only an expiry) unlocks at once, counting nothing.
    assert_eq!(r.grant(other, None, 0), Grant::UnlockNow);
    assert_eq!(r.grant(other, Some(until), 0), Grant::UnlockNow);
    assert_eq!(r.spent(&other, T0), 0);
    // A one-time code: its use counts before the lock is driven, so the
    // second presentation (`decide` refuses `spent >= uses`) sees it.
    assert_eq!(r.grant(code, Some(once), 0), Grant::PersistUseThenUnlock(Used { created_ms: T0, used: 1 }));
    assert_eq!(r.spent(&code, T0), 1);
    // A use that could not be written was no use.
    r.unspend(code, Used { created_ms: T0, used: 1 });
    assert_eq!(r.spent(&code, T0), 0);
    // Two uses, counted one after the other.
    let spent = r.spent(&code, T0);
    assert_eq!(r.grant(code, Some(twice), spent), Grant::PersistUseThenUnlock(Used { created_ms: T0, used: 1 }));
    let spent = r.spent(&code, T0);
    assert_eq!(r.grant(code, Some(twice), spent), Grant::PersistUseThenUnlock(Used { created_ms: T0, used: 2 }));
    // The same key made again is another key: it counts afresh.
    assert_eq!(r.spent(&code, T0 + 1), 0);
    let remade = Limit { created_ms: T0 + 1, ..once };
    assert_eq!(r.grant(code, Some(remade), 0), Grant::PersistUseThenUnlock(Used { created_ms: T0 + 1, used: 1 }));
    // Loaded from disk at start.
    let r = keypads().with_uses([(code, Used { created_ms: T0, used: 1 })].into());
    assert_eq!((r.spent(&code, T0), r.spent(&code, T0 + 1)), (1, 0));
}

/// An enrolment PIN: (the decision's refusal, the holder's role, a limited
/// key, why no window opens, whether it counts towards the lockout).
type EnrolmentRow = (Option<Reason>, Option<Role>, bool, Option<&'static str>, bool);

#[test]
fn an_enrolment_pin_opens_a_window_for_the_roles_that_enroll() {
    let roles = [Role::Courier, Role::Staff];
    let table: &[EnrolmentRow] = &[
        (None, Some(Role::Courier), false, None, true),
        (None, Some(Role::Resident), false, Some("role_not_allowed"), false),
        (None, Some(Role::Courier), true, Some("limited_key"), false),
        (Some(Reason::Unknown), None, false, Some("unknown"), true),
        (Some(Reason::OutsideSchedule), Some(Role::Courier), false, Some("outside_schedule"), true),
        (Some(Reason::LockedOut), None, false, Some("locked_out"), true),
    ];
    for (i, &(denied, role, limited, refused, counts)) in table.iter().enumerate() {
        assert_eq!(EnrolmentPin::decided(denied, role, limited, &roles), EnrolmentPin { refused, counts }, "row {i}");
    }
}

// ---- Whole flows: input, control and time to effects ----

use super::super::hasher::KeyHasher;
use super::super::schedule::Window as Hours;
use super::super::{DoorSet, Holder, KeyEntry, Profile, Snapshot};
use std::sync::Arc;

/// One door, `main`, and its devices: a keypad, a card reader, the door's
/// contact and its exit button.
const KEYPAD: usize = 0;
const READER: usize = 1;
const CONTACT: usize = 2;
const EXIT: usize = 3;

const UPS_PIN: &str = "483920";
const UPS_CARD: &str = "04A1B2C3";
const DHL_PIN: &str = "111111";
const RES_PIN: &str = "222222";
const STAFF_PIN: &str = "333333";
/// A courier's one-time code (one use, made at T0).
const ONCE_PIN: &str = "444444";
/// A courier's PIN valid until a minute after T0: a key bound by time.
const TEMP_PIN: &str = "555555";
/// A courier's PIN for the night only (22:00 to 06:00, local).
const NIGHT_PIN: &str = "666666";

/// The room under test, with its keys and the time it started.
struct Flow {
    room: Room,
    snap: Snapshot,
    hasher: KeyHasher,
    start: Instant,
}

fn profile(id: &str, role: Role) -> Profile {
    Profile {
        id: id.into(),
        role,
        enabled: true,
        doors: DoorSet::All,
        valid_from_ms: None,
        valid_until_ms: None,
        schedule: vec![],
    }
}

/// The room of one door in `tz`, lockout after 3 failures (30 s), the clock
/// synchronised; the keys above.
fn flow_in(tz: chrono_tz::Tz) -> Flow {
    let hasher = KeyHasher::new(b"room-flow-test");
    let mut snap = Snapshot::default();
    let mut key = |p: &Profile, kind: KeyKind, value: &str| {
        let h = hasher.hash(kind, value.as_bytes());
        snap.insert(h, KeyEntry::new(Arc::new(Holder::new(p)), kind, true));
        h
    };
    let ups = profile("courier-ups", Role::Courier);
    key(&ups, KeyKind::Pin, UPS_PIN);
    key(&ups, KeyKind::Card, UPS_CARD);
    key(&profile("courier-dhl", Role::Courier), KeyKind::Pin, DHL_PIN);
    key(&profile("res-12b", Role::Resident), KeyKind::Pin, RES_PIN);
    key(&profile("staff-sue", Role::Staff), KeyKind::Pin, STAFF_PIN);
    let once = key(&profile("courier-once", Role::Courier), KeyKind::Pin, ONCE_PIN);
    let temp = Profile { valid_until_ms: Some(T0 + 60_000), ..profile("courier-temp", Role::Courier) };
    key(&temp, KeyKind::Pin, TEMP_PIN);
    let night = Profile {
        schedule: vec![Hours { days: 0x7f, from: 22 * 60, to: 6 * 60 }],
        ..profile("courier-night", Role::Courier)
    };
    key(&night, KeyKind::Pin, NIGHT_PIN);
    snap.set_limit(once, Some(Limit { uses: Some(1), expires_ms: None, created_ms: T0 }));

    let seat = || Seat { keypad: KeypadEntry::new(6, Duration::from_secs(5), false), lockout: LockoutState::default() };
    let station = |id: &str, purpose| (Station { id: id.into(), door: Some(0), purpose }, seat());
    let devices = vec![
        station("keypad1", Purpose::Credentials),
        station("reader1", Purpose::Credentials),
        station("contact1", Purpose::Contact),
        station("exit1", Purpose::ExitButton),
    ];
    let card_pin = CardPinPolicy { doors: vec![false], roles: Vec::new(), pin_after_card: WAIT };
    let lockout = LockoutPolicy { threshold: 3, base_ms: 30_000, max_ms: 120_000, daily_cap: 10 };
    let policy = Policy { tz, ..policy(card_pin, lockout) };
    let room = Room::new(vec!["main".into()], devices, policy).with_clock(Some(true));
    Flow { room, snap, hasher, start: Instant::now() }
}

fn flow() -> Flow {
    flow_in(chrono_tz::UTC)
}

impl Flow {
    /// `s` seconds after the start, on both clocks (the wall clock at T0).
    fn at(&self, s: u64) -> At {
        At { mono: self.start + Duration::from_secs(s), ms: T0 + s as i64 * 1000 }
    }

    /// Keys typed at the keypad at `s` s: every effect, as a table reads it.
    fn keys(&mut self, s: u64, keys: &str) -> Vec<String> {
        let mut out = Vec::new();
        for k in keys.chars() {
            self.room.input(self.at(s), KEYPAD, Input::Key(k), &self.snap, &self.hasher, &mut out);
        }
        self.show(out)
    }

    /// `input` at `device` at `s` s.
    fn input(&mut self, s: u64, device: usize, input: Input<'_>) -> Vec<String> {
        let mut out = Vec::new();
        self.room.input(self.at(s), device, input, &self.snap, &self.hasher, &mut out);
        self.show(out)
    }

    fn control(&mut self, s: u64, c: Control) -> (Result<Answer, String>, Vec<String>) {
        let mut out = Vec::new();
        let answer = self.room.control(self.at(s), c, &mut out);
        (answer, self.show(out))
    }

    fn tick(&mut self, s: u64) -> Vec<String> {
        let mut out = Vec::new();
        self.room.tick(self.at(s), &mut out);
        self.show(out)
    }

    /// Each effect on a line: the door and device by name (a signal's
    /// device, when an input caused it, after `at`), an event as its JSON on
    /// the wire (before the audit log adds `seq` and `ts`).
    fn show(&self, effects: Vec<Effect>) -> Vec<String> {
        let door = |d: usize| &self.room.doors()[d];
        let dev = |d: usize| &self.room.stations()[d].id;
        let json = |e: &crate::event::Event| serde_json::to_string(e).unwrap();
        effects
            .iter()
            .map(|e| match e {
                Effect::Unlock { door: d } => format!("unlock {}", door(*d)),
                Effect::Signal { door: d, signal, device: None } => format!("{}: {}", door(*d), show_signal(signal)),
                Effect::Signal { door: d, signal, device: Some(i) } => {
                    format!("{}: {} at {}", door(*d), show_signal(signal), dev(*i))
                }
                Effect::Record(e) => json(e),
                Effect::PersistUseThenUnlock { door: d, used, event, .. } => {
                    format!("write use {} then unlock {}: {}", used.used, door(*d), json(event))
                }
                Effect::PersistLockout { device, state: s, then } => {
                    let locked = if s.locked_until_ms > 0 {
                        format!(" until +{}s", (s.locked_until_ms - T0) / 1000)
                    } else {
                        String::new()
                    };
                    let then = match then {
                        Then::Nothing => String::new(),
                        Then::Deny { door: d, reason, lockout: None } => format!(" then {}: Deny {reason}", door(*d)),
                        Then::Deny { door: d, reason, lockout: Some(l) } => {
                            format!(" then {}: Deny {reason}, {}", door(*d), show_signal(l))
                        }
                        Then::Confirm => " then confirm".into(),
                    };
                    format!("write {} lockout {}/{}{locked}{then}", dev(*device), s.consecutive, s.day_failures)
                }
                Effect::AwaitPin { door: d, device, holder, wait } => {
                    format!("{}: await {holder}'s PIN for {}s after {}", door(*d), wait.as_secs(), dev(*device))
                }
                Effect::Enrol { door: d, device, holder } => {
                    format!("{}: enrol the card at {} for {holder}", door(*d), dev(*device))
                }
                Effect::Door { door: d, input } => format!("{}: {input:?}", door(*d)),
            })
            .collect()
    }
}

/// A signal with its details, times in seconds from [`T0`]: `Deny unknown`,
/// `Lockout until +32s`, `EnrollOpen 30s until +30s`.
fn show_signal(s: &Signal) -> String {
    let at = |ms: i64| format!("+{}s", (ms - T0) / 1000);
    match *s {
        Signal::Deny { reason } => format!("Deny {reason}"),
        Signal::Lockout { until_ms: Some(t) } => format!("Lockout until {}", at(t)),
        Signal::Lockout { until_ms: None } => "Lockout until the day ends".into(),
        Signal::EnrollOpen { length, until_ms } => format!("EnrollOpen {}s until {}", length.as_secs(), at(until_ms)),
        Signal::Refused { reason } => format!("Refused {reason}"),
        Signal::PinNeeded { wait, until_ms } => format!("PinNeeded {}s until {}", wait.as_secs(), at(until_ms)),
        other => format!("{other:?}"),
    }
}

/// An event's JSON as the room makes it: `access.granted` at the keypad.
fn granted(holder: &str) -> String {
    format!(r#"{{"type":"access.granted","door":"main","device":"keypad1","key":"pin","holder":"{holder}"}}"#)
}

fn denied(holder: Option<&str>, reason: &str) -> String {
    let holder = holder.map_or("null".into(), |h| format!("\"{h}\""));
    format!(
        r#"{{"type":"access.denied","door":"main","device":"keypad1","key":"pin","holder":{holder},"reason":"{reason}"}}"#
    )
}

#[test]
fn a_pin_unlocks_first_then_records_without_the_secret() {
    let mut f = flow();
    assert_eq!(f.keys(0, "48392"), Vec::<String>::new(), "nothing until it is submitted");
    let effects = f.keys(0, "0#");
    assert_eq!(effects, ["unlock main", "main: Grant at keypad1", &granted("courier-ups")]);
    assert!(!effects.concat().contains(UPS_PIN), "the PIN is in no effect");
}

#[test]
fn failures_persist_before_their_feedback_lock_out_and_clear() {
    let mut f = flow();
    assert_eq!(f.keys(0, "000001#"), ["write keypad1 lockout 1/1 then main: Deny unknown", &denied(None, "unknown")]);
    assert_eq!(f.keys(1, "000002#"), ["write keypad1 lockout 2/2 then main: Deny unknown", &denied(None, "unknown")]);
    let engaged = r#"{"type":"lockout.engaged","door":"main","device":"keypad1","why":"consecutive_failures","until":"2026-11-25T12:00:32.000Z","failures_today":3}"#;
    assert_eq!(
        f.keys(2, "000003#"),
        [
            "write keypad1 lockout 3/3 until +32s then main: Deny unknown, Lockout until +32s",
            &denied(None, "unknown"),
            engaged
        ]
    );
    // Locked out: even the right PIN is refused, not counted, and not hashed.
    assert_eq!(
        f.keys(10, &format!("{UPS_PIN}#")),
        ["main: Lockout until +32s at keypad1", &denied(None, "locked_out")]
    );
    // Another device of the door is not locked out.
    let card = f.input(10, READER, Input::Card(UPS_CARD.as_bytes()));
    assert_eq!(card[0], "unlock main");
    let until = f.room.lockouts(f.at(10));
    assert_eq!(until, [LockedOut { device: "keypad1".into(), until_ms: Some(T0 + 32_000), failures_today: 3 }]);
    // An operator clears it: the state is written (the reply waits for it),
    // then the event.
    let cleared = r#"{"type":"lockout.cleared","device":"keypad1"}"#;
    let (answer, effects) = f.control(11, Control::ClearLockout { device: Some("keypad1".into()) });
    assert_eq!(answer, Ok(Answer::Cleared(vec!["keypad1".into()])));
    assert_eq!(effects, ["write keypad1 lockout 0/0 then confirm", cleared]);
    assert_eq!(f.room.lockouts(f.at(11)), []);
    // A grant after a failure resets the consecutive count; nothing waits on that write.
    f.keys(12, "000004#");
    assert_eq!(
        f.keys(13, &format!("{UPS_PIN}#")),
        ["unlock main", "main: Grant at keypad1", "write keypad1 lockout 0/1", &granted("courier-ups")]
    );
    let (answer, effects) = f.control(14, Control::ClearLockout { device: Some("keypad9".into()) });
    assert_eq!((answer, effects), (Err("no input device `keypad9`".into()), vec![]));
}

#[test]
fn an_enrolment_pin_opens_a_window_and_the_next_card_is_enrolled() {
    let mut f = flow();
    let started = r#"{"type":"enroll.started","door":"main","holder":"courier-ups","until":"2026-11-25T12:00:30.000Z","via":"keypad","device":"keypad1"}"#;
    assert_eq!(f.keys(0, &format!("**{UPS_PIN}#")), [started, "main: EnrollOpen 30s until +30s at keypad1"]);
    // The card is assigned, not decided: no lock, no count.
    let uid = b"04FFFFFF";
    assert_eq!(f.input(5, READER, Input::Card(uid)), ["main: enrol the card at reader1 for courier-ups"]);
    // The window is used up: the same card is now decided (and unknown).
    assert_eq!(
        f.input(6, READER, Input::Card(uid))[1],
        denied(None, "unknown").replace("keypad1", "reader1").replace("pin", "card")
    );
    // A resident's PIN opens no window; nor does a one-time code.
    let refused = |holder: &str, reason: &str| {
        format!(
            r#"{{"type":"enroll.denied","door":"main","device":"keypad1","key":"pin","holder":"{holder}","reason":"{reason}"}}"#
        )
    };
    assert_eq!(
        f.keys(7, &format!("**{RES_PIN}#")),
        ["main: Deny role_not_allowed at keypad1", &refused("res-12b", "role_not_allowed")]
    );
    assert_eq!(
        f.keys(8, &format!("**{ONCE_PIN}#")),
        ["main: Deny limited_key at keypad1", &refused("courier-once", "limited_key")]
    );
    // Neither counts as a failure, nor resets one: a wrong enrolment PIN does count.
    assert_eq!(
        f.keys(9, "**000000#"),
        [
            "write keypad1 lockout 1/1 then main: Deny unknown",
            r#"{"type":"enroll.denied","door":"main","device":"keypad1","key":"pin","holder":null,"reason":"unknown"}"#
        ]
    );
    f.keys(10, &format!("**{RES_PIN}#"));
    assert_eq!(f.room.lockout(KEYPAD).consecutive, 1);
    // A window nobody used closes on time.
    let (answer, effects) = f.control(
        20,
        Control::Enroll { holder: "courier-dhl".into(), door: "main".into(), window: Some(Duration::from_secs(60)) },
    );
    assert_eq!(answer, Ok(Answer::WindowOpen { until_ms: T0 + 80_000, length: Duration::from_secs(60) }));
    assert!(
        effects[0].contains(r#""via":"command""#) && effects[1] == "main: EnrollOpen 60s until +80s",
        "{effects:?}"
    );
    assert_eq!(f.tick(79), Vec::<String>::new());
    assert_eq!(f.tick(80), ["main: Off", r#"{"type":"enroll.expired","door":"main","holder":"courier-dhl"}"#]);
    let (answer, _) = f.control(81, Control::Enroll { holder: "x".into(), door: "side".into(), window: None });
    assert_eq!(answer, Err("no door `side`; doors are: main".into()));
}

#[test]
fn a_one_time_code_writes_its_use_before_its_lock_and_opens_once() {
    let mut f = flow();
    let granted_once = r#"{"type":"access.granted","door":"main","device":"keypad1","key":"pin","holder":"courier-once","uses_left":0}"#;
    assert_eq!(f.keys(0, &format!("{ONCE_PIN}#")), [format!("write use 1 then unlock main: {granted_once}")]);
    assert_eq!(
        f.keys(1, &format!("{ONCE_PIN}#")),
        ["write keypad1 lockout 1/1 then main: Deny expired", &denied(Some("courier-once"), "expired")]
    );
    // A use that could not be written is given back: the code opens again.
    let once = f.hasher.hash(KeyKind::Pin, ONCE_PIN.as_bytes());
    f.room.unspend(once, Used { created_ms: T0, used: 1 });
    // The grant resets the failure count first; nothing waits on that write.
    let again = ["write keypad1 lockout 0/1".to_string(), format!("write use 1 then unlock main: {granted_once}")];
    assert_eq!(f.keys(2, &format!("{ONCE_PIN}#")), again);
}

#[test]
fn card_plus_pin_waits_for_the_holders_pin_and_runs_out() {
    let mut f = flow();
    f.room.set_card_pin(CardPinPolicy { doors: vec![true], roles: Vec::new(), pin_after_card: WAIT });
    let card = |f: &mut Flow, s| f.input(s, READER, Input::Card(UPS_CARD.as_bytes()));
    assert_eq!(card(&mut f, 0), ["main: await courier-ups's PIN for 10s after reader1"]);
    let completed = r#"{"type":"access.granted","door":"main","device":"keypad1","key":"card+pin","holder":"courier-ups","card_device":"reader1"}"#;
    assert_eq!(f.keys(3, &format!("{UPS_PIN}#")), ["unlock main", "main: Grant at keypad1", completed]);
    // Another holder's PIN after the card is refused (and counted).
    card(&mut f, 20);
    assert_eq!(f.keys(21, &format!("{DHL_PIN}#"))[1], denied(Some("courier-dhl"), "pin_mismatch"));
    assert_eq!(f.keys(22, &format!("{UPS_PIN}#"))[1], denied(Some("courier-ups"), "card_required"));
    // No PIN in time: the wait ends on the tick (not a failure: the card was right).
    card(&mut f, 40);
    assert_eq!(f.tick(49), Vec::<String>::new());
    let ran_out = r#"{"type":"access.denied","door":"main","device":"reader1","key":"card","holder":"courier-ups","reason":"pin_required"}"#;
    assert_eq!(f.tick(50), ["main: Deny pin_required", ran_out]);
    // A wait that ran out between ticks is settled before the next key is decided.
    card(&mut f, 60);
    let effects = f.keys(75, &format!("{UPS_PIN}#"));
    assert_eq!(effects[..2], ["main: Deny pin_required".to_string(), ran_out.to_string()]);
    assert_eq!(effects[3], denied(Some("courier-ups"), "card_required"));
    // Three refusals in a row locked the keypad out; an operator clears it.
    assert_eq!(
        f.keys(76, &format!("{UPS_PIN}#")),
        ["main: Lockout until +105s at keypad1", &denied(None, "locked_out")]
    );
    let _ = f.control(77, Control::ClearLockout { device: None });
    // For a role at every door: staff only here.
    f.room.set_card_pin(CardPinPolicy { doors: vec![false], roles: vec![Role::Staff], pin_after_card: WAIT });
    assert_eq!(f.keys(80, &format!("{UPS_PIN}#"))[0], "unlock main");
    assert_eq!(f.keys(81, &format!("{STAFF_PIN}#"))[1], denied(Some("staff-sue"), "card_required"));
}

#[test]
fn an_unsynchronised_clock_denies_keys_bound_by_time_until_it_is_trusted() {
    let mut f = flow();
    assert_eq!(f.keys(0, &format!("{TEMP_PIN}#"))[0], "unlock main");
    let (answer, effects) = f.control(1, Control::ClockTrust(Some(false)));
    assert_eq!((answer, effects), (Ok(Answer::Done), vec![]));
    assert_eq!(f.keys(2, &format!("{TEMP_PIN}#"))[1], denied(Some("courier-temp"), "clock_unsynchronized"));
    // A key not bound by time, and staff's, still open.
    assert_eq!(f.keys(3, &format!("{UPS_PIN}#"))[0], "unlock main");
    assert_eq!(f.keys(4, &format!("{STAFF_PIN}#"))[0], "unlock main");
    // Unreadable counts as not synchronised.
    let _ = f.control(5, Control::ClockTrust(None));
    assert_eq!(f.keys(6, &format!("{TEMP_PIN}#"))[1], denied(Some("courier-temp"), "clock_unsynchronized"));
    let _ = f.control(7, Control::ClockTrust(Some(true)));
    assert_eq!(f.keys(8, &format!("{TEMP_PIN}#"))[0], "unlock main");
}

#[test]
fn a_clock_jump_moves_a_running_lockout_and_writes_it() {
    let mut f = flow();
    for s in 0..3 {
        f.keys(s, "000000#");
    }
    const HOUR: i64 = 3_600_000;
    let jumped = At { ms: f.at(3).ms + HOUR, ..f.at(3) };
    let mut out = Vec::new();
    f.room.control(jumped, Control::ClockJumped { by_ms: HOUR }, &mut out).unwrap();
    assert_eq!(f.show(out), ["write keypad1 lockout 3/3 until +3632s"]);
    assert!(f.room.is_locked(KEYPAD, T0 + HOUR + 31_999, f.room.lockout(KEYPAD).day));
}

#[test]
fn schedules_are_local_time_across_daylight_saving() {
    let mut f = flow_in("America/New_York".parse().unwrap());
    let at_utc = |f: &Flow, rfc: &str| At {
        ms: chrono::DateTime::parse_from_rfc3339(rfc).unwrap().timestamp_millis(),
        ..f.at(0)
    };
    let night = |f: &mut Flow, rfc: &str| {
        let mut out = Vec::new();
        for k in format!("{NIGHT_PIN}#").chars() {
            f.room.input(at_utc(f, rfc), KEYPAD, Input::Key(k), &f.snap, &f.hasher, &mut out);
        }
        f.show(out).iter().any(|e| e == "unlock main")
    };
    // 2026-03-08 04:30Z is 23:30 EST on Saturday: inside 22:00 to 06:00.
    assert!(night(&mut f, "2026-03-08T04:30:00Z"));
    // 10:30Z is 06:30 EDT (the clocks went forward at 02:00): outside,
    // though an hour earlier in UTC terms it would have been 05:30 EST.
    assert!(!night(&mut f, "2026-03-08T10:30:00Z"));
    assert!(night(&mut f, "2026-03-08T09:30:00Z"), "05:30 EDT");
    // In autumn 2026-11-01 10:30Z is 05:30 EST (the clocks went back): inside.
    assert!(night(&mut f, "2026-11-01T10:30:00Z"));
    assert!(!night(&mut f, "2026-11-01T11:30:00Z"), "06:30 EST");
}

#[test]
fn levels_go_to_the_door_and_a_readers_level_to_nothing() {
    let mut f = flow();
    assert_eq!(f.input(0, CONTACT, Input::Level(true)), ["main: Contact(true)"]);
    assert_eq!(f.input(1, CONTACT, Input::Level(false)), ["main: Contact(false)"]);
    assert_eq!(f.input(2, EXIT, Input::Level(true)), ["main: Exit"]);
    assert_eq!(f.input(3, EXIT, Input::Level(false)), Vec::<String>::new());
    assert_eq!(f.input(4, READER, Input::Level(true)), Vec::<String>::new());
    assert_eq!(f.input(5, 99, Input::Level(true)), Vec::<String>::new(), "an unknown device");
}

#[test]
fn the_daily_caps_lockout_ends_with_the_day_and_its_feedback_says_so() {
    let mut f = flow();
    // Two failures, then a grant (which resets the run, not the day's count).
    for i in 0..9u64 {
        let effects = f.keys(3 * i, "000001#");
        assert_eq!(effects[0], format!("write keypad1 lockout {}/{} then main: Deny unknown", i % 2 + 1, i + 1));
        if i % 2 == 1 {
            f.keys(3 * i + 1, &format!("{UPS_PIN}#"));
        }
    }
    let effects = f.keys(30, "000001#");
    assert_eq!(effects[0], "write keypad1 lockout 2/10 then main: Deny unknown, Lockout until the day ends");
    assert!(effects[2].contains(r#""why":"daily_cap""#), "{effects:?}");
    assert_eq!(
        f.keys(31, &format!("{UPS_PIN}#")),
        ["main: Lockout until the day ends at keypad1", &denied(None, "locked_out")]
    );
}
