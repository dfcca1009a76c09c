//! The MQTT side of the contract: commands in, replies and events out, a
//! retained status with a Last Will.
//!
//! One task owns the rumqttc event loop and does all publishing, so that it
//! alone knows what it asked for and what the broker confirmed:
//! - commands arriving on `P/cmd` and `porter/{site}/all/cmd` go, in order, to
//!   one worker task that applies them (flushed and live) and hands back the
//!   reply; the loop publishes the reply, then sends the PUBACK (manual acks),
//!   so a command the broker saw acknowledged is never lost;
//! - events are read from the audit log, in `seq` order, and published; the
//!   highest seq the broker has confirmed is kept in the store, and after
//!   every reconnect publishing starts again just after it (at least once).
//!
//! Confirmation without per-packet bookkeeping: rumqttc tells when a publish
//! goes out (`Outgoing::Publish`) and how many are unacknowledged
//! (`state.inflight()`). When everything this loop asked for has gone out and
//! nothing is unacknowledged, every event asked for so far is confirmed. On a
//! disconnect the loop drops rumqttc's pending queue (which would be lost on a
//! new session anyway, or resent and confuse the count) and re-drives all of
//! it itself: subscriptions, status, unconfirmed events. Replies in flight at
//! a disconnect are not resent: the unacknowledged command is redelivered
//! (persistent session), or the portal repeats it, and the stored reply for
//! its id answers.

use super::command::{self, Control, MAX_COMMAND_BYTES};
use super::error::OpError;
use super::keys::KeyService;
use super::replies::{self, Replies};
use super::seal;
use crate::audit::{self, Audit};
use crate::config::MqttConfig;
use crate::store::identity::Identity;
use crate::store::Store;
use bytes::Bytes;
use porter_drivers::Backoff;
use rumqttc::v5::mqttbytes::v5::{Filter, LastWill, Packet, Publish, PublishProperties, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Commands the broker may have outstanding with us (MQTT v5 Receive
/// Maximum). Commands are acknowledged only once applied. Brokers do not all
/// honour it when a session resumes (Mosquitto 2.0 sends the whole queue), so
/// commands beyond the worker's queue wait in a backlog, bounded by bytes.
pub const RECEIVE_MAXIMUM: u16 = 32;
/// Bytes of commands waiting at most; beyond it a command is dropped
/// unacknowledged (and redelivered by the broker after a reconnect).
const BACKLOG_BYTES: usize = 64 << 20;

/// Events asked for but not yet confirmed, at most.
const WINDOW: u64 = 64;
/// Our QoS 1 publishes in flight, at most: the event window, a reply to
/// each command the broker may have in flight to us, the status, and room
/// to spare. rumqttc keeps a slot for every packet id up to this limit, and
/// its default (65,535) costs 14 MiB of slots.
const OUTGOING_INFLIGHT: u16 = 256;
const _: () = assert!(OUTGOING_INFLIGHT as u64 > WINDOW + RECEIVE_MAXIMUM as u64 + 1);
/// How often the retained status is refreshed, changed or not.
const STATUS_EVERY: Duration = Duration::from_secs(60);
/// How often the status is compared with the one last published: a change
/// of what it reports (counts, devices, clock, outbox, latency; not the
/// uptime nor the free megabytes) is published at the next look.
const STATUS_LOOK: Duration = Duration::from_millis(250);
/// The least time between two published statuses (the debounce): a change
/// is on the broker within `STATUS_LOOK + STATUS_DEBOUNCE`, and a busy room
/// republishes at most once a second.
const STATUS_DEBOUNCE: Duration = Duration::from_secs(1);
/// The Last Will's payload.
const OFFLINE: &str = r#"{"state":"offline"}"#;
/// The key of the highest confirmed event seq.
const ACKED: &[u8] = crate::store::records::EVENTS_ACKED;
/// The key of the Home Assistant topics published.
const HA_CONFIGS: &[u8] = crate::store::records::HA_CONFIGS;

/// The controller's topics.
#[derive(Debug, Clone)]
pub struct Topics {
    /// This controller's name, added to every reply so that replies to a
    /// fleet command can be told apart.
    pub controller: String,
    pub cmd: String,
    pub all_cmd: String,
    pub reply: String,
    pub events: String,
    pub status: String,
}

impl Topics {
    pub fn new(site: &str, controller: &str) -> Self {
        let p = format!("porter/{site}/{controller}");
        Topics {
            controller: controller.to_string(),
            cmd: format!("{p}/cmd"),
            all_cmd: format!("porter/{site}/all/cmd"),
            reply: format!("{p}/reply"),
            events: format!("{p}/events"),
            status: format!("{p}/status"),
        }
    }
}

/// What the MQTT side needs from the rest of the daemon.
#[derive(Clone)]
pub struct Deps {
    pub svc: Arc<KeyService>,
    pub ctl: Arc<dyn Control>,
    pub audit: Audit,
    pub store: Store,
    /// The broker's address, for messages.
    pub broker: String,
    /// The status document (without `state`), built on demand.
    pub status: Arc<dyn Fn() -> super::status::Status + Send + Sync>,
    /// The controller's key pair, which signs every reply, event and status.
    pub identity: Arc<Identity>,
    /// Signed commands: the pinned portal keys and the replay guard.
    pub signed: Arc<super::signed::Guard>,
    /// Home Assistant discovery (on or off; `None` without doors).
    pub ha: Option<HaDeps>,
}

/// What Home Assistant discovery needs: its topics and payloads, and the
/// doors' views.
#[derive(Clone)]
pub struct HaDeps {
    pub discovery: Arc<super::home_assistant::Discovery>,
    pub views: super::home_assistant::DoorViews,
}

/// A file that `[mqtt]` names cannot be used: a config error like any
/// other, key path first (`mqtt.ca_file: ... (hint: ...)`).
pub type SetupError = porter_drivers::ConfigError;

fn setup_error(key: &str, message: impl Into<String>, hint: impl Into<String>) -> SetupError {
    SetupError { path: format!("mqtt.{key}"), message: message.into(), hint: Some(hint.into()) }
}

/// The file `p` that `key` names cannot be read or parsed: `err` says why.
fn file_error(key: &str, p: &std::path::Path, err: impl std::fmt::Display) -> SetupError {
    let what = match key {
        "password_file" => "the file holding the broker's password",
        "ca_file" => "the PEM file of the CA that signed the broker's certificate",
        "cert_file" => "this controller's certificate, a PEM file",
        _ => "the private key of cert_file, a PEM file",
    };
    setup_error(key, format!("{}: {err}", p.display()), format!("point {key} at {what}, readable by the porter user"))
}

fn read_file(key: &'static str, p: &std::path::Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(p).map_err(|e| file_error(key, p, e))
}

const PEM_CERT: &str = "PEM encoded (-----BEGIN CERTIFICATE-----)";

fn tls_config(cfg: &MqttConfig) -> Result<rustls::ClientConfig, SetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(p) => {
            for c in rustls_pemfile::certs(&mut read_file("ca_file", p)?.as_slice()) {
                let c = c.map_err(|e| file_error("ca_file", p, e))?;
                roots.add(c).map_err(|e| {
                    setup_error(
                        "ca_file",
                        format!("{}: {e}", p.display()),
                        format!("it must hold the certificate of the CA that signed the broker's, {PEM_CERT}"),
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(setup_error(
                    "ca_file",
                    format!("{} holds no PEM certificate", p.display()),
                    format!("it must hold the certificate of the CA that signed the broker's, {PEM_CERT}"),
                ));
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(setup_error(
                    "ca_file",
                    "not set, and the system has no CA certificates",
                    "set ca_file to the PEM file of the CA that signed the broker's certificate, \
                     or install the system's CA certificates (ca-certificates)",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup_error("url", format!("TLS cannot be set up: {e}"), "use mqtt:// to connect without TLS"))?
        .with_root_certificates(roots);
    match (&cfg.cert_file, &cfg.key_file) {
        (Some(c), Some(k)) => {
            let certs = rustls_pemfile::certs(&mut read_file("cert_file", c)?.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error("cert_file", c, e))?;
            if certs.is_empty() {
                return Err(setup_error(
                    "cert_file",
                    format!("{} holds no PEM certificate", c.display()),
                    format!("it must hold this controller's certificate, {PEM_CERT}"),
                ));
            }
            let key = rustls_pemfile::private_key(&mut read_file("key_file", k)?.as_slice())
                .map_err(|e| file_error("key_file", k, e))?
                .ok_or_else(|| {
                    setup_error(
                        "key_file",
                        format!("{} holds no private key", k.display()),
                        "it must hold the private key of cert_file's certificate, PEM encoded (PKCS#8, PKCS#1 or SEC1)",
                    )
                })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                setup_error(
                    "key_file",
                    format!("{} cannot be used with cert_file {}: {e}", k.display(), c.display()),
                    "key_file must hold the private key of the certificate in cert_file",
                )
            })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The connection options: reading the password and TLS files happens here,
/// once, so a missing file is a start-up error and not a reconnect loop.
pub fn options(cfg: &MqttConfig, topics: &Topics) -> Result<MqttOptions, SetupError> {
    let mut o = connection(cfg, &cfg.client_id)?;
    o.set_clean_start(cfg.clean_start);
    if !cfg.clean_start {
        o.set_session_expiry_interval(Some(cfg.session_expiry_s));
    }
    o.set_manual_acks(true);
    o.set_receive_maximum(Some(RECEIVE_MAXIMUM));
    o.set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT);
    o.set_max_packet_size(Some(cfg.max_packet_bytes));
    o.set_last_will(LastWill::new(&topics.status, OFFLINE, QoS::AtLeastOnce, true, None));
    Ok(o)
}

/// What every client of the broker shares (the daemon and `porterctl --mqtt`):
/// address, keep-alive, TCP_NODELAY, credentials, TLS.
pub fn connection(cfg: &MqttConfig, client_id: &str) -> Result<MqttOptions, SetupError> {
    let mut o = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
    o.set_keep_alive(cfg.keep_alive);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    if let Some(user) = &cfg.username {
        let password = match &cfg.password_file {
            Some(p) => {
                String::from_utf8_lossy(&read_file("password_file", p)?).trim_end_matches(['\r', '\n']).to_string()
            }
            None => String::new(),
        };
        o.set_credentials(user.clone(), password);
    }
    if cfg.tls {
        o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(tls_config(
            cfg,
        )?))));
    }
    Ok(o)
}

/// A command applied, waiting for its reply to be published and its PUBACK sent.
struct Done {
    command: Publish,
    reply_topic: String,
    correlation: Option<Bytes>,
    reply: Vec<u8>,
}

/// Events the broker confirmed less than this long before a connection was
/// lost are sent again after the reconnect: a broker that acknowledged them
/// and then crashed may not have saved them yet (Mosquitto writes its
/// database after the fact, even with `autosave_on_changes`).
const REWIND: Duration = Duration::from_secs(3);

/// Counts for the "everything asked for is confirmed" test.
#[derive(Debug, Default)]
struct Outbox {
    /// Highest event seq the broker confirmed.
    acked: u64,
    /// Confirmations of the last [`REWIND`]: the confirmed seq and when.
    recent: std::collections::VecDeque<(u64, Instant)>,
    /// The confirmed seq as it was [`REWIND`] ago.
    settled: u64,
    /// Highest event seq asked for on this connection.
    asked: u64,
    /// QoS 1 publishes asked for on this connection (events, replies, status).
    issued: u64,
    /// Of those, gone out to the network.
    sent: u64,
}

impl Outbox {
    /// Records that everything up to `acked` is confirmed, at `now`.
    fn confirmed(&mut self, acked: u64, now: Instant) {
        self.acked = acked;
        self.recent.push_back((acked, now));
        self.settle(now);
    }

    /// Moves confirmations older than [`REWIND`] at `now` into `settled`.
    fn settle(&mut self, now: Instant) {
        while let Some(&(seq, at)) = self.recent.front() {
            if now.saturating_duration_since(at) <= REWIND {
                break;
            }
            self.settled = seq;
            self.recent.pop_front();
        }
    }

    /// The connection was lost at `now`: what the broker confirmed in the
    /// last [`REWIND`] is sent again on the next connection.
    fn rewind(&mut self, now: Instant) {
        self.settle(now);
        if self.acked > self.settled {
            tracing::info!(
                from = self.settled + 1,
                to = self.acked,
                "mqtt: events confirmed just before the disconnect are sent again"
            );
        }
        self.acked = self.settled.min(self.acked);
        self.recent.clear();
    }

    fn reset(&mut self) {
        self.asked = self.acked;
        self.issued = 0;
        self.sent = 0;
    }
}

/// Runs the MQTT session until `cancel` fires.
pub async fn run(mut opts: MqttOptions, topics: Topics, deps: Deps, cancel: CancellationToken) {
    // The Last Will is signed like any status.
    let will = seal::last_will_properties(&deps.identity, &topics.status, OFFLINE.as_bytes());
    opts.set_last_will(LastWill::new(&topics.status, OFFLINE, QoS::AtLeastOnce, true, Some(will)));
    let (client, mut el) = AsyncClient::new(opts, 1024);
    let (work_tx, work_rx) = mpsc::channel::<Publish>(RECEIVE_MAXIMUM as usize);
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(256);
    let worker = tokio::spawn(work(work_rx, done_tx, deps.clone(), topics.reply.clone(), topics.controller.clone()));
    let mut wake = deps.audit.subscribe();
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    let mut status_look = tokio::time::interval(STATUS_LOOK);
    status_look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Held here, not in the session: the select below waits on it while
    // its branches change the session.
    let mut views = deps.ha.as_ref().filter(|h| h.discovery.enabled()).map(|h| h.views.clone());
    let mut s = Session::new(client, topics, deps, work_tx);
    'session: loop {
        // One poll future lives until it completes: rumqttc's poll is not
        // safe to cancel (a connect cut short makes the broker publish our
        // Last Will), so other work happens while it is pending, never
        // instead of it.
        let ev = {
            let fut = el.poll();
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    ev = &mut fut => break ev,
                    _ = cancel.cancelled() => break 'session,
                    Some(d) = done_rx.recv() => s.replied(d),
                    r = wake.recv() => match r {
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => wake = s.deps.audit.subscribe(),
                        Ok(e) => s.recorded(&e),
                        Err(_) => {}
                    },
                    _ = status_tick.tick() => s.publish_status(),
                    _ = status_look.tick() => s.status_if_changed(),
                    Some(v) = door_change(&mut views) => s.ha_states(&v),
                }
                s.feed();
                s.pump();
            }
        };
        let retry_in = match ev {
            Ok(ev) => {
                s.event(ev);
                None
            }
            Err(e) => Some(s.lost(&e.to_string(), &mut el)),
        };
        if let Some(delay) = retry_in {
            tokio::select! {
                _ = cancel.cancelled() => break 'session,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        s.feed();
        if s.connected {
            confirm(&mut s.out, &el, &s.deps.store);
        }
        s.pump();
    }
    drop(s.work_tx);
    worker.abort();
    if s.connected {
        // A clean shutdown says offline itself, before the Last Will would.
        let status = (s.deps.status)().to_json(false);
        let props = seal::publish_properties(&s.deps.identity, &s.topics.status, &status, None);
        let _ = s.client.try_publish_with_properties(&s.topics.status, QoS::AtLeastOnce, true, status, props);
        let _ = s.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match el.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    tracing::info!("mqtt stopped");
}

/// The session's state between polls of the event loop: what [`run`]'s
/// loop hands each thing that happens to.
struct Session {
    client: AsyncClient,
    topics: Topics,
    deps: Deps,
    out: Outbox,
    /// Commands received and not yet handed to the worker.
    backlog: std::collections::VecDeque<Publish>,
    backlog_bytes: usize,
    work_tx: mpsc::Sender<Publish>,
    connected: bool,
    last_failure: Option<String>,
    dropped_commands: u64,
    backoff: Backoff,
    /// The last published status without its clock-driven fields, and when
    /// it was published (for [`Session::status_if_changed`]).
    last_status: Option<(Vec<u8>, Instant)>,
    /// The door views last published to Home Assistant on this connection.
    ha_last: Vec<super::home_assistant::DoorView>,
}

impl Session {
    fn new(client: AsyncClient, topics: Topics, deps: Deps, work_tx: mpsc::Sender<Publish>) -> Self {
        let acked = deps.store.counter(ACKED).unwrap_or(0);
        let mut out = Outbox { acked, settled: acked, ..Default::default() };
        out.reset();
        Session {
            client,
            topics,
            deps,
            out,
            backlog: Default::default(),
            backlog_bytes: 0,
            work_tx,
            connected: false,
            last_failure: None,
            dropped_commands: 0,
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(30)),
            last_status: None,
            ha_last: Vec::new(),
        }
    }

    /// The retained status, now (when connected).
    fn publish_status(&mut self) {
        if self.connected {
            let status = (self.deps.status)();
            self.publish_this(status);
        }
    }

    fn publish_this(&mut self, status: super::status::Status) {
        let compared = status.compared();
        if publish(
            &self.client,
            &self.deps.identity,
            &mut self.out,
            &self.topics.status,
            true,
            status.to_json(true),
            None,
        ) {
            self.last_status = Some((compared, Instant::now()));
        }
    }

    /// Publishes the status if what it reports changed since the last one,
    /// and that one is [`STATUS_DEBOUNCE`] old (else a later look does).
    fn status_if_changed(&mut self) {
        if !self.connected {
            return;
        }
        if let Some((_, at)) = &self.last_status {
            if at.elapsed() < STATUS_DEBOUNCE {
                return;
            }
        }
        let status = (self.deps.status)();
        if self.last_status.as_ref().is_some_and(|(last, _)| *last == status.compared()) {
            return;
        }
        self.publish_this(status);
    }

    /// The worker answered a command: its reply, then the command's ack.
    fn replied(&mut self, d: Done) {
        if self.connected {
            let props = PublishProperties { correlation_data: d.correlation, ..Default::default() };
            publish(&self.client, &self.deps.identity, &mut self.out, &d.reply_topic, false, d.reply, Some(props));
            let _ = self.client.try_ack(&d.command);
        }
    }

    /// An event was recorded: what the status reports of the store and its
    /// disk changed, so the portal sees it now, not at the next tick.
    fn recorded(&mut self, e: &audit::Event) {
        if e.json["type"].as_str().is_some_and(|t| t.starts_with("storage.") || t == "store.recovered") {
            self.publish_status();
        }
        let access = self.ha().and_then(|d| d.access(&e.json));
        if let (Some((topic, payload)), true) = (access, self.connected) {
            let payload = serde_json::to_vec(&payload).unwrap_or_default();
            publish(&self.client, &self.deps.identity, &mut self.out, &topic, false, payload, None);
        }
    }

    /// Discovery, when it is on.
    fn ha(&self) -> Option<Arc<super::home_assistant::Discovery>> {
        self.deps.ha.as_ref().map(|h| h.discovery.clone()).filter(|d| d.enabled())
    }

    /// At every connect: with discovery on, the retained configs and the
    /// doors' states; what an earlier run published and this one does not
    /// (discovery turned off, a door gone) is emptied, which removes it
    /// from Home Assistant.
    fn ha_connected(&mut self) {
        let Some(ha) = &self.deps.ha else { return };
        let d = ha.discovery.clone();
        let before: Vec<String> = match self.deps.store.get(HA_CONFIGS) {
            Ok(Some(v)) => String::from_utf8_lossy(&v).lines().map(String::from).collect(),
            _ => Vec::new(),
        };
        let mut now: Vec<String> = Vec::new();
        if d.enabled() {
            for (topic, payload) in d.configs() {
                let payload = serde_json::to_vec(&payload).unwrap_or_default();
                publish(&self.client, &self.deps.identity, &mut self.out, &topic, true, payload, None);
                now.push(topic);
            }
            for i in 0..ha.views.borrow().len() {
                now.extend([d.lock_topic(i), d.contact_topic(i)]);
            }
            self.ha_last.clear();
            let views = ha.views.borrow().clone();
            self.ha_states(&views);
        }
        for gone in before.iter().filter(|t| !now.contains(t)) {
            publish(&self.client, &self.deps.identity, &mut self.out, gone, true, Vec::new(), None);
        }
        if before != now {
            tracing::info!(
                published = now.len(),
                emptied = before.iter().filter(|t| !now.contains(t)).count(),
                "home assistant discovery"
            );
            let mut b = crate::store::Batch::default();
            if now.is_empty() {
                b.remove(HA_CONFIGS.to_vec());
            } else {
                b.put(HA_CONFIGS.to_vec(), now.join("\n").into_bytes());
            }
            if let Err(e) = self.deps.store.apply(b) {
                tracing::error!(error = %e, "home assistant: cannot record the discovery topics");
            }
        }
    }

    /// Publishes the doors' states that changed since the last ones.
    fn ha_states(&mut self, views: &[super::home_assistant::DoorView]) {
        let Some(d) = self.ha().filter(|_| self.connected) else { return };
        for (i, v) in views.iter().enumerate() {
            for (topic, payload) in d.states(i, v, self.ha_last.get(i)) {
                publish(
                    &self.client,
                    &self.deps.identity,
                    &mut self.out,
                    &topic,
                    true,
                    payload.as_bytes().to_vec(),
                    None,
                );
            }
        }
        self.ha_last = views.to_vec();
    }

    /// A message on a Home Assistant command topic: acknowledged, then a
    /// momentary unlock if the door allows it, else refused; logged either way.
    fn ha_command(&mut self, d: &super::home_assistant::Discovery, p: &Publish) {
        use super::home_assistant::Asked;
        let _ = self.client.try_ack(p);
        let topic = String::from_utf8_lossy(&p.topic);
        match d.asked(&topic, &p.payload) {
            Some(Asked::Unlock(i)) => match self.deps.ctl.unlock_by(d.door_id(i), None, "home_assistant") {
                Ok(u) => {
                    tracing::info!(door = %u.door, ms = u.ms, by = "home_assistant", "home assistant: momentary unlock")
                }
                Err(e) => {
                    tracing::warn!(door = %d.door_id(i), by = "home_assistant", error = %e.message, "home assistant: unlock failed")
                }
            },
            Some(Asked::Refused(why)) => tracing::warn!(
                topic = %crate::logtext::escape(&topic),
                payload = %crate::logtext::escape(&String::from_utf8_lossy(&p.payload)),
                by = "home_assistant",
                why,
                "home assistant command refused"
            ),
            None => {}
        }
    }

    /// Hands waiting commands to the worker.
    fn feed(&mut self) {
        feed(&mut self.backlog, &mut self.backlog_bytes, &self.work_tx);
    }

    /// Publishes recorded events within the window (when connected).
    fn pump(&mut self) {
        if self.connected {
            let (client, events, id) = (&self.client, &self.topics.events, &self.deps.identity);
            pump(&mut self.out, &self.deps.store, &mut |out, payload| {
                publish(client, id, out, events, false, payload, None)
            });
        }
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Incoming(Packet::ConnAck(ack)) => {
                self.connected = true;
                self.last_failure = None;
                self.backoff.reset();
                self.out.reset();
                tracing::info!(session_present = ack.session_present, "mqtt connected");
                let mut filters = vec![
                    Filter::new(&self.topics.cmd, QoS::AtLeastOnce),
                    Filter::new(&self.topics.all_cmd, QoS::AtLeastOnce),
                ];
                if let Some(d) = self.ha() {
                    filters.extend(d.command_topics().iter().map(|t| Filter::new(t, QoS::AtLeastOnce)));
                }
                if let Err(e) = self.client.try_subscribe_many(filters) {
                    tracing::error!(error = %e, "mqtt: cannot subscribe");
                }
                self.publish_status();
                self.ha_connected();
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                // Commands published before this point are not delivered to
                // a session without a stored subscription: "mqtt subscribed"
                // is the moment the controller takes commands.
                let mut topics = vec![self.topics.cmd.clone(), self.topics.all_cmd.clone()];
                topics.extend(self.ha().map(|d| d.command_topics()).unwrap_or_default());
                for (topic, code) in topics.iter().zip(&ack.return_codes) {
                    if !matches!(code, SubscribeReasonCode::Success(_)) {
                        tracing::error!(topic = %topic, reason = ?code, "mqtt: the broker refused the command subscription; check its ACL for this client");
                    }
                }
                tracing::info!("mqtt subscribed");
            }
            Event::Incoming(Packet::Publish(p)) => self.received(p),
            Event::Outgoing(Outgoing::Publish(_)) => self.out.sent += 1,
            _ => {}
        }
    }

    /// A message on a subscribed topic: a command is queued for the worker
    /// (within the backlog's bound), anything else acknowledged.
    fn received(&mut self, p: Publish) {
        if let Some(d) = self.ha().filter(|d| d.command_topics().iter().any(|t| t.as_bytes() == p.topic)) {
            self.ha_command(&d, &p);
        } else if p.topic != self.topics.cmd.as_bytes() && p.topic != self.topics.all_cmd.as_bytes() {
            let _ = self.client.try_ack(&p);
        } else if self.backlog_bytes + p.payload.len() > BACKLOG_BYTES {
            // Unacknowledged: the broker delivers it again after the next
            // reconnect.
            self.dropped_commands += 1;
            let dropped_commands = self.dropped_commands;
            tracing::error!(dropped_commands, "mqtt: command backlog full; command left unacknowledged");
        } else {
            self.backlog_bytes += p.payload.len();
            self.backlog.push_back(p);
        }
    }

    /// The connection failed or was lost (`why`); returns how long to wait
    /// before the next attempt.
    fn lost(&mut self, why: &str, el: &mut EventLoop) -> Duration {
        // Say why once, and again when the reason changes (a wrong CA,
        // password or certificate must show at info level); repeats of the
        // same failure only at debug.
        if self.connected {
            tracing::warn!(error = %why, "mqtt disconnected");
        } else if self.last_failure.as_deref() != Some(why) {
            tracing::warn!(error = %why, broker = %self.deps.broker, "mqtt connect failed; retrying with backoff");
        } else {
            tracing::debug!(error = %why, "mqtt connect failed");
        }
        self.last_failure = Some(why.to_string());
        if self.connected {
            self.out.rewind(Instant::now());
        }
        self.connected = false;
        el.pending.clear();
        self.out.reset();
        self.backoff.next_delay()
    }
}

/// The doors' views once they change; never without discovery.
async fn door_change(
    views: &mut Option<super::home_assistant::DoorViews>,
) -> Option<Vec<super::home_assistant::DoorView>> {
    match views {
        Some(v) => match v.changed().await {
            Ok(()) => Some(v.borrow_and_update().clone()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Publishes at QoS 1 without waiting, signed by `id` (`seal`); counts what
/// was handed to the client.
fn publish(
    client: &AsyncClient,
    id: &Identity,
    out: &mut Outbox,
    topic: &str,
    retain: bool,
    payload: Vec<u8>,
    props: Option<PublishProperties>,
) -> bool {
    let props = seal::publish_properties(id, topic, &payload, props);
    let r = client.try_publish_with_properties(topic, QoS::AtLeastOnce, retain, payload, props);
    if r.is_ok() {
        out.issued += 1;
    }
    r.is_ok()
}

/// Hands waiting commands to the worker, in arrival order, as it has room.
fn feed(backlog: &mut std::collections::VecDeque<Publish>, bytes: &mut usize, work: &mpsc::Sender<Publish>) {
    while let Some(p) = backlog.pop_front() {
        let len = p.payload.len();
        match work.try_send(p) {
            Ok(()) => *bytes -= len,
            Err(mpsc::error::TrySendError::Full(p)) | Err(mpsc::error::TrySendError::Closed(p)) => {
                backlog.push_front(p);
                break;
            }
        }
    }
}

/// Asks for the next stored events, in seq order, up to [`WINDOW`] beyond
/// the confirmed one.
fn pump(out: &mut Outbox, store: &Store, publish: &mut dyn FnMut(&mut Outbox, Vec<u8>) -> bool) {
    while out.asked < out.acked + WINDOW {
        let batch = audit::read(store, out.asked, (out.acked + WINDOW - out.asked) as usize);
        if batch.is_empty() {
            return;
        }
        for e in batch {
            let seq = e["seq"].as_u64().unwrap_or(0);
            if !publish(out, serde_json::to_vec(&e).unwrap_or_default()) {
                return;
            }
            out.asked = seq;
        }
    }
}

/// Everything asked for has gone out and nothing is unacknowledged: the
/// events asked for so far are confirmed.
fn confirm(out: &mut Outbox, el: &EventLoop, store: &Store) {
    if out.asked > out.acked && out.sent == out.issued && el.state.inflight() == 0 && el.pending.is_empty() {
        out.confirmed(out.asked, Instant::now());
        let mut b = crate::store::Batch::default();
        b.put(ACKED.to_vec(), out.acked.to_string().into_bytes());
        // Unflushed: losing it in a crash only resends some events.
        if let Err(e) = store.apply_lazy(b) {
            tracing::error!(error = %e, "mqtt: cannot record confirmed events");
        }
    }
}

/// The command worker: applies commands one at a time, in arrival order, so
/// that PUBACKs go out in the order the commands came (as MQTT requires).
async fn work(
    mut rx: mpsc::Receiver<Publish>,
    done: mpsc::Sender<Done>,
    deps: Deps,
    default_reply: String,
    controller: String,
) {
    let replies = Arc::new(Replies::new(deps.store.clone()));
    while let Some(p) = rx.recv().await {
        let props = p.properties.clone().unwrap_or_default();
        let reply_topic = props
            .response_topic
            .filter(|t| !t.is_empty() && !t.contains(['+', '#']))
            .unwrap_or_else(|| default_reply.clone());
        // Signature and replay guard first: a refused command is never
        // applied, nor kept as its id's reply.
        // Off the async workers: admitting flushes the key's counter.
        let incoming = super::signed::extract(p.payload.clone(), &props.user_properties);
        let (guard, topic) = (deps.signed.clone(), p.topic.clone());
        let admitted = crate::provision::background(move || guard.admit(&topic, incoming))
            .await
            .unwrap_or_else(|e| Err(super::signed::Refusal::internal(e.to_string())));
        let mut reply = match admitted {
            Ok(admitted) => handle(&deps, &replies, admitted).await,
            Err(refusal) => {
                refusal.record(&deps.audit, deps.signed.now_ms());
                refusal.reply(&p.payload)
            }
        };
        if let Some(o) = reply.as_object_mut() {
            o.insert("controller".into(), json!(controller));
        }
        let d = Done {
            command: p,
            reply_topic,
            correlation: props.correlation_data,
            reply: serde_json::to_vec(&reply).unwrap_or_default(),
        };
        if done.send(d).await.is_err() {
            break;
        }
    }
}

/// The keyed digest (hex) of a command's op and arguments, which tells a
/// repeat from another command under the same id. Keyed, because the
/// arguments may hold a PIN; over the parsed arguments, so the order of their
/// keys and the spacing of the JSON do not matter.
fn command_digest(hasher: &crate::store::secret::KeyHasher, cmd: &command::Command) -> String {
    let text = format!("{}\n{}", cmd.op, Value::Object(cmd.args.clone()));
    hex::encode(hasher.command_digest(text.as_bytes()))
}

async fn handle(deps: &Deps, replies: &Arc<Replies>, admitted: super::signed::Admitted) -> Value {
    let super::signed::Admitted { command: payload, signer, fleet } = admitted;
    if payload.len() > MAX_COMMAND_BYTES {
        tracing::warn!(bytes = payload.len(), "mqtt: oversized command refused");
    }
    // Parsing a 1 MiB sync.put takes milliseconds, and so does its digest:
    // off the async workers, which also carry the device drivers' reads.
    let svc = deps.svc.clone();
    let parsed = crate::provision::background(move || {
        command::parse(&payload).map(|cmd| {
            let digest = command_digest(svc.hasher(), &cmd);
            (cmd, digest)
        })
    })
    .await
    .unwrap_or_else(|e| Err(json!({"ok": false, "error": {"code": "internal", "message": e.to_string()}})));
    let (cmd, digest) = match parsed {
        Ok(c) => c,
        Err(reply) => {
            let why = reply["error"]["message"].as_str().unwrap_or_default();
            tracing::warn!(error = %crate::logtext::escape(why), "mqtt: malformed command");
            return reply;
        }
    };
    if fleet && super::signed::holds_secret(&cmd.op, &cmd.args) {
        let refusal = super::signed::Refusal::secret_on_fleet(&cmd.op, signer.as_deref());
        refusal.record(&deps.audit, deps.signed.now_ms());
        return command::error_reply(&cmd.id, &refusal.error());
    }
    let key = replies::id_key(&cmd.id);
    match key.as_deref().map(|k| replies.get(k, &digest, signer.as_deref())) {
        Some(replies::Seen::Repeat(stored)) => {
            tracing::info!(op = %crate::logtext::escape(&cmd.op), "mqtt: repeated command id; sending the stored reply");
            return stored;
        }
        Some(replies::Seen::Reused) => {
            tracing::warn!(op = %crate::logtext::escape(&cmd.op), "mqtt: a command id used before for another command; refused");
            return command::error_reply(
                &cmd.id,
                &OpError::invalid("this id was used before for another command; give each command its own id"),
            );
        }
        Some(replies::Seen::Withheld) => {
            tracing::warn!(op = %crate::logtext::escape(&cmd.op), "mqtt: repeated command id from another key; its secret withheld");
            return command::error_reply(
                &cmd.id,
                &OpError::new(
                    super::error::ErrorCode::Forbidden,
                    "this id's reply holds a PIN or token made for a command signed by another key (or unsigned); it is shown only to that key: sign the repeat with it, or send a new command under a new id",
                ),
            );
        }
        Some(replies::Seen::New) | None => {}
    }
    let (svc, ctl, replies) = (deps.svc.clone(), deps.ctl.clone(), replies.clone());
    crate::provision::background(move || {
        let reply = command::execute(&svc, ctl.as_ref(), &cmd);
        // A read changes nothing, and its reply can be large (a page of
        // holders or of the log): a repeat reads again rather than keep a
        // copy on disk for every id.
        if let Some(k) = key.filter(|_| !command::is_read_only(&cmd.op)) {
            replies.put(&k, &digest, &reply, signer.as_deref());
        }
        tracing::info!(op = %crate::logtext::escape(&cmd.op), ok = reply["ok"] == json!(true), "mqtt command");
        reply
    })
    .await
    .unwrap_or_else(|e| json!({"ok": false, "error": {"code": "internal", "message": e.to_string()}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_has_its_commands_digest_whatever_its_spacing_and_key_order() {
        let h = crate::store::secret::KeyHasher::new(b"0123456789abcdef");
        let d = |text: &[u8]| command_digest(&h, &command::parse(text).unwrap());
        let a = d(br#"{"id":"c-1","op":"pin.set","args":{"holder":"h1","pin":"483920"}}"#);
        assert_eq!(a, d(br#"{ "op": "pin.set", "args": { "pin": "483920", "holder": "h1" }, "id": "c-1" }"#));
        assert_ne!(a, d(br#"{"id":"c-1","op":"pin.set","args":{"holder":"h1","pin":"483921"}}"#));
        assert_ne!(a, d(br#"{"id":"c-1","op":"state.get","args":{}}"#));
        assert!(!a.contains("483920"));
    }

    #[test]
    fn a_lost_connection_resends_what_was_confirmed_just_before() {
        let t0 = Instant::now();
        let mut out = Outbox { acked: 4, settled: 4, ..Default::default() };
        out.confirmed(5, t0);
        out.confirmed(8, t0 + Duration::from_secs(1));
        out.confirmed(12, t0 + Duration::from_secs(5));
        // Lost at 6 s: 12 was confirmed 1 s before, 8 and 5 more than 3 s before.
        out.rewind(t0 + Duration::from_secs(6));
        assert_eq!(out.acked, 8);
        out.reset();
        assert_eq!(out.asked, 8, "the next connection starts after 8");
        // A connection lost long after its last confirmation resends nothing.
        out.confirmed(20, t0 + Duration::from_secs(10));
        out.rewind(t0 + Duration::from_secs(60));
        assert_eq!(out.acked, 20);
    }
}
