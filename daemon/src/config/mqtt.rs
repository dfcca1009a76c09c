//! `[mqtt]`: the broker, the controller's credentials and TLS files, and the
//! session's limits. Without it the daemon runs standalone.

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
        })
    }
}
