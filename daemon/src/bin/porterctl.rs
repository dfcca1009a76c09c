//! `porterctl`: send one op to the daemon's admin socket (or, with `--mqtt`,
//! through the broker as the portal would) and print the reply.
//!
//! `porterctl [--socket PATH | --config FILE] OP [key=value ...] [key:=JSON ...]`
//! `key=value` passes text; `key:=value` passes JSON (`doors:='["main"]'`,
//! `enabled:=false`); `key=-` reads the text from standard input (for a PIN),
//! `key:=-` reads JSON from it (a `sync.put`'s holders with their PINs). Exits 0 when the reply is ok, 1 when it is an error,
//! 2 when the daemon cannot be reached.

use clap::Parser;
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "porterctl", version, about = "Send one op to porterd's admin socket", after_help = ops_help())]
struct Cli {
    /// The admin socket (default: admin.socket from --config, else /run/porter/admin.sock).
    #[arg(long, env = "PORTER_ADMIN__SOCKET")]
    socket: Option<PathBuf>,
    /// Read the socket path from this config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Send the op over MQTT, as the portal would, instead of the admin
    /// socket, through the broker at this URL. With --config, the site,
    /// controller, TLS files and credentials default to the config's.
    #[arg(long, value_name = "URL")]
    mqtt: Option<String>,
    /// With --mqtt: the site (default: from --config).
    #[arg(long)]
    site: Option<String>,
    /// With --mqtt: the controller (default: from --config).
    #[arg(long)]
    controller: Option<String>,
    /// With --mqtt: the CA certificate for mqtts://.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// With --mqtt: client certificate for mutual TLS.
    #[arg(long)]
    cert_file: Option<PathBuf>,
    /// With --mqtt: client key for mutual TLS.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// With --mqtt: user name.
    #[arg(long)]
    username: Option<String>,
    /// With --mqtt: a file holding the password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// With keygen: the file to write the new portal private key to
    /// (PKCS#8 PEM, mode 0600; an existing file is not overwritten).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// With --mqtt: sign the command with this portal private key (PKCS#8
    /// PEM, as `porterctl keygen` or `openssl genpkey -algorithm ed25519`
    /// writes it), for a controller with mqtt.require_signed on. The counter
    /// is the wall clock in ms.
    #[arg(long, value_name = "FILE", requires = "key_id")]
    sign_key: Option<PathBuf>,
    /// With --sign-key: the key's id, as pinned in the controller's mqtt.portal_keys.
    #[arg(long, value_name = "ID", requires = "sign_key")]
    key_id: Option<String>,
    /// With --mqtt: the controller's public key (its identity.public_key,
    /// from `porterctl identity` on it or its status; base64, hex or PEM),
    /// or a file holding it. Only a reply that carries the controller's
    /// signature with this key is printed; others are ignored, and with no
    /// signed reply porterctl exits 3. Without it, the reply is printed
    /// unverified, with a warning.
    #[arg(long, value_name = "KEY|FILE")]
    controller_key: Option<String>,
    /// The op, such as holder.put or pin.generate.
    op: String,
    /// Arguments: key=text or key:=json.
    args: Vec<String>,
}

const OPS_HELP: &str = "Examples:
  porterctl holder.put holder=courier-ups name=UPS role=courier
  porterctl pin.generate holder=courier-ups
  porterctl pin.set holder=courier-ups pin=-     (type the PIN and Enter: it stays out of ps and shell history)
  porterctl sync.put holders:=- < holders.json    (JSON from standard input, for the same reason)
  porterctl sync.put retired:=- < retired.json    (the PINs the portal retired, [\"604728\", ...])
  porterctl card.assign holder=courier-ups uid=04a1b2c3
  porterctl holder.put holder=staff-ann role=staff doors:='[\"main\"]' schedule:='[{\"days\":\"weekdays\",\"from\":\"07:00\",\"to\":\"19:00\"}]'
  porterctl door.unlock door=main ms=3000
  porterctl lockout.clear device=keypad1
  porterctl state.get
  porterctl events.get after=1040 limit=100     (events from the log, to fill a gap in seq)
  porterctl doctor                              (checks the config, the devices, permissions, the broker, the files and folders porterd trusts)
  porterctl identity                            (this controller's public key, which signs what it publishes)
  porterctl keygen --out portal.pem             (a new portal key pair; prints the public key to pin)
  porterctl --mqtt mqtts://broker:8883 --site oak-street --controller room-1 --ca-file ca.pem state.get
  porterctl --config /etc/porter/porter.toml --mqtt mqtts://broker:8883 state.get
  porterctl --config /etc/porter/porter.toml --mqtt mqtts://broker:8883 --sign-key portal.pem --key-id portal-2026 door.unlock door=main
  porterctl --mqtt mqtts://broker:8883 --site oak-street --controller room-1 --controller-key room-1.pub state.get
                                                (only a reply signed by room-1's key, from porterctl identity on it)
The ops and their arguments are in docs/ops.md; MQTT in docs/mqtt.md.";

/// The examples, and every op, from the daemon's own list.
fn ops_help() -> String {
    format!("Ops: {}\n{OPS_HELP}", porterd::provision::command::OPS.join(", "))
}

/// Warns when an argument that carries secrets (a PIN, a QR token, a sync's
/// holders with theirs, the PINs a sync retires) is given on the command line.
fn warn_inline(k: &str) {
    let json = matches!(k, "holders" | "retired");
    let from_stdin = if json { format!("{k}:=- < file.json") } else { format!("{k}=- and type it") };
    if matches!(k, "pin" | "token" | "holders" | "retired") {
        eprintln!(
            "porterctl: warning: `{k}` given on the command line shows in the process list and the shell's history; \
             next time give {from_stdin}"
        );
    }
}

fn parse_args(args: &[String]) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    for a in args {
        let key = a.split_once('=').map(|(k, _)| k.trim_end_matches(':'));
        match key {
            // The value is not echoed: it may be a PIN.
            Some("") => return Err("an argument has no name before its =".into()),
            Some(k) if m.contains_key(k) => return Err(format!("`{k}` is given twice; give each argument once")),
            _ => {}
        }
        if let Some((k, "-")) = a.split_once(":=") {
            // JSON with secrets in it (a sync.put's PINs) from standard input.
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("{k}: reading standard input: {e}"))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{k}:=-: standard input must hold one JSON value: {e}"))?;
            m.insert(k.to_string(), v);
        } else if let Some((k, v)) = a.split_once(":=") {
            warn_inline(k);
            let v: Value =
                serde_json::from_str(v).map_err(|e| format!("{k}:=...: the value after := must be JSON: {e}"))?;
            m.insert(k.to_string(), v);
        } else if let Some((k, "-")) = a.split_once('=') {
            // Secrets (pin=-) are read from standard input, so they stay out
            // of the process list and the shell history.
            let mut line = String::new();
            let n = std::io::stdin().read_line(&mut line).map_err(|e| format!("{k}: reading standard input: {e}"))?;
            if n == 0 {
                return Err(format!("{k}=-: standard input was empty; type the value and press Enter"));
            }
            m.insert(k.to_string(), Value::String(line.trim_end_matches(['\r', '\n']).to_string()));
        } else if let Some((k, v)) = a.split_once('=') {
            warn_inline(k);
            m.insert(k.to_string(), Value::String(v.to_string()));
        } else {
            return Err(format!("`{a}`: arguments are key=value or key:=json"));
        }
    }
    Ok(m)
}

/// `porterctl doctor [user=NAME]`: checks the config (--config, else
/// /etc/porter/porter.toml), what is attached, the devices against it and
/// the service user's access to them, and the broker. Exits 1 when there is
/// something to fix.
fn doctor(cli: &Cli, args: &Map<String, Value>) -> ExitCode {
    use porterd::doctor::{self, Finding};
    let path = cli.config.clone().unwrap_or_else(|| PathBuf::from(porterd::config::DEFAULT_PATH));
    if cli.socket.is_some() && cli.config.is_none() {
        eprintln!(
            "porterctl: doctor checks a config file, not a socket: {} (give the daemon's with --config)",
            path.display()
        );
    }
    let user_name = args.get("user").and_then(Value::as_str).unwrap_or("porter").to_string();
    if let Some(k) = args.keys().find(|k| k.as_str() != "user") {
        eprintln!("porterctl: doctor takes user=NAME only, not `{k}`");
        return ExitCode::from(2);
    }
    let mut findings = Vec::new();
    let print = |title: &str, fs: &[Finding]| {
        println!("{title}");
        for f in fs {
            println!("  {f}");
        }
    };
    let cfg = match porterd::config::Config::load(&path) {
        Ok(c) => {
            findings.push(Finding::Ok(format!("{} is valid", path.display())));
            Some(c)
        }
        Err(errs) => {
            findings.push(Finding::Fix(format!(
                "{} has {} error(s); porterd will not start:",
                path.display(),
                errs.len()
            )));
            // The errors under their one FIX line: one thing to fix, the config.
            findings.extend(errs.0.iter().map(|e| Finding::Info(format!("  {e}"))));
            None
        }
    };
    print("Config", &findings);
    let attached = doctor::inventory();
    print("Attached", &attached);
    let user = doctor::ServiceUser::lookup(&user_name);
    let mut checks = Vec::new();
    if user.is_none() {
        checks.push(Finding::Fix(no_user(&user_name)));
    }
    if cfg.is_none() {
        checks.push(Finding::Info(
            "devices and broker: not checked, the config above has errors; fix them and run doctor again".into(),
        ));
    }
    if let Some(cfg) = &cfg {
        checks.extend(doctor::devices(cfg, user.as_ref()));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match rt {
            Ok(rt) => checks.extend(rt.block_on(doctor::broker(cfg, Duration::from_secs(cli.timeout.min(10))))),
            Err(e) => checks.push(Finding::Fix(format!("broker: not checked ({e})"))),
        }
        if cfg.mqtt.is_none() {
            checks.push(Finding::Info("broker: none configured ([mqtt]); the room runs standalone".into()));
        }
    }
    print(&format!("Devices and broker (as user {user_name})"), &checks);
    // The ownership checks porterd makes at start, for the service's user.
    let mut files = Vec::new();
    if let Some(cfg) = &cfg {
        let me = user.as_ref().map_or_else(porterd::ownership::euid, |u| u.uid);
        files = doctor::files(cfg, me, user.as_ref());
        // Without the user, the checks are this process's (not the missing user's).
        let who = match &user {
            Some(_) => format!("as user {user_name}, uid {me}"),
            None => format!("as uid {me}, this porterctl's: there is no user {user_name} yet"),
        };
        print(&format!("Files and folders ({who})"), &files);
    }
    let fixes = findings.iter().chain(&checks).chain(&files).filter(|f| matches!(f, Finding::Fix(_))).count();
    if fixes == 0 {
        println!("Nothing to fix.");
        ExitCode::SUCCESS
    } else {
        println!("{fixes} thing(s) to fix, each marked FIX above.");
        ExitCode::from(1)
    }
}

fn socket_path(cli: &Cli) -> Result<PathBuf, String> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    if let Some(c) = &cli.config {
        let cfg = porterd::config::Config::load(c).map_err(|errs| {
            let lines: Vec<String> = errs.0.iter().map(|e| format!("  {e}")).collect();
            format!("{}: {} error(s):\n{}", c.display(), errs.len(), lines.join("\n"))
        })?;
        return Ok(cfg.admin.socket);
    }
    Ok(PathBuf::from("/run/porter/admin.sock"))
}

/// `porterctl keygen --out FILE`: a new Ed25519 key pair for a portal. The
/// private key goes to FILE (PKCS#8 PEM, what `openssl genpkey -algorithm
/// ed25519` writes; mode 0600; never over an existing file); the public key
/// is printed on standard output as the raw 32 bytes in base64, the form
/// the controllers' config pins, and what to do with each on standard error.
fn keygen(cli: &Cli, args: &Map<String, Value>) -> ExitCode {
    use porterd::store::identity::{write_new, Identity};
    if let Some(k) = args.keys().next() {
        eprintln!("porterctl: keygen takes --out FILE only, not `{k}`");
        return ExitCode::from(2);
    }
    let Some(out) = &cli.out else {
        eprintln!("porterctl: keygen needs --out FILE: the file to write the new private key to");
        return ExitCode::from(2);
    };
    let id = match Identity::generate() {
        Ok(id) => id,
        Err(e) => {
            eprintln!("porterctl: keygen: the system has no random source: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = write_new("--out", out, &id) {
        eprintln!("porterctl: keygen: {e}");
        return ExitCode::from(1);
    }
    eprintln!(
        "porterctl: wrote a new Ed25519 private key to {} (PKCS#8 PEM, mode 0600): keep it on the portal and nowhere else.\n\
         Its public key (key id {}) follows: pin it in each controller's config (docs/config.md).",
        out.display(),
        id.key_id()
    );
    println!("{}", id.public_key());
    ExitCode::SUCCESS
}

/// Prints a reply on standard output. A reader that has gone (`porterctl
/// holder.list | head`) ends the output quietly, as other tools do, instead of
/// a panic: the op was done all the same, and its exit code says how.
fn print_reply(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("porterctl: cannot print the reply: {e}");
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let fail = |msg: String| {
        eprintln!("porterctl: {msg}");
        ExitCode::from(2)
    };
    let args = match parse_args(&cli.args) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    if cli.op == "doctor" {
        return doctor(&cli, &args);
    }
    if cli.op == "keygen" {
        return keygen(&cli, &args);
    }
    if cli.mqtt.is_some() {
        return match over_mqtt(&cli, args) {
            Ok(v) => {
                print_reply(&serde_json::to_string_pretty(&v).unwrap_or_default());
                if v["ok"] == Value::Bool(true) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(Failure { code, message }) => {
                eprintln!("porterctl: {message}");
                ExitCode::from(code)
            }
        };
    }
    let path = match socket_path(&cli) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let id = format!("ctl-{}", std::process::id());
    let cmd = serde_json::json!({"id": id, "op": cli.op, "args": args});
    // Before anything is sent: the socket must be the daemon's, not another user's stand-in.
    if let Err(e) = porterd::ownership::check_socket(&path) {
        if std::fs::symlink_metadata(&path).is_ok() {
            return fail(e);
        }
    }
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            return fail(format!(
                "cannot reach porterd at {}: {e} (is porterd running? is this the admin.socket of its config? are you in the porter group?)",
                path.display()
            ))
        }
    };
    if let Err(e) = porterd::ownership::check_peer(&stream, &path) {
        return fail(e);
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(cli.timeout)));
    let mut line = serde_json::to_vec(&cmd).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = stream.write_all(&line) {
        return fail(format!("sending to {}: {e}", path.display()));
    }
    let mut reply = String::new();
    if let Err(e) = BufReader::new(&stream).read_line(&mut reply) {
        return fail(format!("no reply from porterd within {} s: {e}", cli.timeout));
    }
    let Ok(v) = serde_json::from_str::<Value>(&reply) else {
        return fail(format!("porterd sent something that is not JSON: {reply}"));
    };
    print_reply(&serde_json::to_string_pretty(&v).unwrap_or(reply));
    if v["ok"] == Value::Bool(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The broker settings, site and controller for `--mqtt`: the command
/// line's, else those of `--config`.
fn mqtt_settings(cli: &Cli) -> Result<(porterd::config::MqttConfig, String, String), String> {
    use porterd::config::{parse_mqtt_url, Config, MqttConfig};

    let cfg = match &cli.config {
        Some(c) => Some(Config::load(c).map_err(|e| format!("{}: {e}", c.display()))?),
        None => None,
    };
    let from_cfg = cfg.as_ref().and_then(|c| c.mqtt.clone());
    let url = cli.mqtt.clone().unwrap_or_default();
    let (tls, host, port) = parse_mqtt_url(&url)
        .ok_or_else(|| format!("`{url}` is not an MQTT URL (mqtt://host:1883 or mqtts://host:8883)"))?;
    let site =
        cli.site.clone().or_else(|| cfg.as_ref().map(|c| c.site.clone())).ok_or("--mqtt needs --site (or --config)")?;
    let controller = cli
        .controller
        .clone()
        .or_else(|| cfg.as_ref().map(|c| c.controller.clone()))
        .ok_or("--mqtt needs --controller (or --config)")?;
    let base = from_cfg.unwrap_or(MqttConfig {
        url: url.clone(),
        host: host.clone(),
        port,
        tls,
        client_id: String::new(),
        username: None,
        password_file: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        keep_alive: Duration::from_secs(30),
        clean_start: true,
        session_expiry_s: 0,
        max_packet_bytes: 1 << 20,
        require_signed: false,
        portal_keys: Vec::new(),
    });
    let m = MqttConfig {
        url,
        host,
        port,
        tls,
        username: cli.username.clone().or(base.username.clone()),
        password_file: cli.password_file.clone().or(base.password_file.clone()),
        ca_file: cli.ca_file.clone().or(base.ca_file.clone()),
        cert_file: cli.cert_file.clone().or(base.cert_file.clone()),
        key_file: cli.key_file.clone().or(base.key_file.clone()),
        ..base
    };
    Ok((m, site, controller))
}

/// Why `--mqtt` gave no reply to print, and the exit status that says so.
struct Failure {
    code: u8,
    message: String,
}

/// Exit status 2: the broker could not be reached, or no reply came.
impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { code: 2, message }
    }
}

/// Exit status 3: replies came, none signed by the pinned controller key.
const UNVERIFIED: u8 = 3;

/// `--controller-key`: the key itself (base64, hex or PEM), or a file
/// holding it.
fn controller_key(cli: &Cli) -> Result<Option<ed25519_dalek::VerifyingKey>, String> {
    let Some(given) = &cli.controller_key else { return Ok(None) };
    let path = std::path::Path::new(given);
    let text = if path.is_file() {
        std::fs::read_to_string(path).map_err(|e| format!("--controller-key {}: {e}", path.display()))?
    } else {
        given.clone()
    };
    let raw = porterd::config::parse_public_key(&text).map_err(|e| {
        format!(
            "--controller-key: neither a file nor an Ed25519 public key ({e}); give the controller's identity.public_key \
             (porterctl identity on it) or a file holding it or its public_key_pem"
        )
    })?;
    ed25519_dalek::VerifyingKey::from_bytes(&raw).map(Some).map_err(|e| format!("--controller-key: {e}"))
}

/// Whether a reply that arrived on `topic` is the controller's: with a
/// pinned key, its signature must verify (else the reason, for a warning);
/// without one it is taken, and the caller warns that it was not verified.
fn from_controller(
    pinned: Option<&ed25519_dalek::VerifyingKey>,
    topic: &[u8],
    correlation: &[u8],
    p: &rumqttc::v5::mqttbytes::v5::Publish,
) -> Result<(), String> {
    let Some(key) = pinned else { return Ok(()) };
    let topic = std::str::from_utf8(topic).map_err(|_| "its topic is not UTF-8".to_string())?;
    let props = p.properties.as_ref().map(|pp| pp.user_properties.as_slice()).unwrap_or_default();
    porterd::provision::seal::verify(key, topic, correlation, &p.payload, props)
}

/// The failure when `--timeout` ran out: exit 3 when `ignored` replies
/// came that did not verify, else 2 (no reply at all).
fn no_reply(cli: &Cli, ignored: usize, reply_topic: &str, site: &str, controller: &str) -> Failure {
    if ignored > 0 {
        return Failure {
            code: UNVERIFIED,
            message: format!(
                "no reply signed by the controller's key within {} s: {ignored} reply(ies) to this command \
                 did not verify against --controller-key and were ignored (someone else publishes on \
                 {reply_topic}, or the key given is not controller {controller}'s: compare it with \
                 porterctl identity on the controller)",
                cli.timeout
            ),
        };
    }
    Failure::from(format!(
        "no reply within {} s (is porterd connected to this broker? site {site}, controller {controller})",
        cli.timeout
    ))
}

/// Publishes the op to the controller's command topic with a Response Topic
/// and Correlation Data of its own, and waits for the matching reply: with
/// `--controller-key`, the first one signed with that key (others are
/// ignored with a warning); without, the first one, with a warning that it
/// was not verified.
fn over_mqtt(cli: &Cli, args: Map<String, Value>) -> Result<Value, Failure> {
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event};

    let (m, site, controller) = mqtt_settings(cli)?;
    let pinned = controller_key(cli)?;
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let client_id = format!("porterctl-{}-{nonce}", std::process::id());
    let mut opts = porterd::provision::mqtt::connection(&m, &client_id).map_err(|e| e.to_string())?;
    opts.set_clean_start(true);
    opts.set_max_packet_size(Some(m.max_packet_bytes));
    let reply_topic = format!("porterctl/{client_id}/reply");
    let cmd_topic = format!("porter/{site}/{controller}/cmd");
    let id = format!("ctl-{nonce}");
    let cmd = serde_json::json!({"id": id, "op": cli.op, "args": args});
    let payload = serde_json::to_vec(&cmd).unwrap_or_default();
    let user_properties = signature(cli, &cmd_topic, &payload)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (client, mut el) = AsyncClient::new(opts, 16);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(cli.timeout);
        let mut sent = false;
        let mut ignored = 0;
        loop {
            let Ok(ev) = tokio::time::timeout_at(deadline, el.poll()).await else {
                return Err(no_reply(cli, ignored, &reply_topic, &site, &controller));
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client.subscribe(&reply_topic, QoS::AtLeastOnce).await.map_err(|e| e.to_string())?;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) if !sent => {
                    let props = PublishProperties {
                        response_topic: Some(reply_topic.clone()),
                        correlation_data: Some(id.clone().into_bytes().into()),
                        user_properties: user_properties.clone(),
                        ..Default::default()
                    };
                    client
                        .publish_with_properties(&cmd_topic, QoS::AtLeastOnce, false, payload.clone(), props)
                        .await
                        .map_err(|e| e.to_string())?;
                    sent = true;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let corr = p.properties.as_ref().and_then(|pp| pp.correlation_data.as_ref());
                    if corr.is_some_and(|c| c.as_ref() == id.as_bytes()) {
                        if let Err(why) = from_controller(pinned.as_ref(), &p.topic, id.as_bytes(), &p) {
                            // Not printed: it is not the controller's.
                            ignored += 1;
                            eprintln!(
                                "porterctl: ignored a reply to {id} that is not controller {controller}'s: {why}; \
                                 waiting for one signed with --controller-key"
                            );
                            continue;
                        }
                        let v: Value =
                            serde_json::from_slice(&p.payload).map_err(|e| format!("reply is not JSON: {e}"))?;
                        if pinned.is_none() {
                            eprintln!(
                                "porterctl: warning: this reply was not verified as controller {controller}'s (anyone \
                                 the broker lets publish on {reply_topic} could have sent it); pin the controller's \
                                 key with --controller-key KEY, its identity.public_key from porterctl identity on it"
                            );
                        }
                        let _ = client.disconnect().await;
                        return Ok(v);
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(format!("cannot reach the broker at {}:{}: {e}", m.host, m.port).into()),
            }
        }
    })
}

/// With `--sign-key`: the user properties that sign `payload` for `topic`
/// (docs/mqtt.md, "Signed commands"); the counter is the wall clock in ms,
/// so each run is above the last.
fn signature(cli: &Cli, topic: &str, payload: &[u8]) -> Result<Vec<(String, String)>, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use porterd::provision::signed;
    let (Some(file), Some(key_id)) = (&cli.sign_key, &cli.key_id) else { return Ok(Vec::new()) };
    let pem = std::fs::read_to_string(file).map_err(|e| format!("--sign-key {}: {e}", file.display()))?;
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        format!("--sign-key {}: not an Ed25519 private key in PKCS#8 PEM ({e}); make one with porterctl keygen or openssl genpkey -algorithm ed25519", file.display())
    })?;
    let counter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("the clock is before 1970: {e}"))?
        .as_millis() as u64;
    let sig = signed::sign(&key, topic, key_id, counter, None, payload);
    Ok(signed::properties(key_id, counter, None, &sig))
}

/// What to do about a missing service user: reinstall where the Debian
/// package is installed (it makes the user), else the hand-built steps.
fn no_user(name: &str) -> String {
    if Path::new("/var/lib/dpkg/info/porter.list").exists() {
        format!(
            "there is no user `{name}`, which the service runs as: reinstall the porter package (sudo apt install --reinstall porter makes the user), or name another with user=NAME"
        )
    } else {
        format!(
            "there is no user `{name}`, which the service runs as: create it (sudo useradd --system --user-group --home-dir /var/lib/porter --shell /usr/sbin/nologin {name}; docs/install.md, \"Building by hand\"), or name another with user=NAME"
        )
    }
}
