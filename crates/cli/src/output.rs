//! What the commands print on stdout: aligned columns for people, or JSON
//! for scripts (`--output json`, one document per command). Progress and
//! messages go to stderr (see [`crate::progress`]), so stdout stays
//! parseable.

use clap::ValueEnum;
use comfy_table::{presets, Table};
use serde::Serialize;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

/// Prints `value` as indented JSON.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under a header in columns, without borders.
pub fn print_table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    print!("{}", render_table(header, rows));
}

fn render_table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut text = table.trim_fmt();
    text.push('\n');
    text
}

/// `bytes` in binary units (`1.50 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_without_borders() {
        let text = render_table(
            &["NAME", "SIZE"],
            vec![
                vec!["a".to_string(), "1 KiB".to_string()],
                vec!["longer name".to_string(), "2 B".to_string()],
            ],
        );
        assert_eq!(
            text,
            "NAME         SIZE\na            1 KiB\nlonger name  2 B\n"
        );
    }
}
