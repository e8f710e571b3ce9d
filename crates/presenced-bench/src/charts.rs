//! The throughput table drawn as SVG charts for the README, written beside
//! the Markdown (`--markdown`) that links them:
//!
//! - `<stem>-ratios.svg`: every closed-loop row's requests/s as a fraction
//!   of the ceiling's, a bar per row coloured by its target (met, missed,
//!   none), with the target's minimum marked;
//! - `<stem>-latency.svg`: p50, p99 and p99.9 of every row at half the
//!   closed-loop rate, three bars per row on a logarithmic axis.
//!
//! Both are horizontal bar charts: the rows are named by their scenario,
//! names of thirty to a hundred characters, which fit on the left of a bar
//! and would overlap under a column. The canvas grows with the number of
//! rows and with the longest name, so that the names do not overlap however
//! many rows a run has. A report without rows of a kind has no chart of
//! that kind.
//!
//! plotters draws them with its SVG backend alone: text is written as SVG
//! `<text>` for the viewer to render, so no font is read here.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{Report, ThroughputRow, format_micros};

/// One chart of a report: drawn, named, not yet written.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Its file name beside the Markdown, which links it by this name.
    pub file_name: String,
    /// What it shows, in a sentence: the Markdown's alt text.
    pub description: String,
    pub svg: String,
}

/// Draws the charts `report` has rows for, named after `stem` (the
/// Markdown's file name without its extension).
pub fn draw(report: &Report, stem: &str) -> Result<Vec<Chart>, String> {
    let mut charts = Vec::new();
    let ratios: Vec<&ThroughputRow> = report
        .throughput
        .iter()
        .filter(|row| row.is_maximum() && row.ratio_to_ceiling.is_some())
        .collect();
    if !ratios.is_empty() {
        charts.push(Chart {
            file_name: format!("{stem}-ratios.svg"),
            description: "Closed-loop requests/s of presenced as a fraction of the ceiling's, \
                          one bar per scenario and server variant: green where the target is met, red where it is \
                          missed, grey without a target; a black mark at the target"
                .into(),
            svg: ratio_chart(&report.title, &ratios)?,
        });
    }
    let half_load: Vec<&ThroughputRow> = report
        .throughput
        .iter()
        .filter(|row| row.is_half_load())
        .collect();
    if !half_load.is_empty() {
        charts.push(Chart {
            file_name: format!("{stem}-latency.svg"),
            description: "Latency at half the closed-loop requests/s (open loop): p50, p99 and \
                          p99.9 in ms on a logarithmic scale, three bars per scenario and server variant"
                .into(),
            svg: latency_chart(&report.title, &half_load)?,
        });
    }
    Ok(charts)
}

/// Draws the charts of `report` and writes them into the directory of
/// `markdown`, named after it; returns those written.
pub fn write_beside(report: &Report, markdown: &Path) -> Result<Vec<Chart>, String> {
    let stem = markdown
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{} names no file", markdown.display()))?;
    let directory = markdown.parent().unwrap_or(Path::new(""));
    let charts = draw(report, &stem)?;
    for chart in &charts {
        let path = directory.join(&chart.file_name);
        std::fs::write(&path, &chart.svg)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    Ok(charts)
}

const FONT: &str = "sans-serif";
/// Text sizes as plotters takes them: it writes each divided by 1.24 into
/// the SVG, so these are 18, 12 and 10.5 px there.
const TITLE_SIZE: f64 = 22.0;
const TEXT_SIZE: f64 = 15.0;
const VALUE_SIZE: f64 = 13.0;
/// The width of one character at `TEXT_SIZE` in a sans-serif font, to size
/// the room for labels that the viewer renders, not this program: DejaVu
/// Sans, the widest common one, took 6.4 px a character over the rows'
/// names at 12 px; Arial and Helvetica take less.
const CHARACTER_WIDTH: f64 = 6.6;
/// The title and the legend above the chart.
const HEADER_HEIGHT: u32 = 60;
/// The ticks' labels and the description under the horizontal axis.
const X_AXIS_HEIGHT: u32 = 44;
/// The width of a character of the title, bold and larger.
const TITLE_CHARACTER_WIDTH: f64 = 11.0;
const PLOT_WIDTH: u32 = 560;
const MARGIN: u32 = 16;
/// The room a value needs past the end of its bar.
const VALUE_ROOM: f64 = 64.0;

const MET: RGBColor = RGBColor(46, 125, 50);
const MISSED: RGBColor = RGBColor(198, 40, 40);
const NO_TARGET: RGBColor = RGBColor(120, 144, 156);
const PERCENTILES: [(&str, RGBColor); 3] = [
    ("p50", RGBColor(144, 202, 249)),
    ("p99", RGBColor(30, 136, 229)),
    ("p99.9", RGBColor(13, 71, 161)),
];

/// The size of a chart titled `title` of rows `row_height` high each,
/// named by `labels`: the room for the names grows with the longest one,
/// the height with their number. The rows need no axis description: their
/// names say what they are.
#[derive(Debug)]
struct Layout {
    width: u32,
    height: u32,
    label_area: u32,
}

impl Layout {
    fn new(title: &str, labels: &[String], row_height: u32) -> Layout {
        let longest = labels
            .iter()
            .map(|label| label.chars().count())
            .max()
            .unwrap_or(0);
        let label_area = 16 + text_width(longest, CHARACTER_WIDTH);
        let title_width = text_width(title.chars().count(), TITLE_CHARACTER_WIDTH);
        let rows = labels.len() as u32;
        Layout {
            width: (label_area + PLOT_WIDTH).max(title_width) + 2 * MARGIN,
            height: HEADER_HEIGHT + 4 + rows * row_height + X_AXIS_HEIGHT + MARGIN,
            label_area,
        }
    }
}

/// The width of `characters` characters of `width` each, in whole pixels.
fn text_width(characters: usize, width: f64) -> u32 {
    (characters as f64 * width).ceil() as u32
}

/// How a row's bar is shown in the legend and coloured.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict {
    Met,
    Missed,
    NoTarget,
}

impl Verdict {
    fn of(row: &ThroughputRow) -> Verdict {
        match &row.target {
            Some(target) if target.met => Verdict::Met,
            Some(_) => Verdict::Missed,
            None => Verdict::NoTarget,
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Verdict::Met => MET,
            Verdict::Missed => MISSED,
            Verdict::NoTarget => NO_TARGET,
        }
    }

    fn legend(self) -> &'static str {
        match self {
            Verdict::Met => "target met",
            Verdict::Missed => "target missed",
            Verdict::NoTarget => "no target",
        }
    }
}

/// A mark in the legend.
enum Swatch {
    Bar(RGBColor),
    /// The target's vertical mark.
    Mark,
}

/// The name of each row on the chart: its scenario, which names the server
/// variant too; with the server when two rows share a scenario.
fn labels(rows: &[&ThroughputRow]) -> Vec<String> {
    rows.iter()
        .map(|row| {
            let shared = rows
                .iter()
                .filter(|other| other.scenario == row.scenario)
                .count()
                > 1;
            if shared {
                format!("{}, {}", row.scenario, row.server)
            } else {
                row.scenario.clone()
            }
        })
        .collect()
}

/// A row's height in units of the vertical axis, which counts in whole
/// numbers: plotters 0.3 draws the mesh of an axis whose key points are
/// chosen here (one per row) on integers, not on floats, whose formatting
/// the key points' wrapper does not carry.
const ROW: i32 = 100;

/// The vertical axis of `rows` rows: row `index` (the first at the top)
/// spans `rows - index - 1 .. rows - index` times [`ROW`], and is labelled
/// at its centre.
fn row_centre(rows: usize, index: usize) -> i32 {
    (rows - index) as i32 * ROW - ROW / 2
}

/// The label of the row whose centre is `value`.
fn label_at(labels: &[String], value: i32) -> String {
    let from_top = labels.len() as i32 - 1 - value.div_euclid(ROW);
    usize::try_from(from_top)
        .ok()
        .and_then(|index| labels.get(index))
        .cloned()
        .unwrap_or_default()
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// The title and, under it, the legend in one line.
fn draw_header(area: &Area, title: &str, legend: &[(Swatch, &str)]) -> Result<(), String> {
    let title_style = (FONT, TITLE_SIZE)
        .into_font()
        .style(FontStyle::Bold)
        .color(&BLACK);
    area.draw(&Text::new(title, (MARGIN as i32, 12), title_style))
        .map_err(drawing_error)?;
    let text_style = (FONT, TEXT_SIZE)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let line = 44;
    let mut x = MARGIN as i32;
    for (swatch, text) in legend {
        match swatch {
            Swatch::Bar(color) => area.draw(&Rectangle::new(
                [(x, line - 6), (x + 18, line + 6)],
                color.filled(),
            )),
            Swatch::Mark => area.draw(&PathElement::new(
                vec![(x + 9, line - 8), (x + 9, line + 8)],
                BLACK.stroke_width(2),
            )),
        }
        .map_err(drawing_error)?;
        area.draw(&Text::new(*text, (x + 24, line), text_style.clone()))
            .map_err(drawing_error)?;
        x += 24 + text_width(text.chars().count(), CHARACTER_WIDTH) as i32 + 24;
    }
    Ok(())
}

fn drawing_error(error: impl std::fmt::Display) -> String {
    format!("cannot draw a chart: {error}")
}

/// The bar chart of the closed-loop rows' ratios to the ceiling.
fn ratio_chart(report_title: &str, rows: &[&ThroughputRow]) -> Result<String, String> {
    const ROW_HEIGHT: u32 = 28;
    let title = format!("{report_title}: closed-loop requests/s vs the ceiling");
    let labels = labels(rows);
    let layout = Layout::new(&title, &labels, ROW_HEIGHT);
    let count = rows.len();
    let ratio = |row: &ThroughputRow| row.ratio_to_ceiling.unwrap_or(0.0).max(0.0);
    // Room past the longest bar or mark for its value, on an axis that
    // always reaches the ceiling (1.0), ending on a tenth.
    let largest = rows
        .iter()
        .flat_map(|row| [ratio(row), row.target_ratio.unwrap_or(0.0)])
        .fold(1.0, f64::max);
    let x_end = (largest * f64::from(PLOT_WIDTH) / (f64::from(PLOT_WIDTH) - VALUE_ROOM) * 10.0)
        .ceil()
        / 10.0;

    let mut legend: Vec<(Swatch, &str)> = Vec::new();
    for verdict in [Verdict::Met, Verdict::Missed, Verdict::NoTarget] {
        if rows.iter().any(|row| Verdict::of(row) == verdict) {
            legend.push((Swatch::Bar(verdict.color()), verdict.legend()));
        }
    }
    if rows.iter().any(|row| row.target_ratio.is_some()) {
        legend.push((Swatch::Mark, "target (minimum ratio)"));
    }

    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (layout.width, layout.height)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing_error)?;
        let (header, body) = root.split_vertically(HEADER_HEIGHT);
        draw_header(&header, &title, &legend)?;
        let row_centres: Vec<i32> = (0..count).map(|index| row_centre(count, index)).collect();
        let mut chart = ChartBuilder::on(&body)
            .margin_top(4)
            .margin_left(MARGIN)
            .margin_right(MARGIN)
            .margin_bottom(MARGIN)
            .x_label_area_size(X_AXIS_HEIGHT)
            .y_label_area_size(layout.label_area)
            .build_cartesian_2d(
                0.0..x_end,
                (0..count as i32 * ROW).with_key_points(row_centres),
            )
            .map_err(drawing_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(12)
            .x_max_light_lines(1)
            .x_label_formatter(&|value| format!("{value:.1}"))
            .y_label_formatter(&|value| label_at(&labels, *value))
            .x_desc("presenced's requests/s ÷ the ceiling's (1.0: as fast as the ceiling)")
            .label_style((FONT, TEXT_SIZE))
            .axis_desc_style((FONT, TEXT_SIZE))
            .draw()
            .map_err(drawing_error)?;

        let value_style = (FONT, VALUE_SIZE)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        // "0.87" and the gap before it, in units of the axis.
        let value_width = 36.0 * x_end / f64::from(PLOT_WIDTH);
        for (index, row) in rows.iter().enumerate() {
            let centre = row_centre(count, index);
            let value = ratio(row);
            chart
                .draw_series([Rectangle::new(
                    [(0.0, centre - ROW * 3 / 10), (value, centre + ROW * 3 / 10)],
                    Verdict::of(row).color().filled(),
                )])
                .map_err(drawing_error)?;
            if let Some(target) = row.target_ratio {
                chart
                    .draw_series([PathElement::new(
                        vec![
                            (target, centre - ROW * 4 / 10),
                            (target, centre + ROW * 4 / 10),
                        ],
                        BLACK.stroke_width(2),
                    )])
                    .map_err(drawing_error)?;
            }
            // Just past the bar, or past the mark when the mark would
            // cross the value there.
            let end = match row.target_ratio {
                Some(target) if target > value && target - value < value_width => target,
                _ => value,
            };
            chart
                .draw_series([EmptyElement::at((end, centre))
                    + Text::new(format!("{value:.2}"), (6, 0), value_style.clone())])
                .map_err(drawing_error)?;
        }
        root.present().map_err(drawing_error)?;
    }
    Ok(svg)
}

/// The grouped bar chart of the half-load rows' latencies.
fn latency_chart(report_title: &str, rows: &[&ThroughputRow]) -> Result<String, String> {
    const ROW_HEIGHT: u32 = 48;
    /// Each bar's share of its row: three bars and a gap.
    const BAR: i32 = ROW * 24 / 100;
    let title = format!("{report_title}: latency at half the maximum requests/s");
    let labels = labels(rows);
    let layout = Layout::new(&title, &labels, ROW_HEIGHT);
    let count = rows.len();
    let percentiles = |row: &ThroughputRow| [row.p50_micros, row.p99_micros, row.p999_micros];
    let millis = |micros: u64| micros as f64 / 1000.0;

    // Whole decades from below the fastest to past the slowest, with room
    // for the slowest's value after its bar.
    let all: Vec<f64> = rows
        .iter()
        .flat_map(|row| percentiles(row))
        .map(millis)
        .filter(|value| *value > 0.0)
        .collect();
    let fastest = all.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest = all.iter().copied().fold(0.0, f64::max);
    let (first_decade, mut last_decade) = if all.is_empty() {
        (-1, 1)
    } else {
        (
            fastest.log10().floor() as i32,
            slowest.log10().ceil() as i32,
        )
    };
    let room = |last: i32| {
        (f64::from(last) - slowest.max(1e-9).log10()) * f64::from(PLOT_WIDTH)
            / f64::from(last - first_decade)
    };
    while last_decade <= first_decade || room(last_decade) < VALUE_ROOM {
        last_decade += 1;
    }
    let x_start = 10f64.powi(first_decade);
    let x_end = 10f64.powi(last_decade);
    let decades = last_decade - first_decade;
    // Ticks at 1, 2 and 5 of each decade while there is room for their
    // labels, at each power of ten past that; grid lines at every unit.
    let steps: &[f64] = if decades <= 4 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let ticks: Vec<f64> = (first_decade..=last_decade)
        .flat_map(|decade| steps.iter().map(move |step| step * 10f64.powi(decade)))
        .filter(|tick| *tick <= x_end * 1.0001)
        .collect();
    let grid: Vec<f64> = (first_decade..last_decade)
        .flat_map(|decade| (2..10).map(move |unit| f64::from(unit) * 10f64.powi(decade)))
        .collect();

    let legend: Vec<(Swatch, &str)> = PERCENTILES
        .iter()
        .map(|(name, color)| (Swatch::Bar(*color), *name))
        .collect();

    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (layout.width, layout.height)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing_error)?;
        let (header, body) = root.split_vertically(HEADER_HEIGHT);
        draw_header(&header, &title, &legend)?;
        let row_centres: Vec<i32> = (0..count).map(|index| row_centre(count, index)).collect();
        let mut chart = ChartBuilder::on(&body)
            .margin_top(4)
            .margin_left(MARGIN)
            .margin_right(MARGIN)
            .margin_bottom(MARGIN)
            .x_label_area_size(X_AXIS_HEIGHT)
            .y_label_area_size(layout.label_area)
            .build_cartesian_2d(
                (x_start..x_end)
                    .log_scale()
                    .with_key_points(ticks)
                    .with_light_points(grid),
                (0..count as i32 * ROW).with_key_points(row_centres),
            )
            .map_err(drawing_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_label_formatter(&|value| short_number(*value))
            .y_label_formatter(&|value| label_at(&labels, *value))
            .x_desc("latency in ms, open loop at half the closed-loop requests/s (log scale)")
            .label_style((FONT, TEXT_SIZE))
            .axis_desc_style((FONT, TEXT_SIZE))
            .draw()
            .map_err(drawing_error)?;

        let value_style = (FONT, VALUE_SIZE)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (index, row) in rows.iter().enumerate() {
            let top = row_centre(count, index) + 3 * BAR / 2;
            for (place, (micros, (_, color))) in
                percentiles(row).into_iter().zip(PERCENTILES).enumerate()
            {
                let bar_top = top - place as i32 * BAR;
                let value = millis(micros).max(x_start);
                chart
                    .draw_series([Rectangle::new(
                        [(x_start, bar_top - BAR + 2), (value, bar_top - 2)],
                        color.filled(),
                    )])
                    .map_err(drawing_error)?;
                chart
                    .draw_series([EmptyElement::at((value, bar_top - BAR / 2))
                        + Text::new(format_micros(micros), (5, 0), value_style.clone())])
                    .map_err(drawing_error)?;
            }
        }
        root.present().map_err(drawing_error)?;
    }
    Ok(svg)
}

/// A tick's value without the float's noise: 0.2, 5, 100.
fn short_number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{HALF_LOAD, MAXIMUM, Target};

    fn row(scenario: &str, server: &str, ratio: Option<f64>) -> ThroughputRow {
        ThroughputRow {
            scenario: scenario.into(),
            server: server.into(),
            requests_per_second: 40_000.0,
            p50_micros: 512,
            p99_micros: 1_999,
            p999_micros: 12_000,
            server_cpu_micros: Some(9.25),
            ratio_to_ceiling: ratio,
            cpu_ratio_to_ceiling: None,
            errors: 0,
            target: None,
            target_ratio: None,
        }
    }

    fn with_ratio_target(row: ThroughputRow, minimum: f64) -> ThroughputRow {
        let met = row.ratio_to_ceiling.is_some_and(|ratio| ratio >= minimum);
        ThroughputRow {
            target: Some(Target::new(format!("≥ {minimum:.2} × ceiling"), met)),
            target_ratio: Some(minimum),
            ..row
        }
    }

    fn report(throughput: Vec<ThroughputRow>) -> Report {
        crate::report::test_report("presenced benchmark (quick run)", throughput)
    }

    /// The rows of two scenarios as the harness names them, a ceiling's
    /// and a closed loop whose ceiling failed (no ratio).
    fn full_report() -> Report {
        let server = "presenced (memory)";
        let get = "GET presence, 10000 users (memory)";
        let set = "setPresence, 10000 users (memory)";
        let mixed = "mixed 90% GET / 10% set (memory)";
        let h2c = "GET presence over h2c, 10000 users (memory)";
        report(vec![
            with_ratio_target(row(get, &format!("{server}{MAXIMUM}"), Some(0.8712)), 0.85),
            ThroughputRow {
                p50_micros: 230,
                p99_micros: 870,
                p999_micros: 4_100,
                ..row(get, &format!("{server}{HALF_LOAD}"), None)
            },
            row(get, "ceiling (120 B body, 160 B headers)", Some(1.0)),
            with_ratio_target(row(set, &format!("{server}{MAXIMUM}"), Some(0.6204)), 0.75),
            row(set, &format!("{server}{HALF_LOAD}"), None),
            row(mixed, &format!("{server}{MAXIMUM}"), Some(0.9455)),
            row(h2c, &format!("{server}{MAXIMUM}"), None),
        ])
    }

    /// The file names that `markdown` links as images.
    fn linked_images(markdown: &str) -> Vec<String> {
        markdown
            .lines()
            .filter(|line| line.starts_with("!["))
            .filter_map(|line| {
                let target = line.rsplit_once("](")?.1.strip_suffix(')')?;
                Some(target.to_string())
            })
            .collect()
    }

    fn files_in(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The text of every `<text>` element of `svg`, trimmed.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|element| {
                let content = element.split_once('>')?.1.split_once("</text>")?.0;
                Some(content.trim().to_string())
            })
            .collect()
    }

    /// Checks that `text` is one well-formed XML element, without an XML
    /// parser among the dependencies: tags nest and close, attribute
    /// values are quoted, and text holds no raw `<` or stray `&`. Enough
    /// for what plotters writes (no CDATA, no DOCTYPE).
    fn assert_well_formed_xml(text: &str) {
        let mut open: Vec<&str> = Vec::new();
        let mut roots = 0;
        let mut rest = text.trim();
        if let Some(after) = rest.strip_prefix("<?xml") {
            rest = after
                .split_once("?>")
                .expect("an unclosed XML declaration")
                .1;
        }
        while !rest.is_empty() {
            let (content, tag_on) = rest.split_once('<').unwrap_or((rest, ""));
            for entity in content.split('&').skip(1) {
                let name = entity.split_once(';').expect("a stray &").0;
                assert!(
                    ["amp", "lt", "gt", "quot", "apos"].contains(&name) || name.starts_with('#'),
                    "an unknown entity &{name};"
                );
            }
            if tag_on.is_empty() {
                assert!(
                    content.trim().is_empty() || !open.is_empty(),
                    "text after the root"
                );
                break;
            }
            if let Some(after) = tag_on.strip_prefix("!--") {
                rest = after.split_once("-->").expect("an unclosed comment").1;
                continue;
            }
            let (tag, after) = tag_on.split_once('>').expect("an unclosed tag");
            assert!(!tag.contains('<'), "a tag within a tag: <{tag}>");
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in <{tag}>"
            );
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name.trim()), "</{name}> closes another");
            } else {
                let name = tag.split_whitespace().next().expect("a tag without a name");
                if open.is_empty() {
                    roots += 1;
                }
                if !tag.ends_with('/') {
                    open.push(name);
                }
            }
            rest = after;
        }
        assert!(open.is_empty(), "unclosed elements: {open:?}");
        assert_eq!(roots, 1, "one root element");
    }

    #[test]
    fn both_charts_are_written_as_svg_with_every_row_and_value() {
        let report = full_report();
        let directory = tempfile::tempdir().unwrap();
        let markdown_path = directory.path().join("bench.md");
        let charts = write_beside(&report, &markdown_path).unwrap();
        assert_eq!(
            files_in(directory.path()),
            ["bench-latency.svg", "bench-ratios.svg"]
        );

        let ratios = std::fs::read_to_string(directory.path().join("bench-ratios.svg")).unwrap();
        let latency = std::fs::read_to_string(directory.path().join("bench-latency.svg")).unwrap();
        for svg in [&ratios, &latency] {
            assert_well_formed_xml(svg);
            let root = svg.trim_start().trim_start_matches(|c| c != '<');
            assert!(root.starts_with("<svg"), "{root:.80}");
            assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
            assert!(svg.contains("presenced benchmark (quick run)"));
        }
        let ratio_texts = texts(&ratios);
        for text in [
            "GET presence, 10000 users (memory)",
            "setPresence, 10000 users (memory)",
            "mixed 90% GET / 10% set (memory)",
            "0.87",
            "0.62",
            "0.95",
            "target met",
            "target missed",
            "no target",
            "target (minimum ratio)",
        ] {
            assert!(
                ratio_texts.iter().any(|found| found == text),
                "the ratios lack {text:?}: {ratio_texts:?}"
            );
        }
        // A closed loop without a ratio has no bar; nor has the ceiling.
        assert!(!ratios.contains("over h2c"));
        assert!(!ratio_texts.iter().any(|text| text == "1.00"));
        // Three bars, and a mark for the two with a target (and the
        // legend's).
        assert_eq!(ratios.matches("stroke-width=\"2\"").count(), 3);
        assert_eq!(
            ratios.matches("fill=\"#2E7D32\"").count(),
            2,
            "legend and bar"
        );
        assert_eq!(
            ratios.matches("fill=\"#C62828\"").count(),
            2,
            "legend and bar"
        );
        assert_eq!(
            ratios.matches("fill=\"#78909C\"").count(),
            2,
            "legend and bar"
        );
        // Three bars each: 0.230, 0.870 and 4.100 ms for GET, 0.512,
        // 1.999 and 12.000 ms for setPresence.
        let latency_texts = texts(&latency);
        for text in [
            "GET presence, 10000 users (memory)",
            "setPresence, 10000 users (memory)",
            "0.230 ms",
            "0.870 ms",
            "4.100 ms",
            "0.512 ms",
            "1.999 ms",
            "12.000 ms",
            "p99.9",
        ] {
            assert!(
                latency_texts.iter().any(|found| found == text),
                "the latency chart lacks {text:?}: {latency_texts:?}"
            );
        }
        assert!(!latency.contains("mixed"));

        let markdown = report.to_markdown(&charts);
        assert_eq!(
            linked_images(&markdown),
            ["bench-ratios.svg", "bench-latency.svg"]
        );
        let table_end = markdown.rfind("| 0 |").unwrap();
        assert!(markdown.find("![").unwrap() > table_end);
    }

    #[test]
    fn only_the_charts_with_rows_are_written_and_linked() {
        let get = "GET presence, 10000 users (memory)";
        let cases = [
            (
                vec![row(get, &format!("presenced (memory){MAXIMUM}"), Some(0.9))],
                vec!["only-ratios.svg"],
            ),
            (
                vec![row(get, &format!("presenced (memory){HALF_LOAD}"), None)],
                vec!["only-latency.svg"],
            ),
            (
                vec![
                    row(get, &format!("presenced (memory){MAXIMUM}"), None),
                    row(get, "ceiling (120 B body, 160 B headers)", Some(1.0)),
                ],
                vec![],
            ),
            (vec![], vec![]),
        ];
        for (rows, expected) in cases {
            let report = report(rows);
            let directory = tempfile::tempdir().unwrap();
            let charts = write_beside(&report, &directory.path().join("only.md")).unwrap();
            let markdown = report.to_markdown(&charts);
            assert_eq!(files_in(directory.path()), expected);
            assert_eq!(linked_images(&markdown), expected);
        }
    }

    #[test]
    fn the_canvas_grows_with_the_rows_and_their_names() {
        let rows = |count: usize, name: &str| -> Vec<ThroughputRow> {
            (0..count)
                .map(|index| {
                    row(
                        &format!("{name} {index}"),
                        &format!("presenced (memory){MAXIMUM}"),
                        Some(0.5),
                    )
                })
                .collect()
        };
        let size = |rows: Vec<ThroughputRow>| {
            let rows: Vec<&ThroughputRow> = rows.iter().collect();
            let layout = Layout::new("a title", &labels(&rows), 28);
            (layout.width, layout.height)
        };
        let (narrow, short) = size(rows(3, "GET"));
        let (wide, tall) = size(rows(
            20,
            "getPresencesByUserId(650) (redis standalone, async)",
        ));
        assert!(wide > narrow + 300, "{narrow} → {wide}");
        assert_eq!(tall - short, 17 * 28);
    }

    #[test]
    fn rows_sharing_a_scenario_are_told_apart_by_their_server() {
        let first = row("GET presence", "presenced (a), max", Some(0.9));
        let second = row("GET presence", "presenced (b), max", Some(0.8));
        let other = row("setPresence", "presenced (a), max", Some(0.7));
        assert_eq!(
            labels(&[&first, &second, &other]),
            [
                "GET presence, presenced (a), max",
                "GET presence, presenced (b), max",
                "setPresence"
            ]
        );
    }

    #[test]
    fn every_row_centre_is_labelled_with_its_row_top_down() {
        let names: Vec<String> = ["first", "second", "third"].map(String::from).to_vec();
        let found: Vec<String> = (0..3)
            .map(|index| label_at(&names, row_centre(3, index)))
            .collect();
        assert_eq!(found, names);
        assert_eq!(label_at(&names, 3 * ROW + ROW / 2), "");
        assert_eq!(short_number(0.30000000000000004), "0.3");
        assert_eq!(short_number(100.0), "100");
    }
}
