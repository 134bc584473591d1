//! The root hash of a 1 GiB stream stays under 64 MB of resident memory (own test binary, so the
//! process peak is this test's alone).

use std::io::Read;

use sealtune_protocol::storage::root_hash_reader;

/// 1 GiB of cheap, non-constant bytes, produced on the fly.
struct Synthetic {
    left: u64,
    counter: u8,
}

impl Read for Synthetic {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX))
            .min(1 << 20);
        self.counter = self.counter.wrapping_add(1);
        buf[..n].fill(self.counter);
        self.left -= n as u64;
        Ok(n)
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[cfg(target_os = "linux")]
#[test]
fn one_gib_stream_stays_under_64_mb_rss() {
    let size = 1u64 << 30;
    let tree = root_hash_reader(Synthetic {
        left: size,
        counter: 0,
    })
    .expect("hash");
    assert_eq!(tree.size(), size);
    let peak = peak_rss_kib();
    eprintln!("peak RSS {} MiB", peak / 1024);
    assert!(peak < 64 * 1000, "peak RSS {peak} KiB over 64 MB");
}
