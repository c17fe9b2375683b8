//! Secret `NAME-admin-token`: the bearer token of the origins' admin API. Generated once,
//! applied only when missing, never rotated by a reconcile, never logged.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;

use crate::build::child_meta;
use crate::build::statefulset::TOKEN_KEY;
use crate::crd::OriginCluster;
use crate::labels;

/// An admin token. `Debug`/`Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// 32 random bytes as 64 hex characters.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret value; only for the Authorization header and the Secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

pub fn build(oc: &OriginCluster, token: &Token) -> Secret {
    let (cluster, _) = labels::name_ns(oc);
    Secret {
        metadata: child_meta(oc, labels::secret(&cluster)),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.expose().as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The token stored in an existing Secret (non-empty, trimmed), if any.
pub fn token_of(secret: &Secret) -> Option<Token> {
    let raw = secret.data.as_ref()?.get(TOKEN_KEY)?;
    let s = std::str::from_utf8(&raw.0).ok()?.trim();
    (!s.is_empty()).then(|| Token(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    #[test]
    fn generated_tokens_are_random_and_redacted() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn round_trip() {
        let t = Token::new("s3cret");
        let s = build(&fixtures::minimal(), &t);
        assert_eq!(s.metadata.name.as_deref(), Some("live-admin-token"));
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert_eq!(token_of(&s), Some(t));
        let json = serde_json::to_string(&s).expect("json");
        assert!(json.contains("czNjcmV0"), "data is base64: {json}");
        assert!(s.metadata.owner_references.is_some());
        let mut empty = s.clone();
        empty.data = Some(BTreeMap::from([(
            TOKEN_KEY.into(),
            ByteString(b" \n".to_vec()),
        )]));
        assert_eq!(token_of(&empty), None);
    }
}
