//! Fuzz the executor event parser: any line gives an event or a typed error, never a panic, and a
//! parsed event is written back to a line that parses again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealtune_protocol::events::{MAX_EVENT_LINE, parse_line, to_line};

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = parse_line(data)
        && let Ok(line) = to_line(&event)
        // Writing may lengthen a line (`1` is written `1.0`): only lines within the limit must parse.
        && line.len() <= MAX_EVENT_LINE
    {
        assert!(
            parse_line(line.as_bytes()).is_ok(),
            "written event does not parse: {line}"
        );
    }
});
