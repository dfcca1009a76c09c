//! `pcsc`: any PC/SC contactless reader (ACR122U and the like) through pcscd.
//!
//! The reader is the first one pcscd lists whose name matches `reader` (a
//! case-insensitive substring, or a glob with `*` and `?` matched against the
//! whole name); without `reader`, the first reader listed. At every tap the
//! card's UID is read with the PC/SC pseudo-APDU `FF CA 00 00 00` (GET DATA),
//! whose reply is the UID followed by `90 00`. One tap is one read: a card
//! held on the reader is read once, and again only after it was taken away. A
//! card already on the reader when the driver starts (or when pcscd comes
//! back) is not read until it is tapped again, so a restart never replays a
//! tap. A reply with another status word, an empty or over-long UID, or a card
//! pulled away mid-read is counted, logged as a warning with the count, and
//! dropped. UIDs are never logged, only their length.
//!
//! The pcsc crate blocks, so each run of the driver owns one named thread
//! (`pcsc-<device id>`) that waits in `SCardGetStatusChange` on the chosen
//! reader and on the `\\?PnP?\Notification` pseudo-reader (readers plugged in
//! or out), with a timeout as a safety net. Dropping the run future (shutdown)
//! sets a stop flag and cancels the wait through a clone of the context
//! (`SCardCancel`), then joins the thread. `SCardCancel` only interrupts a
//! wait already in progress, so the stop side repeats it until the thread has
//! ended (a few milliseconds), bounded by [`STOP_GRACE`].
//!
//! When no reader matches, the device is reported offline (not found) with
//! the names of the readers that do exist, and goes online by itself when a
//! matching reader appears. When pcscd stops or restarts, the old context
//! keeps failing while `SCardIsValidContext` still says it is fine, so any
//! error other than a timeout ends the run with `Err`: the supervisor reports
//! the device offline and runs it again with backoff, which establishes a new
//! context.

use crate::contract::{CardUid, Input, InputDriver, InputSink, MAX_UID_LEN};
use crate::error::{DriverError, ErrorKind};
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;
use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State, PNP_NOTIFICATION};
use std::ffi::{CStr, CString};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The APDU that asks a contactless reader for the card's UID.
pub const GET_UID: [u8; 5] = [0xFF, 0xCA, 0x00, 0x00, 0x00];
/// The longest reader name pattern accepted (PC/SC reader names are at most
/// 128 bytes).
pub const MAX_PATTERN_LEN: usize = 128;
/// How long one wait for a change lasts before the thread looks again; the
/// waits are cancelled at shutdown, so this only bounds missed hot-plug
/// notifications.
const WAIT: Duration = Duration::from_secs(1);
/// How long dropping the run future waits for the thread to end before it
/// gives up and leaves the thread to end on its own (only when pcscd hangs).
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// Consecutive waits that find the chosen reader gone or unknown before the
/// run fails and the supervisor backs off (instead of retrying at once).
const READER_TROUBLE_LIMIT: u32 = 3;

const PCSCD_HINT: &str = "start pcscd (Debian: `systemctl enable --now pcscd.socket`, or `pcscd` as root); \
     if it runs but refuses Porter's user, pcsc-lite built with polkit only lets root in unless a polkit rule \
     allows the user: install Porter's polkit rule (packaging/polkit/50-porter-pcscd.rules)";
const POLKIT_HINT: &str =
    "pcscd's polkit policy refuses this user: install Porter's polkit rule, packaging/polkit/50-porter-pcscd.rules \
     (it allows the `porter` user the actions org.debian.pcsc-lite.access_pcsc and \
     access_card), or run the daemon as root";

/// A reader name pattern: a case-insensitive substring, or a glob (`*` any
/// run of characters, `?` one character) matched against the whole name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderPattern {
    text: String,
    lower: Vec<char>,
    glob: bool,
}

impl ReaderPattern {
    /// A pattern from config text; `Err` says what is wrong with it.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the reader pattern is empty".into());
        }
        if text.len() > MAX_PATTERN_LEN {
            return Err(format!("the reader pattern is longer than {MAX_PATTERN_LEN} bytes"));
        }
        if text.chars().any(char::is_control) {
            return Err("the reader pattern contains a control character".into());
        }
        Ok(ReaderPattern {
            text: text.to_string(),
            lower: text.to_lowercase().chars().collect(),
            glob: text.contains(['*', '?']),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.to_lowercase().chars().collect();
        if self.glob {
            glob_match(&self.lower, &name)
        } else {
            name.windows(self.lower.len()).any(|w| w == self.lower.as_slice())
        }
    }
}

impl fmt::Display for ReaderPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Glob matching with `*` and `?`, greedy with one backtrack point: linear in
/// practice, never exponential.
fn glob_match(pat: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && pat[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if p < pat.len() && (pat[p] == '?' || pat[p] == name[n]) {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|c| *c == '*')
}

/// The `pcsc` kind's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcscConfig {
    /// `reader`: which reader to use (default: the first one pcscd lists).
    pub reader: Option<ReaderPattern>,
}

impl PcscConfig {
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let reader = sec.opt_string("reader", errs).and_then(|text| match ReaderPattern::new(&text) {
            Ok(p) => Some(p),
            Err(msg) => {
                errs.push(
                    sec.key_path("reader"),
                    msg,
                    Some(
                        "write part of the reader's name as `pcsc_scan` or the daemon's log shows it, such as \
                         \"ACR122\", or a glob such as \"ACS ACR122U*\"; leave it out to use the first reader"
                            .into(),
                    ),
                );
                None
            }
        });
        PcscConfig { reader }
    }

    /// The exclusive resource: one device per reader pattern (no pattern is
    /// the same as `*`). Different patterns may still pick the same reader;
    /// the log names the reader each device chose.
    pub fn claim(&self) -> crate::kinds::Claim {
        crate::kinds::Claim::PcscReader(self.reader.as_ref().map(|p| p.as_str().to_string()))
    }

    /// The reader to use among `names` (in pcscd's order), and how many match.
    pub fn choose<'n>(&self, names: &'n [String]) -> (Option<&'n String>, usize) {
        let mut matching = names.iter().filter(|n| self.reader.as_ref().is_none_or(|p| p.matches(n)));
        let first = matching.next();
        let count = first.map_or(0, |_| 1 + matching.count());
        match &self.reader {
            Some(_) => (first, count),
            // No pattern: the first reader; others are not candidates.
            None => (first, count.min(1)),
        }
    }
}

/// Why a tap did not give a UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// The reply was shorter than a status word.
    Short(usize),
    /// The reader or card answered with a status word other than `90 00`.
    Status(u8, u8),
    /// `90 00` without any UID byte.
    Empty,
    /// More UID bytes than a card UID has.
    TooLong(usize),
    /// The exchange failed (the card was pulled away too early, it is not a
    /// contactless card, another program holds it exclusively, ...).
    Failed(String),
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreadable::Short(n) => write!(f, "reply of {n} bytes, shorter than a status word"),
            Unreadable::Status(a, b) => {
                write!(f, "status {a:02X} {b:02X} instead of 90 00 (the reader or card refused GET DATA UID)")
            }
            Unreadable::Empty => f.write_str("status 90 00 without a UID"),
            Unreadable::TooLong(n) => write!(f, "UID of {n} bytes, longer than {MAX_UID_LEN}"),
            Unreadable::Failed(e) => f.write_str(e),
        }
    }
}

/// Turns the reply to [`GET_UID`] into a UID.
pub fn parse_uid_reply(reply: &[u8]) -> Result<CardUid, Unreadable> {
    let Some((uid, sw)) = reply.split_last_chunk::<2>() else {
        return Err(Unreadable::Short(reply.len()));
    };
    if *sw != [0x90, 0x00] {
        return Err(Unreadable::Status(sw[0], sw[1]));
    }
    if uid.is_empty() {
        return Err(Unreadable::Empty);
    }
    CardUid::from_bytes(uid).ok_or(Unreadable::TooLong(uid.len()))
}

/// The names of the readers pcscd lists now, for diagnostics and tests.
pub fn reader_names() -> Result<Vec<String>, DriverError> {
    let ctx = establish()?;
    list_readers(&ctx)
}

fn establish() -> Result<Context, DriverError> {
    Context::establish(Scope::User).map_err(|e| match e {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped => {
            DriverError::new(ErrorKind::NotFound, format!("pcscd is not running ({e})")).with_hint(PCSCD_HINT)
        }
        pcsc::Error::NoAccess | pcsc::Error::SecurityViolation => {
            DriverError::new(ErrorKind::PermissionDenied, format!("pcscd refused this user ({e})"))
                .with_hint(POLKIT_HINT)
        }
        // Older pcsc-lite closes the socket on a polkit refusal, which the
        // client reports as a transport error.
        other => DriverError::new(ErrorKind::Other, format!("cannot reach pcscd ({other})")).with_hint(PCSCD_HINT),
    })
}

/// The readers pcscd lists now (for `porterctl doctor`); no reader is an
/// empty list, pcscd not running an error with its fix.
pub fn readers() -> Result<Vec<String>, DriverError> {
    let ctx = establish()?;
    match ctx.list_readers_owned() {
        Ok(names) => Ok(names.iter().map(|n| n.to_string_lossy().into_owned()).collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(lost(e, "listing readers")),
    }
}

fn list_readers(ctx: &Context) -> Result<Vec<String>, DriverError> {
    let names = ctx.list_readers_owned().map_err(|e| lost(e, "listing readers"))?;
    Ok(names.iter().map(|n| n.to_string_lossy().into_owned()).collect())
}

/// Maps an error of an established context: pcscd went away, refused us, or
/// failed in some other way. All of them end the run.
fn lost(e: pcsc::Error, doing: &str) -> DriverError {
    match e {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped | pcsc::Error::CommError | pcsc::Error::Shutdown => {
            DriverError::new(ErrorKind::Disconnected, format!("pcscd went away while {doing} ({e})"))
                .with_hint(PCSCD_HINT)
        }
        pcsc::Error::NoAccess | pcsc::Error::SecurityViolation => {
            DriverError::new(ErrorKind::PermissionDenied, format!("pcscd refused {doing} ({e})")).with_hint(POLKIT_HINT)
        }
        other => DriverError::new(ErrorKind::Other, format!("PC/SC error while {doing} ({other})")),
    }
}

/// [`lost`] for a wait for reader events. pcscd asks polkit when a client
/// connects and when it connects to a card, never for a wait, so a refusal
/// here is pcscd tearing the session down as it stops (seen with a clean
/// stop of pcscd 1.9): it went away, and the supervisor reconnects.
fn lost_waiting(e: pcsc::Error) -> DriverError {
    match e {
        pcsc::Error::NoAccess | pcsc::Error::SecurityViolation => {
            DriverError::new(ErrorKind::Disconnected, format!("pcscd went away while waiting for a card ({e})"))
                .with_hint(PCSCD_HINT)
        }
        other => lost(other, "waiting for a card"),
    }
}

/// Errors that concern one tap (the card or the reader), not pcscd: the tap
/// is counted as unreadable and the driver carries on.
fn tap_level(e: pcsc::Error) -> bool {
    use pcsc::Error as E;
    matches!(
        e,
        E::RemovedCard
            | E::ResetCard
            | E::UnpoweredCard
            | E::UnresponsiveCard
            | E::UnsupportedCard
            | E::NoSmartcard
            | E::CommDataLost
            | E::ProtoMismatch
            | E::NotReady
            | E::SharingViolation
            | E::ReaderUnavailable
            | E::UnknownReader
            | E::Timeout
            | E::CardUnsupported
            | E::InvalidAtr
            | E::UnknownCard
            | E::InsufficientBuffer
    )
}

fn no_reader(cfg: &PcscConfig, names: &[String]) -> DriverError {
    let what = match &cfg.reader {
        Some(p) => format!("no PC/SC reader matches `{p}`"),
        None => "pcscd lists no PC/SC reader".to_string(),
    };
    let hint = if names.is_empty() {
        "plug the reader in and check that `pcsc_scan` (Debian package pcsc-tools) sees it; USB readers need \
         the libccid driver, and an ACR122U also needs the kernel's pn533_usb module blacklisted"
            .to_string()
    } else {
        let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        format!("readers found: {}; set `reader` to part of one of these names", list.join(", "))
    };
    DriverError::new(ErrorKind::NotFound, what).with_hint(hint)
}

/// Counters of one device, shared by its runs; readable by tests.
#[derive(Debug, Clone, Default)]
pub struct PcscStats {
    unreadable: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
}

impl PcscStats {
    /// Taps that gave no UID.
    pub fn unreadable(&self) -> u64 {
        self.unreadable.load(Ordering::Relaxed)
    }

    /// Taps read and reported.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

/// The `pcsc` driver.
pub struct Pcsc {
    id: String,
    config: PcscConfig,
    stats: PcscStats,
}

impl Pcsc {
    pub fn new(id: &str, config: PcscConfig) -> Self {
        Pcsc { id: id.to_string(), config, stats: PcscStats::default() }
    }

    /// A handle on this device's counters.
    pub fn stats(&self) -> PcscStats {
        self.stats.clone()
    }

    /// The name of the thread each run starts.
    pub fn thread_name(&self) -> String {
        format!("pcsc-{}", self.id)
    }
}

#[async_trait]
impl InputDriver for Pcsc {
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let watcher = Watcher {
            id: self.id.clone(),
            config: self.config.clone(),
            sink: sink.clone(),
            stats: self.stats.clone(),
            shared: shared.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(self.thread_name())
            .spawn(move || {
                let result = watcher.run();
                watcher.shared.clear();
                let _ = tx.send(result);
            })
            .map_err(|e| DriverError::new(ErrorKind::Other, format!("cannot start the PC/SC thread: {e}")))?;
        // From here on, dropping this future (shutdown) drops the guard, which
        // stops and joins the thread.
        let _guard = ThreadGuard { shared, handle: Some(handle) };
        match rx.await {
            Ok(Err(e)) => Err(e),
            // The thread returns Ok only when told to stop, which only the
            // guard does, after this future is gone.
            Ok(Ok(())) => Err(DriverError::new(ErrorKind::Other, "the PC/SC thread stopped")),
            Err(_) => Err(DriverError::new(ErrorKind::Other, "the PC/SC thread panicked")),
        }
    }
}

/// What the async side and the thread share: the stop flag, and a clone of
/// the thread's context so a blocking wait can be cancelled.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    ctx: Mutex<Option<Context>>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Makes `ctx` cancellable; false when a stop was already requested.
    fn publish(&self, ctx: &Context) -> bool {
        let mut slot = self.ctx.lock().unwrap_or_else(|p| p.into_inner());
        if self.stopped() {
            return false;
        }
        *slot = Some(ctx.clone());
        true
    }

    fn clear(&self) {
        self.ctx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Sets the stop flag and cancels a wait in progress. A cancel that
    /// arrives before the thread enters its wait is lost (pcsc-lite only
    /// cancels a call in progress), so callers repeat this until the thread
    /// has ended; the thread checks the flag before every wait.
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(ctx) = self.ctx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = ctx.cancel();
        }
    }
}

/// Owns a run's thread: dropping it stops and joins the thread.
struct ThreadGuard {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for ThreadGuard {
    // This blocks the dropping task for the few milliseconds the thread needs
    // to leave its wait; only a hung pcscd (a call that ignores cancellation)
    // makes it wait the whole STOP_GRACE, after which the thread is left to
    // end on its own when pcscd answers.
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else { return };
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if handle.is_finished() {
                let _ = handle.join();
                return;
            }
            self.shared.stop();
            if Instant::now() >= deadline {
                tracing::error!(
                    thread = handle.thread().name().unwrap_or("pcsc"),
                    "pcsc: the reader thread did not stop in time (is pcscd hung?); it will end when pcscd answers"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// What the thread knows of the chosen reader between waits: the
/// tap-detection state machine, free of I/O.
#[derive(Debug, Default)]
struct Seen {
    /// The first wait on this reader has returned: its state then is the
    /// baseline, and a card already present is not a tap.
    baseline: bool,
    present: bool,
    /// pcsc-lite's insertion/removal counter, so a tap between two waits
    /// (card away and back) is not missed.
    events: u32,
}

/// What one observation of the reader means.
#[derive(Debug, PartialEq, Eq)]
enum Seeing {
    /// The first look at this reader (the device is online from here); the
    /// flag says a card was already on it.
    Baseline(bool),
    /// A card arrived: read it.
    Tap,
    /// Nothing new: no card, the same card still held, or only the reader's
    /// other flags changed (another client connected, the card was powered
    /// down).
    Same,
}

impl Seen {
    fn observe(&mut self, present: bool, events: u32) -> Seeing {
        if !self.baseline {
            *self = Seen { baseline: true, present, events };
            return Seeing::Baseline(present);
        }
        let tap = present && (!self.present || events != self.events);
        self.present = present;
        self.events = events;
        if tap {
            Seeing::Tap
        } else {
            Seeing::Same
        }
    }
}

/// One run's thread: one context, one chosen reader at a time.
struct Watcher {
    id: String,
    config: PcscConfig,
    sink: InputSink,
    stats: PcscStats,
    shared: Arc<Shared>,
}

impl Watcher {
    /// Watches until stopped (`Ok`) or until the context fails (`Err`).
    fn run(&self) -> Result<(), DriverError> {
        let ctx = establish()?;
        if !self.shared.publish(&ctx) {
            return Ok(());
        }
        // states[0] is the hot-plug pseudo-reader; states[1], when present,
        // the chosen reader.
        let mut states = vec![ReaderState::new(PNP_NOTIFICATION(), State::UNAWARE)];
        let mut seen = Seen::default();
        let mut missing = false;
        let mut relist = true;
        let mut trouble = 0u32;
        loop {
            if self.shared.stopped() {
                return Ok(());
            }
            if relist {
                relist = false;
                self.choose(&ctx, &mut states, &mut seen, &mut missing)?;
            }
            for s in states.iter_mut() {
                s.sync_current_state();
            }
            match ctx.get_status_change(WAIT, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => {
                    // pcsc-lite 1.9 only notices readers plugged in during a
                    // wait: while no reader matches, look again every WAIT.
                    relist = states.len() == 1;
                    continue;
                }
                Err(pcsc::Error::Cancelled) => continue,
                Err(pcsc::Error::UnknownReader | pcsc::Error::ReaderUnavailable) => {
                    trouble += 1;
                    self.check_trouble(trouble, &states)?;
                    relist = true;
                    continue;
                }
                Err(e) => return Err(lost_waiting(e)),
            }
            if states[0].event_state().contains(State::CHANGED) {
                relist = true;
            }
            let Some(reader) = states.get(1) else { continue };
            let state = reader.event_state();
            if state.intersects(State::UNKNOWN | State::IGNORE) {
                // The reader went away: choose again (or report it missing).
                trouble += 1;
                self.check_trouble(trouble, &states)?;
                relist = true;
                continue;
            }
            trouble = 0;
            match seen.observe(state.contains(State::PRESENT), reader.event_count()) {
                Seeing::Baseline(present) => {
                    self.sink.online();
                    if present {
                        tracing::info!(
                            device = %self.id,
                            "pcsc: a card is already on the reader; it is read when tapped again"
                        );
                    }
                }
                Seeing::Tap => {
                    let name = reader.name().to_owned();
                    self.read(&ctx, &name)?;
                }
                Seeing::Same => {}
            }
        }
    }

    fn check_trouble(&self, trouble: u32, states: &[ReaderState]) -> Result<(), DriverError> {
        if trouble >= READER_TROUBLE_LIMIT {
            let name = states.get(1).map(|s| s.name().to_string_lossy().into_owned()).unwrap_or_default();
            return Err(DriverError::new(ErrorKind::Disconnected, format!("PC/SC reader \"{name}\" went away")));
        }
        Ok(())
    }

    /// Lists the readers and picks the one to watch; reports the device
    /// offline (not found) when none matches, once until one does.
    fn choose(
        &self,
        ctx: &Context,
        states: &mut Vec<ReaderState>,
        seen: &mut Seen,
        missing: &mut bool,
    ) -> Result<(), DriverError> {
        let names = list_readers(ctx)?;
        let (chosen, matching) = self.config.choose(&names);
        let current = states.get(1).map(|s| s.name().to_string_lossy().into_owned());
        if chosen == current.as_ref() && (chosen.is_some() || *missing) {
            return Ok(());
        }
        states.truncate(1);
        *seen = Seen::default();
        *missing = chosen.is_none();
        match chosen {
            Some(name) => {
                let Ok(cname) = CString::new(name.as_str()) else {
                    return Err(DriverError::new(ErrorKind::Other, "a reader name contains a NUL byte"));
                };
                tracing::info!(device = %self.id, reader = %crate::logtext::escape(name), "pcsc: using reader");
                if matching > 1 {
                    tracing::warn!(
                        device = %self.id,
                        reader = %crate::logtext::escape(name),
                        matching,
                        "pcsc: several readers match `reader`; using the first (make the pattern narrower)"
                    );
                }
                states.push(ReaderState::new(cname, State::UNAWARE));
            }
            None => {
                let err = no_reader(&self.config, &names);
                tracing::warn!(device = %self.id, error = %err, "pcsc: reader not found; waiting for it");
                self.sink.offline(err);
            }
        }
        Ok(())
    }

    /// Reads one tap: connect (shared), GET DATA UID, report or count.
    fn read(&self, ctx: &Context, reader: &CStr) -> Result<(), DriverError> {
        match read_uid(ctx, reader) {
            Ok(Ok(uid)) => {
                self.stats.reads.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(device = %self.id, uid_len = uid.as_bytes().len(), "pcsc: card read");
                self.sink.input(Input::Card(uid));
                Ok(())
            }
            Ok(Err(why)) => {
                let unreadable = self.stats.unreadable.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(device = %self.id, unreadable, reason = %why, "pcsc: card tap not read; dropped");
                Ok(())
            }
            Err(e) => Err(lost(e, "reading a card")),
        }
    }
}

/// Connects to the card on `reader`, asks for its UID and disconnects,
/// leaving the card as it is. The outer `Err` is a pcscd failure; the inner
/// one a tap that gave no UID.
fn read_uid(ctx: &Context, reader: &CStr) -> Result<Result<CardUid, Unreadable>, pcsc::Error> {
    let card = match ctx.connect(reader, ShareMode::Shared, Protocols::ANY) {
        Ok(card) => card,
        Err(e) if tap_level(e) => return Ok(Err(Unreadable::Failed(format!("connecting to the card: {e}")))),
        Err(e) => return Err(e),
    };
    let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE];
    let outcome = match card.transmit(&GET_UID, &mut buf) {
        Ok(reply) => Ok(parse_uid_reply(reply)),
        Err(e) if tap_level(e) => Ok(Err(Unreadable::Failed(format!("GET DATA UID: {e}")))),
        Err(e) => Err(e),
    };
    let _ = card.disconnect(Disposition::LeaveCard);
    outcome
}

/// `kind = "pcsc"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "pcsc",
    role: crate::kinds::Role::Input,
    reports: crate::kinds::Reports { keys: true, levels: false },
    drives_outputs: false,
    output_through_input: false,
    access: crate::kinds::Access::None,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(PcscConfig::parse(sec, errs))),
    cross_check: None,
};

impl crate::kinds::DeviceKind for PcscConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        vec![self.claim()]
    }

    fn input_driver(&self, id: &str) -> Option<Box<dyn crate::contract::InputDriver>> {
        Some(Box::new(Pcsc::new(id, self.clone())))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> (PcscConfig, ConfigErrors) {
        let (c, errs) = Section::read("devices[0]", &v, PcscConfig::parse);
        (c.expect("a table"), errs)
    }

    #[test]
    fn parses_the_reader_pattern_and_rejects_bad_ones() {
        let (cfg, errs) = parse(json!({}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(cfg.reader, None);
        assert_eq!(cfg.claim().to_string(), "pcsc:*");

        let (cfg, errs) = parse(json!({"reader": "ACR122"}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(cfg.reader.as_ref().map(ReaderPattern::as_str), Some("ACR122"));
        assert_eq!(cfg.claim().to_string(), "pcsc:acr122");

        for bad in [json!(""), json!("   "), json!("a\u{1}b"), json!("x".repeat(129)), json!(["a"])] {
            let (cfg, errs) = parse(json!({ "reader": bad }));
            assert_eq!(cfg.reader, None);
            assert_eq!(errs.len(), 1, "{errs}");
            assert_eq!(errs.0[0].path, "devices[0].reader");
        }
        let (_, errs) = parse(json!({"reader": ""}));
        assert!(errs.0[0].hint.as_deref().unwrap().contains("ACR122"));

        let (_, errs) = parse(json!({"readr": "x"}));
        assert_eq!(errs.0[0].path, "devices[0].readr");
        assert!(errs.0[0].hint.as_deref().unwrap().contains("did you mean `reader`"));
    }

    #[test]
    fn patterns_match_substrings_and_globs_ignoring_case() {
        let p = |s: &str| ReaderPattern::new(s).unwrap();
        let acr = "ACS ACR122U PICC Interface 00 00";
        assert!(p("acr122").matches(acr));
        assert!(p("PICC Interface 00 00").matches(acr));
        assert!(!p("ACR1252").matches(acr));
        assert!(p("acs acr122u*").matches(acr));
        assert!(p("*00 00").matches(acr));
        assert!(!p("*00 01").matches(acr));
        assert!(p("ACS ACR122U PICC Interface ?? 00").matches(acr));
        assert!(!p("ACS*").matches("Virtual PCD 00 00"));
        assert!(p("*").matches(""));
        assert!(p("a*b*c").matches("aXbYbZc"));
        assert!(!p("a*b*c").matches("aXbYbZ"));
        // A glob matches the whole name, a plain pattern any part of it.
        assert!(!p("ACR122U*").matches(acr));
        assert!(p("ACR122U").matches(acr));
        assert!(p("virtual pcd 00 01").matches("Virtual PCD 00 01"));
        // Patterns a backtracking matcher would take forever on.
        let long = "a".repeat(120);
        assert!(!p("*a*a*a*a*a*a*a*a*a*a*b").matches(&long));
    }

    #[test]
    fn chooses_the_first_matching_reader() {
        let names: Vec<String> =
            ["Virtual PCD 00 00", "Virtual PCD 00 01", "ACS ACR122U 01 00"].iter().map(|s| s.to_string()).collect();
        let cfg = |r: Option<&str>| PcscConfig { reader: r.map(|r| ReaderPattern::new(r).unwrap()) };
        assert_eq!(cfg(None).choose(&names), (Some(&names[0]), 1));
        assert_eq!(cfg(Some("pcd 00 01")).choose(&names), (Some(&names[1]), 1));
        assert_eq!(cfg(Some("virtual")).choose(&names), (Some(&names[0]), 2));
        assert_eq!(cfg(Some("acr122")).choose(&names), (Some(&names[2]), 1));
        assert_eq!(cfg(Some("omnikey")).choose(&names), (None, 0));
        assert_eq!(cfg(None).choose(&[]), (None, 0));
    }

    #[test]
    fn uid_replies_are_checked() {
        assert_eq!(parse_uid_reply(&[0x04, 0xA1, 0xB2, 0xC3, 0x90, 0x00]).unwrap().as_bytes(), [4, 0xA1, 0xB2, 0xC3]);
        let seven = [1, 2, 3, 4, 5, 6, 7, 0x90, 0];
        assert_eq!(parse_uid_reply(&seven).unwrap().as_bytes(), &seven[..7]);
        assert_eq!(parse_uid_reply(&[0x6A, 0x81]), Err(Unreadable::Status(0x6A, 0x81)));
        assert_eq!(parse_uid_reply(&[1, 2, 3, 4, 0x63, 0x00]), Err(Unreadable::Status(0x63, 0)));
        assert_eq!(parse_uid_reply(&[0x90, 0x00]), Err(Unreadable::Empty));
        assert_eq!(parse_uid_reply(&[0x90]), Err(Unreadable::Short(1)));
        assert_eq!(parse_uid_reply(&[]), Err(Unreadable::Short(0)));
        let mut long = vec![7u8; 11];
        long.extend([0x90, 0x00]);
        assert_eq!(parse_uid_reply(&long), Err(Unreadable::TooLong(11)));
    }

    #[test]
    fn one_tap_is_one_read() {
        let mut seen = Seen::default();
        // A card left on the reader before we looked is not a tap.
        assert_eq!(seen.observe(true, 5), Seeing::Baseline(true));
        assert_eq!(seen.observe(true, 5), Seeing::Same);
        assert_eq!(seen.observe(false, 6), Seeing::Same);
        assert_eq!(seen.observe(true, 7), Seeing::Tap);
        // Held: other flags change, the counter does not.
        assert_eq!(seen.observe(true, 7), Seeing::Same);
        // Away and back between two looks: only the counter tells.
        assert_eq!(seen.observe(true, 9), Seeing::Tap);
        assert_eq!(seen.observe(false, 10), Seeing::Same);
        assert_eq!(seen.observe(false, 10), Seeing::Same);

        let mut seen = Seen::default();
        assert_eq!(seen.observe(false, 0), Seeing::Baseline(false));
        assert_eq!(seen.observe(true, 1), Seeing::Tap);
    }

    #[test]
    fn a_missing_reader_names_the_readers_that_exist() {
        let cfg = PcscConfig { reader: Some(ReaderPattern::new("ACR122").unwrap()) };
        let e = no_reader(&cfg, &["Virtual PCD 00 00".into(), "Virtual PCD 00 01".into()]);
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("`ACR122`"), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("\"Virtual PCD 00 00\", \"Virtual PCD 00 01\""), "{e}");
        let e = no_reader(&PcscConfig { reader: None }, &[]);
        assert!(e.hint.as_deref().unwrap().contains("pcsc_scan"), "{e}");
    }

    #[test]
    fn pcscd_errors_name_their_fix() {
        let e = lost(pcsc::Error::NoService, "waiting for a card");
        assert_eq!(e.kind, ErrorKind::Disconnected);
        assert!(e.hint.as_deref().unwrap().contains("polkit"), "{e}");
        let e = lost(pcsc::Error::NoAccess, "reading a card");
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        let e = lost_waiting(pcsc::Error::SecurityViolation);
        assert_eq!((e.kind, e.message.contains("went away")), (ErrorKind::Disconnected, true), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("polkit rule"), "{e}");
        assert!(tap_level(pcsc::Error::RemovedCard));
        assert!(!tap_level(pcsc::Error::CommError));
    }
}
