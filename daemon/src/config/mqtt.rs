//! `[mqtt]`: the broker, the controller's credentials and TLS files, the
//! session's limits, and the portal keys whose signatures commands must
//! carry. Without it the daemon runs standalone.

use porter_drivers::settings::{ConfigErrors, Section};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub url: String,
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS through rustls with the ring provider.
    pub tls: bool,
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub keep_alive: Duration,
    pub clean_start: bool,
    pub session_expiry_s: u32,
    pub max_packet_bytes: u32,
    /// Refuse commands without a valid signature of a pinned portal key.
    pub require_signed: bool,
    /// The pinned portal public keys (`[[mqtt.portal_keys]]`).
    pub portal_keys: Vec<PortalKey>,
}

/// A pinned portal public key: its id (which signed commands name) and the
/// Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalKey {
    pub id: String,
    pub key: [u8; 32],
}

/// The longest key id, in bytes.
pub const MAX_KEY_ID: usize = 64;

/// An Ed25519 public key as an operator pastes it: a PEM block
/// (`openssl pkey -pubout`), its base64 body (SubjectPublicKeyInfo DER), or
/// the 32 raw bytes in base64 or hex.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let t = text.trim();
    let key = if t.starts_with("-----BEGIN") {
        ed25519_dalek::VerifyingKey::from_public_key_pem(t)
            .map_err(|e| format!("not an Ed25519 public key PEM: {e}"))?
    } else {
        let raw = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|e| e.to_string())?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|e| format!("neither PEM, base64 nor hex: {e}"))?
        };
        match raw.len() {
            32 => ed25519_dalek::VerifyingKey::from_bytes(&raw.try_into().unwrap_or([0; 32]))
                .map_err(|e| format!("not an Ed25519 public key: {e}"))?,
            _ => ed25519_dalek::VerifyingKey::from_public_key_der(&raw)
                .map_err(|e| format!("not an Ed25519 public key ({} bytes): {e}", raw.len()))?,
        }
    };
    Ok(key.to_bytes())
}

fn portal_keys(s: &mut Section<'_>, errs: &mut ConfigErrors) -> Vec<PortalKey> {
    let mut keys: Vec<PortalKey> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for mut k in s.tables("portal_keys", errs) {
        let id = k.string("id", "give each portal key an id, such as id = \"portal-2026\"", errs);
        let text = k.string(
            "public_key",
            "set public_key to the portal's Ed25519 public key (the PEM or base64 that porterctl keygen or openssl pkey -pubout prints)",
            errs,
        );
        let id = id.filter(|id| {
            let ok = !id.is_empty()
                && id.len() <= MAX_KEY_ID
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                errs.push(
                    k.key_path("id"),
                    format!("`{}` is not a key id", id.escape_debug()),
                    Some(format!("1 to {MAX_KEY_ID} letters, digits, '.', '_' or '-'")),
                );
            } else if seen.contains(id) {
                errs.push(
                    k.key_path("id"),
                    format!("key id `{id}` is pinned twice"),
                    Some("give each key its own id".into()),
                );
                return false;
            } else {
                seen.push(id.clone());
            }
            ok
        });
        let key = text.and_then(|t| match parse_public_key(&t) {
            Ok(key) => Some(key),
            Err(e) => {
                errs.push(
                    k.key_path("public_key"),
                    e,
                    Some("paste the public key that porterctl keygen or `openssl pkey -pubout` printed".into()),
                );
                None
            }
        });
        k.finish(errs);
        if let (Some(id), Some(key)) = (id, key) {
            keys.push(PortalKey { id, key });
        }
    }
    keys
}

/// Splits `mqtt[s]://host[:port][/]` into (tls, host, port).
pub fn parse_mqtt_url(u: &str) -> Option<(bool, String, u16)> {
    let (tls, rest) =
        if let Some(r) = u.strip_prefix("mqtts://") { (true, r) } else { (false, u.strip_prefix("mqtt://")?) };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (rest.to_string(), default_port),
        }
    };
    if host.is_empty() || host.contains('/') || port == 0 {
        return None;
    }
    Some((tls, host, port))
}

impl MqttConfig {
    /// `[mqtt]` of `top`; `None` when it is left out or is not usable. An
    /// empty `client_id` is filled in from the site and controller later.
    pub(crate) fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Option<Self> {
        let mut s = top.opt_table("mqtt", errs)?;
        let url =
            s.string("url", "set url = \"mqtts://broker.example:8883\", or remove [mqtt] to run standalone", errs);
        let parsed = url.as_deref().and_then(|u| {
            let p = parse_mqtt_url(u);
            if p.is_none() {
                errs.push(
                    s.key_path("url"),
                    format!("`{u}` is not an MQTT URL"),
                    Some("use mqtt://host:1883 or mqtts://host:8883".into()),
                );
            }
            p
        });
        let client_id = s.opt_string("client_id", errs);
        let username = s.opt_string("username", errs);
        let mut path = |k: &'static str, example: &str, without: &str| {
            s.opt_path(k, &format!("set {k} = \"{example}\", or leave {k} out {without}"), errs)
        };
        let password_file = path("password_file", "/etc/porter/mqtt.pass", "to log in without a password");
        let ca_file = path("ca_file", "/etc/porter/ca.pem", "to trust the system's CA certificates");
        let cert_file = path("cert_file", "/etc/porter/client.pem", "without mutual TLS");
        let key_file = path("key_file", "/etc/porter/client.key", "without mutual TLS");
        if cert_file.is_some() != key_file.is_some() {
            errs.push(
                s.key_path("cert_file"),
                "cert_file and key_file go together",
                Some("set both for mutual TLS, or neither".into()),
            );
        }
        if password_file.is_some() && username.is_none() {
            errs.push(s.key_path("password_file"), "a password needs a username", Some("set username too".into()));
        }
        if let (Some((false, ..)), true) = (&parsed, ca_file.is_some() || cert_file.is_some()) {
            errs.push(
                s.key_path("url"),
                "TLS files are set but the URL is mqtt://",
                Some("use mqtts:// to connect with TLS".into()),
            );
        }
        let keep_alive = Duration::from_secs(s.u64_or("keep_alive_s", 30, 5..=3600, errs));
        let clean_start = s.bool_or("clean_start", false, errs);
        let session_expiry_s = s.u64_or("session_expiry_s", 86_400, 0..=u32::MAX as u64, errs) as u32;
        let max_packet_bytes = (s.u64_or("max_packet_kb", 2048, 16..=65_536, errs) * 1024) as u32;
        let require_signed = s.bool_or("require_signed", false, errs);
        let portal_keys = portal_keys(&mut s, errs);
        if require_signed && portal_keys.is_empty() {
            errs.push(
                s.key_path("require_signed"),
                "require_signed is on but no portal key is pinned: every command would be refused",
                Some("add [[mqtt.portal_keys]] with id and public_key".into()),
            );
        }
        s.finish(errs);
        let (tls, host, port) = parsed?;
        Some(MqttConfig {
            url: url?,
            host,
            port,
            tls,
            client_id: client_id.unwrap_or_default(),
            username,
            password_file,
            ca_file,
            cert_file,
            key_file,
            keep_alive,
            clean_start,
            session_expiry_s,
            max_packet_bytes,
            require_signed,
            portal_keys,
        })
    }
}
