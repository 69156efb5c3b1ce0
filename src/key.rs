//! What a cache method accepts as a key: bytes, or a [`RequestKey`].
//!
//! A [`RequestKey`] belongs to the namespace it was built for, wherever it is used: every
//! method of the cache (and of [`Namespace`](crate::Namespace)) stores and looks it up under
//! that namespace's current generation, so `cache.namespace("chat")?.invalidate()` drops
//! every answer stored under a `RequestKey` of `"chat"`, whichever handle stored it. Plain
//! keys (`&str`, `String`, `&[u8]`, `Vec<u8>`, ... anything `AsRef<[u8]>`) are used as they
//! are, outside every namespace.

use std::borrow::Cow;

use crate::agent::request_key::RequestKey;

/// A key: any `AsRef<[u8]>`, or a [`RequestKey`] (which carries its namespace). Sealed:
/// implemented here for those, and for nothing else.
pub trait Key: sealed::Sealed {
    /// What the key is.
    #[doc(hidden)]
    fn key_ref(&self) -> KeyRef<'_>;
}

/// The two kinds of key.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum KeyRef<'a> {
    /// Bytes used as they are.
    Plain(&'a [u8]),
    /// A request key, stored in its namespace.
    Request(&'a RequestKey),
}

mod sealed {
    pub trait Sealed {}
    impl<T: AsRef<[u8]> + ?Sized> Sealed for T {}
    impl Sealed for crate::agent::request_key::RequestKey {}
    impl Sealed for &crate::agent::request_key::RequestKey {}
}

impl<T: AsRef<[u8]> + ?Sized> Key for T {
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef::Plain(self.as_ref())
    }
}

impl Key for RequestKey {
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef::Request(self)
    }
}

impl Key for &RequestKey {
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef::Request(self)
    }
}

/// The bytes a key is stored under now (a request key's change with its namespace's
/// generation).
pub(crate) type Resolved<'a> = Cow<'a, [u8]>;
