//! A provider's chat-completion body (copied from tests/values/support.rs).

pub const CHAT_COMPLETION_JSON: &str = r#"{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "Let me look up the weather in Paris \u2014 one moment. \"Quoted\", tab\there, line\nbreak, emoji \ud83e\udd80.",
        "tool_calls": [
          {
            "id": "call_FthC9qRpsL5kBpwwyw6c7j4k",
            "type": "function",
            "function": {
              "name": "get_current_weather",
              "arguments": "{\"location\":\"Paris, France\",\"unit\":\"celsius\"}"
            }
          },
          {
            "id": "call_9pSmkd0xcW7Nb5iUvQlmuQ5M",
            "type": "function",
            "function": {
              "name": "get_forecast",
              "arguments": "{\"location\":\"Paris, France\",\"days\":3}"
            }
          }
        ],
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "tool_calls"
    },
    {
      "index": 1,
      "message": {
        "role": "assistant",
        "content": "It is 18\u00b0C and sunny in Paris.",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 82,
    "completion_tokens": 64,
    "total_tokens": 146,
    "prompt_tokens_details": {
      "cached_tokens": 64,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
}"#;
