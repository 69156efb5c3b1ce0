//! OpenAI-style `chat.completion` bodies: the typed value ([`ChatCompletion`]) and its JSON of
//! an exact size ([`chat_json`]), what an agent backend caches most.

use serde::{Deserialize, Serialize};

use super::rng::Rng;
use super::text::markdown;

/// Models a completion is drawn from.
pub const MODELS: [&str; 4] = [
    "gpt-4o-2024-08-06",
    "gpt-4o-mini-2024-07-18",
    "claude-3-5-sonnet-20241022",
    "llama-3.1-70b-instruct",
];

/// A chat completion as the API returns it (the fields a cache sees in practice). No field is
/// skipped when empty, so that the value also round-trips through the bincode codec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// `chatcmpl-...`.
    pub id: String,
    /// Always "chat.completion".
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model name.
    pub model: String,
    /// The choices (one, as a rule).
    pub choices: Vec<Choice>,
    /// Token counts.
    pub usage: Usage,
    /// `fp_...`.
    pub system_fingerprint: Option<String>,
}

/// One choice of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Position.
    pub index: u32,
    /// The assistant's message.
    pub message: Message,
    /// "stop", "length", "tool_calls", ...
    pub finish_reason: String,
}

/// The assistant's message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// "assistant".
    pub role: String,
    /// The answer text.
    pub content: Option<String>,
    /// Why the model refused, when it did.
    pub refusal: Option<String>,
    /// The tools the model asks to call.
    pub tool_calls: Vec<ToolCall>,
}

/// A tool call the model asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// `call_...`.
    pub id: String,
    /// Always "function".
    #[serde(rename = "type")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
}

/// The function of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Its name.
    pub name: String,
    /// The arguments as the API sends them: a JSON document in a string.
    pub arguments: String,
}

/// Token usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

/// Bytes of a completion's JSON besides its content (id, model, usage, ...), with room to
/// spare: the content is generated this much shorter than the body, then [`chat_json`] pads.
const ENVELOPE: usize = 420;

/// A completion whose JSON is about `size` bytes (exactly, through [`chat_json`]): a markdown
/// answer from one of [`MODELS`], with a random id, fingerprint, time and prompt size.
pub fn chat_completion(rng: &mut Rng, size: usize) -> ChatCompletion {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let id: String = (0..29).map(|_| char::from(rng.pick(ALNUM))).collect();
    let fp: String = (0..10)
        .map(|_| char::from(rng.pick(b"0123456789abcdef")))
        .collect();
    let content = markdown(rng, size.saturating_sub(ENVELOPE));
    let prompt_tokens = 50 + rng.below(2000) as u32;
    let created = 1_730_000_000 + rng.below(20_000_000) as u64;
    let model = rng.pick(&MODELS);
    ChatCompletion {
        system_fingerprint: Some(format!("fp_{fp}")),
        ..answered(
            format!("chatcmpl-{id}"),
            created,
            model,
            content,
            prompt_tokens,
        )
    }
}

/// A completion with one assistant message, `content`, finished with "stop", its completion
/// tokens counted as a quarter of its length, and no fingerprint.
pub fn answered(
    id: String,
    created: u64,
    model: &str,
    content: String,
    prompt_tokens: u32,
) -> ChatCompletion {
    let completion_tokens = u32::try_from(content.len() / 4).unwrap_or(u32::MAX);
    ChatCompletion {
        id,
        object: "chat.completion".into(),
        created,
        model: model.into(),
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: "assistant".into(),
                content: Some(content),
                refusal: None,
                tool_calls: Vec::new(),
            },
            finish_reason: "stop".into(),
        }],
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        },
        system_fingerprint: None,
    }
}

/// `c` as the JSON body an API returns, its (first) message's content cut or padded with
/// spaces so that the body is exactly `size` bytes (or as short as it gets with no content).
pub fn chat_json(c: &ChatCompletion, size: usize) -> Vec<u8> {
    let mut c = c.clone();
    if c.choices.is_empty() {
        return to_json(&c);
    }
    let mut content = c.choices[0].message.content.take().unwrap_or_default();
    let mut render = |content: &str| {
        c.choices[0].message.content = Some(content.to_owned());
        to_json(&c)
    };
    let mut out = render(&content);
    // Each content byte is at least one byte of JSON: cutting the excess lands at or below
    // `size` within a few rounds (an escaped character counts twice).
    while out.len() > size && !content.is_empty() {
        let mut keep = content.len().saturating_sub((out.len() - size).max(1));
        while !content.is_char_boundary(keep) {
            keep -= 1;
        }
        content.truncate(keep);
        out = render(&content);
    }
    if out.len() < size {
        // Spaces need no escaping: one render lands exactly on `size`.
        content.extend(std::iter::repeat_n(' ', size - out.len()));
        out = render(&content);
    }
    out
}

#[expect(
    clippy::expect_used,
    reason = "strings, integers and vectors of them always serialize"
)]
fn to_json(c: &ChatCompletion) -> Vec<u8> {
    serde_json::to_vec(c).expect("a ChatCompletion serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_exact_size_and_read_back() {
        for size in [1 << 10, 4 << 10, 16 << 10, 64 << 10, 700] {
            let c = chat_completion(&mut Rng::new(size as u64), size);
            let json = chat_json(&c, size);
            assert_eq!(json.len(), size);
            let back: ChatCompletion = serde_json::from_slice(&json).unwrap();
            assert_eq!(back.id, c.id);
            let content = |c: &ChatCompletion| c.choices[0].message.content.clone().unwrap();
            let (full, cut) = (content(&c), content(&back));
            assert!(full.starts_with(cut.trim_end()), "{size}");
        }
        let c = chat_completion(&mut Rng::new(1), 100);
        assert!(
            chat_json(&c, 100).len() > 100,
            "the envelope alone is longer"
        );
    }
}
