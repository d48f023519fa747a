//! WireGuard keys, as `wg genkey` and `wg pubkey` make them: the cluster
//! file names public keys (checked against the private ones here), `vipd wg`
//! makes them, `vipd render wireguard` writes them.
//!
//! Keys are 32 bytes in standard base64 (44 characters). A private key is 32
//! random bytes clamped as RFC 7748 §5 decodes an X25519 scalar (the low 3
//! bits and the top bit cleared, bit 254 set), which is what `wg genkey`
//! prints; the public key is the scalar times the base point u = 9.

use base64::Engine as _;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a key cannot be used. Never holds the key itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a WireGuard key: expected 44 characters of base64 (32 bytes)")]
    Format,
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// RFC 7748 §5 clamping, as `wg genkey` applies it.
fn clamp(mut key: [u8; 32]) -> [u8; 32] {
    key[0] &= 248;
    key[31] &= 127;
    key[31] |= 64;
    key
}

/// Decodes a base64 key of exactly 32 bytes (surrounding white space allowed,
/// as `wg pubkey` reads a line from stdin).
pub fn decode_key(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = B64.decode(text.trim()).map_err(|_| KeyError::Format)?;
    bytes.try_into().map_err(|_| KeyError::Format)
}

pub fn encode_key(key: &[u8; 32]) -> String {
    B64.encode(key)
}

/// A new private key from the operating system's random source, clamped and
/// base64-encoded, like `wg genkey`.
pub fn generate_private_key() -> Result<String, KeyError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(encode_key(&clamp(key)))
}

/// The public key of a base64 private key, like `wg pubkey`. An unclamped
/// key gives the same public key as its clamped form, as with `wg pubkey`.
pub fn public_key(private: &str) -> Result<String, KeyError> {
    let secret = x25519_dalek::StaticSecret::from(clamp(decode_key(private)?));
    Ok(encode_key(
        x25519_dalek::PublicKey::from(&secret).as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 §6.1: Alice's private scalar and public key.
    #[test]
    fn rfc7748_vector() {
        let private: [u8; 32] =
            hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let public: [u8; 32] =
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(
            public_key(&encode_key(&private)).unwrap(),
            encode_key(&public)
        );
    }

    #[test]
    fn generated_keys_are_clamped_and_distinct() {
        let a = decode_key(&generate_private_key().unwrap()).unwrap();
        let b = decode_key(&generate_private_key().unwrap()).unwrap();
        assert_ne!(a, b);
        for key in [a, b] {
            assert_eq!(key[0] & 7, 0);
            assert_eq!(key[31] & 0x80, 0);
            assert_eq!(key[31] & 0x40, 0x40);
        }
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(public_key("not a key"), Err(KeyError::Format));
        // 31 bytes.
        assert_eq!(public_key(&B64.encode([1u8; 31])), Err(KeyError::Format));
        // Trailing newline, as from a file or a pipe, is fine.
        let key = generate_private_key().unwrap();
        assert_eq!(public_key(&format!("{key}\n")), public_key(&key));
    }

    fn hex(text: &str) -> [u8; 32] {
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }
}
