//! MessagePack payloads as JSON, and JSON as MessagePack.
//!
//! Decoding keeps what JSON can say: maps with keys of other types get their keys as strings,
//! binary becomes an array of byte values (which a `Vec<u8>` or `serde_bytes` field decodes
//! back), an extension becomes `{"ext": type, "data": [bytes]}`, and a float that is not finite
//! becomes null. Encoding writes JSON objects as MessagePack maps, which a topic's struct decodes
//! whether it is laid out compact or named.

use rmpv::Value;
use serde_json::{Map, Number, Value as Json};

/// The JSON for a MessagePack payload; an error says why the bytes are not MessagePack.
pub(crate) fn decode(payload: &[u8]) -> Result<Json, String> {
    let mut reader = payload;
    let value = rmpv::decode::read_value(&mut reader).map_err(|e| e.to_string())?;
    if !reader.is_empty() {
        return Err(format!("{} bytes after the value", reader.len()));
    }
    Ok(to_json(value))
}

fn to_json(value: Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::Integer(i) => i
            .as_u64()
            .map(Number::from)
            .or_else(|| i.as_i64().map(Number::from))
            .map_or(Json::Null, Json::Number),
        Value::F32(f) => float(f64::from(f)),
        Value::F64(f) => float(f),
        Value::String(s) => Json::String(s.into_str().unwrap_or_else(|| "\u{fffd}".to_owned())),
        Value::Binary(bytes) => bytes_json(&bytes),
        Value::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Value::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let key = match key {
                    Value::String(s) => s.into_str().unwrap_or_else(|| "\u{fffd}".to_owned()),
                    other => to_json(other).to_string(),
                };
                map.insert(key, to_json(value));
            }
            Json::Object(map)
        }
        Value::Ext(kind, data) => {
            let mut map = Map::new();
            map.insert("ext".to_owned(), Json::from(kind));
            map.insert("data".to_owned(), bytes_json(&data));
            Json::Object(map)
        }
    }
}

fn float(f: f64) -> Json {
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}

fn bytes_json(bytes: &[u8]) -> Json {
    Json::Array(bytes.iter().map(|b| Json::from(*b)).collect())
}

/// The MessagePack encoding of `json`.
pub(crate) fn encode(json: &Json) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec(json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_messagepack() {
        let json = serde_json::json!({
            "sensor": "a", "celsius": 21.5, "count": 3, "below": -4,
            "tags": ["x", null, true], "nested": {"k": []}
        });
        assert_eq!(decode(&encode(&json).unwrap()).unwrap(), json);
    }

    #[test]
    fn what_json_lacks_is_mapped() {
        // A map keyed by an integer, binary, an extension and a NaN.
        let value = Value::Map(vec![
            (Value::from(1), Value::Binary(vec![1, 2])),
            (Value::from("e"), Value::Ext(5, vec![9])),
            (Value::from("nan"), Value::F64(f64::NAN)),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        assert_eq!(
            decode(&bytes).unwrap(),
            serde_json::json!({"1": [1, 2], "e": {"ext": 5, "data": [9]}, "nan": null})
        );
    }

    #[test]
    fn what_is_not_messagepack_is_an_error() {
        // An array of two that holds one.
        assert!(decode(&[0x92, 0x01]).is_err());
        assert!(
            decode(&[0x01, 0x02])
                .unwrap_err()
                .contains("after the value")
        );
    }
}
