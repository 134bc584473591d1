//! The generated instruction dataset the dataset-preparation benches read: records of ~600 bytes
//! (ASCII, accents, CJK, quotes, commas) from a fixed xorshift seed, the same in every format.

const WORDS: &[&str] = &[
    "the",
    "model",
    "learns",
    "from",
    "examples",
    "and",
    "a",
    "provider",
    "runs",
    "training",
    "inside",
    "confidential",
    "virtual",
    "machine",
    "naïve",
    "café",
    "日本語",
    "\"quoted\"",
    "a,b",
];

fn sentence(seed: &mut u64, words: usize) -> String {
    let mut out = String::with_capacity(words * 7);
    for i in 0..words {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[(*seed % WORDS.len() as u64) as usize]);
    }
    out
}

/// One record: `(instruction, input, output)`.
pub type Triple = (String, String, String);

/// Records until their JSONL lines (`{"instruction","input","output"}` + newline) add up to at
/// least `bytes`; each comes with its JSONL line.
pub fn records(bytes: u64) -> impl Iterator<Item = (Triple, String)> {
    let (mut seed, mut written) = (0x9e37_79b9_7f4a_7c15u64, 0u64);
    std::iter::from_fn(move || {
        if written >= bytes {
            return None;
        }
        let (i, x, o) = (
            sentence(&mut seed, 12),
            sentence(&mut seed, 8),
            sentence(&mut seed, 60),
        );
        let line = serde_json::json!({"instruction": i, "input": x, "output": o}).to_string();
        written += line.len() as u64 + 1;
        Some(((i, x, o), line))
    })
}

/// A CSV cell (RFC 4180 quoting where needed).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The process's peak resident set (`VmHWM`) in MB.
pub fn peak_rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Resets the peak resident set to the current one (`/proc/self/clear_refs`, Linux ≥ 4.0), so the
/// next [`peak_rss_mb`] is the peak of what runs in between; false where the kernel refuses.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
