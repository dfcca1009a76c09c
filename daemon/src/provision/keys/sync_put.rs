//! `sync.put`: staging one message of a full sync. Split from `keys.rs`
//! so each step reads alone: the checks of the message, each holder staged
//! with its keys claimed, the retired PINs, then the sync's bounds. All of
//! it is one batch under the writer's lock: a message is staged whole or
//! not at all.

use super::staging::{self, Writer};
use super::{is_trivial, resolve, staged_bytes, KeyService, SyncHolder, SyncStaged, SyncState, TOMBSTONE_BYTES};
use crate::access::{KeyHash, KeyKind};
use crate::provision::error::OpError;
use crate::store::records::{self, CardRecord, HolderRecord, KeyRecord, Space};
use crate::store::Batch;
use std::collections::{HashMap, HashSet};

/// One `sync.put` message's work in progress.
struct Put {
    /// The space the sync stages in.
    staging: Space,
    now: i64,
    /// The PINs this message retires.
    retiring: HashSet<KeyHash>,
    /// PINs the sync had retired before this message (none: no look-up).
    retired_before: u64,
    /// Keys staged by this very message, so duplicates inside it are caught too.
    claimed: HashMap<KeyHash, String>,
    batch: Batch,
    /// What this message writes, for the fence of a sync staged beside leftovers.
    written: Vec<String>,
}

impl KeyService {
    /// [`KeyService::sync_put`] with `retired`: PINs (plaintext, hashed here
    /// and never kept) that the commit makes tombstones, as if deleted, in
    /// its own batch. A PIN that a holder of this sync has is refused as
    /// `duplicate`, naming the holder (never the PIN), whichever came first.
    /// A PIN already retired, or sent again, counts once.
    pub fn sync_put_retiring(&self, holders: Vec<SyncHolder>, retired: Vec<String>) -> Result<SyncStaged, OpError> {
        for (i, p) in retired.iter().enumerate() {
            if p.len() != self.pin_length || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(OpError::invalid(format!("`retired[{i}]`: a PIN is exactly {} digits", self.pin_length)));
            }
        }
        let retired: Vec<KeyHash> = retired.iter().map(|p| self.hasher.hash(KeyKind::Pin, p.as_bytes())).collect();
        let mut w = self.shared.lock()?;
        let mut state = staging::open_sync(&self.shared, &mut w)?;
        check_holders(&holders)?;
        let mut put = Put {
            staging: self.space().other(),
            now: self.now_ms(),
            retiring: retired.iter().copied().collect(),
            retired_before: state.retired,
            claimed: HashMap::new(),
            batch: Batch::default(),
            written: Vec::with_capacity(holders.len()),
        };
        for h in holders {
            self.stage_holder(&w, &mut put, &mut state, h)?;
        }
        let new_retired = self.stage_retired(&w, &mut put, &mut state, &retired)?;
        let limits = w.limits;
        check_limits(&state, &limits)?;
        let Put { mut batch, claimed, written, .. } = put;
        batch.put(records::SYNC.to_vec(), serde_json::to_vec(&state).unwrap_or_default());
        self.store.apply(batch)?;
        if let Some(f) = w.fence.as_mut() {
            f.keys.extend(claimed.into_keys());
            f.holders.extend(written);
            f.retired.extend(new_retired);
        }
        w.expires = Some(std::time::Instant::now() + limits.idle);
        self.shared.wake.notify_all();
        Ok(SyncStaged { staged: state.holders, retired: state.retired })
    }

    /// Stages holder `h` with its keys into `put`'s batch, counting it in `state`.
    fn stage_holder(&self, w: &Writer, put: &mut Put, state: &mut SyncState, h: SyncHolder) -> Result<(), OpError> {
        let (staging, now) = (put.staging, put.now);
        let key = records::holder_key(staging, &h.spec.id);
        // A record left by an earlier sync is not this sync's: it is
        // overwritten here, its keys are cleared in the background.
        let old = match w.staged_holder(&h.spec.id) {
            true => self.store.get(&key)?.map(|v| HolderRecord::decode(&key, &v)).transpose()?,
            false => None,
        };
        // A limited key the live set already has keeps its creation
        // time: its uses stay counted and its default expiry stays put.
        // (Read only for those: a sync of 100,000 holders has few.)
        let limited = [&h.pin, &h.qr].into_iter().flatten().any(|(.., l)| l.is_some());
        let live = if limited { self.load(&h.spec.id)? } else { None };
        let mut rec = HolderRecord {
            id: h.spec.id,
            name: h.spec.name,
            role: h.spec.role,
            doors: h.spec.doors,
            valid_from_ms: h.spec.valid_from_ms,
            valid_until_ms: h.spec.valid_until_ms,
            schedule: h.spec.schedule,
            enabled: h.spec.enabled,
            pin: None,
            qr: None,
            cards: vec![],
            created_ms: now,
            updated_ms: now,
        };
        if let Some((pin, active, limit)) = &h.pin {
            let hash = self.claim(w, put, KeyKind::Pin, pin.as_bytes(), "the PIN", &rec.id)?;
            let created_ms = self.created(live.as_ref().and_then(|l| l.pin.as_ref()), &hash, limit.is_some(), now);
            rec.pin = Some(KeyRecord { hash, active: *active, created_ms, limit: resolve(*limit, created_ms) });
        }
        if let Some((token, active, limit)) = &h.qr {
            let hash = self.claim(w, put, KeyKind::Qr, token.as_bytes(), "the QR token", &rec.id)?;
            let created_ms = self.created(live.as_ref().and_then(|l| l.qr.as_ref()), &hash, limit.is_some(), now);
            rec.qr = Some(KeyRecord { hash, active: *active, created_ms, limit: resolve(*limit, created_ms) });
        }
        for (uid, active) in &h.cards {
            let hash = self.claim(w, put, KeyKind::Card, uid.as_bytes(), "a card", &rec.id)?;
            let hex_uid = uid.to_hex();
            let hint = hex_uid[hex_uid.len().saturating_sub(4)..].to_string();
            rec.cards.push(CardRecord { hash, hint, active: *active, created_ms: now });
        }
        if let Some(o) = &old {
            for (k, ..) in o.keys() {
                put.batch.remove(records::key_key(staging, &k));
            }
            state.bytes = state.bytes.saturating_sub(staged_bytes(o));
            state.keys = state.keys.saturating_sub(o.keys().len() as u64);
        } else {
            state.holders += 1;
        }
        state.bytes += staged_bytes(&rec);
        state.keys += rec.keys().len() as u64;
        for (k, ..) in rec.keys() {
            put.batch.put(records::key_key(staging, &k), rec.id.as_bytes().to_vec());
        }
        put.batch.put(key, rec.encode());
        put.written.push(rec.id);
        Ok(())
    }

    /// The creation time of a synced key with `hash`: the live key's when
    /// it is the same key and limited (`live`); else, for a limited key, the
    /// uses recorded for it (`u/`): after a recovery from a snapshot the
    /// live set is empty but the spent uses were restored, and the portal's
    /// sync must not reset them; else `now`.
    fn created(&self, live: Option<&KeyRecord>, hash: &KeyHash, limited: bool, now: i64) -> i64 {
        live.filter(|r| r.hash == *hash && r.limit.is_some())
            .map(|r| r.created_ms)
            .or_else(|| {
                let spent = limited.then(|| self.store.get(&records::uses_key(hash)).ok().flatten()).flatten();
                spent.and_then(|v| records::Spent::decode(&v)).map(|s| s.created_ms)
            })
            .unwrap_or(now)
    }

    /// Claims the key `value` of `kind` for holder `id` in this sync: a key
    /// given to another holder of the sync, a retired PIN or a deleted one
    /// is `duplicate`.
    fn claim(
        &self,
        w: &Writer,
        put: &mut Put,
        kind: KeyKind,
        value: &[u8],
        what: &str,
        id: &str,
    ) -> Result<KeyHash, OpError> {
        let hash = self.hasher.hash(kind, value);
        let staged_owner = match w.staged_key(&hash) {
            true => {
                self.store.get(&records::key_key(put.staging, &hash))?.map(|v| String::from_utf8_lossy(&v).into_owned())
            }
            false => None,
        };
        let other = put.claimed.get(&hash).cloned().or(staged_owner).filter(|o| *o != id);
        if let Some(o) = other {
            return Err(OpError::duplicate(format!("{what} of `{id}` is also given to `{o}`")));
        }
        // (A sync that has retired nothing yet needs no look-up.)
        if kind == KeyKind::Pin
            && (put.retiring.contains(&hash)
                || (put.retired_before > 0
                    && w.staged_retired(&hash)
                    && self.store.get(&staging::retired_key(put.staging, &hash))?.is_some()))
        {
            return Err(OpError::duplicate(format!(
                "the PIN of `{id}` is retired by this sync (`retired`); a retired PIN is never given to a holder"
            )));
        }
        if kind == KeyKind::Pin && self.is_tombstoned(&hash)? {
            return Err(OpError::duplicate(format!(
                "the PIN of `{id}` was used before and deleted; a deleted PIN is never reused"
            )));
        }
        put.claimed.insert(hash, id.to_string());
        Ok(hash)
    }

    /// Stages the retired PINs: a holder of this message with one was
    /// refused above; a holder staged by an earlier message still has its
    /// PIN unless this message sent it again. Returns those new to the sync.
    fn stage_retired(
        &self,
        w: &Writer,
        put: &mut Put,
        state: &mut SyncState,
        retired: &[KeyHash],
    ) -> Result<Vec<KeyHash>, OpError> {
        let staging = put.staging;
        let mut new_retired = Vec::new();
        for (i, h) in retired.iter().enumerate() {
            if w.staged_key(h) {
                if let Some(o) = self.store.get(&records::key_key(staging, h))? {
                    let o = String::from_utf8_lossy(&o);
                    if !put.written.iter().any(|id| *id == o) {
                        return Err(OpError::duplicate(format!(
                            "`retired[{i}]` is the PIN of `{o}` in this sync; a holder's PIN cannot be retired"
                        )));
                    }
                }
            }
            let staged = w.staged_retired(h) && self.store.get(&staging::retired_key(staging, h))?.is_some();
            if staged || new_retired.contains(h) {
                continue;
            }
            new_retired.push(*h);
            put.batch.put(staging::retired_key(staging, h), Vec::new());
            state.retired += 1;
            state.bytes += TOMBSTONE_BYTES;
        }
        Ok(new_retired)
    }
}

/// A holder listed twice in one message, or given a trivial PIN, refuses
/// the whole message.
fn check_holders(holders: &[SyncHolder]) -> Result<(), OpError> {
    let mut seen = HashSet::new();
    for h in holders {
        if !seen.insert(h.spec.id.as_str()) {
            return Err(OpError::invalid(format!("holder `{}` is listed twice in this sync.put", h.spec.id)));
        }
        if h.pin.as_ref().is_some_and(|(p, ..)| is_trivial(p.as_bytes())) {
            return Err(OpError::invalid(format!(
                "holder `{}`: this PIN is too easy to guess (a repeated digit, a run such as 123456, or a repeated block)",
                h.spec.id
            )));
        }
    }
    Ok(())
}

/// The sync's bounds, with this message staged: over one, nothing of the
/// message is staged.
fn check_limits(state: &SyncState, limits: &super::SyncLimits) -> Result<(), OpError> {
    if state.retired > limits.retired {
        return Err(OpError::invalid(format!(
            "this sync.put would retire {} PINs; a sync retires at most {}: nothing of this message was staged",
            state.retired, limits.retired
        )));
    }
    if state.holders > limits.holders {
        return Err(OpError::invalid(format!(
            "this sync.put would stage {} holders; a sync holds at most {}: nothing of this message was staged",
            state.holders, limits.holders
        )));
    }
    if state.bytes > limits.bytes {
        return Err(OpError::invalid(format!(
            "this sync.put would stage {} bytes of records; a sync holds at most {}: nothing of this message was staged",
            state.bytes, limits.bytes
        )));
    }
    Ok(())
}
