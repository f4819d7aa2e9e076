//! Who is calling and what they may do.
//!
//! A caller is known by its bearer token: the single `DWR_API_TOKEN` (an administrator,
//! the original system's one token), or one of the named tokens of `DWR_TOKENS_FILE`, each
//! with a [`Role`]. The file keeps SHA-256 digests, not tokens, and a token is compared with
//! every digest in constant time. With neither configured, every caller is an anonymous
//! administrator (and the API listens on loopback only).
//!
//! ```toml
//! # DWR_TOKENS_FILE: one [[tokens]] table per tenant.
//! # sha256 = printf %s "$TOKEN" | sha256sum
//! [[tokens]]
//! name = "alice"
//! role = "submit"   # read, submit or admin
//! sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
//! queues = ["research", "default"]   # optional: the queues it may submit to (all without)
//! ```

use std::collections::HashSet;
use std::path::Path;

use axum::http::{header, HeaderMap, Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use dwr_core::Queues;

use super::ApiError;

/// What a token may do; each role may do what the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read jobs, logs, executors and figures.
    Read,
    /// Also submit jobs, and abort its own.
    Submit,
    /// Everything: abort any job, see every job's env, `/schedule`, `/cleanup`.
    Admin,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Admin => "admin",
        }
    }
}

/// One named token of the tokens file.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// The tenant's name: what its jobs record as their `owner`.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token, 64 hex digits.
    sha256: String,
    /// The queues it may submit to; `None`: every queue.
    #[serde(default)]
    pub queues: Option<Vec<String>>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<Tenant>,
}

/// Reads and checks a tokens file: names non-empty and unique, digests 64 hex digits.
/// An error names the file and the entry.
pub fn read_tokens_file(path: &Path) -> Result<Vec<Tenant>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: TokensFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut names = HashSet::new();
    for (i, tenant) in file.tokens.iter().enumerate() {
        let entry = format!("{}: tokens[{i}]", path.display());
        if tenant.name.trim().is_empty() {
            return Err(format!("{entry}: name must not be empty"));
        }
        if !names.insert(tenant.name.as_str()) {
            return Err(format!("{entry}: name {:?} is used twice", tenant.name));
        }
        if tenant.sha256.len() != 64 || !tenant.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{entry} ({}): sha256 must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum)",
                tenant.name
            ));
        }
    }
    Ok(file.tokens)
}

/// Refuses tenants that name a queue `queues` does not define, naming the tenant.
pub fn check_tenant_queues(tenants: &[Tenant], queues: &Queues) -> Result<(), String> {
    for tenant in tenants {
        for queue in tenant.queues.iter().flatten() {
            if queues.get(queue).is_none() {
                return Err(format!(
                    "tokens {:?}: queue {queue:?} is not defined (queues: {})",
                    tenant.name,
                    queues.names()
                ));
            }
        }
    }
    Ok(())
}

/// Who is calling: a tenant's name (none for the single token or an API without
/// tokens), and its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The tenant's name.
    pub name: Option<String>,
    /// What it may do.
    pub role: Role,
    /// The queues it may submit to; `None`: every queue.
    pub queues: Option<Vec<String>>,
}

impl Caller {
    /// Refuses the submission of a job to `queue` by a tenant whose token does not name it.
    pub fn may_submit_to(&self, queue: &str) -> Result<(), ApiError> {
        match &self.queues {
            Some(allowed) if !allowed.iter().any(|q| q == queue) => Err(forbidden(format!(
                "the token of {} may submit to the queues {}, not to {queue}",
                self.name.as_deref().unwrap_or("this caller"),
                allowed.join(", ")
            ))),
            _ => Ok(()),
        }
    }

    /// Whether this caller sees the `env` values of a job owned by `owner`: an administrator
    /// sees every job's, a tenant its own.
    pub fn sees_env_of(&self, owner: Option<&str>) -> bool {
        self.role == Role::Admin || (owner.is_some() && owner == self.name.as_deref())
    }

    /// Refuses a tenant that is not an administrator the abort of a job of `owner`.
    pub fn may_abort(&self, owner: Option<&str>, job: &str) -> Result<(), ApiError> {
        if self.role == Role::Admin || (owner.is_some() && owner == self.name.as_deref()) {
            return Ok(());
        }
        Err(forbidden(format!(
            "job {job} belongs to {}; a token of the {} role aborts only its own jobs",
            owner.unwrap_or("the administrators"),
            self.role.as_str()
        )))
    }
}

/// The caller of a request with `headers`: 401 when tokens are configured and none of
/// them is given.
pub fn authenticate(
    api_token: Option<&str>,
    tenants: &[Tenant],
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let admin = |name| Caller {
        name,
        role: Role::Admin,
        queues: None,
    };
    if api_token.is_none() && tenants.is_empty() {
        return Ok(admin(None));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        // The scheme is case-insensitive (RFC 9110).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(ApiError::unauthorized)?;
    if api_token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(given.as_bytes()))) {
        return Ok(admin(None));
    }
    let digest = sha256_hex(given);
    // Every digest is compared, whichever matches: the time taken says nothing of which.
    let mut found = None;
    for tenant in tenants {
        let lower = tenant.sha256.to_ascii_lowercase();
        if bool::from(lower.as_bytes().ct_eq(digest.as_bytes())) {
            found = Some(tenant);
        }
    }
    found
        .map(|t| Caller {
            name: Some(t.name.clone()),
            role: t.role,
            queues: t.queues.clone(),
        })
        .ok_or_else(ApiError::unauthorized)
}

/// Refuses `caller` a request it has no role for: reading needs `read`, submitting and
/// aborting jobs `submit`, the operator routes (`/schedule`, `/cleanup`) `admin`.
pub fn authorize(caller: &Caller, method: &Method, path: &str) -> Result<(), ApiError> {
    let needed = if method == Method::GET || method == Method::HEAD {
        Role::Read
    } else if path == "/jobs" || path.starts_with("/jobs/") {
        Role::Submit
    } else {
        Role::Admin
    };
    if caller.role >= needed {
        return Ok(());
    }
    Err(forbidden(format!(
        "{method} {path} needs the {} role; the token of {} has the {} role",
        needed.as_str(),
        caller.name.as_deref().unwrap_or("this caller"),
        caller.role.as_str()
    )))
}

/// SHA-256 of `text` as 64 lower-case hex digits (what `sha256sum` prints).
pub(crate) fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn forbidden(detail: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, role: Role, token: &str) -> Tenant {
        Tenant {
            name: name.into(),
            role,
            sha256: sha256_hex(token),
            queues: None,
        }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn tokens_name_their_tenant_and_role() {
        let tenants = [
            tenant("alice", Role::Submit, "a-token"),
            tenant("ops", Role::Admin, "o-token"),
        ];
        let alice = authenticate(Some("single"), &tenants, &bearer("a-token")).unwrap();
        assert_eq!(
            (alice.name.as_deref(), alice.role),
            (Some("alice"), Role::Submit)
        );
        let single = authenticate(Some("single"), &tenants, &bearer("single")).unwrap();
        assert_eq!((single.name, single.role), (None, Role::Admin));
        for bad in [
            bearer("nope"),
            bearer(""),
            bearer("singlE"),
            bearer("single2"),
            HeaderMap::new(),
        ] {
            let err = authenticate(Some("single"), &tenants, &bad).unwrap_err();
            assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        }
        let open = authenticate(None, &[], &HeaderMap::new()).unwrap();
        assert_eq!(open.role, Role::Admin, "no tokens: no authentication");
    }

    #[test]
    fn a_token_submits_only_to_its_queues() {
        let mut research = tenant("rita", Role::Submit, "r-token");
        research.queues = Some(vec!["research".into()]);
        let caller = authenticate(None, &[research.clone()], &bearer("r-token")).unwrap();
        assert!(caller.may_submit_to("research").is_ok());
        let e = caller.may_submit_to("default").unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(
            e.detail.contains("research") && e.detail.contains("default"),
            "{}",
            e.detail
        );
        let anyone = authenticate(Some("single"), &[], &bearer("single")).unwrap();
        assert!(anyone.may_submit_to("default").is_ok());

        let queues = crate::queues_file::parse_queues("[[queues]]\nname = \"research\"").unwrap();
        assert_eq!(check_tenant_queues(&[research.clone()], &queues), Ok(()));
        let e = check_tenant_queues(&[research], &Queues::default()).unwrap_err();
        assert!(e.contains("rita") && e.contains("research"), "{e}");
    }

    #[test]
    fn roles_allow_what_they_say() {
        let caller = |role| Caller {
            name: Some("t".into()),
            role,
            queues: None,
        };
        let (read, submit, admin) = (
            caller(Role::Read),
            caller(Role::Submit),
            caller(Role::Admin),
        );
        for (who, method, path, ok) in [
            (&read, Method::GET, "/jobs", true),
            (&read, Method::POST, "/jobs", false),
            (&read, Method::DELETE, "/jobs/x", false),
            (&submit, Method::POST, "/jobs", true),
            (&submit, Method::DELETE, "/jobs/x", true),
            (&submit, Method::POST, "/schedule", false),
            (&submit, Method::POST, "/cleanup", false),
            (&admin, Method::POST, "/cleanup", true),
        ] {
            let result = authorize(who, &method, path);
            assert_eq!(result.is_ok(), ok, "{:?} {method} {path}", who.role);
            if let Err(e) = result {
                assert_eq!(e.status, StatusCode::FORBIDDEN);
            }
        }
        assert!(submit.may_abort(Some("t"), "j").is_ok());
        assert!(submit.may_abort(Some("u"), "j").is_err());
        assert!(submit.may_abort(None, "j").is_err());
        assert!(admin.may_abort(Some("u"), "j").is_ok());
        assert!(submit.sees_env_of(Some("t")) && !submit.sees_env_of(Some("u")));
        assert!(admin.sees_env_of(Some("u")) && !read.sees_env_of(None));
    }

    #[test]
    fn a_bad_tokens_file_is_refused_naming_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let path = dir.path().join("tokens.toml");
            std::fs::write(&path, text).unwrap();
            read_tokens_file(&path)
        };
        let digest = "a".repeat(64);
        let good = format!("[[tokens]]\nname = \"a\"\nrole = \"read\"\nsha256 = \"{digest}\"\n");
        assert_eq!(write(&good).unwrap().len(), 1);
        for (text, says) in [
            (good.replace("read", "root"), "unknown variant"),
            (good.replace(&digest, "abc"), "64 hex digits"),
            (good.replace("\"a\"", "\"\""), "name must not be empty"),
            (format!("{good}{good}"), "used twice"),
            (good.replace("role", "rank"), "unknown field"),
        ] {
            let err = write(&text).unwrap_err();
            assert!(err.contains(says) && err.contains("tokens.toml"), "{err}");
        }
        assert!(read_tokens_file(Path::new("/nonexistent/tokens.toml"))
            .unwrap_err()
            .contains("cannot read"));
    }
}
