//! `#[dagy::task]`'s compile errors say what to change (trybuild compares them with the
//! `.stderr` files beside each case; `TRYBUILD=overwrite` regenerates them after a deliberate
//! change of wording).

#[test]
fn bad_options_and_signatures_are_compile_errors_that_say_what_to_change() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass.rs");
    for case in [
        "unknown_option",
        "bad_tier",
        "bad_numbers",
        "no_result",
        "reference_argument",
        "generic",
        "args_not_deserialize",
        "output_not_serialize",
    ] {
        cases.compile_fail(format!("tests/ui/{case}.rs"));
    }
}
