//! Human tables and machine JSON.

use comfy_table::{Table as Inner, presets::UTF8_FULL_CONDENSED};

/// `println!` that ends the program quietly when stdout is a closed pipe (`tessera … | head`)
/// instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("writing to stdout: {e}");
        }
    }};
}

/// A terminal table.
pub struct Table(Inner);

impl Table {
    /// A table with these column headers.
    pub fn new(header: &[&str]) -> Self {
        let mut t = Inner::new();
        t.load_preset(UTF8_FULL_CONDENSED).set_header(header.to_vec());
        Self(t)
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.0.add_row(cells);
    }

    /// Prints to stdout.
    pub fn print(&self) {
        crate::outln!("{}", self.0);
    }
}

/// One JSON object on stdout.
pub fn print_json(v: &serde_json::Value) {
    crate::outln!("{}", serde_json::to_string_pretty(v).expect("JSON values serialize"));
}

/// `1234567` → `1.23 M`.
pub fn fmt_count(v: u64) -> String {
    match v {
        0..1_000 => v.to_string(),
        1_000..1_000_000 => format!("{:.1} k", v as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} M", v as f64 / 1e6),
        _ => format!("{:.2} G", v as f64 / 1e9),
    }
}

/// `1234567` bytes → `1.23 MB` (decimal units, as network figures are given).
pub fn fmt_bytes(v: u64) -> String {
    match v {
        0..1_000 => format!("{v} B"),
        1_000..1_000_000 => format!("{:.1} kB", v as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} MB", v as f64 / 1e6),
        _ => format!("{:.2} GB", v as f64 / 1e9),
    }
}

/// Minimum and median of a sample.
pub fn min_median(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (samples[0], samples[samples.len() / 2])
}
