//! `auth-type: digest` → [`DigestAuth`]: the Secret's htdigest lines (`user:realm:HA1`, as
//! Apache's `htdigest` writes them) for the route's `auth-realm`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::annotations::Annotations;
use super::auth::{MAX_FIELD, MAX_USERS, SecretLines, entry_lines};
use crate::config::auth::{DigestAuth, Ha1};

/// One htdigest entry: the user, the realm and the HA1 (lowercased), or why it is not used.
fn entry<'a>(user: &'a str, rest: &'a str) -> Result<(&'a str, &'a str, Ha1), String> {
    if user.is_empty() || user.len() > MAX_FIELD || user.bytes().any(|b| b.is_ascii_control() || b == b'"') {
        return Err("invalid user name".into());
    }
    let (realm, ha1) = rest.trim_end().rsplit_once(':').ok_or("no user:realm:hash triple")?;
    if realm.len() > MAX_FIELD {
        return Err("realm too long".into());
    }
    let ha1: [u8; 32] = ha1
        .as_bytes()
        .try_into()
        .ok()
        .filter(|h: &[u8; 32]| h.iter().all(u8::is_ascii_hexdigit))
        .ok_or("the hash is not 32 hexadecimal digits")?;
    Ok((user, realm, Ha1(ha1.map(|b| b.to_ascii_lowercase()))))
}

/// An htdigest file: `user:realm:HA1` lines; blank lines and `#` comments are skipped. Returns
/// the users of `realm` and one note (line number and why, never the line) per line not used;
/// lines of other realms are left out without a note (one file may serve several realms).
pub fn parse_htdigest(text: &[u8], realm: &str) -> (BTreeMap<String, Ha1>, Vec<String>) {
    let mut users = BTreeMap::new();
    let mut notes = Vec::new();
    for (line_no, line) in entry_lines(text) {
        let parsed = std::str::from_utf8(line)
            .map_err(|_| "not UTF-8".to_string())
            .and_then(|l| l.split_once(':').ok_or_else(|| "no user:realm:hash triple".to_string()))
            .and_then(|(user, rest)| entry(user, rest));
        match parsed {
            Ok((_, r, _)) if r != realm => {}
            Ok(_) if users.len() >= MAX_USERS => {
                notes.push(format!(
                    "line {line_no}: more than {MAX_USERS} users; the rest are not used"
                ));
                break;
            }
            Ok((user, _, ha1)) => {
                if users.insert(user.to_string(), ha1).is_some() {
                    notes.push(format!("line {line_no}: the user is listed again; this line is used"));
                }
            }
            Err(why) => notes.push(format!("line {line_no}: {why}")),
        }
    }
    (users, notes)
}

impl Annotations<'_> {
    /// `auth-type: digest`: the users of the route's realm, or why every request is denied
    /// (reported). An `auth-map` Secret holds `realm:HA1` under each user name, the line
    /// ingress-nginx writes from it.
    pub(super) fn digest(&mut self, prefix: &str) -> Result<DigestAuth, String> {
        let (realm, key, lines) = self.auth_secret(prefix, "digest")?;
        let (users, notes) = match lines {
            SecretLines::File(text) => parse_htdigest(text, &realm),
            SecretLines::Map(fields) => {
                let mut users = BTreeMap::new();
                let mut notes = Vec::new();
                for (user, value) in fields {
                    let parsed = std::str::from_utf8(value)
                        .map_err(|_| "not UTF-8".to_string())
                        .and_then(|v| entry(user, v));
                    match parsed {
                        Ok((_, r, _)) if r != &*realm => {}
                        Ok((_, _, ha1)) => drop(users.insert(user.to_string(), ha1)),
                        Err(why) => notes.push(format!("key {user:?}: {why}")),
                    }
                }
                (users, notes)
            }
        };
        self.auth_notes("digest", &key, &notes, false);
        if users.is_empty() {
            self.auth_warning(format!(
                "digest authentication: Secret {key} holds no usable user of the realm {realm:?} (auth-realm); every request is answered 401"
            ));
        }
        Ok(DigestAuth {
            realm,
            secret: key.to_string().into(),
            users: Arc::new(users),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htdigest_lines() {
        let text = b"# comment\n\nalice:Staff:939e7578ED9E3c518a452acee763bce9\r\nbob:Other:939e7578ed9e3c518a452acee763bce9\ncarol:Staff:short\nnocolon\ndave:a:b:Staff:00000000000000000000000000000000\n\xff:x\neve:Staff\n";
        let (users, notes) = parse_htdigest(text, "Staff");
        assert_eq!(users.keys().collect::<Vec<_>>(), ["alice"]);
        assert_eq!(&users["alice"].0, b"939e7578ed9e3c518a452acee763bce9");
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(notes.iter().all(|n| n.starts_with("line ")));
        // A realm holding colons is the part between the first and the last.
        let (users, _) = parse_htdigest(text, "a:b:Staff");
        assert_eq!(users.keys().collect::<Vec<_>>(), ["dave"]);
        let (users, _) = parse_htdigest(text, "Other");
        assert_eq!(users.keys().collect::<Vec<_>>(), ["bob"]);
    }
}
