//! `tessera bench MODEL --plot FILE.svg|FILE.png`: per-layer time and bytes stacked per suite,
//! and latency per network profile, in one figure.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use tessera::net::StageKind;

use super::compare::{Report, SuiteResult};

/// DejaVu Sans (Bitstream Vera licence, `assets/DejaVuSans.LICENSE`): plotters draws PNG text
/// with a font it is handed, so the figure needs no system font libraries.
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

const SIZE: (u32, u32) = (1600, 1100);

/// The font family every text of the figure uses.
const SANS: &str = "sans-serif";

/// The figure formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Scalable vector graphics.
    Svg,
    /// A bitmap.
    Png,
}

/// The format `path` asks for by its extension.
pub fn format_of(path: &Path) -> Result<Format> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("svg") => Ok(Format::Svg),
        Some("png") => Ok(Format::Png),
        _ => bail!("--plot {}: the file name must end in .svg or .png", path.display()),
    }
}

/// Draws the figure for `report` into `path` (SVG or PNG, by its extension).
pub fn draw(path: &Path, report: &Report) -> Result<()> {
    plotters::style::register_font(SANS, FontStyle::Normal, FONT).map_err(|_| anyhow!("the embedded font"))?;
    let failed = |e: String| anyhow!("{e}");
    match format_of(path)? {
        Format::Svg => {
            let root = SVGBackend::new(path, SIZE).into_drawing_area();
            figure(&root, report).map_err(|e| failed(e.to_string()))?;
            root.present().map_err(|e| failed(e.to_string()))
        }
        Format::Png => {
            let root = BitMapBackend::new(path, SIZE).into_drawing_area();
            figure(&root, report).map_err(|e| failed(e.to_string()))?;
            root.present().map_err(|e| failed(e.to_string()))
        }
    }
}

type DrawResult<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A row kind's legend entry and colour (kinds that mean the same share one entry).
fn kind_style(kind: &str) -> (&'static str, RGBColor) {
    match kind.parse::<StageKind>() {
        Ok(StageKind::Linear) => ("linear layers on shares", RGBColor(31, 119, 180)),
        Ok(StageKind::HeLinear) => ("linear layers under HE", RGBColor(148, 103, 189)),
        Ok(StageKind::Offloaded) => ("offloaded linear layers", RGBColor(23, 190, 207)),
        Ok(StageKind::Relu) => ("ReLU", RGBColor(255, 127, 14)),
        Ok(StageKind::MaxPool) => ("max pool (with its ReLU)", RGBColor(214, 39, 40)),
        Ok(StageKind::Local) => ("layers at the user (nonlinear, reshapes)", RGBColor(127, 127, 127)),
        Ok(StageKind::Preprocess | StageKind::Keys) => {
            ("preprocessing: keys, pads, samples, correlations", RGBColor(188, 189, 34))
        }
        Ok(StageKind::Input | StageKind::Connect) => ("connection and input", RGBColor(140, 86, 75)),
        Ok(StageKind::Query) => ("the whole query (plain suite)", RGBColor(60, 60, 60)),
        Ok(StageKind::Output) | Err(_) => ("output", RGBColor(227, 119, 194)),
    }
}

/// Line colours of the suite configurations, in the order they first appear.
const LINES: [RGBColor; 8] = [
    RGBColor(60, 60, 60),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
];

/// `n` slots on a segmented axis. A segmented `0..k` has `k + 1` segments; with one value the
/// range would be empty, so one slot keeps an empty one beside it.
fn segments(n: usize) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize> {
    (0..n.max(2) - 1).into_segmented()
}

/// A latency with the digits it deserves.
fn milliseconds(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v if v >= 1.0 => format!("{v:.2}"),
        v => format!("{v:.3}"),
    }
}

/// How a legend entry is marked.
enum Mark {
    Box(RGBColor),
    Line(RGBColor, u32),
}

fn figure<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let title = format!("{}: secure suites side by side (medians of {} queries, batch {})", r.model, r.runs, r.batch);
    let root = root.titled(&title, (SANS, 26))?;
    let (top, bottom) = root.split_vertically(640);
    let (charts, strip) = top.split_vertically(560);
    let (left, right) = charts.split_horizontally(SIZE.0 / 2);
    let net = r.nets.first().map_or("", String::as_str);
    let bars: Vec<&SuiteResult> = r.results.iter().filter(|s| s.net == net).collect();
    stacked(&left, &format!("time per layer on {net} (the median query)"), Unit::Ms, &bars, |l| l.time_ms)?;
    stacked(&right, &format!("bytes per layer on {net} (sent by all parties)"), Unit::Mb, &bars, |l| {
        l.bytes as f64 / 1e6
    })?;
    let mut kinds: Vec<(String, Mark)> = Vec::new();
    for l in bars.iter().flat_map(|s| &s.measured.cost.layers) {
        let (name, color) = kind_style(&l.kind);
        if !kinds.iter().any(|(n, _)| n == name) {
            kinds.push((name.to_string(), Mark::Box(color)));
        }
    }
    legend(&strip.margin(0, 0, 60, 20), &kinds, 4)?;
    let (chart, key) = bottom.split_horizontally(SIZE.0 * 2 / 3);
    let lines = latency_by_network(&chart, r)?;
    legend(&key.margin(40, 0, 10, 10), &lines, 1)
}

/// Legend entries in rows of `columns`.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, Mark)],
    columns: usize,
) -> DrawResult<DB> {
    let (w, _) = area.dim_in_pixel();
    let column = (w as usize / columns.max(1)) as i32;
    let style = TextStyle::from((SANS, 17).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (text, mark)) in entries.iter().enumerate() {
        let (x, y) = ((i % columns) as i32 * column, (i / columns) as i32 * 28 + 14);
        match mark {
            Mark::Box(c) => area.draw(&Rectangle::new([(x, y - 8), (x + 16, y + 8)], c.filled()))?,
            Mark::Line(c, width) => area.draw(&PathElement::new(vec![(x, y), (x + 28, y)], c.stroke_width(*width)))?,
        }
        area.draw(&Text::new(text.clone(), (x + 36, y), style.clone()))?;
    }
    Ok(())
}

/// The unit of a stacked chart.
#[derive(Clone, Copy)]
enum Unit {
    Ms,
    Mb,
}

/// One horizontal bar per suite, one segment per row of its breakdown, coloured by kind;
/// neighbouring rows of one kind alternate in shade.
fn stacked<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    unit: Unit,
    bars: &[&SuiteResult],
    value: impl Fn(&tessera::cost::LayerCost) -> f64,
) -> DrawResult<DB> {
    let n = bars.len().max(1);
    let totals: Vec<f64> = bars.iter().map(|s| s.measured.cost.layers.iter().map(&value).sum()).collect();
    let xmax = totals.iter().copied().fold(0.0, f64::max).max(1e-6) * 1.22;
    let labels: Vec<String> = bars.iter().map(|s| s.label.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (SANS, 22))
        .margin(15)
        .x_label_area_size(55)
        .y_label_area_size(200)
        .build_cartesian_2d(0f64..xmax, segments(n))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => {
                (n - 1).checked_sub(*i).and_then(|j| labels.get(j)).cloned().unwrap_or_default()
            }
            _ => String::new(),
        })
        .x_desc(match unit {
            Unit::Ms => "milliseconds (neighbouring layers of one kind alternate in shade)",
            Unit::Mb => "megabytes (neighbouring layers of one kind alternate in shade)",
        })
        .label_style((SANS, 17))
        .axis_desc_style((SANS, 17))
        .draw()?;
    let mut rects = Vec::new();
    // The first suite on top.
    let slot = |i: usize| n - 1 - i;
    for (i, s) in bars.iter().enumerate() {
        let i = slot(i);
        let mut x = 0.0;
        // A segment next to one of the same colour takes the other shade.
        let (mut last, mut light) = (None, false);
        for l in &s.measured.cost.layers {
            let v = value(l);
            if v <= 0.0 {
                continue;
            }
            let color = kind_style(&l.kind).1;
            light = last == Some(color) && !light;
            last = Some(color);
            let style = if light { color.mix(0.6).filled() } else { color.filled() };
            let mut rect = Rectangle::new([(x, SegmentValue::Exact(i)), (x + v, SegmentValue::Exact(i + 1))], style);
            rect.set_margin(10, 10, 0, 0);
            rects.push(rect);
            x += v;
        }
    }
    chart.draw_series(rects)?;
    let anchor = TextStyle::from((SANS, 16).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart.draw_series(totals.iter().enumerate().map(|(i, &t)| {
        let text = match unit {
            Unit::Ms => format!("{t:.2} ms"),
            Unit::Mb => format!("{t:.3} MB"),
        };
        Text::new(text, (t + xmax * 0.01, SegmentValue::CenterOf(slot(i))), anchor.clone())
    }))?;
    Ok(())
}

/// Median latency of every suite on every network profile run (log scale, each point
/// labelled), with the plaintext
/// baselines as flat lines; returns the legend entries.
fn latency_by_network<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
) -> std::result::Result<Vec<(String, Mark)>, DrawingAreaErrorKind<DB::ErrorType>> {
    let nets = r.nets.len().max(1);
    let mut labels: Vec<&str> = Vec::new();
    for s in &r.results {
        if !labels.contains(&s.label.as_str()) {
            labels.push(&s.label);
        }
    }
    let all = r
        .results
        .iter()
        .map(|s| s.measured.latency_ms.median)
        .chain([r.baselines.f32_ms.median, r.baselines.fixed_ms.median]);
    let (lo, hi) = all.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // The axis carries log10 of the latency, over whole decades, and is labelled in
    // milliseconds (plotters' own log axis labels a few decades sparsely).
    let (lo, hi) = (lo.max(1e-3).log10().floor(), hi.max(1e-3).log10().ceil());
    let mut chart = ChartBuilder::on(area)
        .caption("median latency per network profile (every party its own process, mutual TLS)", (SANS, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(100)
        .build_cartesian_2d(segments(nets), lo..hi)?;
    chart
        .configure_mesh()
        .x_labels(nets)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => r.nets.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| milliseconds(10f64.powf(*v)))
        .y_desc("milliseconds (log scale)")
        .label_style((SANS, 17))
        .axis_desc_style((SANS, 17))
        .draw()?;
    let mut entries = Vec::new();
    for (k, label) in labels.iter().enumerate() {
        let color = LINES[k % LINES.len()];
        let points: Vec<(SegmentValue<usize>, f64)> = r
            .nets
            .iter()
            .enumerate()
            .filter_map(|(i, net)| {
                let s = r.results.iter().find(|s| &s.net == net && s.label == *label)?;
                Some((SegmentValue::CenterOf(i), s.measured.latency_ms.median.max(1e-3).log10()))
            })
            .collect();
        chart.draw_series(points.iter().map(|p| Circle::new(p.clone(), 6, color.filled())))?;
        // Labels alternate sides, so that lines meeting at a point keep theirs apart.
        let side = if k % 2 == 0 { HPos::Left } else { HPos::Right };
        let beside = TextStyle::from((SANS, 14).into_font()).pos(Pos::new(side, VPos::Bottom));
        chart.draw_series(points.iter().map(|(x, y)| {
            Text::new(format!("  {}  ", milliseconds(10f64.powf(*y))), (x.clone(), *y), beside.clone())
        }))?;
        chart.draw_series(LineSeries::new(points, color.stroke_width(3)))?;
        entries.push((label.to_string(), Mark::Line(color, 3)));
    }
    let baselines = [
        ("f32 engine, no network", r.baselines.f32_ms.median, RGBColor(0, 0, 0)),
        ("fixed-point reference, no network", r.baselines.fixed_ms.median, RGBColor(150, 150, 150)),
    ];
    for (name, v, color) in baselines {
        let y = v.max(1e-3).log10();
        chart.draw_series(LineSeries::new(
            [(SegmentValue::Exact(0), y), (SegmentValue::Last, y)],
            color.stroke_width(2),
        ))?;
        entries.push((format!("{name} ({v:.3} ms)"), Mark::Line(color, 2)));
    }
    Ok(entries)
}
