//! The normal test suite keeps the property: 2,000 inputs of every target, none panics.

use herd_fuzz::corpus::Corpus;
use herd_fuzz::targets::TARGETS;

#[test]
fn no_input_panics_any_decoder() {
    let corpus = Corpus::load();
    assert!(
        !corpus.protobuf.is_empty() && corpus.objects.len() > 20,
        "the seeds load"
    );
    let mut failed = Vec::new();
    for target in TARGETS {
        let report = herd_fuzz::run(target, &corpus, 2_000, 1);
        // Most inputs must reach the code under test and some must pass it, or the target tests nothing.
        assert!(report.accepted > 0 && report.refused > 0, "{report}");
        if report.panic_count() > 0 {
            failed.push(report.to_string());
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
