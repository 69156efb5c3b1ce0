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
00000020: 2a 00 00 00 00 00 00 00 25 00 00 00 00 00 00 00  *.......%.......
00000030: 00 00 00 00 00 00 00 00 17 e4 da 53 14 32 94 c9  ...........S.2..
00000040: b7 26 fd 06 0f 53 9e 21 a8 a8 22 81 b1 48 c4 0f  .&...S.!..\"..H..
00000050: d4 fd f7 65 b0 81 0f cd 67 72 65 65 74 69 6e 67  ...e....greeting
00000060: 1f 8b 08 00 00 00 00 00 00 ff 53 f2 48 cd c9 c9  ..........S.H...
00000070: d7 51 28 c9 4c 2d 4a 4e 4c ce 48 55 54 c0 10 51  .Q(.L-JNL.HUT..Q
00000080: 02 00 ea 3e 42 51 25 00 00 00                    ...>BQ%...
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
