//! The controller's signature on what it publishes over MQTT (docs/mqtt.md,
//! "The controller's signature").
//!
//! Every reply, event and status (the Last Will included) carries two MQTT 5
//! user properties: `porter-sig`, the Ed25519 signature (standard base64, 88
//! characters) of [`message`], and `porter-key-id`, the key id of the
//! controller's identity (`store::identity`). The payload is not changed.
//!
//! The signed message is, byte for byte:
//!
//! ```text
//! porter-controller-signature-v1\n
//! <length of the topic in bytes, decimal>:<topic>\n
//! <length of the correlation data in bytes, decimal>:<correlation data>\n
//! <payload>
//! ```
//!
//! The tag keeps these signatures from being taken for any other Porter
//! signature (a portal's on a command has its own tag); the lengths make the
//! split unambiguous whatever bytes the topic or correlation data hold;
//! publications without correlation data (events, status) have `0:` there.

use crate::store::identity::Identity;
use base64::Engine as _;
use rumqttc::v5::mqttbytes::v5::{LastWillProperties, PublishProperties};

/// The domain-separation tag that starts every signed message.
pub const TAG: &[u8] = b"porter-controller-signature-v1\n";
/// The user property holding the signature (standard base64).
pub const SIGNATURE: &str = "porter-sig";
/// The user property holding the signer's key id (hex).
pub const KEY_ID: &str = "porter-key-id";

/// The bytes signed for a publication of `payload` on `topic` with
/// `correlation` data (empty when none).
pub fn message(topic: &str, correlation: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(TAG.len() + topic.len() + correlation.len() + payload.len() + 24);
    m.extend_from_slice(TAG);
    m.extend_from_slice(format!("{}:", topic.len()).as_bytes());
    m.extend_from_slice(topic.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(format!("{}:", correlation.len()).as_bytes());
    m.extend_from_slice(correlation);
    m.push(b'\n');
    m.extend_from_slice(payload);
    m
}

/// The user properties that sign `payload` on `topic` with `correlation`.
pub fn user_properties(id: &Identity, topic: &str, correlation: &[u8], payload: &[u8]) -> Vec<(String, String)> {
    let signature = id.sign(&message(topic, correlation, payload));
    vec![
        (SIGNATURE.to_string(), base64::engine::general_purpose::STANDARD.encode(signature)),
        (KEY_ID.to_string(), id.key_id()),
    ]
}

/// `props` (or none) with the signature of `payload` on `topic` added; the
/// correlation data signed is the one `props` carries.
pub fn publish_properties(
    id: &Identity,
    topic: &str,
    payload: &[u8],
    props: Option<PublishProperties>,
) -> PublishProperties {
    let mut props = props.unwrap_or_default();
    let correlation = props.correlation_data.as_deref().unwrap_or_default();
    let signed = user_properties(id, topic, correlation, payload);
    props.user_properties.retain(|(k, _)| k != SIGNATURE && k != KEY_ID);
    props.user_properties.extend(signed);
    props
}

/// The Last Will's properties: its payload signed like any status.
pub fn last_will_properties(id: &Identity, topic: &str, payload: &[u8]) -> LastWillProperties {
    LastWillProperties {
        delay_interval: None,
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: user_properties(id, topic, &[], payload),
    }
}

/// Checks a publication's signature against a pinned public key (raw, 32
/// bytes): what a portal does. Used by porterctl and the tests.
pub fn verify(
    key: &ed25519_dalek::VerifyingKey,
    topic: &str,
    correlation: &[u8],
    payload: &[u8],
    user_properties: &[(String, String)],
) -> Result<(), String> {
    let b64 = user_properties
        .iter()
        .find(|(k, _)| k == SIGNATURE)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("no `{SIGNATURE}` user property: not signed"))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("`{SIGNATURE}` is not base64: {e}"))?;
    let sig = ed25519_dalek::Signature::from_slice(&raw).map_err(|e| format!("`{SIGNATURE}`: {e}"))?;
    key.verify_strict(&message(topic, correlation, payload), &sig).map_err(|_| "the signature does not verify".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector docs/mqtt.md gives: the controller's seed is 32
    /// bytes of 0x01.
    const SEED: [u8; 32] = [1; 32];
    const TOPIC: &str = "porter/oak-street/room-1/reply";
    const CORRELATION: &[u8] = b"req-7";
    const PAYLOAD: &[u8] = br#"{"controller":"room-1","id":"c-1","ok":true,"result":{}}"#;

    fn vector() -> (Identity, Vec<(String, String)>) {
        let id = Identity::from_seed(&SEED);
        let props = user_properties(&id, TOPIC, CORRELATION, PAYLOAD);
        (id, props)
    }

    #[test]
    fn the_message_is_the_documented_bytes() {
        let m = message(TOPIC, CORRELATION, PAYLOAD);
        let want =
            [&b"porter-controller-signature-v1\n30:porter/oak-street/room-1/reply\n5:req-7\n"[..], PAYLOAD].concat();
        assert_eq!(m, want);
        assert_eq!(message("t", b"", b"x"), b"porter-controller-signature-v1\n1:t\n0:\nx");
    }

    #[test]
    fn a_signature_verifies_and_nothing_else_does() {
        let (id, props) = vector();
        let key = id.verifying_key();
        verify(&key, TOPIC, CORRELATION, PAYLOAD, &props).unwrap();
        let tampered = PAYLOAD.iter().map(|&b| if b == b't' { b'f' } else { b }).collect::<Vec<_>>();
        assert!(verify(&key, TOPIC, CORRELATION, &tampered, &props).is_err());
        assert!(verify(&key, "porter/oak-street/room-2/reply", CORRELATION, PAYLOAD, &props).is_err());
        assert!(verify(&key, TOPIC, b"req-8", PAYLOAD, &props).is_err());
        assert!(verify(&key, TOPIC, CORRELATION, PAYLOAD, &[]).is_err());
        let other = Identity::from_seed(&[2; 32]).verifying_key();
        assert!(verify(&other, TOPIC, CORRELATION, PAYLOAD, &props).is_err());
        // Moving a byte between the topic and the correlation data changes the message.
        assert_ne!(message("ab", b"c", b""), message("a", b"bc", b""));
    }

    #[test]
    fn properties_keep_the_correlation_data_and_sign_it() {
        let id = Identity::from_seed(&SEED);
        let given = PublishProperties { correlation_data: Some(CORRELATION.to_vec().into()), ..Default::default() };
        let p = publish_properties(&id, TOPIC, PAYLOAD, Some(given));
        assert_eq!(p.correlation_data.as_deref(), Some(CORRELATION));
        verify(&id.verifying_key(), TOPIC, CORRELATION, PAYLOAD, &p.user_properties).unwrap();
        assert_eq!(p.user_properties.iter().filter(|(k, _)| k == SIGNATURE).count(), 1);
    }

    /// docs/mqtt.md's test vector is what this code computes, so the docs
    /// cannot drift from it.
    #[test]
    fn the_test_vector_in_mqtt_md_holds() {
        let (id, props) = vector();
        let docs = include_str!("../../../docs/mqtt.md");
        let sig = &props.iter().find(|(k, _)| k == SIGNATURE).unwrap().1;
        for (what, value) in [
            ("the public key", id.public_key()),
            ("the key id", id.key_id()),
            ("the signature", sig.clone()),
            ("the payload", String::from_utf8(PAYLOAD.to_vec()).unwrap()),
        ] {
            assert!(docs.contains(&value), "docs/mqtt.md does not give {what}: {value}");
        }
        assert!(docs.contains(&hex::encode(SEED)), "docs/mqtt.md does not give the seed");
    }
}
