//! Value types of the cluster file that carry their own validation: a port is
//! 1..=65535, an interval has a unit, a secret is a reference and never a
//! literal. Errors raised here come back from the parser with the value's
//! line and column.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A TCP or UDP port, 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port(pub u16);

impl Port {
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number from 1 to 65535")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                match u16::try_from(v) {
                    Ok(p) if p != 0 => Ok(Port(p)),
                    _ => Err(E::custom(format_args!(
                        "port {v} is out of range: use a port from 1 to 65535"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Err(E::custom(format_args!(
                    "port is a string \"{v}\": write it as a number without quotes"
                )))
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.0)
    }
}

/// A span of time written with its unit: `"100ms"`, `"1s"`, `"2.5s"`, `"5m"`, `"1h"`.
///
/// A bare number is refused: keepalived counts `advert_int` in seconds and
/// HAProxy counts `inter` in milliseconds, so a unitless value is a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Interval(pub Duration);

impl Interval {
    pub fn get(self) -> Duration {
        self.0
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
}

impl std::str::FromStr for Interval {
    type Err = String;

    /// `500ms`, `2s`, `1m`: the cluster file's duration syntax, for flags.
    fn from_str(text: &str) -> Result<Self, String> {
        parse_interval(text).map(Interval)
    }
}

impl fmt::Display for Interval {
    /// Writes the shortest exact form that [`parse_interval`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let micros = self.0.as_micros();
        if !micros.is_multiple_of(1000) {
            write!(f, "{micros}us")
        } else if ms == 0 {
            f.write_str("0s")
        } else if ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Parses `"<number><unit>"` with unit `us`, `ms`, `s`, `m` or `h`; the number
/// may have a fractional part (`"2.5s"`). Precision is one microsecond.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let micros_per_unit: u128 = match unit {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "" => {
            return Err(format!(
                "\"{text}\" has no unit: write it as \"{text}s\" or \"{text}ms\""
            ));
        }
        other => {
            return Err(format!(
                "\"{text}\" has an unknown unit \"{other}\": use us, ms, s, m or h"
            ));
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(format!(
            "\"{text}\" has no number: write it like \"1s\" or \"100ms\""
        ));
    }
    let parse_digits = |digits: &str| -> Result<u128, String> {
        if digits.is_empty() {
            return Ok(0);
        }
        digits
            .parse::<u128>()
            .map_err(|_| format!("\"{text}\" is not a number followed by a unit"))
    };
    let whole = parse_digits(whole)?;
    // Only as many fractional digits as the unit can resolve to a microsecond.
    let mut fraction_micros: u128 = 0;
    let mut scale = micros_per_unit;
    for digit in fraction.chars() {
        let d = digit
            .to_digit(10)
            .ok_or_else(|| format!("\"{text}\" is not a number followed by a unit"))?;
        scale /= 10;
        fraction_micros += u128::from(d) * scale;
    }
    let total = whole
        .checked_mul(micros_per_unit)
        .and_then(|w| w.checked_add(fraction_micros))
        .filter(|&t| t <= u128::from(u64::MAX))
        .ok_or_else(|| format!("\"{text}\" is too long"))?;
    Ok(Duration::from_micros(total as u64))
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntervalVisitor;
        impl Visitor<'_> for IntervalVisitor {
            type Value = Interval;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, like \"1s\" or \"100ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Interval, E> {
                parse_interval(v).map(Interval).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Interval, E> {
                Err(E::custom(format_args!(
                    "a duration needs a unit: write \"{v}s\" or \"{v}ms\" (with the quotes)"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Interval, E> {
                Err(E::custom(format_args!(
                    "a duration needs a unit: write \"{v}s\" (with the quotes)"
                )))
            }
        }
        deserializer.deserialize_any(IntervalVisitor)
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A field that holds a secret (a VRRP password, a WireGuard private key).
///
/// The cluster file only names the secret: `password = { secret = "vrrp" }`.
/// The value lives in the secrets file. A literal string is accepted by the
/// parser only so that `vipd check` can say where it is and how to move it;
/// it is never printed, serialised or used.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretField {
    Ref(String),
    Inline,
}

impl SecretField {
    /// The secret's name, when the field is a reference.
    pub fn name(&self) -> Option<&str> {
        match self {
            SecretField::Ref(name) => Some(name),
            SecretField::Inline => None,
        }
    }
}

impl fmt::Debug for SecretField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretField::Ref(name) => write!(f, "secret:{name}"),
            SecretField::Inline => f.write_str("<inline secret, redacted>"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = SecretField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a reference to a secret: { secret = \"NAME\" }")
            }
            fn visit_str<E: de::Error>(self, _literal: &str) -> Result<SecretField, E> {
                // The literal is dropped here: nothing downstream may see it.
                Ok(SecretField::Inline)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretField, A::Error> {
                let mut name: Option<String> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "secret" {
                        return Err(de::Error::custom(format_args!(
                            "unknown key `{key}` in a secret reference: write {{ secret = \"NAME\" }}"
                        )));
                    }
                    name = Some(map.next_value()?);
                }
                match name {
                    Some(name) if !name.is_empty() => Ok(SecretField::Ref(name)),
                    _ => Err(de::Error::custom(
                        "a secret reference needs a name: { secret = \"NAME\" }",
                    )),
                }
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}

impl Serialize for SecretField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SecretField::Ref(name) => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("secret", name)?;
                map.end()
            }
            SecretField::Inline => serializer.serialize_str("<redacted>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_with_units() {
        let ms = |s: &str| parse_interval(s).map(|d| d.as_micros());
        assert_eq!(ms("100ms"), Ok(100_000));
        assert_eq!(ms("1s"), Ok(1_000_000));
        assert_eq!(ms("2.5s"), Ok(2_500_000));
        assert_eq!(ms("0.01s"), Ok(10_000));
        assert_eq!(ms("1h"), Ok(3_600_000_000));
        assert_eq!(ms("1.5m"), Ok(90_000_000));
        assert_eq!(ms("250us"), Ok(250));
        assert!(parse_interval("1").unwrap_err().contains("no unit"));
        assert!(parse_interval("1d").unwrap_err().contains("unknown unit"));
        assert!(parse_interval("s").unwrap_err().contains("no number"));
        assert!(parse_interval("1.2.3s").is_err());
        assert!(parse_interval("99999999999999999999h").is_err());
    }

    #[test]
    fn intervals_display_in_the_form_they_parse_from() {
        for text in ["100ms", "1s", "1h", "5m", "250us", "0s", "1500ms"] {
            let d = Interval(parse_interval(text).unwrap());
            assert_eq!(d.to_string(), text);
        }
    }

    proptest::proptest! {
        #[test]
        fn interval_display_round_trips(micros in 0u64..10_000_000_000) {
            let d = Interval(Duration::from_micros(micros));
            proptest::prop_assert_eq!(parse_interval(&d.to_string()), Ok(d.0));
        }
    }
}
