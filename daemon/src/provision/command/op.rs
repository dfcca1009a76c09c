//! One typed [`Op`] per op of the contract, listed once in [`ops!`]: the
//! name on the wire, whether it changes anything, its arguments parsed and
//! checked ([`Op::parse`]) and what it does ([`Op::apply`]). The unknown-op
//! reply's list ([`OPS`]), the read-only ops that are not stored for
//! idempotency, porterctl's help and the docs' op tables (checked by
//! `daemon/tests/op_lists.rs`) all come from that one list.
//!
//! Adding an op: a line in `ops!`, a variant of [`Op`] with its arguments,
//! an arm in [`Op::parse`] and in [`Op::apply`] (the compiler points at
//! both), and its heading in docs/ops.md.

use super::{holder_spec, new_key_limit, sync_put_args, Args, Control, HOLDER_ARGS};
use crate::access::Role;
use crate::provision::error::{ErrorCode, OpError};
use crate::provision::keys::{HolderSpec, KeyService, NewKey, SyncHolder};
use crate::store::records::KeyLimit;
use porter_drivers::CardUid;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Lists every op once: `Variant = "name"`, and `read_only` for the ops
/// that change nothing.
macro_rules! ops {
    ($($variant:ident = $name:literal $(, $ro:ident)?;)*) => {
        /// The name of an op, one variant per op of the contract, in
        /// documentation order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum OpName {
            $($variant,)*
        }

        /// Every op's name, in documentation order.
        pub const OPS: &[&str] = &[$($name,)*];

        impl OpName {
            /// Every op, in documentation order.
            pub const ALL: &'static [OpName] = &[$(OpName::$variant,)*];

            /// The name on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(OpName::$variant => $name,)*
                }
            }

            /// The op named `name`, if there is one.
            pub fn from_name(name: &str) -> Option<OpName> {
                match name {
                    $($name => Some(OpName::$variant),)*
                    _ => None,
                }
            }

            /// Whether the op changes nothing. Its reply is not stored for
            /// idempotency: a repeat reads again, and a reply that can be
            /// large (a page of holders or events) is not kept on disk for
            /// every id.
            pub fn read_only(self) -> bool {
                match self {
                    $(OpName::$variant => ops!(@ro $($ro)?),)*
                }
            }
        }
    };
    (@ro read_only) => { true };
    (@ro) => { false };
}

ops! {
    HolderPut = "holder.put";
    HolderGet = "holder.get", read_only;
    HolderList = "holder.list", read_only;
    HolderDelete = "holder.delete";
    PinGenerate = "pin.generate";
    PinSet = "pin.set";
    PinActivate = "pin.activate";
    PinDeactivate = "pin.deactivate";
    PinDelete = "pin.delete";
    QrGenerate = "qr.generate";
    QrActivate = "qr.activate";
    QrDeactivate = "qr.deactivate";
    QrDelete = "qr.delete";
    CardAssign = "card.assign";
    CardActivate = "card.activate";
    CardDeactivate = "card.deactivate";
    CardDelete = "card.delete";
    EnrollStart = "enroll.start";
    DoorUnlock = "door.unlock";
    LockoutClear = "lockout.clear";
    SyncBegin = "sync.begin";
    SyncPut = "sync.put";
    SyncCommit = "sync.commit";
    StateGet = "state.get", read_only;
    EventsGet = "events.get", read_only;
    Identity = "identity", read_only;
}

/// Whether `op` names an op that changes nothing ([`OpName::read_only`]).
pub fn is_read_only(op: &str) -> bool {
    OpName::from_name(op).is_some_and(OpName::read_only)
}

/// What parsing an op's arguments needs besides them.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    /// Now, from the key service's clock: `expires_in_s` counts from it and
    /// an `expires` before it is refused.
    pub now_ms: i64,
    /// The site's PIN length (`keys.pin_length`).
    pub pin_length: usize,
}

/// An op with its arguments, parsed and checked.
#[derive(Debug)]
pub enum Op {
    HolderPut(HolderSpec),
    HolderGet {
        holder: String,
    },
    HolderList {
        role: Option<Role>,
        after: Option<String>,
        limit: usize,
    },
    HolderDelete {
        holder: String,
    },
    PinGenerate {
        holder: String,
        limit: Option<KeyLimit>,
    },
    PinSet {
        holder: String,
        pin: String,
        limit: Option<KeyLimit>,
    },
    PinActivate {
        holder: String,
    },
    PinDeactivate {
        holder: String,
    },
    PinDelete {
        holder: String,
    },
    QrGenerate {
        holder: String,
        limit: Option<KeyLimit>,
    },
    QrActivate {
        holder: String,
    },
    QrDeactivate {
        holder: String,
    },
    QrDelete {
        holder: String,
    },
    CardAssign {
        holder: String,
        uid: CardUid,
    },
    CardActivate {
        uid: CardUid,
    },
    CardDeactivate {
        uid: CardUid,
    },
    CardDelete {
        uid: CardUid,
    },
    /// `door` is checked only once the holder is found (a missing door for
    /// an unknown holder has always been `not_found`), so its error waits
    /// here until [`Op::apply`].
    EnrollStart {
        holder: String,
        door: Result<String, OpError>,
        window: Option<Duration>,
    },
    DoorUnlock {
        door: String,
        ms: Option<u64>,
    },
    LockoutClear {
        device: Option<String>,
    },
    SyncBegin {
        generation: u64,
    },
    SyncPut {
        holders: Vec<SyncHolder>,
        retired: Vec<String>,
    },
    SyncCommit,
    StateGet,
    EventsGet {
        after: u64,
        limit: u64,
    },
    Identity,
}

/// The reply to an op that is not in [`OPS`].
pub fn unknown_op(op: &str) -> OpError {
    OpError::new(ErrorCode::Unsupported, format!("unknown op `{op}`; ops are: {}", OPS.join(", ")))
}

/// The `holder` argument of an op that takes only it.
fn holder_only(a: &Map<String, Value>) -> Result<String, OpError> {
    Ok(Args::new(a, &["holder"])?.holder()?.to_string())
}

/// The `uid` argument of an op that takes only it.
fn uid_only(a: &Map<String, Value>) -> Result<CardUid, OpError> {
    Args::new(a, &["uid"])?.uid()
}

/// The holder and limit of a key made now (`pin.generate`, `qr.generate`).
fn new_key(a: &Map<String, Value>, now_ms: i64) -> Result<(String, Option<KeyLimit>), OpError> {
    let a = Args::new(a, &["holder", "uses", "expires", "expires_in_s"])?;
    let limit = new_key_limit(&a, now_ms)?;
    Ok((a.holder()?.to_string(), limit))
}

impl Op {
    /// Parses the arguments of op `name`, checking each as the contract
    /// says; the first error found is the reply.
    pub fn parse(name: &str, a: &Map<String, Value>, cx: ParseContext) -> Result<Op, OpError> {
        use OpName as N;
        let name = OpName::from_name(name).ok_or_else(|| unknown_op(name))?;
        Ok(match name {
            N::HolderPut => Op::HolderPut(holder_spec(&Args::new(a, HOLDER_ARGS)?)?),
            N::HolderGet => Op::HolderGet { holder: holder_only(a)? },
            N::HolderList => holder_list(a)?,
            N::HolderDelete => Op::HolderDelete { holder: holder_only(a)? },
            N::PinGenerate => new_key(a, cx.now_ms).map(|(holder, limit)| Op::PinGenerate { holder, limit })?,
            N::PinSet => {
                let a = Args::new(a, &["holder", "pin", "uses", "expires", "expires_in_s"])?;
                let limit = new_key_limit(&a, cx.now_ms)?;
                Op::PinSet { holder: a.holder()?.to_string(), pin: a.str("pin")?.to_string(), limit }
            }
            N::PinActivate => Op::PinActivate { holder: holder_only(a)? },
            N::PinDeactivate => Op::PinDeactivate { holder: holder_only(a)? },
            N::PinDelete => Op::PinDelete { holder: holder_only(a)? },
            N::QrGenerate => new_key(a, cx.now_ms).map(|(holder, limit)| Op::QrGenerate { holder, limit })?,
            N::QrActivate => Op::QrActivate { holder: holder_only(a)? },
            N::QrDeactivate => Op::QrDeactivate { holder: holder_only(a)? },
            N::QrDelete => Op::QrDelete { holder: holder_only(a)? },
            N::CardAssign => {
                let a = Args::new(a, &["holder", "uid"])?;
                Op::CardAssign { holder: a.holder()?.to_string(), uid: a.uid()? }
            }
            N::CardActivate => Op::CardActivate { uid: uid_only(a)? },
            N::CardDeactivate => Op::CardDeactivate { uid: uid_only(a)? },
            N::CardDelete => Op::CardDelete { uid: uid_only(a)? },
            N::EnrollStart => enroll_start(a)?,
            N::DoorUnlock => door_unlock(a)?,
            N::LockoutClear => {
                Op::LockoutClear { device: Args::new(a, &["device"])?.opt_str("device")?.map(Into::into) }
            }
            N::SyncBegin => {
                let a = Args::new(a, &["generation"])?;
                let g = a.opt_u64("generation")?.ok_or_else(|| OpError::invalid("missing argument `generation`"))?;
                Op::SyncBegin { generation: g }
            }
            N::SyncPut => sync_put_args(a, cx.pin_length).map(|(holders, retired)| Op::SyncPut { holders, retired })?,
            N::SyncCommit => Args::new(a, &[]).map(|_| Op::SyncCommit)?,
            N::StateGet => Args::new(a, &[]).map(|_| Op::StateGet)?,
            N::EventsGet => {
                let a = Args::new(a, &["after", "limit"])?;
                let after = a.opt_u64("after")?.unwrap_or(0);
                let limit = a.opt_u64("limit")?.unwrap_or(crate::provision::events::LIMIT_DEFAULT);
                Op::EventsGet { after, limit }
            }
            N::Identity => Args::new(a, &[]).map(|_| Op::Identity)?,
        })
    }

    /// Carries the op out and returns its result, as the reply's JSON.
    /// Blocking (it waits for the disk): call it from a blocking thread.
    pub fn apply(self, svc: &KeyService, ctl: &dyn Control) -> Result<Value, OpError> {
        let done = |r: Result<(), OpError>| r.map(|_| json!({}));
        let holder = |h: String| json!({ "holder": h });
        match self {
            Op::HolderPut(spec) => to_json(svc.holder_put(spec)?),
            Op::HolderGet { holder } => to_json(svc.holder_get(&holder)?),
            Op::HolderList { role, after, limit } => to_json(svc.holder_list(role, after.as_deref(), limit)?),
            Op::HolderDelete { holder } => done(svc.holder_delete(&holder)),
            Op::PinGenerate { holder, limit } => {
                let (pin, limit) = svc.pin_generate_limited(&holder, limit)?;
                to_json(NewKey::new(Some(pin), None, limit))
            }
            Op::PinSet { holder, pin, limit } => {
                to_json(NewKey::new(None, None, svc.pin_set_limited(&holder, &pin, limit)?))
            }
            Op::PinActivate { holder } => done(svc.pin_set_active(&holder, true)),
            Op::PinDeactivate { holder } => done(svc.pin_set_active(&holder, false)),
            Op::PinDelete { holder } => done(svc.pin_delete(&holder)),
            Op::QrGenerate { holder, limit } => {
                let (token, limit) = svc.qr_generate_limited(&holder, limit)?;
                to_json(NewKey::new(None, Some(token), limit))
            }
            Op::QrActivate { holder } => done(svc.qr_set_active(&holder, true)),
            Op::QrDeactivate { holder } => done(svc.qr_set_active(&holder, false)),
            Op::QrDelete { holder } => done(svc.qr_delete(&holder)),
            Op::CardAssign { holder, uid } => done(svc.card_assign(&holder, &uid)),
            Op::CardActivate { uid } => svc.card_set_active(&uid, true).map(holder),
            Op::CardDeactivate { uid } => svc.card_set_active(&uid, false).map(holder),
            Op::CardDelete { uid } => svc.card_delete(&uid).map(holder),
            Op::EnrollStart { holder, door, window } => {
                // The holder must exist now; the card is assigned when presented.
                svc.holder_get(&holder)?;
                to_json(ctl.enroll(&holder, &door?, window)?)
            }
            Op::DoorUnlock { door, ms } => to_json(ctl.unlock(&door, ms)?),
            Op::LockoutClear { device } => to_json(ctl.clear_lockout(device.as_deref())?),
            Op::SyncBegin { generation } => to_json(svc.sync_begin(generation)?),
            Op::SyncPut { holders, retired } => to_json(svc.sync_put_retiring(holders, retired)?),
            Op::SyncCommit => to_json(svc.sync_commit()?),
            Op::StateGet => {
                let mut state = to_json(svc.state()?)?;
                state["lockouts"] = to_json(ctl.lockouts()?)?;
                Ok(state)
            }
            Op::EventsGet { after, limit } => to_json(crate::provision::events::get(svc.store(), after, limit)?),
            Op::Identity => to_json(ctl.identity()?),
        }
    }
}

/// A typed result as the reply's JSON.
fn to_json(v: impl serde::Serialize) -> Result<Value, OpError> {
    serde_json::to_value(v).map_err(|e| OpError::internal(e.to_string()))
}

/// `holder.list {role?, after?, limit?}`.
fn holder_list(a: &Map<String, Value>) -> Result<Op, OpError> {
    let a = Args::new(a, &["role", "after", "limit"])?;
    let role = a
        .opt_str("role")?
        .map(|r| Role::parse(r).ok_or_else(|| OpError::invalid("`role` must be courier, staff, resident or manager")))
        .transpose()?;
    let limit = a.opt_u64("limit")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(OpError::invalid("`limit` must be from 1 to 1000"));
    }
    Ok(Op::HolderList { role, after: a.opt_str("after")?.map(Into::into), limit: limit as usize })
}

/// `enroll.start {holder, door, timeout_s?}`.
fn enroll_start(a: &Map<String, Value>) -> Result<Op, OpError> {
    let a = Args::new(a, &["holder", "door", "timeout_s"])?;
    let holder = a.holder()?.to_string();
    let range = crate::access::enroll::WINDOW_RANGE_S;
    let window = match a.opt_u64("timeout_s")? {
        None => None,
        Some(s) if range.contains(&s) => Some(Duration::from_secs(s)),
        Some(_) => {
            return Err(OpError::invalid(format!(
                "`timeout_s` must be from {} to {} seconds",
                range.start(),
                range.end()
            )))
        }
    };
    Ok(Op::EnrollStart { holder, door: a.str("door").map(Into::into), window })
}

/// `door.unlock {door, ms?}`.
fn door_unlock(a: &Map<String, Value>) -> Result<Op, OpError> {
    let a = Args::new(a, &["door", "ms"])?;
    let ms = a.opt_u64("ms")?;
    if ms.is_some_and(|ms| !(100..=600_000).contains(&ms)) {
        return Err(OpError::invalid("`ms` must be from 100 to 600000 (ten minutes, as for unlock_ms)"));
    }
    Ok(Op::DoorUnlock { door: a.str("door")?.to_string(), ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_is_listed_once_and_named_back() {
        assert_eq!(OpName::ALL.len(), OPS.len());
        for (n, name) in OpName::ALL.iter().zip(OPS) {
            assert_eq!(n.as_str(), *name);
            assert_eq!(OpName::from_name(name), Some(*n));
            assert!(name.len() <= super::super::MAX_OP_BYTES, "{name}");
        }
        let mut sorted = OPS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), OPS.len(), "an op listed twice");
        let ro: Vec<&str> = OpName::ALL.iter().filter(|n| n.read_only()).map(|n| n.as_str()).collect();
        assert_eq!(ro, ["holder.get", "holder.list", "state.get", "events.get", "identity"]);
        assert!(!is_read_only("holder.put") && !is_read_only("no.such"));
    }

    #[test]
    fn the_first_bad_argument_is_the_reply_in_the_order_it_always_was() {
        let cx = ParseContext { now_ms: 1_795_622_400_000, pin_length: 6 };
        let err = |op: &str, a: Value| Op::parse(op, a.as_object().unwrap(), cx).unwrap_err().message;
        assert_eq!(err("no.such", json!({})), unknown_op("no.such").message);
        // The limit is checked before the holder, the ms before the door.
        assert!(err("pin.generate", json!({"holder": "", "uses": 0})).contains("`uses`"));
        assert!(err("door.unlock", json!({"ms": 1})).contains("`ms`"));
        assert_eq!(err("door.unlock", json!({})), "missing argument `door`");
        assert!(err("holder.list", json!({"limit": 0, "after": 1})).contains("`limit`"));
        // enroll.start keeps its door's error until the holder is found.
        let op = Op::parse("enroll.start", json!({"holder": "h1"}).as_object().unwrap(), cx).unwrap();
        assert!(matches!(op, Op::EnrollStart { door: Err(_), .. }), "{op:?}");
        let op = Op::parse("pin.generate", json!({"holder": "h1", "expires_in_s": 60}).as_object().unwrap(), cx);
        assert!(
            matches!(op, Ok(Op::PinGenerate { limit: Some(KeyLimit { expires_ms: Some(e), .. }), .. }) if e == cx.now_ms + 60_000)
        );
    }
}
