//! The public types of the agent features can be shared across tasks and threads.

use answercache::agent::{Controls, Namespace, RequestKey, RequestKeyBuilder};

use crate::support::Answer;

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Controls<Answer>>();
    send_sync::<Namespace>();
    send_sync::<RequestKey>();
    send_sync::<RequestKeyBuilder>();
}
