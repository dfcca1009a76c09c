//! The command and reply schema shared by the admin socket and MQTT, and the
//! checks of arguments that several ops share. Each op, its arguments and
//! what it does are in `command/op.rs` ([`Op`]).
//!
//! Command: `{"id": "c-1842", "op": "pin.generate", "args": {"holder": "courier-ups"}}`.
//! Reply: `{"id": "c-1842", "ok": true, "result": {...}}` or
//! `{"id": ..., "ok": false, "error": {"code": "duplicate", "message": "..."}}`.

use super::error::OpError;
use super::keys::{HolderSpec, KeyService, SyncHolder};
use crate::access::schedule;
use crate::access::Role;
use crate::store::records::{KeyLimit, WindowRecord};
use porter_drivers::CardUid;
use serde_json::{json, Map, Value};

mod op;
pub use op::{is_read_only, Op, OpName, ParseContext, OPS};

/// The largest command accepted, in bytes.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;
/// The longest string `id`, in bytes: ids are stored with every reply kept
/// for idempotency (docs/mqtt.md), so they must be small. A UUID is 36.
pub const MAX_ID_BYTES: usize = 128;
/// The longest `op`, in bytes (the longest op is 15); an unknown op is
/// echoed in the reply, which is stored.
pub const MAX_OP_BYTES: usize = 32;
/// The longest error `message` in a reply, in bytes: messages may echo names
/// from the command (an unknown argument, a door id), and replies are stored.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// What the running daemon does for ops that act on doors and devices.
pub trait Control: Send + Sync {
    /// Opens `door` for `ms` (the door's unlock time when `None`).
    fn unlock(&self, door: &str, ms: Option<u64>) -> Result<Unlocked, OpError>;
    /// [`Control::unlock`] on behalf of `by` (`home_assistant`), as the
    /// event's and the log's `by` say.
    fn unlock_by(&self, door: &str, ms: Option<u64>, by: &'static str) -> Result<Unlocked, OpError> {
        let _ = by;
        self.unlock(door, ms)
    }
    /// Clears the lockout of `device`, or of every device; answers once the
    /// cleared states are on disk.
    fn clear_lockout(&self, device: Option<&str>) -> Result<Cleared, OpError>;
    /// Opens `door`'s enrolment window for `window` (the configured time when
    /// `None`): the next card presented there is assigned to `holder`.
    fn enroll(&self, holder: &str, door: &str, window: Option<std::time::Duration>) -> Result<WindowOpen, OpError>;
    /// The input devices locked out now, for `state.get`.
    fn lockouts(&self) -> Result<Vec<Lockout>, OpError>;
    /// The controller's public key (`identity`).
    fn identity(&self) -> Result<crate::store::identity::PublicIdentity, OpError>;
}

/// `door.unlock`'s result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unlocked {
    pub door: String,
    pub ms: u64,
}

/// `lockout.clear`'s result: the input devices cleared.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cleared {
    pub cleared: Vec<String>,
}

/// `enroll.start`'s result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WindowOpen {
    pub holder: String,
    pub door: String,
    pub timeout_s: u64,
    /// RFC 3339.
    pub until: String,
}

/// An input device locked out now, in `state.get`'s `lockouts`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lockout {
    pub device: String,
    /// When it ends (RFC 3339); `null` for the daily cap, which ends with the local day.
    pub until: Option<String>,
    pub failures_today: u32,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: Value,
    pub op: String,
    pub args: Map<String, Value>,
}

/// The reply to a command line longer than [`MAX_COMMAND_BYTES`], whose
/// text was not kept (the admin socket skips it).
pub fn too_long_reply() -> Value {
    error_reply(&Value::Null, &OpError::invalid(format!("the command is over the limit of {MAX_COMMAND_BYTES} bytes")))
}

/// Parses a command; on failure returns the reply to send (with the id when
/// one could be read).
pub fn parse(bytes: &[u8]) -> Result<Command, Value> {
    if bytes.len() > MAX_COMMAND_BYTES {
        // Still answer with the command's id when it can be read: the
        // transport already bounds how large `bytes` can be.
        let id = serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .filter(|id| check_command_id(id).is_ok())
            .unwrap_or(Value::Null);
        return Err(error_reply(
            &id,
            &OpError::invalid(format!("command is {} bytes; the limit is {MAX_COMMAND_BYTES}", bytes.len())),
        ));
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| error_reply(&Value::Null, &OpError::invalid(format!("not JSON: {e}"))))?;
    let Value::Object(mut obj) = v else {
        return Err(error_reply(&Value::Null, &OpError::invalid("a command is a JSON object with id, op and args")));
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    // An id that cannot be an id is not echoed back: not an oversized one,
    // nor a number that JSON parsing has already rounded.
    check_command_id(&id).map_err(|e| error_reply(&Value::Null, &e))?;
    let op = match obj.remove("op") {
        Some(Value::String(s)) if s.len() <= MAX_OP_BYTES => s,
        Some(Value::String(_)) => {
            return Err(error_reply(&id, &OpError::invalid(format!("`op` is at most {MAX_OP_BYTES} bytes"))))
        }
        _ => return Err(error_reply(&id, &OpError::invalid("`op` must be a string such as \"pin.generate\""))),
    };
    let args = match obj.remove("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(error_reply(&id, &OpError::invalid("`args` must be an object"))),
    };
    if let Some(k) = obj.keys().next() {
        return Err(error_reply(&id, &OpError::invalid(format!("unknown field `{k}`; a command has id, op and args"))));
    }
    Ok(Command { id, op, args })
}

/// A command id: a string of at most [`MAX_ID_BYTES`] bytes, or a whole
/// number that 64 bits hold exactly (an `i64` or a `u64`). A larger number,
/// or one with a fraction or an exponent, reaches us already rounded to a
/// float, and two such ids could collide: refused, never rounded.
pub fn check_command_id(id: &Value) -> Result<(), OpError> {
    match id {
        Value::String(s) if s.len() <= MAX_ID_BYTES => Ok(()),
        Value::String(_) => Err(OpError::invalid(format!("`id` is at most {MAX_ID_BYTES} bytes"))),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
        Value::Number(_) => Err(OpError::invalid(
            "a numeric `id` must be a whole number from -9223372036854775808 to 18446744073709551615, \
             written without a fraction or exponent (or send the id as a string)",
        )),
        _ => Err(OpError::invalid("`id` must be a string or a number")),
    }
}

/// `message` cut to at most [`MAX_MESSAGE_BYTES`] bytes, on a character
/// boundary, with `…` at the end when cut.
fn bounded_message(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.into();
    }
    let mut end = MAX_MESSAGE_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end]).into()
}

pub fn ok_reply(id: &Value, result: Value) -> Value {
    json!({"id": id, "ok": true, "result": result})
}

pub fn error_reply(id: &Value, e: &OpError) -> Value {
    json!({"id": id, "ok": false, "error": {"code": e.code, "message": bounded_message(&e.message)}})
}

/// Runs one command and returns its reply. Blocking (it waits for the disk):
/// call it from a blocking thread.
pub fn execute(svc: &KeyService, ctl: &dyn Control, cmd: &Command) -> Value {
    let cx = ParseContext { now_ms: svc.now_ms(), pin_length: svc.pin_length() };
    match Op::parse(&cmd.op, &cmd.args, cx).and_then(|op| op.apply(svc, ctl)) {
        Ok(v) => ok_reply(&cmd.id, v),
        Err(e) => error_reply(&cmd.id, &e),
    }
}

/// Typed access to `args`, each error naming the argument.
struct Args<'a> {
    m: &'a Map<String, Value>,
    known: &'static [&'static str],
}

impl<'a> Args<'a> {
    fn new(m: &'a Map<String, Value>, known: &'static [&'static str]) -> Result<Self, OpError> {
        if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(OpError::invalid(if known.is_empty() {
                format!("unknown argument `{k}`; this op takes no arguments")
            } else {
                format!("unknown argument `{k}`; this op takes: {}", known.join(", "))
            }));
        }
        Ok(Args { m, known })
    }
    fn get(&self, k: &str) -> Option<&'a Value> {
        debug_assert!(self.known.contains(&k));
        self.m.get(k).filter(|v| !v.is_null())
    }
    fn opt_str(&self, k: &str) -> Result<Option<&'a str>, OpError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(OpError::invalid(format!("`{k}` must be a string"))),
        }
    }
    fn str(&self, k: &str) -> Result<&'a str, OpError> {
        self.opt_str(k)?.ok_or_else(|| OpError::invalid(format!("missing argument `{k}`")))
    }
    fn opt_u64(&self, k: &str) -> Result<Option<u64>, OpError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            // porterctl passes key=value as text; accept decimal text for numbers.
            Some(Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
            Some(_) => Err(OpError::invalid(format!("`{k}` must be a whole number"))),
        }
    }
    fn opt_bool(&self, k: &str) -> Result<Option<bool>, OpError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(_) => Err(OpError::invalid(format!("`{k}` must be true or false"))),
        }
    }
    fn holder(&self) -> Result<&'a str, OpError> {
        let id = self.str("holder")?;
        check_id(id)?;
        Ok(id)
    }
    fn uid(&self) -> Result<CardUid, OpError> {
        CardUid::parse_hex(self.str("uid")?)
            .ok_or_else(|| OpError::invalid("`uid` must be the card's UID in hex, 1 to 10 bytes (such as 04a1b2c3)"))
    }
}

/// Holder ids: 1-64 characters of letters, digits, `.`, `_` and `-`.
pub fn check_id(id: &str) -> Result<(), OpError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(OpError::invalid("`holder` must be 1-64 characters of letters, digits, `.`, `_` and `-`"));
    }
    Ok(())
}

fn parse_time(k: &str, v: Option<&str>) -> Result<Option<i64>, OpError> {
    v.map(|s| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|_| OpError::invalid(format!("`{k}` must be an RFC 3339 time such as 2026-11-25T16:00:00Z")))
    })
    .transpose()
}

pub(crate) fn parse_schedule(v: Option<&Value>) -> Result<Vec<WindowRecord>, OpError> {
    let bad = |i: usize, what: &str| {
        OpError::invalid(format!(
            "`schedule[{i}]`: {what}; a window is {{\"days\": [\"mon\", ...], \"from\": \"07:00\", \"to\": \"21:00\"}}"
        ))
    };
    let Some(v) = v else { return Ok(vec![]) };
    let Value::Array(items) = v else {
        return Err(OpError::invalid("`schedule` must be an array of windows"));
    };
    if items.len() > schedule::MAX_WINDOWS {
        return Err(OpError::invalid(format!("`schedule` holds at most {} windows", schedule::MAX_WINDOWS)));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let Value::Object(w) = w else { return Err(bad(i, "not an object")) };
            if let Some(k) = w.keys().find(|k| !["days", "from", "to"].contains(&k.as_str())) {
                return Err(bad(i, &format!("unknown field `{k}`")));
            }
            let days = match w.get("days") {
                None => 0x7f,
                // One name, or names separated by commas, as in the config.
                Some(Value::String(s)) => s
                    .split(',')
                    .map(str::trim)
                    .try_fold(0u8, |m, d| schedule::parse_days(d).map(|b| m | b))
                    .ok_or_else(|| bad(i, &format!("unknown day in {s:?}")))?,
                Some(Value::Array(ds)) => ds.iter().try_fold(0u8, |m, d| {
                    d.as_str().and_then(schedule::parse_days).map(|b| m | b).ok_or_else(|| {
                        bad(i, "days are mon, tue, wed, thu, fri, sat, sun, daily, weekdays or weekends")
                    })
                })?,
                Some(_) => return Err(bad(i, "`days` must be a list of day names")),
            };
            let t = |k: &str| {
                w.get(k)
                    .and_then(Value::as_str)
                    .and_then(schedule::parse_hhmm)
                    .ok_or_else(|| bad(i, &format!("`{k}` must be HH:MM")))
            };
            let (from, to) = (t("from")?, t("to")?);
            if days == 0 || from == to {
                return Err(bad(i, "a window needs at least one day and from != to"));
            }
            Ok(WindowRecord { days, from, to })
        })
        .collect()
}

const HOLDER_ARGS: &[&str] = &["holder", "name", "role", "doors", "valid_from", "valid_until", "schedule", "enabled"];
const SYNC_HOLDER_ARGS: &[&str] =
    &["holder", "name", "role", "doors", "valid_from", "valid_until", "schedule", "enabled", "pin", "qr", "cards"];
/// Holders per `sync.put`.
pub const SYNC_PUT_MAX: usize = 1000;
/// Retired PINs per `sync.put` (about 90 KiB of JSON at 6 digits).
pub const SYNC_RETIRED_MAX: usize = 10_000;

/// The most uses a limited key may be given.
pub const MAX_USES: u64 = 1000;

/// The limit of a key made now (`pin.generate`, `pin.set`, `qr.generate`):
/// [`limit_args`], and an expiry in the past is refused, as it would make a
/// key that can never open (a sync may bring one: its key has expired).
fn new_key_limit(a: &Args, now_ms: i64) -> Result<Option<KeyLimit>, OpError> {
    let limit = limit_args(a.opt_u64("uses")?, a.opt_str("expires")?, a.opt_u64("expires_in_s")?, now_ms)?;
    if limit.and_then(|l| l.expires_ms).is_some_and(|e| e <= now_ms) {
        return Err(OpError::invalid("`expires` is in the past: the key could never open"));
    }
    Ok(limit)
}

/// A key's limit from `uses` and `expires` (RFC 3339) or `expires_in_s`
/// (counted from `now_ms`).
fn limit_args(
    uses: Option<u64>,
    expires: Option<&str>,
    expires_in_s: Option<u64>,
    now_ms: i64,
) -> Result<Option<KeyLimit>, OpError> {
    if uses.is_some_and(|u| !(1..=MAX_USES).contains(&u)) {
        return Err(OpError::invalid(format!("`uses` must be from 1 to {MAX_USES}")));
    }
    if expires_in_s.is_some_and(|s| !(60..=31_536_000).contains(&s)) {
        return Err(OpError::invalid("`expires_in_s` must be from 60 to 31536000 (a year)"));
    }
    let expires_ms = match (parse_time("expires", expires)?, expires_in_s) {
        (Some(_), Some(_)) => return Err(OpError::invalid("give `expires` or `expires_in_s`, not both")),
        (Some(t), None) => Some(t),
        (None, Some(s)) => Some(now_ms + s as i64 * 1000),
        (None, None) => None,
    };
    if uses.is_none() && expires_ms.is_none() {
        return Ok(None);
    }
    Ok(Some(KeyLimit { uses: uses.map(|u| u as u32), expires_ms }))
}

/// A key given as its text or as `{"<field>": text, "active": bool}`, for a
/// PIN or QR token also with `uses` and `expires`.
fn key_arg(v: Option<&Value>, field: &str, what: &str) -> Result<Option<(String, bool, Option<KeyLimit>)>, OpError> {
    let bad = || OpError::invalid(format!("`{what}` must be a string or {{\"{field}\": \"...\", \"active\": true}}"));
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some((s.clone(), true, None))),
        Some(Value::Object(o)) => {
            let limited = field != "uid";
            let known: &[&str] = if limited { &["active", "uses", "expires"] } else { &["active"] };
            if let Some(k) = o.keys().find(|k| k.as_str() != field && !known.contains(&k.as_str())) {
                return Err(OpError::invalid(format!(
                    "`{what}`: unknown field `{k}`; it takes {field}, {}",
                    known.join(", ")
                )));
            }
            let text = o.get(field).and_then(Value::as_str).ok_or_else(bad)?;
            let active = match o.get("active") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(bad()),
            };
            let uses = match o.get("uses") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| OpError::invalid("`uses` must be a whole number"))?),
            };
            let expires = match o.get("expires") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_str()),
                Some(_) => return Err(OpError::invalid("`expires` must be an RFC 3339 time")),
            };
            // A sync takes no `expires_in_s`, so the time is not needed here.
            Ok(Some((text.to_string(), active, limit_args(uses, expires, None, 0)?)))
        }
        Some(_) => Err(bad()),
    }
}

/// The shortest QR token a sync may bring: a QR code is shown on phones and
/// printed, so it must not be guessable (`qr.generate` makes 22 characters,
/// 128 random bits).
pub const QR_TOKEN_MIN: usize = 16;
/// The longest: a QR code a scanner reads in one go.
pub const QR_TOKEN_MAX: usize = 512;

/// A QR token from the portal: 16 to 512 printable ASCII characters, no spaces.
fn check_qr_token(t: &str) -> Result<(), OpError> {
    if !(QR_TOKEN_MIN..=QR_TOKEN_MAX).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(OpError::invalid(format!(
            "a QR token is {QR_TOKEN_MIN} to {QR_TOKEN_MAX} printable ASCII characters without spaces, \
             and should be random (qr.generate makes 22 characters, 128 bits)"
        )));
    }
    Ok(())
}

/// One holder of `sync.put`: the fields of `holder.put` plus its keys.
fn sync_holder(v: &Value, pin_length: usize) -> Result<SyncHolder, OpError> {
    let Value::Object(m) = v else { return Err(OpError::invalid("each holder is an object")) };
    let a = Args::new(m, SYNC_HOLDER_ARGS)?;
    let spec = holder_spec(&a)?;
    let at = |e: OpError| OpError::new(e.code, format!("holder `{}`: {}", spec.id, e.message));
    let pin = key_arg(a.get("pin"), "pin", "pin").map_err(at)?;
    if let Some((p, ..)) = &pin {
        if p.len() != pin_length || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(at(OpError::invalid(format!("a PIN is exactly {pin_length} digits"))));
        }
    }
    let qr = key_arg(a.get("qr"), "token", "qr").map_err(at)?;
    if let Some((t, ..)) = &qr {
        check_qr_token(t).map_err(at)?;
    }
    let cards = match a.get("cards") {
        None => vec![],
        Some(Value::Array(cs)) => cs
            .iter()
            .map(|c| {
                let (uid, active, _) =
                    key_arg(Some(c), "uid", "cards[]")?.ok_or_else(|| OpError::invalid("a card needs its uid"))?;
                let uid =
                    CardUid::parse_hex(&uid).ok_or_else(|| OpError::invalid("a card uid is 1 to 10 bytes of hex"))?;
                Ok((uid, active))
            })
            .collect::<Result<Vec<_>, OpError>>()
            .map_err(at)?,
        Some(_) => return Err(at(OpError::invalid("`cards` must be a list"))),
    };
    if cards.len() > super::keys::MAX_CARDS {
        return Err(at(OpError::invalid(format!("a holder has at most {} cards", super::keys::MAX_CARDS))));
    }
    Ok(SyncHolder { spec, pin, qr, cards })
}

/// The arguments of `sync.put`: `holders` and `retired` (PINs the portal
/// retired), either or both. A retired PIN is never echoed in an error: the
/// error names its place in the list.
fn sync_put_args(a: &Map<String, Value>, pin_length: usize) -> Result<(Vec<SyncHolder>, Vec<String>), OpError> {
    let a = Args::new(a, &["holders", "retired"])?;
    let holders = match (a.get("holders"), a.get("retired")) {
        (None, None) => {
            return Err(OpError::invalid(
                "give `holders` (a list of holders), `retired` (a list of retired PINs), or both",
            ))
        }
        (None, Some(_)) => &[][..],
        (Some(Value::Array(hs)), _) => hs.as_slice(),
        (Some(_), _) => return Err(OpError::invalid("`holders` must be a list of holders")),
    };
    if holders.len() > SYNC_PUT_MAX {
        return Err(OpError::invalid(format!("at most {SYNC_PUT_MAX} holders per sync.put")));
    }
    let retired = match a.get("retired") {
        None => &[][..],
        Some(Value::Array(ps)) => ps.as_slice(),
        Some(_) => return Err(OpError::invalid("`retired` must be a list of PINs, each a string of digits")),
    };
    if retired.len() > SYNC_RETIRED_MAX {
        return Err(OpError::invalid(format!("at most {SYNC_RETIRED_MAX} retired PINs per sync.put")));
    }
    let retired = retired
        .iter()
        .enumerate()
        .map(|(i, p)| match p.as_str() {
            Some(p) if p.len() == pin_length && p.bytes().all(|b| b.is_ascii_digit()) => Ok(p.to_string()),
            _ => Err(OpError::invalid(format!("`retired[{i}]`: a PIN is a string of exactly {pin_length} digits"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let holders = holders.iter().map(|h| sync_holder(h, pin_length)).collect::<Result<Vec<_>, _>>()?;
    Ok((holders, retired))
}

/// The holder fields of `holder.put` (and of each holder of `sync.put`).
fn holder_spec(a: &Args<'_>) -> Result<HolderSpec, OpError> {
    let id = a.holder()?;
    let name = a.opt_str("name")?.unwrap_or(id);
    if name.len() > 128 {
        return Err(OpError::invalid("`name` is at most 128 bytes"));
    }
    let role = a.str("role").and_then(|r| {
        Role::parse(r).ok_or_else(|| OpError::invalid("`role` must be courier, staff, resident or manager"))
    })?;
    let doors = match a.get("doors") {
        None => None,
        Some(Value::String(s)) if s == "*" => None,
        Some(Value::String(s)) => Some(s.split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect()),
        Some(Value::Array(ds)) => Some(
            ds.iter()
                .map(|d| {
                    d.as_str()
                        .map(String::from)
                        .ok_or_else(|| OpError::invalid("`doors` must be \"*\" or a list of door ids"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(OpError::invalid("`doors` must be \"*\" or a list of door ids")),
    };
    let valid_from_ms = parse_time("valid_from", a.opt_str("valid_from")?)?;
    let valid_until_ms = parse_time("valid_until", a.opt_str("valid_until")?)?;
    if let (Some(f), Some(u)) = (valid_from_ms, valid_until_ms) {
        if u <= f {
            return Err(OpError::invalid("`valid_until` must be after `valid_from`"));
        }
    }
    let spec = HolderSpec {
        id: id.to_string(),
        name: name.to_string(),
        role,
        doors,
        valid_from_ms,
        valid_until_ms,
        schedule: parse_schedule(a.get("schedule"))?,
        enabled: a.opt_bool("enabled")?.unwrap_or(true),
    };
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::error::ErrorCode;

    #[test]
    fn key_limits_are_checked() {
        let now = 1_795_622_400_000;
        assert_eq!(limit_args(None, None, None, now).unwrap(), None);
        assert_eq!(limit_args(Some(1), None, None, now).unwrap(), Some(KeyLimit { uses: Some(1), expires_ms: None }));
        let at = limit_args(None, Some("2026-12-01T00:00:00Z"), None, now).unwrap().unwrap();
        assert_eq!((at.uses, at.expires_ms), (None, Some(1_796_083_200_000)));
        let soon = limit_args(Some(3), None, Some(3600), now).unwrap().unwrap();
        assert_eq!(soon.expires_ms, Some(now + 3_600_000));
        for (uses, expires, in_s, msg) in [
            (Some(0), None, None, "`uses` must be from 1 to 1000"),
            (Some(1001), None, None, "`uses` must be from 1 to 1000"),
            (None, None, Some(10), "`expires_in_s` must be from 60"),
            (None, Some("tomorrow"), None, "`expires` must be an RFC 3339 time"),
            (Some(1), Some("2026-12-01T00:00:00Z"), Some(600), "not both"),
        ] {
            let e = limit_args(uses, expires, in_s, now).unwrap_err();
            assert!(e.message.contains(msg), "{}", e.message);
        }
        // In a sync, a card takes no limit; a PIN does.
        let e = key_arg(Some(&json!({"uid": "04a1", "uses": 1})), "uid", "cards[]").unwrap_err();
        assert!(e.message.contains("unknown field `uses`"), "{}", e.message);
        let (_, active, limit) =
            key_arg(Some(&json!({"pin": "483920", "active": false, "uses": 2})), "pin", "pin").unwrap().unwrap();
        assert_eq!((active, limit), (false, Some(KeyLimit { uses: Some(2), expires_ms: None })));
    }

    #[test]
    fn a_new_key_cannot_expire_in_the_past_and_ids_are_echoed_only_when_ids() {
        let m = json!({"expires": "2020-01-01T00:00:00Z"});
        let a = Args::new(m.as_object().unwrap(), &["uses", "expires", "expires_in_s"]).unwrap();
        let now = 1_795_622_400_000;
        assert!(new_key_limit(&a, now).unwrap_err().message.contains("in the past"));
        let m = json!({"expires": "2999-01-01T00:00:00Z"});
        let a = Args::new(m.as_object().unwrap(), &["uses", "expires", "expires_in_s"]).unwrap();
        assert!(new_key_limit(&a, now).unwrap().is_some());
        let e = parse(br#"{"id": {"x": 1}, "op": "state.get"}"#).unwrap_err();
        assert_eq!(e["id"], Value::Null, "{e}");
        let m = json!({"foo": 1});
        let e = Args::new(m.as_object().unwrap(), &[]).err().unwrap();
        assert!(e.message.ends_with("this op takes no arguments"), "{}", e.message);
    }

    #[test]
    fn a_synced_qr_token_is_long_enough_to_be_unguessable() {
        let h = |qr: &str| sync_holder(&json!({"holder": "r1", "role": "resident", "qr": qr}), 6);
        assert!(h("x").unwrap_err().message.contains("16 to 512"));
        assert!(h("sixteen chars ok").is_err(), "a space");
        assert!(h(&"y".repeat(513)).is_err());
        assert!(h("Zm9vYmFyYmF6cXV4cXV1eA").is_ok());
    }

    /// Issue 11: `sync.put` carries the PINs a portal retired, so a deleted
    /// PIN stays unusable after the store was lost.
    #[test]
    fn sync_put_takes_retired_pins_with_or_without_holders_and_never_echoes_them() {
        let args = |v: Value| sync_put_args(v.as_object().unwrap(), 6);
        let (hs, retired) = args(json!({"retired": ["604728", "730194"]})).unwrap();
        assert_eq!((hs.len(), retired), (0, vec!["604728".to_string(), "730194".to_string()]));
        let (hs, retired) =
            args(json!({"holders": [{"holder": "a", "role": "staff"}], "retired": ["604728"]})).unwrap();
        assert_eq!((hs.len(), retired.len()), (1, 1));
        let (hs, retired) = args(json!({"holders": [], "retired": null})).unwrap();
        assert_eq!((hs.len(), retired.len()), (0, 0));
        let e = args(json!({})).unwrap_err();
        assert!(e.message.contains("`holders`") && e.message.contains("`retired`"), "{}", e.message);
        assert!(args(json!({"holders": "x"})).unwrap_err().message.contains("`holders` must be a list"));
        for (v, msg) in [
            (json!({"retired": "604728"}), "`retired` must be a list of PINs"),
            (json!({"retired": ["604728", "60472"]}), "`retired[1]`: a PIN is a string of exactly 6 digits"),
            (json!({"retired": ["6047281"]}), "`retired[0]`: a PIN is a string of exactly 6 digits"),
            (json!({"retired": ["60472a"]}), "`retired[0]`: a PIN is a string of exactly 6 digits"),
            (json!({"retired": [604728]}), "`retired[0]`: a PIN is a string of exactly 6 digits"),
            (json!({"retired": ["604728"], "pins": []}), "unknown argument `pins`"),
        ] {
            let e = args(v.clone()).unwrap_err();
            assert_eq!(e.code, ErrorCode::Invalid, "{v}");
            assert!(e.message.contains(msg), "{v}: {}", e.message);
            for pin in ["604728", "60472", "6047281", "60472a"] {
                assert!(!e.message.contains(pin), "{v}: {}", e.message);
            }
        }
        let many: Vec<String> = (0..=SYNC_RETIRED_MAX).map(|i| format!("{:06}", i + 100_000)).collect();
        let e = args(json!({ "retired": many })).unwrap_err();
        assert!(e.message.contains(&format!("at most {SYNC_RETIRED_MAX} retired PINs per sync.put")), "{}", e.message);
        assert!(args(json!({ "retired": many[..SYNC_RETIRED_MAX] })).is_ok());
    }

    #[test]
    fn schedule_days_are_a_name_a_list_or_names_with_commas() {
        let days = |d: Value| parse_schedule(Some(&json!([{"days": d, "from": "07:00", "to": "19:00"}])));
        assert_eq!(days(json!("weekdays")).unwrap()[0].days, 0x1f);
        assert_eq!(days(json!(["sat", "sun"])).unwrap()[0].days, 0x60);
        assert_eq!(days(json!("sat, sun")).unwrap()[0].days, 0x60);
        assert!(days(json!("sat,someday")).unwrap_err().message.contains("unknown day in \"sat,someday\""));
        let many: Vec<Value> = (0..17).map(|_| json!({"from": "07:00", "to": "19:00"})).collect();
        assert!(parse_schedule(Some(&json!(many))).unwrap_err().message.contains("at most 16"));
    }
}

#[cfg(test)]
mod bounds_tests {
    use super::*;

    /// Issue 11: a 1 MB id was stored with every reply, and an id beyond 64
    /// bits was rounded to a float, so two ids collided.
    #[test]
    fn ids_and_op_names_are_bounded_and_numeric_ids_kept_exactly() {
        let cmd = |id: Value, op: &str| parse(json!({"id": id, "op": op}).to_string().as_bytes());
        assert!(cmd(json!("x".repeat(MAX_ID_BYTES)), "state.get").is_ok());
        let e = cmd(json!("x".repeat(MAX_ID_BYTES + 1)), "state.get").unwrap_err();
        assert_eq!(e["error"]["code"], "invalid", "{e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("at most 128 bytes"), "{e}");
        assert_eq!(e["id"], Value::Null, "an oversized id is not echoed");
        for ok in [json!(7), json!(-7), json!(u64::MAX), json!(i64::MIN)] {
            assert_eq!(cmd(ok.clone(), "state.get").unwrap().id, ok);
        }
        for text in [
            r#"{"id": 1180591620717411303424, "op": "state.get"}"#,
            r#"{"id": 1180591620717411303425, "op": "state.get"}"#,
            r#"{"id": -9223372036854775809, "op": "state.get"}"#,
            r#"{"id": 1.5, "op": "state.get"}"#,
            r#"{"id": 7.0, "op": "state.get"}"#,
            r#"{"id": 1e3, "op": "state.get"}"#,
        ] {
            let e = parse(text.as_bytes()).unwrap_err();
            assert_eq!(e["error"]["code"], "invalid", "{text}: {e}");
            assert!(e["error"]["message"].as_str().unwrap().contains("whole number"), "{text}: {e}");
            assert_eq!(e["id"], Value::Null, "{text}: a rounded id is not echoed");
        }
        assert!(cmd(json!("c-1"), &"x".repeat(MAX_OP_BYTES)).is_ok(), "unknown, but refused by dispatch");
        let e = cmd(json!("c-1"), &"x".repeat(MAX_OP_BYTES + 1)).unwrap_err();
        assert_eq!(e["error"]["code"], "invalid", "{e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("at most 32 bytes"), "{e}");
        // Even an oversized command's id is echoed only when it is a valid id.
        let mut big = format!(r#"{{"id": "{}", "op": "state.get", "args": {{"x": ""#, "y".repeat(200));
        big.push_str(&"z".repeat(MAX_COMMAND_BYTES));
        big.push_str(r#""}}"#);
        assert_eq!(parse(big.as_bytes()).unwrap_err()["id"], Value::Null);
    }

    /// Error messages echo names from the command (an unknown argument's
    /// name, a door id): each stored reply must stay small.
    #[test]
    fn an_error_message_is_bounded() {
        let name = "a".repeat(500_000);
        let e = error_reply(&json!("c-1"), &OpError::invalid(format!("unknown argument `{name}`")));
        let m = e["error"]["message"].as_str().unwrap();
        assert!(m.len() <= MAX_MESSAGE_BYTES, "{}", m.len());
        assert!(m.starts_with("unknown argument `aaa") && m.ends_with('…'), "{m}");
        let e = error_reply(&json!("c-1"), &OpError::invalid("é".repeat(MAX_MESSAGE_BYTES)));
        assert!(e["error"]["message"].as_str().unwrap().len() <= MAX_MESSAGE_BYTES);
    }
}
