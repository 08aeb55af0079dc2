//! The wildcard matcher on pathological patterns (issues #11 and #12): GET_COMMAND_METADATA
//! for `**********Q` took 58 CPU-seconds with the old recursive matcher. Prints the time to
//! compile and match each pattern against every name of a 2,000-cmdlet list and against a
//! 20,000-character text.
//!
//! Run: `cargo bench --bench wildcard`
#![allow(clippy::disallowed_methods)] // wall-clock timing is the point of a benchmark

use exo_authproxy::remoting::wildcard::WildcardPattern;

fn main() {
    let names: Vec<String> = (0..2000)
        .map(|i| format!("Get-SomethingRatherLongCmdletName{i:04}Qx"))
        .collect();
    let long_text = "a".repeat(20_000);
    let stars = format!("{}Q", "*".repeat(2_000));
    let a_star_b = format!("{}b", "*a".repeat(500));
    let cases: [(&str, &str); 5] = [
        ("**********Q", "2,000 cmdlet names"),
        ("*?*?*?*?*?*?*?*?*?*?Q", "2,000 cmdlet names"),
        (&stars, "2,000 cmdlet names"),
        (&a_star_b, "20,000 × 'a'"),
        ("Get-Mailbo[xy]", "2,000 cmdlet names"),
    ];
    for (pattern, against) in cases {
        let started = std::time::Instant::now();
        let p = WildcardPattern::new(pattern).expect("a valid pattern");
        let matched = if against.starts_with("20,000") {
            usize::from(p.is_match(&long_text))
        } else {
            names.iter().filter(|n| p.is_match(n)).count()
        };
        let took = started.elapsed();
        let shown: String = pattern.chars().take(24).collect();
        println!(
            "{shown:<26} ({} chars) against {against}: {matched} matches in {:.3} ms",
            pattern.chars().count(),
            took.as_secs_f64() * 1e3
        );
    }
}
