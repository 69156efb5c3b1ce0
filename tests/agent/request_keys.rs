//! Request keys are a persistent format: the key of a fixed request must never change (golden
//! values, recomputed here from the documented hashing as well as pinned as text), must not
//! depend on the order of fields in the caller's types or maps, and must change with every
//! field that changes the model's output, and with nothing else the caller declared
//! irrelevant.

use std::collections::{BTreeMap, HashMap};

use answercache::agent::{RequestKey, KEY_CONTEXT, KEY_SCHEMA_VERSION};
use answercache::Error;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// A JSON value whose objects keep the order the test wrote them in.
#[derive(Clone, Debug)]
enum J {
    S(&'static str),
    N(f64),
    B(bool),
    A(Vec<J>),
    O(Vec<(&'static str, J)>),
}

impl Serialize for J {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::S(v) => s.serialize_str(v),
            J::N(v) => s.serialize_f64(*v),
            J::B(v) => s.serialize_bool(*v),
            J::A(v) => v.serialize(s),
            J::O(fields) => {
                let mut m = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

#[derive(Serialize, Clone, Debug)]
struct Message {
    role: String,
    content: String,
}

/// An OpenAI-style chat request.
#[derive(Serialize, Clone, Debug)]
struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    tools: Option<J>,
    tool_choice: Option<String>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    stop: Option<Vec<String>>,
    seed: Option<u64>,
    response_format: Option<J>,
}

/// The same request type with its fields declared in another order.
#[derive(Serialize)]
struct ChatRequestReordered {
    seed: Option<u64>,
    temperature: Option<f64>,
    response_format: Option<J>,
    max_tokens: Option<u32>,
    tool_choice: Option<String>,
    stop: Option<Vec<String>>,
    top_p: Option<f64>,
    tools: Option<J>,
    messages: Vec<Message>,
    model: String,
}

fn msg(role: &str, content: &str) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
    }
}

fn weather_tool(order_swapped: bool) -> J {
    let props = J::O(vec![
        ("city", J::O(vec![("type", J::S("string"))])),
        (
            "unit",
            J::O(vec![
                ("type", J::S("string")),
                ("enum", J::A(vec![J::S("c"), J::S("f")])),
            ]),
        ),
    ]);
    let mut params = vec![
        ("type", J::S("object")),
        ("properties", props),
        ("required", J::A(vec![J::S("city")])),
    ];
    let mut function = vec![
        ("name", J::S("get_weather")),
        ("description", J::S("Current weather in a city")),
    ];
    if order_swapped {
        params.reverse();
        function.reverse();
    }
    function.push(("parameters", J::O(params)));
    J::A(vec![J::O(vec![
        ("type", J::S("function")),
        ("function", J::O(function)),
    ])])
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            msg("system", "You are a terse assistant."),
            msg("user", "Weather in Paris?"),
        ],
        tools: Some(weather_tool(false)),
        tool_choice: Some("auto".into()),
        temperature: Some(0.2),
        top_p: None,
        max_tokens: Some(256),
        stop: None,
        seed: Some(7),
        response_format: None,
    }
}

fn key(r: &ChatRequest) -> String {
    RequestKey::new("chat", r).unwrap().as_str().to_owned()
}

const GOLDEN_JSON: &str = r#"{"max_tokens":256,"messages":[{"content":"You are a terse assistant.","role":"system"},{"content":"Weather in Paris?","role":"user"}],"model":"gpt-4o-mini","seed":7,"temperature":0.2,"tool_choice":"auto","tools":[{"function":{"description":"Current weather in a city","name":"get_weather","parameters":{"properties":{"city":{"type":"string"},"unit":{"enum":["c","f"],"type":"string"}},"required":["city"],"type":"object"}},"type":"function"}]}"#;
const GOLDEN_KEY: &str = "chat/v1/50716a9225352f9fcdfeb28968dfa043e14c624cfa0ff35875315b8c7bf20a95";
const GOLDEN_MINIMAL_KEY: &str =
    "qa/v1/0a0777d0562894c122c1b79dab939cdd0a78abc7911e24a242383546eb4b3b84";

#[test]
fn golden_keys_never_change() {
    assert_eq!(KEY_SCHEMA_VERSION, 1);
    assert_eq!(KEY_CONTEXT, "tiercache request key v1");
    let b = RequestKey::builder("chat").request(&request());
    assert_eq!(b.canonical_json().unwrap(), GOLDEN_JSON);
    assert_eq!(key(&request()), GOLDEN_KEY);

    // The documented hashing, recomputed independently of the library.
    let mut h = blake3::Hasher::new_derive_key("tiercache request key v1");
    h.update(&4u64.to_le_bytes());
    h.update(b"chat");
    h.update(GOLDEN_JSON.as_bytes());
    assert_eq!(GOLDEN_KEY, format!("chat/v1/{}", h.finalize().to_hex()));

    let minimal = RequestKey::builder("qa")
        .model("m")
        .message("user", "hi")
        .build()
        .unwrap();
    assert_eq!(minimal.as_str(), GOLDEN_MINIMAL_KEY);
    assert_eq!(minimal.namespace(), "qa");
    assert_eq!(minimal.hash_hex().len(), 64);
    assert_eq!(
        RequestKey::builder("qa")
            .model("m")
            .message("user", "hi")
            .canonical_json()
            .unwrap(),
        r#"{"messages":[{"content":"hi","role":"user"}],"model":"m"}"#
    );
}

#[test]
fn field_order_never_matters() {
    let r = request();
    let reordered = ChatRequestReordered {
        seed: r.seed,
        temperature: r.temperature,
        response_format: None,
        max_tokens: r.max_tokens,
        tool_choice: r.tool_choice.clone(),
        stop: None,
        top_p: None,
        tools: Some(weather_tool(true)), // nested JSON-schema objects in another order too
        messages: r.messages.clone(),
        model: r.model.clone(),
    };
    assert_eq!(
        RequestKey::new("chat", &reordered).unwrap().as_str(),
        GOLDEN_KEY
    );

    // Maps: insertion order and map type do not matter either.
    let a: HashMap<&str, u32> = [("x", 1), ("y", 2), ("z", 3)].into_iter().collect();
    let b: BTreeMap<&str, u32> = [("z", 3), ("x", 1), ("y", 2)].into_iter().collect();
    let c = J::O(vec![("y", J::N(2.0)), ("z", J::N(3.0)), ("x", J::N(1.0))]);
    let ka = RequestKey::new("t", &a).unwrap();
    assert_eq!(ka, RequestKey::new("t", &b).unwrap());
    assert_eq!(ka, RequestKey::new("t", &c).unwrap());

    // A builder and a request struct of the same shape agree.
    let built = RequestKey::builder("chat")
        .model("gpt-4o-mini")
        .message("system", "You are a terse assistant.")
        .message("user", "Weather in Paris?")
        .tools(&weather_tool(true))
        .param("tool_choice", "auto")
        .param("temperature", &0.2)
        .param("max_tokens", &256)
        .param("seed", &7)
        .param("top_p", &None::<f64>)
        .build()
        .unwrap();
    assert_eq!(built.as_str(), GOLDEN_KEY);
}

#[test]
fn every_output_affecting_field_changes_the_key() {
    let base = key(&request());
    let mut variants: Vec<(&str, ChatRequest)> = Vec::new();
    let mut v = |name, edit: &dyn Fn(&mut ChatRequest)| {
        let mut r = request();
        edit(&mut r);
        variants.push((name, r));
    };
    v("model", &|r| r.model = "gpt-4o".into());
    v("system prompt", &|r| r.messages[0].content.push('!'));
    v("user message", &|r| {
        r.messages[1].content = "Weather in Lyon?".into()
    });
    v("role", &|r| r.messages[0].role = "user".into());
    v("message order", &|r| r.messages.reverse());
    v("extra message", &|r| r.messages.push(msg("user", "Thanks")));
    v("no tools", &|r| r.tools = None);
    v("tool schema", &|r| {
        r.tools = Some(J::A(vec![J::O(vec![("type", J::S("function"))])]))
    });
    v("strict tool", &|r| {
        let Some(J::A(tools)) = &mut r.tools else {
            unreachable!()
        };
        let J::O(tool) = &mut tools[0] else {
            unreachable!()
        };
        tool.push(("strict", J::B(true)));
    });
    v("tool_choice", &|r| r.tool_choice = Some("required".into()));
    v("temperature", &|r| r.temperature = Some(0.3));
    v("temperature unset", &|r| r.temperature = None);
    v("top_p", &|r| r.top_p = Some(0.9));
    v("max_tokens", &|r| r.max_tokens = Some(257));
    v("stop", &|r| r.stop = Some(vec!["\n".into()]));
    v("empty stop list", &|r| r.stop = Some(vec![]));
    v("seed", &|r| r.seed = Some(8));
    v("response_format", &|r| {
        r.response_format = Some(J::O(vec![("type", J::S("json_object"))]))
    });
    let mut seen = std::collections::BTreeSet::new();
    seen.insert(base.clone());
    for (name, r) in &variants {
        let k = key(r);
        assert_ne!(k, base, "{name} must change the key");
        assert!(seen.insert(k), "{name} collides with another variant");
    }
    // The namespace is part of the key too.
    assert_ne!(
        RequestKey::new("chat-v2", &request()).unwrap().as_str()[8..],
        base[5..]
    );
    // Whitespace inside content is content.
    let mut r = request();
    r.messages[1].content = "Weather in Paris? ".into();
    assert_ne!(key(&r), base);
}

#[test]
fn absent_null_default_and_ignored_fields_do_not_change_the_key() {
    #[derive(Serialize)]
    struct WithExtras<'a> {
        #[serde(flatten)]
        base: &'a ChatRequest,
        user: &'a str,
        stream: bool,
        presence_penalty: f64,
        frequency_penalty: Option<f64>,
    }
    let r = request();
    let extras = WithExtras {
        base: &r,
        user: "customer-1234",
        stream: true,
        presence_penalty: 0.0,
        frequency_penalty: None,
    };
    let k = RequestKey::builder("chat")
        .request(&extras)
        .ignore("user")
        .ignore("stream")
        .default_value("presence_penalty", &0)
        .build()
        .unwrap();
    assert_eq!(k.as_str(), GOLDEN_KEY);

    // A declared default given explicitly equals the field left out; 1 and 1.0 are one number.
    let with_default = RequestKey::builder("chat")
        .request(&r)
        .param("top_p", &1.0f32)
        .default_value("top_p", &1)
        .build()
        .unwrap();
    assert_eq!(with_default.as_str(), GOLDEN_KEY);
    // A value other than the default is kept.
    let other = RequestKey::builder("chat")
        .request(&r)
        .param("top_p", &0.5)
        .default_value("top_p", &1)
        .build()
        .unwrap();
    assert_ne!(other.as_str(), GOLDEN_KEY);
    // Without the declarations those fields are part of the key.
    let undeclared = RequestKey::new("chat", &extras).unwrap();
    assert_ne!(undeclared.as_str(), GOLDEN_KEY);
}

#[test]
fn invalid_requests_and_namespaces_are_refused() {
    assert!(matches!(
        RequestKey::new("chat", &f64::NAN),
        Err(Error::Encode(_))
    ));
    assert!(matches!(
        RequestKey::builder("chat")
            .param("temperature", &f64::INFINITY)
            .build(),
        Err(Error::Encode(_))
    ));
    assert!(matches!(
        RequestKey::new("chat", &vec![1, 2]),
        Err(Error::Encode(_))
    ));
    for bad in ["", "has space", "colon:ns", &"x".repeat(65)] {
        assert!(
            matches!(RequestKey::new(bad, &request()), Err(Error::Config(_))),
            "{bad:?}"
        );
    }
    assert!(RequestKey::new(&"x".repeat(64), &request()).is_ok());
}
