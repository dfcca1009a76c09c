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
    Room::with_devices(1, card_pin, vec![seat(false), seat(true)], policy)
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
    assert_eq!(r.clock_jumped(now, HOUR, 1).iter().map(|c| c.0).collect::<Vec<_>>(), [0]);
    assert!(r.is_locked(0, now + 29_999, 1) && !r.is_locked(0, now + 30_000, 1));
    // A year forward and back: it moves both ways, as long as it was.
    let year = 365 * 86_400_000;
    r.clock_jumped(now + year, year, 1);
    assert_eq!(r.lockout(0).locked_until_ms, now + year + 30_000);
    r.clock_jumped(now, -year, 1);
    assert_eq!(r.lockout(0).locked_until_ms, now + 30_000);
    // Never past the longest lockout from now: a lockout restored on a
    // boot-time clock (1970) does not grow by the whole correction.
    r.clock_jumped(now + year, year + 60 * HOUR, 1);
    assert_eq!(r.lockout(0).locked_until_ms, now + year + 120_000);
    r.clock_jumped(now, -year, 1);
    // Nothing running, nothing moved: no state to persist.
    let later = now + 10 * HOUR;
    assert_eq!(r.clock_jumped(later, HOUR, 1), []);
    // A step back across midnight: the day's counts carry over to today.
    let changed = r.clock_jumped(later, -HOUR, 0);
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
