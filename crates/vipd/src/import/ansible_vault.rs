//! Files encrypted with ansible-vault, format 1.1 and 1.2, cipher AES256,
//! as Ansible documents them ("Vault format", docs.ansible.com):
//!
//! ```text
//! $ANSIBLE_VAULT;1.1;AES256            (1.2: $ANSIBLE_VAULT;1.2;AES256;LABEL)
//! hex( hex(salt) \n hex(hmac) \n hex(ciphertext) ), in lines of 80
//!
//! key material = PBKDF2-HMAC-SHA256(password, salt, 10000 rounds, 80 bytes)
//!   cipher key = [0..32)   hmac key = [32..64)   counter block = [64..80)
//! hmac       = HMAC-SHA256(hmac key, ciphertext)      checked first, in constant time
//! plaintext  = PKCS#7-unpad( AES-256-CTR(cipher key, counter block, ciphertext) )
//! ```
//!
//! A wrong password fails the HMAC, so it is reported as such and nothing is
//! decrypted: never garbage.

use std::fmt;

use aes::cipher::{KeyIvInit as _, StreamCipher as _};
use hmac::Mac as _;
use zeroize::Zeroizing;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const PBKDF2_ROUNDS: u32 = 10_000;
const HEADER: &str = "$ANSIBLE_VAULT";

/// A vault password, with the vault id label it was given for (if any).
pub struct Password {
    pub label: Option<String>,
    pub secret: Zeroizing<String>,
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Password({:?}, <redacted>)", self.label)
    }
}

/// Why an encrypted file cannot be read. Never holds plaintext or a password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnsibleVaultError {
    #[error("not an ansible-vault file (the first line is not $ANSIBLE_VAULT;...)")]
    NotVault,
    #[error("ansible-vault format {0} is not supported (1.1 and 1.2 are)")]
    Version(String),
    #[error("ansible-vault cipher {0} is not supported (AES256 is)")]
    Cipher(String),
    #[error("the header has {0} fields; 1.1 has 3 and 1.2 has 4 ($ANSIBLE_VAULT;1.2;AES256;LABEL)")]
    Header(usize),
    #[error("corrupt vault data: {0}")]
    Corrupt(&'static str),
    #[error("no vault password given: pass --vault-password-file FILE")]
    NoPassword,
    #[error("wrong vault password{label}: the HMAC does not match (tried {tried} password(s))", label = .label.as_deref().map(|l| format!(" for vault id \"{l}\"")).unwrap_or_default())]
    WrongPassword { label: Option<String>, tried: usize },
    #[error("the decrypted text is not UTF-8")]
    NotUtf8,
}

/// Whether a file's text is an ansible-vault file.
pub fn is_encrypted(text: &str) -> bool {
    text.trim_start().starts_with("$ANSIBLE_VAULT;")
}

/// The vault id label of a 1.2 file (None for 1.1 or a file that is not one).
pub fn label(text: &str) -> Option<String> {
    let first = text.trim_start().lines().next()?;
    let fields: Vec<&str> = first.trim().split(';').collect();
    (fields.len() == 4 && fields[1] == "1.2").then(|| fields[3].to_owned())
}

fn unhex(text: &[u8]) -> Result<Vec<u8>, AnsibleVaultError> {
    if !text.len().is_multiple_of(2) {
        return Err(AnsibleVaultError::Corrupt("odd number of hex digits"));
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(AnsibleVaultError::Corrupt(
            "a character that is not a hex digit",
        )),
    };
    text.chunks_exact(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

struct Parsed {
    label: Option<String>,
    salt: Vec<u8>,
    hmac: Vec<u8>,
    ciphertext: Vec<u8>,
}

fn parse(text: &str) -> Result<Parsed, AnsibleVaultError> {
    let text = text.trim_start();
    let mut lines = text.lines();
    let header = lines.next().ok_or(AnsibleVaultError::NotVault)?.trim();
    let fields: Vec<&str> = header.split(';').collect();
    if fields.first() != Some(&HEADER) {
        return Err(AnsibleVaultError::NotVault);
    }
    let label = match (fields.get(1).copied(), fields.len()) {
        (Some("1.1"), 3) => None,
        (Some("1.2"), 4) => Some(fields[3].to_owned()),
        (Some("1.1" | "1.2"), n) => return Err(AnsibleVaultError::Header(n)),
        (Some(v), _) => return Err(AnsibleVaultError::Version(v.to_owned())),
        (None, n) => return Err(AnsibleVaultError::Header(n)),
    };
    if fields[2] != "AES256" {
        return Err(AnsibleVaultError::Cipher(fields[2].to_owned()));
    }
    let body: Vec<u8> = lines.flat_map(|l| l.trim().bytes()).collect();
    if body.is_empty() {
        return Err(AnsibleVaultError::Corrupt("no data after the header"));
    }
    let inner = unhex(&body)?;
    let mut parts = inner.splitn(3, |&b| b == b'\n');
    let mut next = |what: &'static str| {
        parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or(AnsibleVaultError::Corrupt(what))
            .and_then(|p| unhex(p.trim_ascii()))
    };
    let salt = next("the salt is missing")?;
    let hmac = next("the HMAC is missing")?;
    let ciphertext = next("the ciphertext is missing")?;
    if hmac.len() != 32 {
        return Err(AnsibleVaultError::Corrupt("the HMAC is not 32 bytes"));
    }
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
        return Err(AnsibleVaultError::Corrupt(
            "the ciphertext is not whole AES blocks",
        ));
    }
    Ok(Parsed {
        label,
        salt,
        hmac,
        ciphertext,
    })
}

/// Tries one password: `None` when the HMAC does not match.
fn try_password(parsed: &Parsed, password: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let mut material = Zeroizing::new([0u8; 80]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, &parsed.salt, PBKDF2_ROUNDS, &mut *material);
    let (cipher_key, rest) = material.split_at(32);
    let (hmac_key, iv) = rest.split_at(32);
    let mut mac = HmacSha256::new_from_slice(hmac_key).expect("HMAC takes any key length");
    mac.update(&parsed.ciphertext);
    // verify_slice compares in constant time.
    mac.verify_slice(&parsed.hmac).ok()?;
    let mut plain = Zeroizing::new(parsed.ciphertext.clone());
    let mut cipher = Aes256Ctr::new(cipher_key.into(), iv.into());
    cipher.apply_keystream(&mut plain);
    Some(plain)
}

fn unpad(plain: &mut Zeroizing<Vec<u8>>) -> Result<(), AnsibleVaultError> {
    let pad = usize::from(*plain.last().ok_or(AnsibleVaultError::Corrupt("empty"))?);
    if pad == 0 || pad > 16 || pad > plain.len() {
        return Err(AnsibleVaultError::Corrupt("bad PKCS#7 padding"));
    }
    let start = plain.len() - pad;
    if plain[start..].iter().any(|&b| usize::from(b) != pad) {
        return Err(AnsibleVaultError::Corrupt("bad PKCS#7 padding"));
    }
    plain.truncate(start);
    Ok(())
}

/// Decrypts an ansible-vault file with the first password whose HMAC
/// matches. Passwords given for the file's vault id are tried first.
pub fn decrypt(text: &str, passwords: &[Password]) -> Result<Zeroizing<String>, AnsibleVaultError> {
    let parsed = parse(text)?;
    if passwords.is_empty() {
        return Err(AnsibleVaultError::NoPassword);
    }
    let mut order: Vec<&Password> = passwords.iter().collect();
    // Stable: the ones labelled for this file first, then the others.
    order.sort_by_key(|p| !(p.label.is_some() && p.label == parsed.label));
    for password in order {
        if let Some(mut plain) = try_password(&parsed, password.secret.as_bytes()) {
            unpad(&mut plain)?;
            let text = String::from_utf8(std::mem::take(&mut *plain)).map_err(|e| {
                let mut bytes = e.into_bytes();
                zeroize::Zeroize::zeroize(&mut bytes);
                AnsibleVaultError::NotUtf8
            })?;
            return Ok(Zeroizing::new(text));
        }
    }
    Err(AnsibleVaultError::WrongPassword {
        label: parsed.label,
        tried: passwords.len(),
    })
}

/// Reads a password file as ansible does: its text, whitespace trimmed at
/// both ends. `LABEL@FILE` gives the vault id. An executable file is a
/// password *script* to ansible; vipd does not run scripts and says so.
pub fn read_password_file(spec: &str) -> Result<Password, String> {
    let (label, file) = match spec.split_once('@') {
        Some((label, file)) if !label.is_empty() && !label.contains('/') => {
            (Some(label.to_owned()), file)
        }
        _ => (None, spec),
    };
    let path = std::path::Path::new(file);
    let metadata =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        if metadata.permissions().mode() & 0o111 != 0 {
            return Err(format!(
                "{} is executable: ansible would run it as a password script; vipd does not run scripts: write the password into a plain (non-executable) file",
                path.display()
            ));
        }
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    let secret = Zeroizing::new(text.trim().to_owned());
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Password { label, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Built here with the primitives, to test the parser on known input:
    // the fixture files of the integration tests come from ansible itself.
    fn seal(plain: &[u8], password: &str, salt: &[u8], label: Option<&str>) -> String {
        let mut material = [0u8; 80];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
            password.as_bytes(),
            salt,
            PBKDF2_ROUNDS,
            &mut material,
        );
        let pad = 16 - plain.len() % 16;
        let mut data = plain.to_vec();
        data.extend(std::iter::repeat_n(u8::try_from(pad).unwrap(), pad));
        Aes256Ctr::new((&material[..32]).into(), (&material[64..]).into())
            .apply_keystream(&mut data);
        let mut mac = HmacSha256::new_from_slice(&material[32..64]).unwrap();
        mac.update(&data);
        let hmac = mac.finalize().into_bytes();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let inner = format!("{}\n{}\n{}", hex(salt), hex(&hmac), hex(&data));
        let outer = hex(inner.as_bytes());
        let header = match label {
            Some(l) => format!("$ANSIBLE_VAULT;1.2;AES256;{l}"),
            None => "$ANSIBLE_VAULT;1.1;AES256".to_owned(),
        };
        let mut text = header;
        for chunk in outer.as_bytes().chunks(80) {
            text.push('\n');
            text.push_str(std::str::from_utf8(chunk).unwrap());
        }
        text.push('\n');
        text
    }

    fn pw(s: &str, label: Option<&str>) -> Password {
        Password {
            label: label.map(str::to_owned),
            secret: Zeroizing::new(s.to_owned()),
        }
    }

    #[test]
    fn round_trip_both_formats() {
        for label in [None, Some("bay")] {
            let text = seal(b"a: 1\n", "pw", &[7; 32], label);
            assert_eq!(label, super::label(&text).as_deref());
            let plain = decrypt(&text, &[pw("pw", None)]).unwrap();
            assert_eq!(plain.as_str(), "a: 1\n");
        }
        // A 16-byte plaintext gets a whole block of padding.
        let text = seal(b"0123456789abcdef", "pw", &[1; 32], None);
        assert_eq!(
            decrypt(&text, &[pw("pw", None)]).unwrap().as_str(),
            "0123456789abcdef"
        );
    }

    #[test]
    fn wrong_password_is_an_error_never_garbage() {
        let text = seal(b"secret: x\n", "right", &[3; 32], Some("bay"));
        let err = decrypt(&text, &[pw("wrong", None)]).unwrap_err();
        assert_eq!(
            err,
            AnsibleVaultError::WrongPassword {
                label: Some("bay".to_owned()),
                tried: 1
            }
        );
        assert!(err.to_string().contains("vault id \"bay\""));
        // The right one among several.
        let plain = decrypt(&text, &[pw("wrong", None), pw("right", Some("bay"))]).unwrap();
        assert_eq!(plain.as_str(), "secret: x\n");
        assert_eq!(
            decrypt(&text, &[]).unwrap_err(),
            AnsibleVaultError::NoPassword
        );
    }

    #[test]
    fn malformed_files_are_named_errors() {
        let good = seal(b"x: 1\n", "pw", &[9; 32], None);
        let p = [pw("pw", None)];
        assert_eq!(
            decrypt("x: 1", &p).unwrap_err(),
            AnsibleVaultError::NotVault
        );
        assert!(matches!(
            decrypt("$ANSIBLE_VAULT;1.0;AES\nabcd", &p).unwrap_err(),
            AnsibleVaultError::Version(_)
        ));
        assert!(matches!(
            decrypt("$ANSIBLE_VAULT;1.1;AES\nabcd", &p).unwrap_err(),
            AnsibleVaultError::Cipher(_)
        ));
        assert!(matches!(
            decrypt("$ANSIBLE_VAULT;1.2;AES256\nabcd", &p).unwrap_err(),
            AnsibleVaultError::Header(3)
        ));
        let truncated = &good[..good.len() - 20];
        assert!(matches!(
            decrypt(truncated, &p).unwrap_err(),
            AnsibleVaultError::Corrupt(_)
        ));
        let not_hex = good.replacen('3', "z", 1);
        assert!(matches!(
            decrypt(&not_hex, &p).unwrap_err(),
            AnsibleVaultError::Corrupt(_)
        ));
        // A flipped ciphertext digit fails the HMAC: reported as a wrong password.
        let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
        let last = lines.last_mut().unwrap();
        let flipped = if last.ends_with('0') { '1' } else { '0' };
        last.pop();
        last.push(flipped);
        let tampered = lines.join("\n");
        assert!(decrypt(&tampered, &p).is_err());
    }

    #[test]
    fn password_files_are_trimmed_and_scripts_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "  pass word \n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = read_password_file(file.to_str().unwrap()).unwrap();
        assert_eq!(p.secret.as_str(), "pass word");
        assert_eq!(p.label, None);
        let p = read_password_file(&format!("bay@{}", file.display())).unwrap();
        assert_eq!(p.label.as_deref(), Some("bay"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(
            read_password_file(file.to_str().unwrap())
                .unwrap_err()
                .contains("script")
        );
    }

    proptest::proptest! {
        // PBKDF2's 10000 rounds are slow in a debug build: few cases suffice.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Any text after a valid header: an error or a plaintext, never a panic.
        #[test]
        fn any_body_decrypts_or_errs(body in "[0-9a-fA-Fx\n ]{0,400}", header in 0usize..4) {
            let head = ["$ANSIBLE_VAULT;1.1;AES256", "$ANSIBLE_VAULT;1.2;AES256;id", "$ANSIBLE_VAULT;1.2", "$ANSIBLE_VAULT"][header];
            let _ = decrypt(&format!("{head}\n{body}"), &[pw("pw", None)]);
        }

        /// Valid framing around random ciphertext fails the HMAC: never garbage.
        #[test]
        fn random_ciphertext_is_refused(data in proptest::collection::vec(proptest::num::u8::ANY, 1..64)) {
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            let mut blocks = data.clone();
            blocks.resize(data.len().div_ceil(16) * 16, 0);
            let inner = format!("{}\n{}\n{}", hex(&[1; 32]), hex(&[2; 32]), hex(&blocks));
            let text = format!("$ANSIBLE_VAULT;1.1;AES256\n{}\n", hex(inner.as_bytes()));
            let refused = matches!(
                decrypt(&text, &[pw("pw", None)]),
                Err(AnsibleVaultError::WrongPassword { .. })
            );
            proptest::prop_assert!(refused);
        }
    }
}
