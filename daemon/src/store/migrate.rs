//! Upgrades of a store written by an older build, run by [`super::Store::open`]
//! before anything reads it. Each step rewrites what changed in one atomic
//! batch together with the new schema version, so a crash in the middle
//! leaves the old store as it was and the next start runs the step again.

use super::records::{self, CardRecord, HolderRecord, KeyRecord, WindowRecord};
use super::StoreError;
use crate::access::{KeyHash, Role};
use serde::Deserialize;

/// Schema 1: holder records as JSON with the full 32-byte keyed hashes in hex;
/// the key index and tombstones keyed by the 32-byte hash.
mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub struct Key {
        pub hash: String,
        pub active: bool,
        pub created_ms: i64,
    }

    #[derive(Deserialize)]
    pub struct Card {
        pub hash: String,
        pub hint: String,
        pub active: bool,
        pub created_ms: i64,
    }

    #[derive(Deserialize)]
    pub struct Holder {
        pub id: String,
        pub name: String,
        pub role: Role,
        pub doors: Option<Vec<String>>,
        pub valid_from_ms: Option<i64>,
        pub valid_until_ms: Option<i64>,
        pub schedule: Vec<WindowRecord>,
        pub enabled: bool,
        pub pin: Option<Key>,
        pub qr: Option<Key>,
        pub cards: Vec<Card>,
        pub created_ms: i64,
        pub updated_ms: i64,
    }
}

/// Schema 2: holder records in postcard, without key limits. Frozen: these
/// must keep parsing schema-2 bytes whatever becomes of the current records.
mod v2 {
    use super::*;

    #[derive(Deserialize)]
    pub struct Key {
        pub hash: KeyHash,
        pub active: bool,
        pub created_ms: i64,
    }

    #[derive(Deserialize)]
    pub struct Card {
        pub hash: KeyHash,
        pub hint: String,
        pub active: bool,
        pub created_ms: i64,
    }

    #[derive(Deserialize)]
    pub struct Holder {
        pub id: String,
        pub name: String,
        pub role: Role,
        pub doors: Option<Vec<String>>,
        pub valid_from_ms: Option<i64>,
        pub valid_until_ms: Option<i64>,
        pub schedule: Vec<WindowRecord>,
        pub enabled: bool,
        pub pin: Option<Key>,
        pub qr: Option<Key>,
        pub cards: Vec<Card>,
        pub created_ms: i64,
        pub updated_ms: i64,
    }
}

fn corrupt(key: &[u8], detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), detail: detail.into() }
}

/// The 16-byte keyed hash of schema 2 is the first half of schema 1's.
fn truncate(key: &[u8], full: &[u8]) -> Result<KeyHash, StoreError> {
    if full.len() != 32 {
        return Err(corrupt(key, format!("a keyed hash of {} bytes, schema 1 has 32", full.len())));
    }
    let mut h = [0u8; KeyHash::LEN];
    h.copy_from_slice(&full[..KeyHash::LEN]);
    Ok(KeyHash(h))
}

fn from_hex(key: &[u8], s: &str) -> Result<KeyHash, StoreError> {
    let raw = hex::decode(s).map_err(|e| corrupt(key, format!("a keyed hash that is not hex: {e}")))?;
    truncate(key, &raw)
}

fn holder_v1_to_v2(key: &[u8], v: &[u8]) -> Result<HolderRecord, StoreError> {
    let h: v1::Holder = serde_json::from_slice(v).map_err(|e| corrupt(key, e.to_string()))?;
    let k = |r: v1::Key| -> Result<KeyRecord, StoreError> {
        Ok(KeyRecord { hash: from_hex(key, &r.hash)?, active: r.active, created_ms: r.created_ms, limit: None })
    };
    Ok(HolderRecord {
        id: h.id,
        name: h.name,
        role: h.role,
        doors: h.doors,
        valid_from_ms: h.valid_from_ms,
        valid_until_ms: h.valid_until_ms,
        schedule: h.schedule,
        enabled: h.enabled,
        pin: h.pin.map(k).transpose()?,
        qr: h.qr.map(k).transpose()?,
        cards: h
            .cards
            .into_iter()
            .map(|c| {
                Ok(CardRecord {
                    hash: from_hex(key, &c.hash)?,
                    hint: c.hint,
                    active: c.active,
                    created_ms: c.created_ms,
                })
            })
            .collect::<Result<_, StoreError>>()?,
        created_ms: h.created_ms,
        updated_ms: h.updated_ms,
    })
}

/// Schema 1 to the current schema (3) in one step: binary holder records,
/// 16-byte keyed hashes. Returns the number of holder records rewritten.
pub fn v1_to_current(db: &sled::Db, schema_key: &[u8]) -> Result<usize, StoreError> {
    let mut batch = sled::Batch::default();
    let mut holders = 0;
    for space in [records::Space::A, records::Space::B] {
        for r in db.scan_prefix(space.holders()) {
            let (k, v) = r?;
            batch.insert(k.clone(), holder_v1_to_v2(&k, &v)?.encode());
            holders += 1;
        }
        let prefix = space.keys();
        for r in db.scan_prefix(&prefix) {
            let (k, v) = r?;
            let h = truncate(&k, &k[prefix.len()..])?;
            batch.remove(k);
            batch.insert(records::key_key(space, &h), v);
        }
    }
    for r in db.scan_prefix(records::TOMBSTONE) {
        let (k, v) = r?;
        let h = truncate(&k, &k[records::TOMBSTONE.len()..])?;
        batch.remove(k);
        batch.insert(records::tombstone_key(&h), v);
    }
    batch.insert(schema_key, super::SCHEMA_VERSION.to_string().as_bytes());
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(holders)
}

fn holder_v2_to_v3(key: &[u8], v: &[u8]) -> Result<HolderRecord, StoreError> {
    let h: v2::Holder = postcard::from_bytes(v).map_err(|e| corrupt(key, e.to_string()))?;
    let k = |r: v2::Key| KeyRecord { hash: r.hash, active: r.active, created_ms: r.created_ms, limit: None };
    Ok(HolderRecord {
        id: h.id,
        name: h.name,
        role: h.role,
        doors: h.doors,
        valid_from_ms: h.valid_from_ms,
        valid_until_ms: h.valid_until_ms,
        schedule: h.schedule,
        enabled: h.enabled,
        pin: h.pin.map(k),
        qr: h.qr.map(k),
        cards: h
            .cards
            .into_iter()
            .map(|c| CardRecord { hash: c.hash, hint: c.hint, active: c.active, created_ms: c.created_ms })
            .collect(),
        created_ms: h.created_ms,
        updated_ms: h.updated_ms,
    })
}

/// Schema 2 to 3: key records gain their limit (none). Returns the number of
/// holder records rewritten.
pub fn v2_to_v3(db: &sled::Db, schema_key: &[u8]) -> Result<usize, StoreError> {
    let mut batch = sled::Batch::default();
    let mut holders = 0;
    for space in [records::Space::A, records::Space::B] {
        for r in db.scan_prefix(space.holders()) {
            let (k, v) = r?;
            batch.insert(k.clone(), holder_v2_to_v3(&k, &v)?.encode());
            holders += 1;
        }
    }
    batch.insert(schema_key, b"3".as_slice());
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(holders)
}
