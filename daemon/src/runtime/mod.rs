//! Wiring: open the store, drive every lock to its safe state, start the
//! doors, the audit writer, the decision loop, the input drivers under
//! supervision and the admin socket; on shutdown undo it in order.
//!
//! - [`doors`]: one task per door owning its lock.
//! - [`decisions`]: the decision loop.
//! - [`audit`]: the audit log, its writer thread and the event bus.
//! - [`clock`]: the injectable wall clock and local time.
//!
//! Shutdown order (one grace period for all of it): stop the admin socket and
//! the input drivers, let the decision loop finish what is queued, relock
//! every door, let the audit writer write what is queued, flush the store.

// The audit log sits below runtime and provision (both record and read
// events); this path stays for the code that names it here.
pub use crate::audit;
pub mod clock;
pub mod component;
pub mod decisions;
pub mod doors;
pub mod enroll;
pub mod feedback;
pub mod latency;
mod parts;
pub mod systemd;

use crate::config::Config;
use crate::event::Event;
use crate::provision::command::{Cleared, Lockout, Unlocked, WindowOpen};
use crate::provision::{admin, mqtt, Control, ErrorCode, KeyService, OpError};
use crate::store::identity::{self, Identity};
use crate::store::{recover, secret, Store};
use clock::{Clock, SystemClock};
use decisions::ControlMsg;
use doors::DoorHandle;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How long shutdown may take before the process gives up waiting.
pub const GRACE: Duration = Duration::from_secs(10);
/// Reports queued from all devices to the decision loop.
const REPORT_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    // Not a `source`: the message already includes it, once.
    #[error("cannot open the store in {dir}: {err}")]
    Store { dir: String, err: crate::store::StoreError },
    #[error(transparent)]
    Open(#[from] recover::OpenError),
    #[error("cannot load the keys: {0}")]
    Keys(OpError),
    #[error("cannot start the audit writer: {0}")]
    Audit(std::io::Error),
    #[error(transparent)]
    Unsafe(#[from] crate::ownership::Unsafe),
    #[error("the admin socket {0} is answered by another running porterd; stop that one, or give this one its own admin.socket (and data_dir)")]
    AdminInUse(String),
}

/// What `door.unlock`, `lockout.clear` and `identity` reach.
struct RuntimeControl {
    doors: Vec<DoorHandle>,
    control: mpsc::Sender<ControlMsg>,
    audit: audit::Audit,
    clock: Arc<dyn Clock>,
    /// The controller's key pair, or why its file cannot be used.
    identity: Result<Arc<Identity>, String>,
}

impl Control for RuntimeControl {
    fn unlock(&self, door: &str, ms: Option<u64>) -> Result<Unlocked, OpError> {
        self.unlock_by(door, ms, "command")
    }

    fn unlock_by(&self, door: &str, ms: Option<u64>, by: &'static str) -> Result<Unlocked, OpError> {
        let d = self.doors.iter().find(|d| d.id == door).ok_or_else(|| {
            let ids: Vec<&str> = self.doors.iter().map(|d| d.id.as_str()).collect();
            OpError::not_found(format!("no door `{door}`; doors are: {}", ids.join(", ")))
        })?;
        let dur = ms.map(Duration::from_millis).unwrap_or(d.unlock);
        if !d.open(dur) {
            return Err(OpError::internal("the door's command queue is full; try again"));
        }
        tracing::info!(door, ms = dur.as_millis() as u64, by, "door unlocked by command");
        let event = Event::DoorUnlocked { door: door.to_string(), ms: dur.as_millis() as u64, by };
        self.audit.record(audit::Draft { ts_ms: self.clock.now_ms(), event });
        Ok(Unlocked { door: door.to_string(), ms: dur.as_millis() as u64 })
    }

    fn clear_lockout(&self, device: Option<&str>) -> Result<Cleared, OpError> {
        let (tx, rx) = oneshot::channel();
        self.control
            .blocking_send(ControlMsg::ClearLockout { device: device.map(String::from), reply: tx })
            .map_err(|_| OpError::internal("the decision loop is stopping"))?;
        match rx.blocking_recv() {
            Ok(Ok(cleared)) => {
                let mut ids = Vec::new();
                // `ok` means on disk, as for every other op.
                for (id, durable) in cleared {
                    durable
                        .blocking_recv()
                        .map_err(|_| OpError::internal(format!("the cleared lockout of `{id}` could not be saved")))?;
                    ids.push(id);
                }
                Ok(Cleared { cleared: ids })
            }
            Ok(Err(msg)) => Err(OpError::new(ErrorCode::NotFound, msg)),
            Err(_) => Err(OpError::internal("the decision loop is stopping")),
        }
    }

    fn identity(&self) -> Result<identity::PublicIdentity, OpError> {
        self.identity.as_ref().map(|id| id.public()).map_err(|e| OpError::internal(e.clone()))
    }

    fn lockouts(&self) -> Result<Vec<Lockout>, OpError> {
        let (tx, rx) = oneshot::channel();
        self.control
            .blocking_send(ControlMsg::Lockouts { reply: tx })
            .map_err(|_| OpError::internal("the decision loop is stopping"))?;
        let locked = rx.blocking_recv().map_err(|_| OpError::internal("the decision loop is stopping"))?;
        Ok(locked
            .into_iter()
            .map(|l| Lockout {
                device: l.device,
                until: l.until_ms.map(crate::store::records::rfc3339),
                failures_today: l.failures_today,
            })
            .collect())
    }

    fn enroll(&self, holder: &str, door: &str, window: Option<Duration>) -> Result<WindowOpen, OpError> {
        let (tx, rx) = oneshot::channel();
        let msg = ControlMsg::Enroll { holder: holder.into(), door: door.into(), window, reply: tx };
        self.control.blocking_send(msg).map_err(|_| OpError::internal("the decision loop is stopping"))?;
        match rx.blocking_recv() {
            Ok(Ok((until_ms, window))) => Ok(WindowOpen {
                holder: holder.to_string(),
                door: door.to_string(),
                timeout_s: window.as_secs(),
                until: crate::store::records::rfc3339(until_ms),
            }),
            Ok(Err(msg)) => Err(OpError::new(ErrorCode::NotFound, msg)),
            Err(_) => Err(OpError::internal("the decision loop is stopping")),
        }
    }
}

/// Seeds the demo's courier on an empty store and says how to try it.
fn seed_demo(svc: &KeyService, cfg: &Config) -> Result<(), OpError> {
    let sock = cfg.admin.socket.display();
    // From a cargo checkout, porterctl is not on PATH: say how to run it there.
    let in_cargo = std::env::current_exe().is_ok_and(|p| p.components().any(|c| c.as_os_str() == "target"));
    let ctl = if in_cargo { "cargo run -p porterd --bin porterctl --" } else { "porterctl" };
    let n = cfg.lockout.threshold;
    if svc.state()?.holders > 0 {
        // PINs are shown once; on a later start say how to get a new one.
        let make = if svc.holder_get("courier-ups").is_ok() {
            String::new()
        } else {
            format!("{ctl} --socket {sock} holder.put holder=courier-ups name=UPS role=courier, then ")
        };
        println!(
            "\nPorter demo: the store in {} already has holders, so no PIN is shown again.\n\
             New PIN: {make}{ctl} --socket {sock} pin.generate holder=courier-ups (or delete {} to start over)\n",
            cfg.data_dir.display(),
            cfg.data_dir.display()
        );
        return Ok(());
    }
    svc.holder_put(crate::provision::keys::HolderSpec::new("courier-ups", "UPS", crate::access::Role::Courier))?;
    let pin = svc.pin_generate("courier-ups")?;
    let door = cfg.doors.first().map(|d| d.id.as_str()).unwrap_or("main");
    // Printed once, to the terminal of whoever started the demo; never logged.
    println!(
        "\nPorter demo: courier `courier-ups` (UPS) has PIN {pin}.\n\
         Type {pin}# and press Enter to open door `{door}`; {n} wrong PINs in a row engage the lockout.\n\
         Other keys: card:<hex uid>, qr:<token>. Admin: {ctl} --socket {sock} state.get\n"
    );
    Ok(())
}

/// What a start opens before its doors: the store, the keyed hasher, the key
/// service and the audit writer (doors record what their contacts see).
struct Opened {
    store: Store,
    hasher: secret::KeyHasher,
    identity: Result<Arc<Identity>, String>,
    svc: Arc<KeyService>,
    audit: audit::Audit,
    audit_thread: std::thread::JoinHandle<()>,
    recovery: Option<recover::Recovery>,
    gap: Option<recover::Gap>,
}

/// Makes `data_dir` (the daemon's user and group only: it holds holder
/// names and the event log) and takes its lock, held for as long as the
/// returned file is open. Another porterd on this data_dir holds it: then
/// the start stops before it drives that daemon's locks.
fn lock_data_dir(cfg: &Config) -> Result<std::fs::File, StartError> {
    use crate::ownership::{check_dir, euid, DATA_DIR, SOCKET_DIR};
    use std::os::unix::fs::DirBuilderExt;
    // The folders above it first: a folder another user may write could
    // hold their data_dir in place of ours.
    crate::ownership::check_ancestors(&DATA_DIR, &cfg.data_dir, euid())?;
    let _ = std::fs::DirBuilder::new().recursive(true).mode(0o750).create(&cfg.data_dir);
    // Before anything in it is opened: a folder another user may write
    // could already hold their store, snapshot or secret.
    check_dir(&DATA_DIR, &cfg.data_dir, euid())?;
    if let Some(dir) = cfg.admin.socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        check_dir(&SOCKET_DIR, dir, euid())?;
    }
    let path = cfg.data_dir.join("porterd.lock");
    let store_err = |err| StartError::Store { dir: cfg.data_dir.join("store").display().to_string(), err };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| store_err(crate::store::StoreError::Sled(sled_io(e))))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(store_err(crate::store::StoreError::Locked { path: cfg.data_dir.join("store").display().to_string() }))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(store_err(crate::store::StoreError::Sled(sled_io(e)))),
    }
}

fn sled_io(e: std::io::Error) -> sled::Error {
    sled::Error::Io(e)
}

/// Below this much free space at start the reserve is released first, so
/// that the store and its record can be opened and written.
const START_FREE_MIN: u64 = 4 << 20;

fn open_state(cfg: &Config, clock: &Arc<dyn Clock>) -> Result<Opened, StartError> {
    let now_ms = clock.now_ms();
    let s = &cfg.store;
    let reserve = crate::store::space::Reserve::new(&cfg.data_dir, s.reserve);
    if crate::store::space::free(&cfg.data_dir).is_ok_and(|(free, _)| free < START_FREE_MIN) && reserve.release() {
        tracing::error!(data_dir = %cfg.data_dir.display(), "the disk of data_dir is full: the storage reserve is released so the daemon can start; free space (docs/ops.md, \"A full disk\")");
    }
    let identity = open_identity(cfg);
    let opened = recover::open(&cfg.data_dir, s.cache_capacity, s.on_damage, s.restore, now_ms)?;
    opened.store.attach_reserve(reserve);
    match open_keys(cfg, opened.store.clone(), clock) {
        Ok((hasher, svc)) => finish_open(cfg, opened, hasher, svc, identity),
        // A record that does not decode: the store is damaged after all.
        Err(StartError::Keys(e)) if e.code == ErrorCode::Internal && e.message.contains("corrupt record") => {
            let damage = crate::store::check::Damage { kind: "unreadable", detail: e.message.clone() };
            let opened = recover::recover_after(
                opened.store,
                &cfg.data_dir,
                s.cache_capacity,
                s.on_damage,
                s.restore,
                damage,
                now_ms,
            )?;
            let (hasher, svc) = open_keys(cfg, opened.store.clone(), clock)?;
            finish_open(cfg, opened, hasher, svc, identity)
        }
        Err(e) => Err(e),
    }
}

/// The controller's key pair: made at the first start; refused when its
/// file is linked, loose, another user's or damaged (portals pin it, so it
/// is never replaced). A refused key stops MQTT, not the room: the error is
/// logged with what to do, and `identity` answers it.
fn open_identity(cfg: &Config) -> Result<Arc<Identity>, String> {
    identity::load_or_create("identity_file", &cfg.identity_file).map(Arc::new).map_err(|e| {
        let mqtt =
            if cfg.mqtt.is_some() { "; MQTT cannot start: running standalone until fixed and restarted" } else { "" };
        tracing::error!(error = %e, "the controller's identity key cannot be used{mqtt}");
        e.to_string()
    })
}

fn open_keys(
    cfg: &Config,
    store: Store,
    clock: &Arc<dyn Clock>,
) -> Result<(secret::KeyHasher, Arc<KeyService>), StartError> {
    // A new secret would silently invalidate every stored key and tombstone:
    // make one only for a store that holds none and has never checked one.
    let empty = {
        use crate::store::records::{Space, SECRET_CHECK, TOMBSTONE};
        [Space::A, Space::B].iter().all(|s| store.scan(&s.keys()).next().is_none())
            && store.scan(TOMBSTONE).next().is_none()
            && store.get(SECRET_CHECK).ok().flatten().is_none()
    };
    let secret = secret::load_or_create(&cfg.secret_file, empty)?;
    let hasher = secret::KeyHasher::new(&secret);
    drop(secret);
    secret::check(&store, &hasher, &cfg.secret_file)?;
    let door_ids: Vec<String> = cfg.doors.iter().map(|d| d.id.clone()).collect();
    let svc = Arc::new(
        KeyService::open_with_roles(store, hasher.clone(), door_ids, cfg.keys.pin_length, cfg.role_schedules.clone())
            .map(|svc| {
                svc.with_sync_idle(cfg.store.sync_idle)
                    .with_clock(clock.clone())
                    .with_pin_retention(cfg.keys.pin_retention)
            })
            .map_err(StartError::Keys)?,
    );
    Ok((hasher, svc))
}

fn finish_open(
    cfg: &Config,
    opened: recover::Opened,
    hasher: secret::KeyHasher,
    svc: Arc<KeyService>,
    identity: Result<Arc<Identity>, String>,
) -> Result<Opened, StartError> {
    let recover::Opened { store, recovery, gap } = opened;
    let (audit, audit_thread) = audit::start(store.clone(), cfg.audit.retain).map_err(StartError::Audit)?;
    Ok(Opened { store, hasher, identity, svc, audit, audit_thread, recovery, gap })
}

/// Records what the start found: an `audit.gap` where events may be missing,
/// and a `store.recovered` event after a recovery.
fn report_recovery(audit: &audit::Audit, now_ms: i64, r: Option<&recover::Recovery>, gap: Option<&recover::Gap>) {
    if let Some(g) = gap {
        let since = g.since_ms.map(crate::store::records::rfc3339);
        tracing::warn!(
            after = g.after,
            reason = g.reason,
            since = since.as_deref().unwrap_or(""),
            "events may be missing (audit.gap)"
        );
        let event = Event::AuditGap { after: g.after, reason: g.reason, since: Some(since), dropped: None };
        audit.record(audit::Draft { ts_ms: now_ms, event });
    }
    let Some(r) = r else { return };
    let snapshot = r.snapshot.as_ref().map(|(p, ms, generation)| crate::event::RecoveredSnapshot {
        file: p.display().to_string(),
        taken: crate::store::records::rfc3339(*ms),
        generation: *generation,
    });
    let recorded = r.recorded.as_ref().map(|c| crate::event::Recorded {
        changes: c.changes,
        generation: c.generation,
        seq: c.seq_floor,
    });
    let missing = match (&r.snapshot, r.restore) {
        (None, _) => "everything: no snapshot was found; every key is denied until the portal's full sync",
        (Some(_), recover::Restore::Restrictive) => {
            "holders and keys (denied until the portal's full sync); changes since the snapshot"
        }
        (Some(_), recover::Restore::All) => "changes since the snapshot, until the portal's full sync",
    };
    tracing::error!(
        damage = r.damage.kind,
        detail = %r.damage.detail,
        moved_to = %r.moved_to.display(),
        restore = r.restore.as_str(),
        holders = r.holders,
        tombstones = r.tombstones,
        lockouts = r.lockouts,
        uses = r.uses,
        "store recovered; waiting for the portal's full sync (docs/ops.md)"
    );
    let event = Event::StoreRecovered {
        damage: r.damage.kind,
        detail: r.damage.detail.clone(),
        moved_to: r.moved_to.display().to_string(),
        snapshot,
        restore: r.restore.as_str(),
        restored: crate::event::Restored {
            holders: r.holders,
            tombstones: r.tombstones,
            lockouts: r.lockouts,
            uses: r.uses,
        },
        recorded,
        missing,
    };
    audit.record(audit::Draft { ts_ms: now_ms, event });
}

/// How often the storage watch looks at the disk.
const STORAGE_CHECK: Duration = Duration::from_secs(2);

/// What the storage watch saw last, for the status document.
#[derive(Default)]
pub struct StorageState {
    pub free_mb: std::sync::atomic::AtomicU64,
    pub low: std::sync::atomic::AtomicBool,
}

impl StorageState {
    /// The state with the free space of `data_dir`'s disk as it is now.
    fn now(data_dir: &std::path::Path) -> StorageState {
        let storage = StorageState::default();
        if let Ok((free, _)) = crate::store::space::free(data_dir) {
            storage.free_mb.store(free >> 20, std::sync::atomic::Ordering::Relaxed);
        }
        storage
    }
}

/// Watches the disk of `data_dir`: records `storage.low` when free space
/// falls below `low` bytes (or the store had to release its reserve) and
/// `storage.ok` when it is back; makes the reserve again once there is room
/// for it above the low mark; reopens a store a failed reopen left closed.
async fn storage_watch(
    store: Store,
    data_dir: std::path::PathBuf,
    low: u64,
    audit: audit::Audit,
    clock: Arc<dyn Clock>,
    state: Arc<StorageState>,
    cancel: CancellationToken,
) {
    use std::sync::atomic::Ordering;
    let mb = |b: u64| b >> 20;
    let mut tick = tokio::time::interval(STORAGE_CHECK);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (s, d) = (store.clone(), data_dir.clone());
        let Ok(seen) = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, u64, bool)> {
            let (free, total) = crate::store::space::free(&d)?;
            if !s.is_open() {
                if let Err(e) = s.reopen() {
                    tracing::debug!(error = %e, "store still closed");
                }
            }
            let reserve = s.reserve();
            if let Some(r) = reserve.filter(|r| !r.held() && r.bytes() > 0 && free >= low + r.bytes()) {
                match r.make() {
                    Ok(()) => tracing::info!(mb = r.bytes() >> 20, "storage reserve made again"),
                    Err(e) => tracing::warn!(error = %e, "cannot make the storage reserve yet"),
                }
            }
            let released = reserve.is_some_and(|r| r.bytes() > 0 && !r.held());
            Ok((free, total, released))
        })
        .await
        else {
            return;
        };
        let (free, total, released) = match seen {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the free space of data_dir");
                continue;
            }
        };
        state.free_mb.store(mb(free), Ordering::Relaxed);
        let is_low = free < low || released;
        if is_low == state.low.swap(is_low, Ordering::Relaxed) {
            continue;
        }
        let seen = crate::event::Storage {
            free_mb: mb(free),
            total_mb: mb(total),
            low_mb: mb(low),
            reserve: if released { "released" } else { "held" },
        };
        let event = if is_low {
            tracing::error!(
                free_mb = mb(free),
                low_mb = mb(low),
                reserve_released = released,
                "storage low on the disk of data_dir (docs/ops.md, \"A full disk\")"
            );
            Event::StorageLow(seen)
        } else {
            tracing::info!(free_mb = mb(free), "storage ok again");
            Event::StorageOk(seen)
        };
        audit.record(audit::Draft { ts_ms: clock.now_ms(), event });
    }
}

/// How often the snapshot task looks for a new generation.
const SNAPSHOT_CHECK: Duration = Duration::from_secs(2);
/// How long a new generation stands before it is snapshotted.
const SNAPSHOT_SETTLE_MS: i64 = 30_000;
/// The longest time between two snapshots.
const SNAPSHOT_EVERY_MS: i64 = 24 * 3600 * 1000;

/// Writes a snapshot of the store (`store::snapshot`) as soon as there is
/// something to keep and none exists, [`SNAPSHOT_SETTLE_MS`] after every
/// committed full sync, and at least daily, off the async workers; keeps the
/// newest `keep`.
async fn snapshots(
    svc: Arc<KeyService>,
    data_dir: std::path::PathBuf,
    keep: u32,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    use crate::store::snapshot;
    if keep == 0 {
        return;
    }
    let dir = snapshot::dir(&data_dir);
    // The newest snapshot's time and generation, as far as this run knows.
    let mut last: Option<(i64, u64)> =
        snapshot::list(&dir).first().and_then(|p| snapshot::taken_ms(p)).map(|ms| (ms, u64::MAX));
    // The generation last seen, and since when.
    let mut changed: Option<(u64, i64)> = None;
    let mut tick = tokio::time::interval(SNAPSHOT_CHECK);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A recovered store waiting for the portal's sync is not what to
        // restore next time: keep the snapshots it was recovered from.
        if crate::store::recover::needs_sync(svc.store()) {
            continue;
        }
        let (now, generation) = (clock.now_ms(), svc.generation().unwrap_or(0));
        // A new generation is snapshotted once it has stood for a while: the
        // snapshot's scan of every holder then does not add to the memory
        // the sync itself took (its peak), and a portal's syncs in a row
        // give one snapshot.
        let settled = match changed {
            Some((g, at)) if g == generation => now - at >= SNAPSHOT_SETTLE_MS,
            _ => {
                changed = Some((generation, now));
                false
            }
        };
        let due = match last {
            None => svc.counts().holders > 0 || generation > 0,
            Some((ms, g)) => (g != generation && g != u64::MAX && settled) || now - ms >= SNAPSHOT_EVERY_MS || now < ms,
        };
        if !due {
            // A snapshot from an earlier run: follow this run's generations from here.
            if let Some((ms, u64::MAX)) = last {
                last = Some((ms, generation));
            }
            continue;
        }
        let (store, d) = (svc.store().clone(), dir.clone());
        match tokio::task::spawn_blocking(move || {
            crate::provision::lower_this_thread();
            snapshot::write(&store, &d, keep, now)
        })
        .await
        {
            Ok(Ok(p)) => {
                tracing::info!(file = %p.display(), generation, "snapshot written");
                last = Some((now, generation));
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot write a snapshot of the store");
                // Tried again at the next check, not in a tight loop.
                last = Some((now - SNAPSHOT_EVERY_MS + 60_000, generation));
            }
            Err(_) => return,
        }
    }
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    run_with_clock(cfg, shutdown, Arc::new(SystemClock)).await
}

/// [`run`] with an injected clock.
pub async fn run_with_clock(
    cfg: Config,
    shutdown: impl Future<Output = ()>,
    clock: Arc<dyn Clock>,
) -> Result<(), StartError> {
    // The GPIO backend before any driver is built: open_room drives the locks.
    porter_drivers::gpio::select(&cfg.gpio);
    let (_data_lock, mut driven, opened) = open_room(&cfg, &clock).await?;
    let Opened { store, hasher, identity, svc, audit, audit_thread, .. } = opened;
    // Locks next: every door locked before any input is read.
    let (doors, door_part) = parts::doors(&cfg, &mut driven, &audit, &clock).await;
    if cfg.demo.seed {
        if let Err(e) = seed_demo(&svc, &cfg) {
            tracing::error!(error = %e, "demo seeding failed");
        }
    }
    // The clock's trust, seen once before the first decision, then watched.
    let trust = Arc::new(clock::Trust::new(&cfg.clock.source));
    let storage = Arc::new(StorageState::now(&cfg.data_dir));
    let health = parts::health(&cfg);
    let latency = Arc::new(latency::Latency::default());
    let (report_tx, report_rx) = mpsc::channel(REPORT_QUEUE);
    let (control_tx, control_rx) = mpsc::channel(16);
    let watchers = parts::watchers(&cfg, &svc, &audit, &clock, &trust, &storage, control_tx.clone());
    let inputs = parts::DecisionInputs {
        hasher,
        doors: doors.clone(),
        health: health.clone(),
        trust: trust.clone(),
        reports: report_rx,
        control: control_rx,
        latency: latency.clone(),
    };
    let decisions = parts::decisions(&cfg, &svc, &audit, &clock, inputs);
    let (mut inputs, door_inputs) = parts::inputs(&cfg, report_tx);
    let signed = parts::signed(&cfg, &store, &trust, &clock);
    let ctl: Arc<dyn Control> = Arc::new(RuntimeControl {
        doors: doors.clone(),
        control: control_tx.clone(),
        audit: audit.clone(),
        clock,
        identity: identity.clone(),
    });
    let listening = parts::admin(&cfg, &svc, &ctl, &mut inputs);
    let mqtt = match &identity {
        Ok(identity) => parts::mqtt(&cfg, || mqtt::Deps {
            svc: svc.clone(),
            ctl: ctl.clone(),
            audit: audit.clone(),
            store: store.clone(),
            broker: cfg.mqtt.as_ref().map(|m| m.url.clone()).unwrap_or_default(),
            status: parts::status(&cfg, &svc, &health, &trust, &storage, &latency, identity),
            identity: identity.clone(),
            signed: signed.clone(),
            ha: parts::home_assistant(&cfg, &doors),
        }),
        // Nothing may be published unsigned: without its key the controller
        // stays off the broker, as with a broken [mqtt] file, and keeps
        // deciding access.
        Err(_) => component::Component::new("mqtt"),
    };
    let admin = if listening { cfg.admin.socket.display().to_string() } else { "unavailable".into() };
    tracing::info!(site = %cfg.site, controller = %cfg.controller, doors = cfg.doors.len(), devices = cfg.devices.len(), %admin, "porterd ready");
    // The store is open and every lock is in its safe state: tell systemd,
    // and feed its watchdog for as long as the decision loop answers.
    let notifier = systemd::Notifier::from_env();
    notifier.notify("READY=1\nSTATUS=deciding access");
    let watchdog = parts::watchdog(&notifier, control_tx);

    shutdown.await;
    tracing::info!("shutting down");
    notifier.notify("STOPPING=1");
    watchdog.stop().await;
    let deadline = tokio::time::Instant::now() + GRACE;
    // The order the parts stop in (docs/architecture.md, "Shutdown"): no new
    // input, the watchers, the decisions still under way (and the card
    // assignment the enroller may be writing), the doors driven to their
    // safe state, the inputs that drive doors (their program hears the final
    // "locked"), and MQTT last, so the events of the shutdown itself still
    // go out.
    let mut order = component::Shutdown::default();
    order.then(inputs).then(watchers).then(decisions).then(door_part).then(door_inputs).then(mqtt);
    if let Some(part) = order.run(deadline).await {
        tracing::error!(part, "shutdown took longer than {GRACE:?}; stopping anyway");
    }
    drop(ctl);
    finish(store, audit, audit_thread, deadline).await;
    tracing::info!("stopped");
    Ok(())
}

/// The start up to an open store, in the order that keeps a room safe:
/// another porterd on this admin socket or data_dir is left alone (its
/// doors untouched); otherwise every lock is driven locked before anything
/// that can fail runs (a damaged store that makes sled panic, a wrong
/// schema, a missing secret), then the store is opened (recovered if it was
/// damaged) and a recovery or gap reported. Returns the data_dir's lock
/// (held while the daemon runs), the lock outputs already driven, and the
/// open state.
async fn open_room(
    cfg: &Config,
    clock: &Arc<dyn Clock>,
) -> Result<(std::fs::File, Vec<doors::Driven>, Opened), StartError> {
    // Another porterd answering this admin socket runs this room: leave
    // its doors and its socket alone.
    if admin::answered(&cfg.admin.socket).await {
        return Err(StartError::AdminInUse(cfg.admin.socket.display().to_string()));
    }
    // Another porterd on this data_dir runs this room: leave its doors
    // alone. Any other failure here (a card gone read-only, a data_dir the
    // daemon may not write) still locks every door before the start stops.
    let data_lock = match lock_data_dir(cfg) {
        Ok(f) => f,
        Err(e @ StartError::Store { err: crate::store::StoreError::Locked { .. }, .. }) => return Err(e),
        Err(e) => {
            doors::lock_all(cfg).await;
            return Err(e);
        }
    };
    // Locks first, whatever fails next (a damaged store that makes sled
    // panic, a wrong schema, a missing secret): every lock is driven locked
    // before anything that can fail runs.
    let driven = doors::lock_all(cfg).await;
    let opened = open_state(cfg, clock)?;
    let Opened { svc, audit, recovery, gap, .. } = &opened;
    let store_dir = cfg.data_dir.join("store");
    tracing::info!(dir = %store_dir.display(), holders = svc.state().map(|s| s.holders).unwrap_or(0), "store open");
    report_recovery(audit, clock.now_ms(), recovery.as_ref(), gap.as_ref());

    Ok((data_lock, driven, opened))
}

/// The last of a stop: the audit writer drains its queue, the store is
/// flushed and, when every event is on disk, the clean stop recorded (the
/// next start then goes on from the last `seq` without a gap).
async fn finish(
    store: Store,
    audit: audit::Audit,
    audit_thread: std::thread::JoinHandle<()>,
    deadline: tokio::time::Instant,
) {
    // The writer ends once the last Audit clone is gone (an admin request
    // still finishing may hold one briefly), after writing what is queued.
    drop(audit);
    let written = tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(move || audit_thread.join())).await;
    if written.is_err() {
        tracing::error!("the audit writer did not finish in time");
    }
    match store.flush() {
        Err(e) => tracing::error!(error = %e, "final store flush failed"),
        // Every event is on disk: the next start goes on from the last
        // `seq` without a gap.
        Ok(()) if written.is_ok() => {
            let seq = store.found().map(|f| f.seq);
            if let (Some(g), Ok(seq)) = (store.guard(), seq) {
                if let Err(e) = g.stopped(seq) {
                    tracing::error!(error = %e, "cannot record the clean stop; the next start reports an audit.gap");
                }
            }
        }
        Ok(()) => {}
    }
}
