//! The decision path never allocates: `ArcSwap::load()` then `decide()`, for a
//! grant and for every deny reason, over a snapshot of 10,000 holders.
//!
//! Also recording a grant's latency (`runtime::latency`), which the decision
//! loop does after the lock command.
//!
//! A counting global allocator wraps the system one. Counts are per thread
//! (a thread-local switched on only around the measured region), so the test
//! harness's other threads cannot add to them.

// Implementing `GlobalAlloc` needs `unsafe impl` and unsafe calls into
// `System`; the workspace denies unsafe code, so it is allowed here, in this
// test binary only. The impl only forwards to `System` and bumps counters.
#![allow(unsafe_code)]

use arc_swap::ArcSwap;
use porterd::access::schedule::{LocalTime, Window};
use porterd::access::{decide, DoorSet, Holder, KeyEntry, KeyHash, KeyKind, Profile, Reason, Request, Role, Snapshot};
use porterd::store::secret::KeyHasher;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct Counting;

thread_local! {
    // Const-initialised `Cell`s of `Copy` types: no lazy initialisation and
    // no destructor, so touching them from the allocator cannot recurse.
    static ON: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static FREES: Cell<usize> = const { Cell::new(0) };
}

fn bump(c: &'static std::thread::LocalKey<Cell<usize>>) {
    // `try_with`: the allocator may run while this thread's locals are torn down.
    if ON.try_with(Cell::get).unwrap_or(false) {
        let _ = c.try_with(|n| n.set(n.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(&ALLOCS);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump(&ALLOCS);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(&ALLOCS);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        bump(&FREES);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and frees made by this thread while running `f`.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    allocs: usize,
    frees: usize,
}

fn measure<R>(f: impl FnOnce() -> R) -> (R, Counts) {
    ALLOCS.with(|n| n.set(0));
    FREES.with(|n| n.set(0));
    ON.with(|on| on.set(true));
    let r = f();
    ON.with(|on| on.set(false));
    (r, Counts { allocs: ALLOCS.with(Cell::get), frees: FREES.with(Cell::get) })
}

const NONE: Counts = Counts { allocs: 0, frees: 0 };
const HOLDERS: usize = 10_000;
/// 2026-06-01T12:00:00Z.
const NOW_MS: i64 = 1_780_315_200_000;
const DAY_MS: i64 = 86_400_000;
/// Monday 12:00 local.
const MONDAY_NOON: LocalTime = LocalTime { weekday: 0, minute: 12 * 60 };

fn holder(id: usize) -> Profile {
    Profile {
        id: format!("holder-{id:05}"),
        role: Role::ALL[id % 4],
        enabled: true,
        doors: DoorSet::All,
        valid_from_ms: None,
        valid_until_ms: None,
        schedule: Vec::new(),
    }
}

/// One request per outcome, and the outcome each must get.
struct Case {
    req: Request,
    want: Option<Reason>,
}

/// 10,000 holders with a mix of schedules, door masks and validity dates,
/// each with a PIN and some with a QR code or a card, plus the holders the
/// cases below present.
fn fixture(hasher: &KeyHasher) -> (Snapshot, Vec<Case>) {
    let mut snap = Snapshot::default();
    let mut add = |h: Profile, kind: KeyKind, value: &[u8], active: bool| {
        let key = hasher.hash(kind, value);
        snap.insert(key, KeyEntry::new(Arc::new(Holder::new(&h)), kind, active));
        // As provisioning does: most keys end in the flat map, the latest
        // in the overlay, so both lookups are measured.
        snap.maybe_compact();
        key
    };
    for i in 0..HOLDERS {
        let mut h = holder(i);
        if i % 3 == 0 {
            h.schedule = vec![
                Window { days: 0x1f, from: 7 * 60, to: 21 * 60 },
                Window { days: 0x60, from: 22 * 60, to: 6 * 60 },
            ];
        }
        if i % 4 == 0 {
            h.doors = DoorSet::Mask(0b101);
        }
        if i % 5 == 0 {
            h.valid_from_ms = Some(NOW_MS - 10 * DAY_MS);
            h.valid_until_ms = Some(NOW_MS + 10 * DAY_MS);
        }
        add(h.clone(), KeyKind::Pin, format!("{:06}", 100_000 + i).as_bytes(), true);
        if i % 7 == 0 {
            add(h.clone(), KeyKind::Qr, format!("qr-{i}").as_bytes(), true);
        }
        if i % 11 == 0 {
            add(h, KeyKind::Card, &(i as u64).to_be_bytes(), true);
        }
    }

    // Granted with every check in play: dates, a door mask and a schedule.
    let mut full = holder(90_001);
    full.doors = DoorSet::Mask(0b10);
    full.valid_from_ms = Some(NOW_MS - DAY_MS);
    full.valid_until_ms = Some(NOW_MS + DAY_MS);
    full.schedule =
        vec![Window { days: 0x60, from: 8 * 60, to: 18 * 60 }, Window { days: 0x01, from: 11 * 60, to: 13 * 60 }];
    let grant_full = add(full.clone(), KeyKind::Pin, b"900001", true);
    let grant_plain = add(holder(90_002), KeyKind::Card, b"\x04\x11\x22\x33", true);
    let inactive = add(holder(90_003), KeyKind::Qr, b"inactive-qr", false);
    let disabled = add(Profile { enabled: false, ..holder(90_004) }, KeyKind::Pin, b"900004", true);
    let not_yet = add(Profile { valid_from_ms: Some(NOW_MS + 1), ..holder(90_005) }, KeyKind::Pin, b"900005", true);
    let expired = add(Profile { valid_until_ms: Some(NOW_MS), ..holder(90_006) }, KeyKind::Pin, b"900006", true);
    let outside = add(
        Profile { schedule: vec![Window { days: 0x7f, from: 22 * 60, to: 6 * 60 }; 8], ..holder(90_007) },
        KeyKind::Pin,
        b"900007",
        true,
    );
    let wrong_door = add(Profile { doors: DoorSet::Mask(0b1), ..full }, KeyKind::Pin, b"900008", true);
    let unknown = hasher.hash(KeyKind::Pin, b"999999");

    let req = |kind, key, door| Request {
        door,
        device: 3,
        kind,
        key,
        now_ms: NOW_MS,
        local: MONDAY_NOON,
        device_locked: false,
        clock_untrusted: false,
        spent: 0,
    };
    let cases = vec![
        Case { req: req(KeyKind::Pin, grant_full, 1), want: None },
        Case { req: req(KeyKind::Card, grant_plain, 0), want: None },
        Case { req: req(KeyKind::Pin, unknown, 1), want: Some(Reason::Unknown) },
        // A known hash presented as the wrong kind is refused as unknown.
        Case { req: req(KeyKind::Qr, grant_full, 1), want: Some(Reason::Unknown) },
        Case { req: req(KeyKind::Qr, inactive, 1), want: Some(Reason::Inactive) },
        Case { req: req(KeyKind::Pin, disabled, 1), want: Some(Reason::HolderDisabled) },
        Case { req: req(KeyKind::Pin, not_yet, 1), want: Some(Reason::NotYetValid) },
        Case { req: req(KeyKind::Pin, expired, 1), want: Some(Reason::Expired) },
        Case { req: req(KeyKind::Pin, outside, 1), want: Some(Reason::OutsideSchedule) },
        Case { req: req(KeyKind::Pin, wrong_door, 1), want: Some(Reason::WrongDoor) },
        Case {
            req: Request { device_locked: true, ..req(KeyKind::Pin, grant_full, 1) },
            want: Some(Reason::LockedOut),
        },
    ];
    (snap, cases)
}

const ROUNDS: usize = 5_000;

#[test]
fn the_decision_path_never_allocates() {
    let hasher = KeyHasher::new(b"no-alloc-test-device-secret-0123");
    let (snap, cases) = fixture(&hasher);
    assert!(snap.pending() > 0 && snap.pending() < snap.len(), "both the flat map and the overlay hold keys");
    assert!(snap.len() > HOLDERS);
    let live = ArcSwap::from_pointee(snap);

    // Every case gets its outcome (checked outside any measured region).
    // This first load also warms arc-swap: a thread's first `load()` takes a
    // debt-list node, one allocation per thread for the thread's lifetime
    // (nodes are reused after the thread ends); later loads allocate nothing.
    {
        let snap = live.load();
        for c in &cases {
            assert_eq!(decide(&snap, &c.req).reason(), c.want, "{:?}", c.req.key);
        }
    }
    let reasons = [
        Reason::Unknown,
        Reason::Inactive,
        Reason::HolderDisabled,
        Reason::NotYetValid,
        Reason::Expired,
        Reason::OutsideSchedule,
        Reason::WrongDoor,
        Reason::LockedOut,
    ];
    for r in reasons {
        assert!(cases.iter().any(|c| c.want == Some(r)), "no case for {}", r.as_str());
    }

    // The measured region: what the decision loop does per presented key,
    // `live.load()` then `decide()`, thousands of times for each outcome.
    // Tallies go into a fixed array so nothing in the region needs the heap.
    let (tally, counts) = measure(|| {
        let mut tally = [[0u32; 2]; 16];
        for _ in 0..ROUNDS {
            for (i, c) in cases.iter().enumerate() {
                let snap = live.load();
                let d = decide(black_box(&snap), black_box(&c.req));
                tally[i][usize::from(d.reason() == c.want)] += 1;
                black_box(d);
            }
        }
        tally
    });
    assert_eq!(counts, NONE, "ArcSwap::load() + decide() allocated or freed");
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(tally[i], [0, ROUNDS as u32], "case {i} ({:?}) got another outcome", c.want);
    }

    // decide() alone, on the snapshot borrowed once.
    let snap = live.load_full();
    let (_, counts) = measure(|| {
        for _ in 0..ROUNDS {
            for c in &cases {
                black_box(decide(black_box(&snap), black_box(&c.req)));
            }
        }
    });
    assert_eq!(counts, NONE, "decide() allocated or freed");

    // The steps before, in the decision loop's `present`: the local time in
    // the site's zone and the keyed hash of what was presented.
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let (_, counts) = measure(|| {
        for i in 0..ROUNDS as u32 {
            black_box(porterd::runtime::clock::local(tz, black_box(NOW_MS + i64::from(i) * 60_000)));
            let digits = [b'0' + (i % 10) as u8, b'1', b'2', b'9', b'4', b'7'];
            black_box(hasher.hash(KeyKind::Pin, black_box(&digits)));
            black_box(hasher.hash(KeyKind::Card, black_box(&i.to_le_bytes())));
        }
    });
    assert_eq!(counts, NONE, "clock::local or KeyHasher::hash allocated or freed");
}

/// The room's part of an unlimited grant, from the first key pressed to the
/// lock's command: keypad entry up to its submission, the lockout check,
/// the keyed hash, `decide`, card plus PIN where it is not wanted, and the
/// grant of an unlimited key ([`Effect::Unlock`], the first effect). Nothing
/// allocates before the lock command; the event built after it may.
#[test]
fn the_rooms_unlimited_grant_path_never_allocates_before_the_lock() {
    use porterd::access::keypad::KeypadEntry;
    use porterd::access::lockout::{LockoutPolicy, LockoutState};
    use porterd::access::room::{
        At, CardPinPolicy, Effect, EnrolPolicy, Input, Policy, Purpose, Room, Seat, Sink, Station,
    };
    use std::time::{Duration, Instant};

    /// Reads the counts when the lock gets its command, then stops counting.
    struct UntilUnlock(Option<Counts>);
    impl Sink for UntilUnlock {
        fn effect(&mut self, e: Effect) -> bool {
            if matches!(e, Effect::Unlock { .. }) && self.0.is_none() {
                self.0 = Some(Counts { allocs: ALLOCS.with(Cell::get), frees: FREES.with(Cell::get) });
                ON.with(|on| on.set(false));
            }
            true
        }
    }

    let seat = Seat { keypad: KeypadEntry::new(6, Duration::from_secs(5), false), lockout: LockoutState::default() };
    let station = Station { id: "keypad1".into(), door: Some(0), purpose: Purpose::Credentials };
    let policy = Policy {
        lockout: LockoutPolicy::default(),
        card_pin: CardPinPolicy {
            doors: vec![false],
            roles: vec![Role::Staff],
            pin_after_card: Duration::from_secs(10),
        },
        tz: "Europe/Berlin".parse().unwrap(),
        enroll: EnrolPolicy { roles: vec![Role::Courier], window: Duration::from_secs(30) },
        deny_unsynchronized: true,
    };
    let mut room = Room::new(vec!["main".into()], vec![(station, seat)], policy).with_clock(Some(true));
    let hasher = KeyHasher::new(b"no-alloc-room");
    let mut snap = Snapshot::default();
    let courier = Profile { role: Role::Courier, ..holder(1) };
    snap.insert(
        hasher.hash(KeyKind::Pin, b"483920"),
        KeyEntry::new(Arc::new(Holder::new(&courier)), KeyKind::Pin, true),
    );
    let start = Instant::now();
    let mut unlocked = 0;
    for i in 0..ROUNDS as u64 {
        let at = At { mono: start + Duration::from_secs(i), ms: NOW_MS + i as i64 };
        let mut sink = UntilUnlock(None);
        let (_, rest) = measure(|| {
            for k in "483920#".chars() {
                room.input(at, 0, Input::Key(black_box(k)), &snap, &hasher, &mut sink);
            }
        });
        let before = sink.0.expect("the PIN unlocks");
        assert_eq!(before, NONE, "round {i}: the room allocated or freed before the lock's command");
        assert_eq!(rest, NONE, "counting stopped at the lock's command");
        unlocked += 1;
    }
    assert_eq!(unlocked, ROUNDS);
}

/// The counter is not vacuous: an allocation in the measured region counts,
/// and only this thread's allocations count.
#[test]
fn the_counter_sees_allocations() {
    let (v, counts) = measure(|| black_box(Vec::<u8>::with_capacity(1)));
    assert_eq!(counts, Counts { allocs: 1, frees: 0 });
    drop(v);

    // Growing counts as an allocation (realloc), dropping as a free.
    let (_, counts) = measure(|| drop(black_box(String::from("x")) + "yz"));
    assert_eq!(counts, Counts { allocs: 2, frees: 1 });

    // A snapshot change in the region (what provisioning does) is counted.
    let live = ArcSwap::from_pointee(Snapshot::default());
    let (_, counts) = measure(|| {
        let mut s = Snapshot::clone(&live.load());
        s.insert(KeyHash([7; KeyHash::LEN]), KeyEntry::new(Arc::new(Holder::new(&holder(1))), KeyKind::Pin, true));
        live.store(Arc::new(s));
    });
    assert!(counts.allocs > 0, "{counts:?}");

    // Another thread allocating all the while adds nothing to this one's count.
    let stop = Arc::new(AtomicBool::new(false));
    let noisy = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += black_box(vec![1u8; 64]).len();
            }
            n
        })
    };
    let (_, counts) = measure(|| {
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::spin_loop();
        }
    });
    stop.store(true, Ordering::Relaxed);
    assert!(noisy.join().unwrap() > 0);
    assert_eq!(counts, NONE);
}

/// Recording a grant's latency, on the decision path, allocates nothing;
/// reading the figures (off the path, for the status) may.
#[test]
fn recording_a_grants_latency_does_not_allocate() {
    let latency = porterd::runtime::latency::Latency::default();
    let arrived = std::time::Instant::now();
    let (_, counts) = measure(|| {
        for _ in 0..2 * porterd::runtime::latency::WINDOW {
            latency.record(black_box(arrived));
        }
    });
    assert_eq!(counts, NONE);
    assert_eq!(latency.figures().grants, porterd::runtime::latency::WINDOW as u64);
}
