//! The daemon's parts, each started by one function that returns the
//! [`Component`] holding its tasks: the doors, the watchers, the decision
//! loop, the inputs, the admin socket, MQTT and the systemd watchdog.
//! [`super::run_with_clock`] starts them in order and hands them to a
//! [`super::component::Shutdown`] in the order they stop.

use super::clock::{self, Clock, Trust};
use super::component::Component;
use super::decisions::{self, ControlMsg, DecisionLoop, DeviceState, HealthMap};
use super::doors::{self, DoorHandle};
use super::{feedback, snapshots, storage_watch, systemd, StorageState};
use crate::access::keypad::KeypadEntry;
use crate::audit::Audit;
use crate::config::Config;
use crate::provision::{admin, mqtt, Control, KeyService};
use crate::store::{recover, Store};
use porter_drivers::{supervise, Backoff, DeviceReport, InputSink, Role};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Every door's task (its lock output, contact and indicators), each lock
/// output taken from `driven` where the start already drove it locked.
pub async fn doors(
    cfg: &Config,
    driven: &mut [doors::Driven],
    audit: &Audit,
    clock: &Arc<dyn Clock>,
) -> (Vec<DoorHandle>, Component) {
    let mut part = Component::new("doors");
    let mut handles = Vec::new();
    let events = doors::DoorEvents::new(audit.clone(), clock.clone(), cfg.doors.len());
    for (i, d) in cfg.doors.iter().enumerate() {
        let dev = &cfg.devices[d.lock];
        let (out, locked) = match driven.get_mut(i).and_then(Option::take) {
            Some((out, locked)) => (out, locked),
            None => (dev.kind.output_driver(&dev.id).expect("config guarantees locks are outputs"), false),
        };
        let mut indicators = Vec::new();
        for (line, idx) in [(feedback::Line::Led, d.led), (feedback::Line::Buzzer, d.buzzer)] {
            let Some(dev) = idx.map(|i| &cfg.devices[i]) else { continue };
            let out = dev.kind.output_driver(&dev.id).expect("config guarantees indicators are outputs");
            let (tx, t) = feedback::start(dev.id.clone(), line, out, part.token());
            indicators.push(tx);
            part.push(t);
        }
        let receivers: Vec<_> =
            d.feedback.iter().filter_map(|&i| cfg.devices[i].kind.feedback_receiver(&cfg.devices[i].id)).collect();
        if !receivers.is_empty() {
            let ids = cfg.devices.iter().map(|d| d.id.clone()).collect();
            let (tx, t) = feedback::start_receivers(d.id.clone(), d.unlock, ids, receivers, part.token());
            indicators.push(tx);
            part.push(t);
        }
        let setup = doors::DoorSetup {
            id: d.id.clone(),
            unlock: d.unlock,
            held_open: d.held_open,
            relock_on_close: d.relock_on_close,
            index: i,
        };
        let (h, t) = doors::start(setup, out, locked, indicators, events.clone(), part.token()).await;
        handles.push(h);
        part.push(t);
    }
    (handles, part)
}

/// The watchers of the store's disk, the snapshots and the clock (whose
/// jumps reach the decision loop on `control`).
#[allow(clippy::too_many_arguments)]
pub fn watchers(
    cfg: &Config,
    svc: &Arc<KeyService>,
    audit: &Audit,
    clock: &Arc<dyn Clock>,
    trust: &Arc<Trust>,
    storage: &Arc<StorageState>,
    control: mpsc::Sender<ControlMsg>,
) -> Component {
    let mut part = Component::new("watchers");
    let store = svc.store().clone();
    part.spawn(storage_watch(
        store,
        cfg.data_dir.clone(),
        cfg.store.low_space,
        audit.clone(),
        clock.clone(),
        storage.clone(),
        part.token(),
    ));
    part.spawn(snapshots(svc.clone(), cfg.data_dir.clone(), cfg.store.snapshots, clock.clone(), part.token()));
    let news = move |news| {
        let msg = match news {
            clock::News::Trust(s) => ControlMsg::ClockTrust(s),
            clock::News::Jumped(by_ms) => ControlMsg::ClockJumped { by_ms },
        };
        let _ = control.try_send(msg);
    };
    part.spawn(clock::watch(
        cfg.clock.source.clone(),
        cfg.clock.unsynchronized,
        trust.clone(),
        clock.clone(),
        audit.clone(),
        news,
        part.token(),
    ));
    part
}

/// Each input device's state: its keypad entry and its lockout, restored
/// from the store (a lockout still in force is said in the log).
fn device_states(cfg: &Config, store: &Store, clock: &Arc<dyn Clock>) -> Vec<DeviceState> {
    let device_ids: Vec<String> = cfg.devices.iter().map(|d| d.id.clone()).collect();
    let mut lockouts = decisions::load_lockouts(store, &device_ids);
    let (_, today) = clock::local(cfg.timezone, clock.now_ms());
    // A state written on a later day (the clock set back since, or it ran
    // ahead then): its counts carry over to today, and end at midnight.
    lockouts.iter_mut().for_each(|l| l.rebase(today));
    for (id, l) in device_ids.iter().zip(&lockouts) {
        if l.is_locked(&cfg.lockout, clock.now_ms(), today) {
            let until = if l.locked_until_ms > clock.now_ms() {
                crate::store::records::rfc3339(l.locked_until_ms)
            } else {
                "the end of the local day".into()
            };
            tracing::warn!(device = %id, %until, failures_today = l.day_failures, "lockout restored from before the restart (porterctl lockout.clear lifts it)");
        }
    }
    cfg.devices
        .iter()
        .zip(lockouts)
        .map(|(d, lockout)| DeviceState {
            id: d.id.clone(),
            door: d.door.map(|i| i as u8),
            purpose: d.purpose,
            keypad: KeypadEntry::new(cfg.keys.pin_length, cfg.keypad.entry_timeout, cfg.keypad.submit_at_length),
            lockout,
        })
        .collect()
}

/// Every input device `unknown` until its driver says otherwise.
pub fn health(cfg: &Config) -> HealthMap {
    let health = HealthMap::default();
    if let Ok(mut h) = health.lock() {
        for d in cfg.devices.iter().filter(|d| d.kind.role() == Role::Input) {
            h.insert(d.id.clone(), "unknown");
        }
    }
    health
}

/// What the decision loop is given besides its config.
pub struct DecisionInputs {
    pub hasher: crate::store::secret::KeyHasher,
    pub doors: Vec<DoorHandle>,
    pub health: HealthMap,
    pub trust: Arc<Trust>,
    pub reports: mpsc::Receiver<DeviceReport>,
    pub control: mpsc::Receiver<ControlMsg>,
    pub latency: Arc<super::latency::Latency>,
}

/// The decision loop and the enroller it hands cards to. Stopping cancels
/// the loop; the enroller ends once the loop (its only job sender) has,
/// after the assignment it may be writing.
pub fn decisions(
    cfg: &Config,
    svc: &Arc<KeyService>,
    audit: &Audit,
    clock: &Arc<dyn Clock>,
    i: DecisionInputs,
) -> Component {
    let mut part = Component::new("decisions");
    let (enroll_tx, enroll_rx) = mpsc::channel(16);
    let signal_doors = i.doors.clone();
    let device_ids: Vec<String> = cfg.devices.iter().map(|d| d.id.clone()).collect();
    let signal = move |door: &str, device: &str, outcome: super::enroll::Outcome| {
        if let Some(d) = signal_doors.iter().find(|d| d.id == door) {
            let signal = match outcome {
                super::enroll::Outcome::Enrolled => feedback::Signal::Enrolled,
                super::enroll::Outcome::Refused(reason) => feedback::Signal::Refused { reason },
            };
            d.signal(signal, device_ids.iter().position(|id| id == device));
        }
    };
    let enroller = tokio::spawn(super::enroll::run(svc.clone(), audit.clone(), clock.clone(), enroll_rx, signal));
    let store = svc.store();
    let parts = decisions::Parts {
        live: svc.live(),
        hasher: i.hasher,
        devices: device_states(cfg, store, clock),
        doors: i.doors,
        clock: clock.clone(),
        audit: audit.clone(),
        health: i.health,
        enroller: enroll_tx,
        synchronized: i.trust.synchronized(),
        uses: decisions::load_uses(store),
        latency: i.latency,
    };
    let decision_loop = DecisionLoop::new(parts, decisions::policy(cfg));
    part.spawn(decision_loop.run(i.reports, i.control, part.token()));
    part.push(enroller);
    part
}

/// The supervised input drivers, reporting to the decision loop: those that
/// read only, and those that also drive a door's output (an `exec` program
/// taking lock commands), which stop only after the doors have locked so
/// their program hears the final "locked".
pub fn inputs(cfg: &Config, reports: mpsc::Sender<DeviceReport>) -> (Component, Component) {
    let (mut inputs, mut door_inputs) = (Component::new("inputs"), Component::new("inputs driving doors"));
    let drives_a_door = |i: usize| cfg.doors.iter().any(|d| [Some(d.lock), d.led, d.buzzer].contains(&Some(i)));
    for (i, d) in cfg.devices.iter().enumerate() {
        if d.kind.role() != Role::Input {
            continue;
        }
        let Some(driver) = d.kind.input_driver(&d.id) else { continue };
        let sink = InputSink::new(i, reports.clone());
        let part = if drives_a_door(i) { &mut door_inputs } else { &mut inputs };
        let (id, cancel) = (d.id.clone(), part.token());
        part.spawn(async move { supervise(&id, driver, sink, cancel, Backoff::default()).await });
    }
    (inputs, door_inputs)
}

/// The admin socket, as a task of `part` (it stops with the inputs). Failing
/// to bind it is loud but not fatal: the room must keep deciding access.
/// Returns whether it listens.
pub fn admin(cfg: &Config, svc: &Arc<KeyService>, ctl: &Arc<dyn Control>, part: &mut Component) -> bool {
    match admin::bind(&cfg.admin.socket) {
        Ok(bound) => {
            part.spawn(admin::serve(bound, svc.clone(), ctl.clone(), cfg.admin.idle_timeout, part.token()));
            true
        }
        Err(e) => {
            tracing::error!(socket = %cfg.admin.socket.display(), error = %e, "cannot open the admin socket; porterctl will not reach this daemon (fix admin.socket or its folder's permissions)");
            false
        }
    }
}

/// The MQTT session, when `[mqtt]` is set and its files load. A broken
/// `[mqtt]` file (a missing CA or password file) must not stop the room:
/// say so loudly and run standalone. check-config reports it too.
pub fn mqtt(cfg: &Config, deps: impl FnOnce() -> mqtt::Deps) -> Component {
    let mut part = Component::new("mqtt");
    let Some(m) = &cfg.mqtt else { return part };
    let topics = mqtt::Topics::new(&cfg.site, &cfg.controller);
    match mqtt::options(m, &topics) {
        Ok(opts) => part.spawn(mqtt::run(opts, topics, deps(), part.token())),
        Err(e) => tracing::error!(error = %e, "MQTT cannot start; running standalone until fixed and restarted"),
    }
    part
}

/// The signature policy of MQTT commands (`mqtt.require_signed`,
/// `mqtt.portal_keys`): expiry is checked only while the clock is known to
/// be synchronised.
pub fn signed(
    cfg: &Config,
    store: &crate::store::Store,
    trust: &Arc<Trust>,
    clock: &Arc<dyn Clock>,
) -> Arc<crate::provision::signed::Guard> {
    let topics = mqtt::Topics::new(&cfg.site, &cfg.controller);
    let (keys, require) = cfg.mqtt.as_ref().map_or((&[][..], false), |m| (&m.portal_keys[..], m.require_signed));
    let (trust, clock) = (trust.clone(), clock.clone());
    Arc::new(crate::provision::signed::Guard::new(
        keys,
        require,
        (&topics.cmd, &topics.all_cmd),
        store.clone(),
        Arc::new(move || trust.synchronized() == Some(true)),
        Arc::new(move || clock.now_ms()),
    ))
}

/// What the status document reports, read when it is published.
pub fn status(
    cfg: &Config,
    svc: &Arc<KeyService>,
    health: &HealthMap,
    trust: &Arc<Trust>,
    storage: &Arc<StorageState>,
    latency: &Arc<super::latency::Latency>,
    identity: &crate::store::identity::Identity,
) -> Arc<dyn Fn() -> crate::provision::status::Status + Send + Sync> {
    use crate::provision::status::{ClockStatus, Status, StorageStatus};
    use std::sync::atomic::Ordering::Relaxed;
    let started = std::time::Instant::now();
    let (svc, health, storage, trust) = (svc.clone(), health.clone(), storage.clone(), trust.clone());
    let latency = latency.clone();
    let unsynchronized = cfg.clock.unsynchronized;
    let identity = identity.public();
    Arc::new(move || {
        // Counts kept as the set changes: a scan of 100,000 holders here
        // would hold up the MQTT session for a third of a second.
        // Generation and counts in one value, of the same committed set.
        let crate::provision::keys::Summary { generation, counts: c } = svc.summary();
        let store = svc.store();
        let num = |k: &[u8]| store.counter(k).unwrap_or(0);
        Status {
            cards: c.cards,
            clock: ClockStatus { synchronized: trust.synchronized(), unsynchronized: unsynchronized.as_str() },
            decision_latency: latency.figures(),
            devices: health.lock().ok().map(|h| h.clone()),
            generation,
            holders: c.holders,
            identity: identity.clone(),
            outbox: num(crate::store::records::SEQ).saturating_sub(num(crate::store::records::EVENTS_ACKED)),
            pins: c.pins,
            qr: c.qr,
            state: None,
            storage: StorageStatus { free_mb: storage.free_mb.load(Relaxed), low: storage.low.load(Relaxed) },
            // After a recovery, until the portal's next full sync.
            store: if recover::needs_sync(store) { "needs_sync" } else { "ok" },
            uptime_s: started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION"),
        }
    })
}

/// Home Assistant discovery's part of the MQTT session: the config's
/// doors and their views (`None` without doors).
pub fn home_assistant(cfg: &Config, doors: &[DoorHandle]) -> Option<crate::provision::mqtt::HaDeps> {
    use crate::provision::home_assistant::{Discovery, HaDoor};
    let views = doors.first()?.views.clone();
    let ha_doors = cfg.doors.iter().map(|d| HaDoor { id: d.id.clone(), has_contact: d.contact.is_some() }).collect();
    let discovery = Discovery::new(cfg.home_assistant.clone(), &cfg.site, &cfg.controller, ha_doors);
    Some(crate::provision::mqtt::HaDeps { discovery: Arc::new(discovery), views })
}

/// Feeds systemd's watchdog for as long as the decision loop answers a
/// ping on `control` (when the unit asks for a watchdog).
pub fn watchdog(notifier: &systemd::Notifier, control: mpsc::Sender<ControlMsg>) -> Component {
    let mut part = Component::new("watchdog");
    let Some(every) = systemd::watchdog_interval().filter(|_| notifier.enabled()) else { return part };
    let (notifier, cancel) = (notifier.clone(), part.token());
    tracing::info!(interval_ms = every.as_millis() as u64, "systemd watchdog on");
    part.spawn(async move {
        let mut tick = tokio::time::interval(every / 2);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (tx, rx) = oneshot::channel();
            let alive = control.try_send(ControlMsg::Ping { reply: tx }).is_ok()
                && tokio::time::timeout(every / 4, rx).await.is_ok_and(|r| r.is_ok());
            if alive {
                notifier.notify("WATCHDOG=1");
            } else {
                tracing::error!("the decision loop did not answer: not feeding the systemd watchdog");
            }
        }
    });
    part
}
