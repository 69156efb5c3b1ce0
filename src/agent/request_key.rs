//! Request keys: a stable, versioned cache key for a model request.
//!
//! An agent backend caches answers by *what was asked*: the model, the messages, the tools and
//! every parameter that changes the output. A [`RequestKey`] is the blake3 hash of the
//! request's [canonical JSON](super::canonical) (sorted object keys, `null` fields dropped, one
//! number format), tagged with a namespace and the key-schema version:
//!
//! ```text
//! <namespace>/v1/<64 hex digits of blake3>
//! ```
//!
//! The same request always yields the same key, across processes, machines and versions of
//! this crate, unless [`KEY_SCHEMA_VERSION`] changes (a golden test pins it); any change to an
//! output-affecting field changes it. What is *not* output-affecting is the caller's call:
//! name such fields with [`RequestKeyBuilder::ignore`] (a `user` id, `stream`) and declare
//! provider defaults with [`RequestKeyBuilder::default_value`], so that `temperature: 1.0` and
//! an absent temperature (where 1.0 is the provider's default) share one entry.
//!
//! Hashed input: blake3 in key-derivation mode with context [`KEY_CONTEXT`], over the
//! namespace's length (u64, little endian), the namespace, and the canonical JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::canonical::Json;
use super::generation::check_name;
use crate::error::{Error, Result};

/// Version of the key schema: the canonical form and the hashing. Part of every key, so a
/// future change of the schema gives new keys instead of colliding with old ones.
pub const KEY_SCHEMA_VERSION: u32 = 1;

/// The blake3 key-derivation context of request keys (domain separation from every other use
/// of blake3 in the cache).
///
/// It keeps the crate's first name, `tiercache`: a request key must not change when the crate
/// is renamed (golden keys in `tests/agent`).
pub const KEY_CONTEXT: &str = "tiercache request key v1";

/// A cache key derived from a model request, in a namespace. Use it wherever a key is
/// expected (any method taking [`Key`](crate::Key)): it is always stored in its namespace, so
/// that namespace's [`invalidate`](super::Namespace::invalidate) drops it, whether it was used
/// through the cache or through the [`Namespace`](super::Namespace) handle. (Its
/// [`as_str`](Self::as_str) text is for logs; used as a plain key, the text would be a
/// different key, outside the namespace.)
///
/// ```
/// use answercache::agent::RequestKey;
///
/// #[derive(serde::Serialize)]
/// struct Chat<'a> { model: &'a str, messages: Vec<Msg<'a>>, temperature: Option<f32> }
/// #[derive(serde::Serialize)]
/// struct Msg<'a> { role: &'a str, content: &'a str }
///
/// let request = Chat {
///     model: "gpt-4o-mini",
///     messages: vec![Msg { role: "user", content: "Capital of France?" }],
///     temperature: None,
/// };
/// let by_struct = RequestKey::new("chat", &request)?;
/// let by_builder = RequestKey::builder("chat")
///     .model("gpt-4o-mini")
///     .message("user", "Capital of France?")
///     .build()?;
/// assert_eq!(by_struct, by_builder);
/// assert!(by_struct.as_str().starts_with("chat/v1/"));
/// # Ok::<(), answercache::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey {
    /// `<namespace>/v<schema>/<hex>`.
    text: String,
    /// Length of the namespace prefix in `text`.
    namespace_len: usize,
}

impl RequestKey {
    /// The key of `request` (any `Serialize` value; typically the request struct sent to the
    /// model) in `namespace`. Equivalent to `RequestKey::builder(namespace).request(request)
    /// .build()`.
    ///
    /// Errors: [`Error::Config`] for an invalid namespace name (1 to 64 characters of
    /// `A-Z a-z 0-9 . _ - /`); [`Error::Encode`] for a value with no JSON form (a NaN, a map
    /// with non-scalar keys) or a request that is not a JSON object.
    pub fn new<R: Serialize + ?Sized>(namespace: &str, request: &R) -> Result<RequestKey> {
        RequestKey::builder(namespace).request(request).build()
    }

    /// A builder for a key in `namespace`.
    pub fn builder(namespace: &str) -> RequestKeyBuilder {
        RequestKeyBuilder {
            namespace: namespace.to_owned(),
            fields: BTreeMap::new(),
            ignored: BTreeSet::new(),
            defaults: BTreeMap::new(),
            error: None,
        }
    }

    /// The key text: `<namespace>/v1/<hex>`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The namespace the key was built in.
    pub fn namespace(&self) -> &str {
        &self.text[..self.namespace_len]
    }

    /// The 64 hex digits of the hash.
    pub fn hash_hex(&self) -> &str {
        let start = self.text.len().saturating_sub(64);
        &self.text[start..]
    }
}

impl fmt::Display for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Builds a [`RequestKey`] field by field, from a request struct, or both. Fields are
/// top-level members of the request object; a later call for a field replaces the earlier one
/// (except [`message`](Self::message), which appends).
#[derive(Debug, Clone)]
#[must_use]
pub struct RequestKeyBuilder {
    namespace: String,
    fields: BTreeMap<String, Json>,
    ignored: BTreeSet<String>,
    defaults: BTreeMap<String, Json>,
    /// The first error of a chained call, returned by `build`.
    error: Option<String>,
}

impl RequestKeyBuilder {
    fn serialize<T: Serialize + ?Sized>(&mut self, value: &T) -> Option<Json> {
        match Json::from_serialize(value) {
            Ok(j) => Some(j),
            Err(e) => {
                self.error.get_or_insert(e.0);
                None
            }
        }
    }

    /// Sets the `model` field.
    pub fn model(self, model: &str) -> Self {
        self.param("model", model)
    }

    /// Appends `{"role": role, "content": content}` to the `messages` array (the shape of
    /// OpenAI- and Anthropic-style chat requests, so a builder and a request struct of that
    /// shape give the same key).
    pub fn message(mut self, role: &str, content: &str) -> Self {
        let mut m = BTreeMap::new();
        m.insert("role".to_owned(), Json::String(role.to_owned()));
        m.insert("content".to_owned(), Json::String(content.to_owned()));
        match self
            .fields
            .entry("messages".to_owned())
            .or_insert_with(|| Json::Array(Vec::new()))
        {
            Json::Array(items) => items.push(Json::Object(m)),
            _ => {
                self.error
                    .get_or_insert_with(|| "`messages` is set and is not an array".into());
            }
        }
        self
    }

    /// Sets the `messages` field to any serializable list of messages.
    pub fn messages<T: Serialize + ?Sized>(self, messages: &T) -> Self {
        self.param("messages", messages)
    }

    /// Sets the `tools` field (tool or function definitions).
    pub fn tools<T: Serialize + ?Sized>(self, tools: &T) -> Self {
        self.param("tools", tools)
    }

    /// Sets any top-level field (`temperature`, `max_tokens`, `seed`, `response_format`, ...).
    /// A `None` value removes the field.
    pub fn param<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        if let Some(v) = self.serialize(value) {
            self.fields.insert(name.to_owned(), v);
        }
        self
    }

    /// Merges every top-level field of `request`, which must serialize to a JSON object.
    pub fn request<T: Serialize + ?Sized>(mut self, request: &T) -> Self {
        match self.serialize(request) {
            Some(Json::Object(fields)) => self.fields.extend(fields),
            Some(_) => {
                self.error
                    .get_or_insert_with(|| "a request must serialize to a JSON object".into());
            }
            None => {}
        }
        self
    }

    /// Leaves the top-level field `name` out of the key: for fields that do not change the
    /// answer (a `user` id for abuse tracking, `stream`, request ids, metadata).
    pub fn ignore(mut self, name: &str) -> Self {
        self.ignored.insert(name.to_owned());
        self
    }

    /// Declares the provider's default for the top-level field `name`: a field equal to it
    /// (canonically: `1` equals `1.0`) is left out, so stating a default and omitting it give
    /// one key.
    pub fn default_value<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        if let Some(v) = self.serialize(value) {
            self.defaults.insert(name.to_owned(), v);
        }
        self
    }

    /// The canonical JSON the key hashes (for logs and debugging).
    pub fn canonical_json(&self) -> Result<String> {
        if let Some(e) = &self.error {
            return Err(Error::Encode(e.clone()));
        }
        let fields: BTreeMap<String, Json> = self
            .fields
            .iter()
            .filter(|(k, v)| {
                **v != Json::Null && !self.ignored.contains(*k) && self.defaults.get(*k) != Some(*v)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Json::Object(fields).to_text())
    }

    /// The key.
    pub fn build(&self) -> Result<RequestKey> {
        check_name(&self.namespace)?;
        let json = self.canonical_json()?;
        let mut h = blake3::Hasher::new_derive_key(KEY_CONTEXT);
        h.update(&(self.namespace.len() as u64).to_le_bytes());
        h.update(self.namespace.as_bytes());
        h.update(json.as_bytes());
        let hex = h.finalize().to_hex();
        Ok(RequestKey {
            text: format!("{}/v{KEY_SCHEMA_VERSION}/{hex}", self.namespace),
            namespace_len: self.namespace.len(),
        })
    }
}
