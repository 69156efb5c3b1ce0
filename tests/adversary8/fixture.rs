//! A provider's chat-completion body: the one tests/values reads.

pub const CHAT_COMPLETION_JSON: &str = include_str!("../values/chat_completion.json");
