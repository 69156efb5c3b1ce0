//! `answercache demo` runs the whole mission (restart, damaged files, a failing disk, recovery)
//! and exits 0; its final table reports at least one breaker opening, one recovery and one
//! quarantined file. Small `--requests` and a large `--time-scale` keep it to seconds in a
//! debug build; the outage itself lasts as long as the demo's recovery interval requires.

use crate::support::{answercache, cells, count, doc, fields, JsonExt};

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
    let run = answercache(&args(&[]));
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
    let run = answercache(&args(&["--json"]));
    run.expect_code(0);
    // The narrative and tables go to stderr, the document alone to stdout.
    let doc = doc(&run);
    let text = &run.stderr;
    let r = doc.at("resilience");
    let row = |label: &str| count(&cells(text, label)[1]);
    assert_eq!(row("breaker openings"), r.at("breaker_openings").u64());
    assert_eq!(row("recoveries"), r.at("recoveries").u64());
    assert_eq!(row("quarantined files"), r.at("quarantined_files").u64());
    assert_eq!(row("disk errors"), r.at("disk_errors").u64());
    assert_eq!(
        row("memory-only stretches"),
        r.at("memory_only_entries").u64()
    );
    assert!(r.at("breaker_openings").u64() >= 1);
    assert!(r.at("recoveries").u64() >= 1);
    assert_eq!(r.at("quarantined_files").u64(), 4);
    let phases = doc.at("phases").items();
    let total = phases.last().unwrap();
    assert_eq!(total.at("name").str(), "total");
    let t = cells(text, "total");
    for (i, field) in ["requests", "hot_hits", "warm_hits", "queue_hits", "misses"]
        .iter()
        .enumerate()
    {
        assert_eq!(count(&t[i + 1]), total.at(field).u64(), "{field}");
    }
    assert_eq!(count(&t[7]), total.at("disk_errors").u64());
    assert_eq!(count(&t[8]), total.at("quarantined").u64());
    assert_eq!(
        total.at("requests").u64(),
        248,
        "240 requests + the 8 read back"
    );
    assert_eq!(doc.at("final_stats").at("mode").str(), "tiered");
    assert_eq!(
        fields(&doc),
        [
            "dir",
            "final_stats",
            "kept",
            "phases",
            "replicas",
            "resilience",
            "wall_ms",
            "writes"
        ]
    );
    assert_eq!(doc.at("kept"), false);
    assert_eq!(
        fields(r),
        [
            "breaker_openings",
            "corrupted_by_reason",
            "disk_errors",
            "disk_errors_by_kind",
            "lost_writes",
            "memory_only_entries",
            "memory_only_ms",
            "probes_ok",
            "probes_run",
            "quarantined_files",
            "recoveries",
            "requests_answered",
            "tiered_ms",
            "written_back",
        ]
    );
    assert_eq!(r.at("requests_answered").u64(), 248);
    assert_eq!(r.at("recoveries"), r.at("probes_ok"));
    // The four damaged files of the demo, one per reason.
    assert_eq!(
        r.at("corrupted_by_reason"),
        &serde_json::json!({"checksum": 1, "key-mismatch": 1, "magic": 1, "truncated": 1})
    );
    assert_eq!(
        fields(doc.at("writes")),
        ["compressed_bytes", "files", "uncompressed_bytes"]
    );
    for phase in phases {
        assert_eq!(
            fields(phase),
            [
                "disk_errors",
                "hot_hits",
                "memory_only_ms",
                "mismatches",
                "misses",
                "model_calls",
                "model_ms_saved",
                "model_ms_spent",
                "name",
                "quarantined",
                "queue_hits",
                "requests",
                "wall_ms",
                "warm_hits",
            ]
        );
        assert_eq!(phase.at("mismatches").u64(), 0);
    }
}
