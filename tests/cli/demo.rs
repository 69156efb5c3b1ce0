//! `tiercache demo` runs the whole mission (restart, damaged files, a failing disk, recovery)
//! and exits 0; its final table reports at least one breaker opening, one recovery and one
//! quarantined file. Small `--requests` and a large `--time-scale` keep it to seconds in a
//! debug build; the outage itself lasts as long as the demo's recovery interval requires.

use crate::support::{cells, count, tiercache, Json};

const FAST: [&str; 8] = [
    "demo",
    "--requests",
    "240",
    "--time-scale",
    "200",
    "--workers",
    "4",
    "--prompts",
];

fn args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut a = FAST.to_vec();
    a.push("120");
    a.extend_from_slice(extra);
    a
}

#[test]
fn demo_survives_the_mission_and_reports_it() {
    let run = tiercache(&args(&[]));
    run.expect_code(0);
    let text = run.out();
    let row = |label: &str| count(&cells(&text, label)[1]);
    assert!(row("breaker openings") >= 1, "{text}");
    assert!(row("recoveries") >= 1, "{text}");
    assert!(row("quarantined files") >= 1, "{text}");
    assert!(row("memory-only stretches") >= 1, "{text}");
    // The live log showed each step as it happened.
    for event in [
        "breaker closed -> OPEN",
        "MEMORY-ONLY",
        "recovery probe FAILED",
        "recovery probe PASSED -> TIERED",
        "QUARANTINED (checksum)",
        "QUARANTINED (truncated)",
        "QUARANTINED (magic)",
        "QUARANTINED (key-mismatch)",
    ] {
        assert!(text.contains(event), "no {event:?} in:\n{text}");
    }
    // No request failed, and every cached answer was the model's.
    let total = cells(&text, "total");
    let answered = cells(&text, "requests answered");
    assert_eq!(answered[1], format!("{} of {}", total[1], total[1]));
    assert!(cells(&text, "hits equal to the model's answer")[1].starts_with("all "));
    assert_eq!(
        cells(&text, "mode / breaker at the end")[1],
        "tiered / closed"
    );
}

#[test]
fn demo_json_agrees_with_its_tables() {
    let run = tiercache(&args(&["--json"]));
    run.expect_code(0);
    // The narrative and tables go to stderr, the document alone to stdout.
    let doc = Json::parse(&run.out());
    let text = &run.stderr;
    let r = doc.get("resilience");
    let row = |label: &str| count(&cells(text, label)[1]);
    assert_eq!(row("breaker openings"), r.get("breaker_openings").u64());
    assert_eq!(row("recoveries"), r.get("recoveries").u64());
    assert_eq!(row("quarantined files"), r.get("quarantined_files").u64());
    assert_eq!(row("disk errors"), r.get("disk_errors").u64());
    assert_eq!(
        row("memory-only stretches"),
        r.get("memory_only_entries").u64()
    );
    assert!(r.get("breaker_openings").u64() >= 1);
    assert!(r.get("recoveries").u64() >= 1);
    assert_eq!(r.get("quarantined_files").u64(), 4);
    let phases = doc.get("phases").items();
    let total = phases.last().unwrap();
    assert_eq!(total.get("name").str(), "total");
    let t = cells(text, "total");
    for (i, field) in ["requests", "hot_hits", "warm_hits", "queue_hits", "misses"]
        .iter()
        .enumerate()
    {
        assert_eq!(count(&t[i + 1]), total.get(field).u64(), "{field}");
    }
    assert_eq!(count(&t[7]), total.get("disk_errors").u64());
    assert_eq!(count(&t[8]), total.get("quarantined").u64());
    assert_eq!(
        total.get("requests").u64(),
        248,
        "240 requests + the 8 read back"
    );
    assert_eq!(doc.get("final_stats").get("mode").str(), "tiered");
}
