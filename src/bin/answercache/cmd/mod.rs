//! The operator commands, one file each: `get`/`set`/`rm` (`entry`), `purge`, `quarantine
//! list|show|clear`, `stats`, `verify`.

pub mod entry;
pub mod ls;
pub mod purge;
pub mod quarantine;
pub mod stats;
pub mod verify;
