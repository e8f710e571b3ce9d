//! The results as a plain-text table for the terminal and as Markdown for the
//! README: the same [`Report`] rendered twice, so the two never disagree.

use std::fmt::Write as _;

use crate::charts::Chart;
use crate::process::Machine;

/// A target from the issue and whether this run met it.
#[derive(Clone, Debug)]
pub struct Target {
    pub description: String,
    pub met: bool,
    /// Further targets of the same row, each with its own verdict: a
    /// closed-loop row's server CPU per request beside its requests/s.
    /// `met` is this target's alone (the ratio chart colours a row by it).
    pub also: Vec<Target>,
}

impl Target {
    pub fn new(description: impl Into<String>, met: bool) -> Target {
        Target {
            description: description.into(),
            met,
            also: Vec::new(),
        }
    }

    /// This target and `other`, each shown with its own verdict.
    pub fn and(mut self, other: Target) -> Target {
        self.also.push(other);
        self
    }

    fn cell(&self) -> String {
        let verdict = if self.met { "PASS" } else { "MISS" };
        let mut cell = format!("{}: {verdict}", self.description);
        for other in &self.also {
            cell.push_str("; ");
            cell.push_str(&other.cell());
        }
        cell
    }
}

/// One load run.
#[derive(Clone, Debug)]
pub struct ThroughputRow {
    pub scenario: String,
    pub server: String,
    pub requests_per_second: f64,
    pub p50_micros: u64,
    pub p99_micros: u64,
    pub p999_micros: u64,
    /// Server CPU per request in the closed-loop runs.
    pub server_cpu_micros: Option<f64>,
    pub ratio_to_ceiling: Option<f64>,
    /// `server_cpu_micros` as a multiple of the ceiling's in the same
    /// scenario and run ([`ThroughputRow::cpu_ratio_to`]): for the
    /// closed-loop rows that have a ceiling row, and that row itself (1).
    pub cpu_ratio_to_ceiling: Option<f64>,
    pub errors: u64,
    pub target: Option<Target>,
    /// The minimum of `ratio_to_ceiling` that `target` states, for the rows
    /// whose target is one (the charts draw it).
    pub target_ratio: Option<f64>,
}

/// How the server of a closed-loop row of presenced ends: the maximum
/// throughput of its scenario.
pub const MAXIMUM: &str = ", max";

/// How the server of an open-loop row at half that maximum ends.
pub const HALF_LOAD: &str = ", 50% of max (open loop)";

impl ThroughputRow {
    /// Whether this is presenced's closed loop, the maximum its scenario
    /// compares with the ceiling.
    pub fn is_maximum(&self) -> bool {
        self.server.ends_with(MAXIMUM)
    }

    /// Whether this is presenced's open loop at half its maximum.
    pub fn is_half_load(&self) -> bool {
        self.server.ends_with(HALF_LOAD)
    }

    /// This row's server CPU per request divided by `ceiling`'s: how many
    /// times the ceiling's work presenced does for one request. `None`
    /// when either was not measured or the ceiling's is zero.
    pub fn cpu_ratio_to(&self, ceiling: &ThroughputRow) -> Option<f64> {
        match (self.server_cpu_micros, ceiling.server_cpu_micros) {
            (Some(micros), Some(ceiling_micros)) if ceiling_micros > 0.0 => {
                Some(micros / ceiling_micros)
            }
            _ => None,
        }
    }
}

/// One footprint measurement, its value already worded.
#[derive(Clone, Debug)]
pub struct FootprintRow {
    pub measurement: String,
    pub value: String,
    pub target: Option<Target>,
}

impl Report {
    /// The closed-loop row of `server` in the scenario whose name starts
    /// with `scenario`.
    pub fn maximum(&self, scenario: &str, server: &str) -> Option<&ThroughputRow> {
        self.row_of(scenario, &format!("{server}{MAXIMUM}"))
    }

    /// The open-loop row at half the maximum of `server` in the scenario
    /// whose name starts with `scenario`.
    pub fn half_load(&self, scenario: &str, server: &str) -> Option<&ThroughputRow> {
        self.row_of(scenario, &format!("{server}{HALF_LOAD}"))
    }

    fn row_of(&self, scenario: &str, server: &str) -> Option<&ThroughputRow> {
        self.throughput
            .iter()
            .find(|row| row.scenario.starts_with(scenario) && row.server == server)
    }
}

#[derive(Clone, Debug)]
pub struct Report {
    pub title: String,
    pub command_line: String,
    pub machine: Machine,
    pub settings: Vec<String>,
    pub throughput: Vec<ThroughputRow>,
    pub footprint: Vec<FootprintRow>,
    /// The board in a browser: rows like the footprint's, in a table of
    /// their own.
    pub board: Vec<FootprintRow>,
    pub notes: Vec<String>,
    /// Failed requests and failed measurements: printed last and loudly.
    pub failures: Vec<String>,
}

impl Report {
    fn machine_line(&self) -> String {
        let machine = &self.machine;
        format!(
            "{} cores ({}), {} RAM, {}, {}",
            machine.cores, machine.cpu_model, machine.memory, machine.kernel, machine.rustc
        )
    }

    fn throughput_table(&self) -> Table {
        Table {
            headers: vec![
                "scenario",
                "server",
                "requests/s",
                "p50",
                "p99",
                "p99.9",
                "CPU/request",
                "vs ceiling",
                "CPU × ceiling",
                "errors",
                "target",
            ],
            rows: self
                .throughput
                .iter()
                .map(|row| {
                    vec![
                        row.scenario.clone(),
                        row.server.clone(),
                        format!("{:.0}", row.requests_per_second),
                        format_micros(row.p50_micros),
                        format_micros(row.p99_micros),
                        format_micros(row.p999_micros),
                        row.server_cpu_micros
                            .map_or_else(String::new, |micros| format!("{micros:.1} µs")),
                        row.ratio_to_ceiling
                            .map_or_else(String::new, |ratio| format!("{ratio:.2}")),
                        row.cpu_ratio_to_ceiling
                            .map_or_else(String::new, |ratio| format!("{ratio:.2}×")),
                        if row.errors == 0 {
                            "0".to_string()
                        } else {
                            format!("!! {} ERRORS", row.errors)
                        },
                        row.target.as_ref().map_or_else(String::new, Target::cell),
                    ]
                })
                .collect(),
        }
    }

    /// The footprint's rows, or rows in their shape (the board's).
    fn measurement_table(rows: &[FootprintRow]) -> Table {
        Table {
            headers: vec!["measurement", "value", "target"],
            rows: rows
                .iter()
                .map(|row| {
                    vec![
                        row.measurement.clone(),
                        row.value.clone(),
                        row.target.as_ref().map_or_else(String::new, Target::cell),
                    ]
                })
                .collect(),
        }
    }

    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "{}", self.title);
        let _ = writeln!(text, "command: {}", self.command_line);
        let _ = writeln!(text, "machine: {}", self.machine_line());
        for setting in &self.settings {
            let _ = writeln!(text, "- {setting}");
        }
        if !self.throughput.is_empty() {
            let _ = writeln!(text, "\nThroughput and latency\n");
            text.push_str(&self.throughput_table().to_text());
        }
        if !self.footprint.is_empty() {
            let _ = writeln!(text, "\nFootprint\n");
            text.push_str(&Report::measurement_table(&self.footprint).to_text());
        }
        if !self.board.is_empty() {
            let _ = writeln!(text, "\nBoard (headless Chromium)\n");
            text.push_str(&Report::measurement_table(&self.board).to_text());
        }
        if !self.notes.is_empty() {
            let _ = writeln!(text, "\nNotes");
            for note in &self.notes {
                let _ = writeln!(text, "- {note}");
            }
        }
        if !self.failures.is_empty() {
            let _ = writeln!(text, "\n!!! FAILURES !!!");
            for failure in &self.failures {
                let _ = writeln!(text, "- {failure}");
            }
        }
        text
    }

    /// The report in Markdown, linking `charts` (written beside it) under
    /// the throughput table.
    pub fn to_markdown(&self, charts: &[Chart]) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "### {}\n", self.title);
        let _ = writeln!(text, "- command: `{}`", self.command_line);
        let _ = writeln!(text, "- machine: {}", self.machine_line());
        for setting in &self.settings {
            let _ = writeln!(text, "- {setting}");
        }
        if !self.throughput.is_empty() {
            let _ = writeln!(text, "\n#### Throughput and latency\n");
            text.push_str(&self.throughput_table().to_markdown());
            for chart in charts {
                let _ = writeln!(text, "\n![{}]({})", chart.description, chart.file_name);
            }
        }
        if !self.footprint.is_empty() {
            let _ = writeln!(text, "\n#### Footprint\n");
            text.push_str(&Report::measurement_table(&self.footprint).to_markdown());
        }
        if !self.board.is_empty() {
            let _ = writeln!(text, "\n#### Board (headless Chromium)\n");
            text.push_str(&Report::measurement_table(&self.board).to_markdown());
        }
        if !self.notes.is_empty() {
            let _ = writeln!(text, "\n#### Notes\n");
            for note in &self.notes {
                let _ = writeln!(text, "- {note}");
            }
        }
        if !self.failures.is_empty() {
            let _ = writeln!(text, "\n#### Failures\n");
            for failure in &self.failures {
                let _ = writeln!(text, "- **{}**", failure.replace('\n', " "));
            }
        }
        text
    }
}

/// Microseconds as milliseconds with three decimals, the unit of the
/// latency targets.
pub fn format_micros(micros: u64) -> String {
    format!("{:.3} ms", micros as f64 / 1000.0)
}

/// A table with a header row, rendered with aligned columns or as Markdown.
#[derive(Debug)]
struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn widths(&self) -> Vec<usize> {
        self.headers
            .iter()
            .enumerate()
            .map(|(column, header)| {
                self.rows
                    .iter()
                    .map(|row| row[column].chars().count())
                    .chain([header.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    fn to_text(&self) -> String {
        let widths = self.widths();
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", padded.join("  ").trim_end())
        };
        let mut text = line(self.headers.clone());
        let rules: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
        text.push_str(&line(rules.iter().map(String::as_str).collect()));
        for row in &self.rows {
            text.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        text
    }

    fn to_markdown(&self) -> String {
        let escape = |cell: &str| cell.replace('|', "\\|");
        let mut text = format!("| {} |\n", self.headers.join(" | "));
        text.push_str(&format!(
            "|{}\n",
            self.headers.iter().map(|_| "---|").collect::<String>()
        ));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|cell| escape(cell)).collect();
            text.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        text
    }
}

/// A report of `throughput` rows on a made-up machine, for the harness's
/// own tests.
#[cfg(test)]
pub fn test_report(title: &str, throughput: Vec<ThroughputRow>) -> Report {
    Report {
        title: title.into(),
        command_line: "presenced-bench --quick".into(),
        machine: Machine {
            cores: 2,
            cpu_model: "Test CPU".into(),
            memory: "1.0 GiB".into(),
            rustc: "rustc 1.95.0".into(),
            kernel: "Linux 6.1".into(),
        },
        settings: vec![],
        throughput,
        footprint: vec![],
        board: vec![],
        notes: vec![],
        failures: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_report() -> Report {
        let throughput = vec![ThroughputRow {
            scenario: "GET presence".into(),
            server: "presenced (memory)".into(),
            requests_per_second: 41_234.4,
            p50_micros: 512,
            p99_micros: 1_999,
            p999_micros: 12_000,
            server_cpu_micros: Some(9.25),
            ratio_to_ceiling: Some(0.8712),
            cpu_ratio_to_ceiling: Some(1.3812),
            errors: 3,
            target: Some(
                Target::new("≥ 0.85 × ceiling", true)
                    .and(Target::new("CPU ≤ 1.18 × ceiling's", false)),
            ),
            target_ratio: Some(0.85),
        }];
        Report {
            settings: vec!["32 connections".into()],
            footprint: vec![FootprintRow {
                measurement: "startup | 1M users".into(),
                value: "n/a (no durable store yet)".into(),
                target: None,
            }],
            board: vec![FootprintRow {
                measurement: "first paint, 10000 users".into(),
                value: "312.5 ms (slowest 420.0 ms)".into(),
                target: None,
            }],
            failures: vec!["3 requests failed".into()],
            ..test_report("presenced benchmark", throughput)
        }
    }

    #[test]
    fn text_and_markdown_carry_the_same_cells() {
        let report = sample_report();
        let text = report.to_text();
        let markdown = report.to_markdown(&[]);
        for cell in [
            "41234",
            "0.512 ms",
            "1.999 ms",
            "12.000 ms",
            "9.2 µs",
            "0.87",
            "CPU × ceiling",
            "1.38×",
            "!! 3 ERRORS",
            "≥ 0.85 × ceiling: PASS; CPU ≤ 1.18 × ceiling's: MISS",
            "n/a (no durable store yet)",
            "Board (headless Chromium)",
            "312.5 ms (slowest 420.0 ms)",
        ] {
            assert!(text.contains(cell), "text lacks {cell:?}:\n{text}");
            assert!(
                markdown.contains(cell),
                "markdown lacks {cell:?}:\n{markdown}"
            );
        }
        assert!(markdown.contains("startup \\| 1M users"));
        assert!(markdown.contains("|---|---|---|"));
        assert!(text.contains("!!! FAILURES !!!"));
    }

    #[test]
    fn cpu_per_request_is_divided_by_the_ceilings() {
        let row = |micros: Option<f64>| ThroughputRow {
            server_cpu_micros: micros,
            ..sample_report().throughput[0].clone()
        };
        let ratio = |presenced: Option<f64>, ceiling: Option<f64>| {
            row(presenced).cpu_ratio_to(&row(ceiling))
        };
        assert_eq!(ratio(Some(12.5), Some(10.0)), Some(1.25));
        assert_eq!(ratio(Some(5.0), Some(10.0)), Some(0.5));
        assert_eq!(ratio(Some(10.0), Some(10.0)), Some(1.0));
        // Not measured on either side, or a ceiling that took no CPU.
        assert_eq!(ratio(None, Some(10.0)), None);
        assert_eq!(ratio(Some(13.8), None), None);
        assert_eq!(ratio(Some(13.8), Some(0.0)), None);
    }
}
