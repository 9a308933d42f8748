//! Runs every query test script in `tests/data/queries/`.

use std::path::PathBuf;

#[test]
fn query_scripts() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/queries");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data/queries exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let mut total = tsq_exec::promqltest::TestReport::default();
    for f in &files {
        let r = match std::env::var("TSQ_TEST_PROFILE") {
            // Exploration aid: run every script in another starting profile.
            Ok(p) => {
                let opts = tsq_exec::EngineOptions {
                    profile: p.parse().expect("profile"),
                    ..Default::default()
                };
                let text = std::fs::read_to_string(f).expect("readable script");
                let name = f.file_name().unwrap_or_default().to_string_lossy();
                tsq_exec::promqltest::run_script(&name, &text, &opts)
            }
            Err(_) => tsq_exec::promqltest::run_file(f).expect("readable script"),
        };
        eprintln!(
            "{}: {}/{} cases passed",
            f.file_name().unwrap_or_default().to_string_lossy(),
            r.passed,
            r.cases
        );
        total.merge(r);
    }
    eprintln!("total: {}/{} cases passed", total.passed, total.cases);
    if !total.failures.is_empty() {
        panic!(
            "{} of {} cases failed:\n{}",
            total.cases - total.passed,
            total.cases,
            total.failures.join("\n")
        );
    }
}
