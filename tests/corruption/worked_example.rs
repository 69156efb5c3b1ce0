//! FORMAT.md's worked example (section 8), byte for byte: the file a default cache writes for
//! `set_with_ttl("greeting", &"Hello, tiercache! Hello, tiercache!", 1 h)` at
//! 2025-01-01T00:00:00Z. If this test fails, the format changed: update FORMAT.md with the
//! dump it prints.

use std::time::Duration;

use answercache::testing::TestDir;

const T0: u64 = 1_735_689_600_000;

/// `xxd -g1` of the file, as FORMAT.md shows it.
const DUMP: &str = "\
00000000: 54 49 45 52 43 41 43 48 02 00 03 00 08 00 00 00  TIERCACH........
00000010: 00 7c 29 1f 94 01 00 00 80 6a 60 1f 94 01 00 00  .|)......j`.....
00000020: 3c 00 00 00 00 00 00 00 25 00 00 00 00 00 00 00  <.......%.......
00000030: 00 00 00 00 00 00 00 00 c0 0b 10 c1 c0 64 e7 5d  .............d.]
00000040: 4d 94 1d 6f a8 4d 55 d5 27 5b a2 f3 7d 9b cc 98  M..o.MU.'[..}...
00000050: 43 6f 2c 07 ea f6 2c bb 67 72 65 65 74 69 6e 67  Co,...,.greeting
00000060: 1f 8b 08 00 00 00 00 00 04 ff 01 25 00 da ff 22  ...........%...\"
00000070: 48 65 6c 6c 6f 2c 20 74 69 65 72 63 61 63 68 65  Hello, tiercache
00000080: 21 20 48 65 6c 6c 6f 2c 20 74 69 65 72 63 61 63  ! Hello, tiercac
00000090: 68 65 21 22 ea 3e 42 51 25 00 00 00              he!\".>BQ%...
";

fn xxd(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = chunk
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{:08x}: {:<47}  {text}\n", i * 16, hex.join(" ")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_is_what_the_cache_writes() {
    let dir = TestDir::new().manual_clock(T0);
    let cache = dir.open(dir.builder()).await;
    cache
        .set_with_ttl(
            "greeting",
            &"Hello, tiercache! Hello, tiercache!".to_string(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    cache.close().await.unwrap();
    let hash = blake3::hash(b"greeting").to_hex().to_string();
    let path = dir.root().join("v2").join(&hash[..2]).join(&hash);
    let file = std::fs::read(&path).unwrap();
    let dump = xxd(&file);
    assert_eq!(dump, DUMP, "the file is now:\n{dump}");
}
