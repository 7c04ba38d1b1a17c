//! The packet: `{"id": "...", "payload": "...", "hops": [], "ttl": 8}` (the upstream contract).
//!
//! Parsed without copying where the input allows (strings without escapes are borrowed), and
//! written back with `id`, `payload` and every unknown field byte for byte as received: an id
//! such as `12345678901234567890` or `1.50` is never re-formatted, and fields added by a newer
//! generator survive the trip.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// One packet on its way, borrowing from the request body.
#[derive(Debug)]
pub struct Packet<'a> {
    /// A JSON string or number, kept exactly as received.
    pub id: &'a RawValue,
    /// A JSON string, kept exactly as received.
    pub payload: &'a RawValue,
    /// Routers the packet went through, in order.
    pub hops: Vec<Cow<'a, str>>,
    /// Hops the packet may still take.
    pub ttl: u64,
    /// Fields this version does not know, in the order received.
    pub extra: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// Why a body is not a packet (the answer is 400).
#[derive(Debug)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> Packet<'a> {
    /// Parses a request body.
    pub fn parse(body: &'a [u8]) -> Result<Self, Malformed> {
        serde_json::from_slice(body).map_err(|e| Malformed(e.to_string()))
    }

    /// Whether `router` is already on the packet's path.
    pub fn visited(&self, router: &str) -> bool {
        self.hops.iter().any(|h| h == router)
    }

    /// Writes the packet as JSON; `id`, `payload` and unknown fields as received.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(self.id.get().as_bytes());
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(self.payload.get().as_bytes());
        out.extend_from_slice(b",\"hops\":[");
        for (i, hop) in self.hops.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(out, hop);
        }
        out.extend_from_slice(b"],\"ttl\":");
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{}", self.ttl);
        for (key, value) in &self.extra {
            out.push(b',');
            write_json_str(out, key);
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.push(b'}');
    }

    /// The packet as a JSON string (tests, the generator).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.write_json(&mut out);
        out
    }
}

/// A JSON string literal with the escapes JSON requires.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly what JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A string that borrows from the input when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// `hops`: an array of strings.
struct Hops<'a>(Vec<Cow<'a, str>>);

impl<'de> serde::Deserialize<'de> for Hops<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Hops<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of router names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // Room for this router's name too.
                let mut hops = Vec::with_capacity(seq.size_hint().unwrap_or(0) + 4);
                while let Some(Str(hop)) = seq.next_element()? {
                    hops.push(hop);
                }
                Ok(Hops(hops))
            }
        }
        d.deserialize_seq(V)
    }
}

fn is_string(raw: &RawValue) -> bool {
    raw.get().starts_with('"')
}

fn is_number(raw: &RawValue) -> bool {
    raw.get()
        .as_bytes()
        .first()
        .is_some_and(|b| *b == b'-' || b.is_ascii_digit())
}

impl<'de> serde::Deserialize<'de> for Packet<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Packet<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a packet {"id", "payload", "hops", "ttl"}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut id: Option<&'de RawValue> = None;
                let mut payload: Option<&'de RawValue> = None;
                let mut hops: Option<Vec<Cow<'de, str>>> = None;
                let mut ttl: Option<u64> = None;
                let mut extra = Vec::new();
                while let Some(Str(key)) = map.next_key()? {
                    match key.as_ref() {
                        "id" => {
                            if id.is_some() {
                                return Err(de::Error::duplicate_field("id"));
                            }
                            let raw: &RawValue = map.next_value()?;
                            if !is_string(raw) && !is_number(raw) {
                                return Err(de::Error::custom("`id` must be a string or a number"));
                            }
                            id = Some(raw);
                        }
                        "payload" => {
                            if payload.is_some() {
                                return Err(de::Error::duplicate_field("payload"));
                            }
                            let raw: &RawValue = map.next_value()?;
                            if !is_string(raw) {
                                return Err(de::Error::custom("`payload` must be a string"));
                            }
                            payload = Some(raw);
                        }
                        "hops" => {
                            if hops.is_some() {
                                return Err(de::Error::duplicate_field("hops"));
                            }
                            hops = Some(map.next_value::<Hops>()?.0);
                        }
                        "ttl" => {
                            if ttl.is_some() {
                                return Err(de::Error::duplicate_field("ttl"));
                            }
                            ttl = Some(map.next_value()?);
                        }
                        _ => {
                            if extra.iter().any(|(k, _): &(Cow<str>, _)| *k == key) {
                                // A repeated unknown field: keep the first, like JSON parsers
                                // that keep one value; the rest are read and dropped.
                                map.next_value::<IgnoredAny>()?;
                            } else {
                                extra.push((key, map.next_value()?));
                            }
                        }
                    }
                }
                Ok(Packet {
                    id: id.ok_or_else(|| de::Error::missing_field("id"))?,
                    payload: payload.ok_or_else(|| de::Error::missing_field("payload"))?,
                    hops: hops.ok_or_else(|| de::Error::missing_field("hops"))?,
                    ttl: ttl.ok_or_else(|| de::Error::missing_field("ttl"))?,
                    extra,
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(input: &str) -> String {
        String::from_utf8(Packet::parse(input.as_bytes()).unwrap().to_json()).unwrap()
    }

    #[test]
    fn ids_payloads_and_unknown_fields_pass_byte_for_byte() {
        assert_eq!(
            roundtrip(r#"{"id":"a-1","payload":"hi","hops":[],"ttl":8}"#),
            r#"{"id":"a-1","payload":"hi","hops":[],"ttl":8}"#
        );
        // A number id is kept as written (no float or u64 round trip).
        assert_eq!(
            roundtrip(
                r#"{"ttl": 3, "hops": ["w"], "id": 123456789012345678901234567890, "payload": "\u00e9\"x", "colour": {"r": 1}}"#
            ),
            r#"{"id":123456789012345678901234567890,"payload":"\u00e9\"x","hops":["w"],"ttl":3,"colour":{"r": 1}}"#
        );
        assert_eq!(
            roundtrip(r#"{"id":1.50,"payload":"","hops":["a\"b"],"ttl":0}"#),
            r#"{"id":1.50,"payload":"","hops":["a\"b"],"ttl":0}"#
        );
    }

    #[test]
    fn malformed_packets_are_refused() {
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"payload":"x","hops":[],"ttl":8}"#,
            r#"{"id":"1","hops":[],"ttl":8}"#,
            r#"{"id":"1","payload":"x","ttl":8}"#,
            r#"{"id":"1","payload":"x","hops":[]}"#,
            r#"{"id":null,"payload":"x","hops":[],"ttl":8}"#,
            r#"{"id":{},"payload":"x","hops":[],"ttl":8}"#,
            r#"{"id":"1","payload":7,"hops":[],"ttl":8}"#,
            r#"{"id":"1","payload":"x","hops":[1],"ttl":8}"#,
            r#"{"id":"1","payload":"x","hops":[],"ttl":-1}"#,
            r#"{"id":"1","payload":"x","hops":[],"ttl":1.5}"#,
            r#"{"id":"1","id":"2","payload":"x","hops":[],"ttl":8}"#,
            r#"{"id":"1","payload":"x","hops":[],"ttl":8} trailing"#,
        ] {
            assert!(Packet::parse(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn escaped_hop_names_compare_unescaped() {
        let p = Packet::parse(br#"{"id":"1","payload":"x","hops":["router\u002dcore"],"ttl":8}"#)
            .unwrap();
        assert!(p.visited("router-core"));
        assert!(!p.visited("router-east"));
    }
}
