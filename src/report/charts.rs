//! The HTML report's charts: plotters with its SVG backend, each chart one function that
//! reads the [`Summary`] and returns an SVG string for `html.rs` to inline.
//!
//! Charts only show what the summary holds; they never compute a verdict. The summary may
//! come from a file someone edited, so nothing here panics on odd data: empty series become
//! a "no data" placeholder, and a drawing error becomes a placeholder that names it. Text
//! stays SVG `<text>` (no font files, no bitmaps), so a chart is a few kilobytes of markup.
//!
//! One invariant the browser test relies on: a `<polyline>` in a colour other than black is
//! plotted data. Axes are black; grid lines, legend marks and fault shading are rectangles.

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::summary::{FaultWindow, PercentilePoint, StageLatency, Summary};

/// The drawn size; the page scales charts down to its width (the SVG keeps its viewBox).
const WIDTH: u32 = 960;
const HEIGHT: u32 = 340;
/// The strip above the plot that holds the legend, so no legend covers data.
const LEGEND_HEIGHT: u32 = 30;
const FONT: &str = "sans-serif";
/// plotters writes `font-size = size / 1.24`: 16 gives 12.9 px text.
const FONT_SIZE: f64 = 16.0;
/// Rough width of one character at that size, for laying out the legend.
const CHAR_WIDTH_PX: i32 = 7;

// Tableau 10: distinguishable, and readable on white.
const BLUE_: RGBColor = RGBColor(0x4E, 0x79, 0xA7);
const ORANGE: RGBColor = RGBColor(0xF2, 0x8E, 0x2B);
const GREEN_: RGBColor = RGBColor(0x59, 0xA1, 0x4F);
const PURPLE: RGBColor = RGBColor(0xB0, 0x7A, 0xA1);
const TEAL: RGBColor = RGBColor(0x76, 0xB7, 0xB2);
const BROWN: RGBColor = RGBColor(0x9C, 0x75, 0x5F);
const GREY: RGBColor = RGBColor(0x79, 0x70, 0x6E);
const PLANNED: RGBColor = RGBColor(0xC9, 0xC4, 0xC2);
const GRID: RGBColor = RGBColor(0xE4, 0xE4, 0xE4);
const PALETTE: [RGBColor; 6] = [BLUE_, ORANGE, GREEN_, PURPLE, TEAL, BROWN];
/// Fault shading: a light red no series uses.
const FAULT_FILL: &str = "#E15759";
const FAULT_OPACITY: f64 = 0.18;
const FAULT_SWATCH: RGBColor = RGBColor(0xF6, 0xCD, 0xCD);

/// One line on a chart. `None` values are gaps (the broker did not say), drawn as breaks.
pub struct Series {
    pub name: String,
    pub colour: RGBColor,
    pub line: Line,
    pub points: Vec<(f64, Option<f64>)>,
}

/// How a series is stroked. Series that often coincide with another (planned and achieved
/// rate, p99 and max in a quiet second) need a different stroke to stay visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Solid { width: u32 },
    Dashed,
}

impl Series {
    pub fn new(name: &str, colour: RGBColor, points: Vec<(f64, Option<f64>)>) -> Series {
        Series {
            name: name.into(),
            colour,
            line: Line::Solid { width: 2 },
            points,
        }
    }

    fn has_data(&self) -> bool {
        self.points
            .iter()
            .any(|(x, y)| x.is_finite() && y.is_some_and(f64::is_finite))
    }

    /// Contiguous runs of finite points, so a gap stays a gap.
    fn runs(&self) -> Vec<Vec<(f64, f64)>> {
        let mut runs = vec![Vec::new()];
        for &(x, y) in &self.points {
            match y {
                Some(y) if x.is_finite() && y.is_finite() => {
                    if let Some(run) = runs.last_mut() {
                        run.push((x, y));
                    }
                }
                _ => runs.push(Vec::new()),
            }
        }
        runs.retain(|r| !r.is_empty());
        runs
    }
}

/// The shared time axis of every time chart: the run's length and its fault windows.
pub struct TimeAxis<'a> {
    pub seconds: f64,
    pub faults: &'a [FaultWindow],
}

impl<'a> TimeAxis<'a> {
    pub fn of(summary: &'a Summary) -> TimeAxis<'a> {
        let seconds = if summary.duration_s.is_finite() {
            summary.duration_s.max(0.0)
        } else {
            0.0
        };
        TimeAxis {
            seconds,
            faults: &summary.faults,
        }
    }
}

/// A chart's id in the page: lower-case letters and digits, runs of anything else one `-`.
pub fn slug(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// Planned vs achieved orders per second.
pub fn rate(summary: &Summary) -> String {
    let per_second = |values: &[u64]| -> Vec<(f64, Option<f64>)> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64 + 0.5, Some(v as f64)))
            .collect()
    };
    // Planned is drawn first, wide and light, so an achieved rate on plan lies on it
    // instead of hiding it.
    let series = vec![
        Series {
            line: Line::Solid { width: 7 },
            ..Series::new(
                "planned",
                PLANNED,
                per_second(&summary.rates.planned_per_second),
            )
        },
        Series::new(
            "achieved (acked)",
            BLUE_,
            per_second(whole_seconds(summary)),
        ),
    ];
    time_chart(
        "chart-rate",
        Y::Count("orders/s"),
        &series,
        &TimeAxis::of(summary),
    )
}

/// The achieved rate of each whole second: the run's last, partial second is left out, as
/// its few orders would read as a collapse of the rate.
fn whole_seconds(summary: &Summary) -> &[u64] {
    let achieved = &summary.rates.achieved_per_second;
    match achieved.split_last() {
        Some((_, whole)) if achieved.len() as f64 > summary.duration_s + 1e-6 => whole,
        _ => achieved,
    }
}

/// p50, p90, p99 and max of one stage, per second, in milliseconds.
pub fn latency_over_time(stage: &StageLatency, axis: &TimeAxis<'_>) -> String {
    type Pick = fn(&crate::observe::Percentiles) -> u64;
    let lines: [(&str, RGBColor, Pick); 4] = [
        ("p50", BLUE_, |p| p.p50_us),
        ("p90", GREEN_, |p| p.p90_us),
        ("p99", ORANGE, |p| p.p99_us),
        ("max", PURPLE, |p| p.max_us),
    ];
    let series: Vec<Series> = lines
        .iter()
        .map(|&(name, colour, pick)| Series {
            // In a quiet second max equals p99; dashed and drawn last, it leaves p99 visible.
            line: if name == "max" {
                Line::Dashed
            } else {
                Line::Solid { width: 2 }
            },
            ..Series::new(
                name,
                colour,
                stage
                    .series
                    .iter()
                    .map(|s| {
                        (
                            f64::from(s.second) + 0.5,
                            Some(pick(&s.percentiles) as f64 / 1000.0),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    let id = format!("chart-latency-{}", slug(&stage.stage));
    time_chart(&id, Y::Milliseconds, &series, axis)
}

/// Consumer lag per service at the end of each second.
pub fn lag(summary: &Summary) -> String {
    let mut services = Vec::new();
    for sample in &summary.samples {
        for (service, _) in &sample.lag {
            if !services.contains(service) {
                services.push(*service);
            }
        }
    }
    let series: Vec<Series> = services
        .iter()
        .enumerate()
        .map(|(i, service)| {
            let points = summary
                .samples
                .iter()
                .map(|s| {
                    let lag = s
                        .lag
                        .iter()
                        .find(|(k, _)| k == service)
                        .and_then(|(_, lag)| *lag);
                    (f64::from(s.second) + 0.5, lag.map(|l| l as f64))
                })
                .collect();
            Series::new(service.name(), PALETTE[i % PALETTE.len()], points)
        })
        .collect();
    time_chart(
        "chart-lag",
        Y::Count("events behind"),
        &series,
        &TimeAxis::of(summary),
    )
}

/// Failed checkouts per second and checkouts in flight at each second's end: where an
/// outage turns into failures, and how far the checkout path backs up before it does.
pub fn failures(summary: &Summary) -> String {
    let mut previous = 0;
    let mut failed = Vec::with_capacity(summary.samples.len());
    for s in &summary.samples {
        failed.push((
            f64::from(s.second) + 0.5,
            Some(s.failed.saturating_sub(previous) as f64),
        ));
        previous = s.failed;
    }
    let in_flight = summary
        .samples
        .iter()
        .map(|s| (f64::from(s.second) + 0.5, Some(s.in_flight.max(0) as f64)))
        .collect();
    let series = vec![
        Series::new("failed checkouts per second", ORANGE, failed),
        Series::new("checkouts in flight", BLUE_, in_flight),
    ];
    time_chart(
        "chart-failures",
        Y::Count("checkouts"),
        &series,
        &TimeAxis::of(summary),
    )
}

/// The series of the deliveries chart; a new per-second counter is one more entry here; the
/// chart draws whatever this returns.
pub fn delivery_series(summary: &Summary) -> Vec<Series> {
    // The samples hold cumulative counters; a file edited by hand may make one go down,
    // which saturates to zero rather than wrapping.
    let per_second = |get: fn(&crate::observe::Sample) -> u64| -> Vec<(f64, Option<f64>)> {
        let mut previous = 0u64;
        summary
            .samples
            .iter()
            .map(|s| {
                let now = get(s);
                let delta = now.saturating_sub(previous);
                previous = now;
                (f64::from(s.second) + 0.5, Some(delta as f64))
            })
            .collect()
    };
    let mut series = vec![
        Series::new("deliveries/s", BLUE_, per_second(|s| s.deliveries)),
        Series::new(
            "duplicate deliveries/s",
            ORANGE,
            per_second(|s| s.duplicate_deliveries),
        ),
    ];
    // Only runs that park events get the dead-letter line.
    if summary.samples.iter().any(|s| s.dead_lettered > 0) {
        series.push(Series::new(
            "dead-lettered/s",
            PURPLE,
            per_second(|s| s.dead_lettered),
        ));
    }
    series
}

/// Deliveries and duplicate deliveries per second (and any series `delivery_series` adds).
pub fn deliveries(summary: &Summary) -> String {
    time_chart(
        "chart-deliveries",
        Y::Count("deliveries/s"),
        &delivery_series(summary),
        &TimeAxis::of(summary),
    )
}

/// HdrHistogram's percentile plot of one stage: x is `log10(1 / (1 - p))`, so 90 %, 99 %,
/// 99.9 % and 99.99 % are evenly spaced and the tail gets the room it deserves. The axis
/// reaches at least 99.99 % and as deep as the data goes; the 100 % point (the maximum) has
/// no place on a log axis and sits at its right edge.
pub fn distribution(stage: &StageLatency) -> String {
    let id = format!("chart-distribution-{}", slug(&stage.stage));
    let points: Vec<&PercentilePoint> = stage
        .distribution
        .iter()
        .filter(|p| p.percentile.is_finite() && p.percentile >= 0.0)
        .collect();
    let deepest = points
        .iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| percentile_x(p.percentile))
        .fold(0.0f64, f64::max);
    let nines = deepest.ceil().clamp(4.0, PERCENTILE_X_MAX);
    let points = points
        .iter()
        .map(|p| {
            let x = if p.percentile < 100.0 {
                percentile_x(p.percentile)
            } else {
                nines
            };
            (x, Some(p.value_us as f64 / 1000.0))
        })
        .collect();
    let series = [Series::new("latency at percentile", BLUE_, points)];
    draw_or_placeholder(&id, &series, |root| draw_distribution(root, &series, nines))
}

/// The deepest percentile the axis shows: 99.9999 %; 100 % itself would be infinitely far.
const PERCENTILE_X_MAX: f64 = 6.0;

fn percentile_x(percentile: f64) -> f64 {
    let rest = (1.0 - percentile / 100.0).clamp(10f64.powf(-PERCENTILE_X_MAX), 1.0);
    -rest.log10()
}

fn percentile_label(x: f64) -> String {
    let nines = x.round() as i32;
    if nines <= 0 {
        return "0%".into();
    }
    let p = 100.0 * (1.0 - 10f64.powi(-nines));
    format!("{p:.*}%", (nines - 2).max(0) as usize)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A drawing failure, kept as text: it ends up visible in the placeholder.
struct DrawError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawError(e.to_string())
    }
}

/// Draws a chart, or a placeholder when there is nothing to draw or drawing failed, and
/// gives the SVG its id. `draw` returns extra markup (fault shading) to put under the data.
fn draw_or_placeholder(
    id: &str,
    series: &[Series],
    draw: impl FnOnce(&Area<'_>) -> Result<String, DrawError>,
) -> String {
    if !series.iter().any(Series::has_data) {
        return placeholder(id, "no data for this chart in this run");
    }
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root).and_then(|under| {
            root.present()?;
            Ok(under)
        })
    };
    match drawn {
        Ok(under) => finish(svg, id, &under),
        Err(DrawError(e)) => {
            tracing::warn!(chart = id, error = %e, "chart could not be drawn");
            placeholder(id, &format!("this chart could not be drawn: {e}"))
        }
    }
}

/// A chart-sized box that says why there is no chart, with the chart's id.
fn placeholder(id: &str, message: &str) -> String {
    let mut svg = String::new();
    let drawn: Result<(), DrawError> = (|| {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 80)).into_drawing_area();
        root.draw(&Rectangle::new(
            [(1, 1), (WIDTH as i32 - 2, 78)],
            ShapeStyle::from(&GREY).stroke_width(1),
        ))?;
        let style = TextStyle::from((FONT, FONT_SIZE).into_font())
            .color(&GREY)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ));
        root.draw(&Text::new(
            message.to_owned(),
            (WIDTH as i32 / 2, 40),
            style,
        ))?;
        root.present()?;
        Ok(())
    })();
    if drawn.is_err() {
        // Drawing a rectangle and a line of text into a String cannot really fail; if it
        // ever does, an empty SVG still carries the id so the page's layout holds.
        svg = format!("<svg width=\"{WIDTH}\" height=\"80\" viewBox=\"0 0 {WIDTH} 80\"></svg>");
    }
    finish(svg, id, "")
}

/// Gives the root `<svg>` its id and class, drops the XML namespace (HTML knows inline SVG,
/// and the report must not mention any URL), and puts `under` beneath everything drawn.
fn finish(svg: String, id: &str, under: &str) -> String {
    let svg = svg.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "");
    let Some(open_end) = svg.find('>') else {
        return svg;
    };
    let (head, body) = svg.split_at(open_end + 1);
    let head = head.replacen("<svg", &format!("<svg id=\"{id}\" class=\"chart\""), 1);
    format!("{head}\n{under}{body}")
}

/// What a time chart's y axis counts.
#[derive(Debug, Clone, Copy)]
enum Y {
    Count(&'static str),
    Milliseconds,
}

impl Y {
    fn desc(self) -> &'static str {
        match self {
            Y::Count(desc) => desc,
            Y::Milliseconds => "latency (ms)",
        }
    }

    fn floor(self) -> f64 {
        match self {
            Y::Count(_) => COUNT_FLOOR,
            Y::Milliseconds => MS_FLOOR,
        }
    }

    fn label(self, v: f64) -> String {
        match self {
            Y::Count(_) if v.fract() != 0.0 => String::new(),
            _ => number(v),
        }
    }
}

/// A chart over run time: `series` as lines, faults shaded, a legend strip on top.
/// `Y::Count` charts label only whole numbers: half an order per second is no tick.
fn time_chart(id: &str, y: Y, series: &[Series], axis: &TimeAxis<'_>) -> String {
    let x_max = x_max(series, axis);
    let faults = (!axis.faults.is_empty()).then_some("fault window");
    line_chart(id, "run time (s)", y, series, x_max, 12, faults, |chart| {
        fault_shading(chart, axis.faults, x_max)
    })
}

/// Lines over `0..x_max` with a legend strip on top; `under` draws markup beneath the lines
/// (fault windows, the knee), named in the legend as `band` when there is one.
#[allow(clippy::too_many_arguments)]
fn line_chart(
    id: &str,
    x_desc: &str,
    y: Y,
    series: &[Series],
    x_max: f64,
    x_labels: usize,
    band: Option<&str>,
    under: impl FnOnce(&Chart<'_, '_>) -> String,
) -> String {
    draw_or_placeholder(id, series, |root| {
        let y_max = y_max(series, y.floor());
        let (legend, plot) = root.split_vertically(LEGEND_HEIGHT);
        let mut chart = build(&plot, 0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y.desc())
            .x_labels(x_labels)
            .y_labels(8)
            .x_label_formatter(&|v| number(*v))
            .y_label_formatter(&|v| y.label(*v))
            .label_style((FONT, FONT_SIZE))
            .axis_desc_style((FONT, FONT_SIZE))
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .draw()?;
        let under = under(&chart);
        draw_lines(&mut chart, series)?;
        draw_legend(&legend, &legend_entries(series, band))?;
        Ok(under)
    })
}

/// What a chart over the planned rate (a capacity search's steps) draws on its y axis.
#[derive(Debug, Clone, Copy)]
pub enum RateY {
    /// Orders per second: achieved against planned.
    OrdersPerSecond,
    /// A stage's p99 latency.
    Milliseconds,
}

/// One named line over the planned rate: (planned rate, value) points, `None` a gap.
pub type RatePoints = (String, Vec<(f64, Option<f64>)>);

/// A chart whose x axis is the planned peak rate (orders/s), one point per capacity step,
/// with the knee (the lowest failing rate above the highest pass) marked as a band from the
/// sustained rate to it. Series are given in the palette's order.
pub fn over_planned_rate(
    id: &str,
    y: RateY,
    series: Vec<RatePoints>,
    knee: Option<(f64, f64)>,
) -> String {
    let mut drawn: Vec<Series> = Vec::new();
    if let RateY::OrdersPerSecond = y {
        // The diagonal a target keeping up lies on, wide and light like a time chart's plan.
        let top = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
            .fold(0.0f64, f64::max);
        drawn.push(Series {
            line: Line::Solid { width: 7 },
            ..Series::new("planned", PLANNED, vec![(0.0, Some(0.0)), (top, Some(top))])
        });
    }
    for (i, (name, points)) in series.into_iter().enumerate() {
        drawn.push(Series::new(&name, PALETTE[i % PALETTE.len()], points));
    }
    let y = match y {
        RateY::OrdersPerSecond => Y::Count("orders/s"),
        RateY::Milliseconds => Y::Milliseconds,
    };
    let x_max = drawn
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| x.is_finite())
        .fold(1.0f64, f64::max)
        * 1.05;
    let band = knee.map(|_| "knee");
    line_chart(
        id,
        "planned peak rate (orders/s)",
        y,
        &drawn,
        x_max,
        10,
        band,
        |chart| knee.map_or_else(String::new, |(from, to)| knee_band(chart, from, to)),
    )
}

/// The band between the highest sustained rate and the lowest failing one, labelled.
fn knee_band(chart: &Chart<'_, '_>, from: f64, to: f64) -> String {
    let (x_pixels, y_pixels) = chart.plotting_area().get_pixel_range();
    let (x0, _) = chart.backend_coord(&(from, 0.0));
    let (x1, _) = chart.backend_coord(&(to, 0.0));
    let x0 = x0.clamp(x_pixels.start, x_pixels.end);
    let x1 = x1.clamp(x0 + 2, x_pixels.end.max(x0 + 2));
    format!(
        "<rect class=\"knee\" x=\"{x0}\" y=\"{y0}\" width=\"{w}\" height=\"{h}\" \
         fill=\"{FAULT_FILL}\" opacity=\"{FAULT_OPACITY}\"><title>{title}</title></rect>\n\
         <text class=\"knee-label\" x=\"{lx}\" y=\"{ly}\" font-size=\"11\" \
         font-family=\"sans-serif\" fill=\"#444\">knee</text>\n",
        y0 = y_pixels.start,
        w = x1 - x0,
        h = y_pixels.end - y_pixels.start,
        title = escape(&format!(
            "passes at {} orders/s, fails at {} orders/s",
            number(from),
            number(to)
        )),
        lx = x0 + 3,
        ly = y_pixels.start + 12,
    )
}

fn draw_distribution(root: &Area<'_>, series: &[Series], nines: f64) -> Result<String, DrawError> {
    let (legend, plot) = root.split_vertically(LEGEND_HEIGHT);
    let mut chart = build(&plot, 0.0..nines, 0.0..y_max(series, MS_FLOOR))?;
    // plotters would pick "nice" decimal ticks; this axis wants one tick per nine, so the
    // x labels and grid lines are drawn here.
    chart
        .configure_mesh()
        .x_labels(0)
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .y_labels(8)
        .y_label_formatter(&|v| number(*v))
        .label_style((FONT, FONT_SIZE))
        .axis_desc_style((FONT, FONT_SIZE))
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .draw()?;
    let top = chart.y_range().end;
    let label = TextStyle::from((FONT, FONT_SIZE).into_font())
        .color(&BLACK)
        .pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Top,
        ));
    for tick in 0..=nines as i32 {
        let x = f64::from(tick);
        let (px, py) = chart.backend_coord(&(x, 0.0));
        let (_, py_top) = chart.backend_coord(&(x, top));
        // A one-pixel rectangle rather than a line, for the same reason as the legend.
        root.draw(&Rectangle::new(
            [(px, py_top), (px + 1, py)],
            ShapeStyle::from(&GRID).filled(),
        ))?;
        root.draw(&Text::new(percentile_label(x), (px, py + 8), label.clone()))?;
    }
    draw_lines(&mut chart, series)?;
    draw_legend(&legend, &legend_entries(series, None))?;
    Ok(String::new())
}

fn build<'a, 'b>(
    plot: &'a Area<'b>,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>, DrawError> {
    Ok(ChartBuilder::on(plot)
        .margin(10)
        .margin_right(30)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(x, y)?)
}

/// Lines for every run of every series; dots too when there are few points, so a
/// three-second run still shows its values.
fn draw_lines(chart: &mut Chart<'_, '_>, series: &[Series]) -> Result<(), DrawError> {
    for s in series {
        let runs = s.runs();
        let points: usize = runs.iter().map(Vec::len).sum();
        let dot = if points <= 40 { 3 } else { 0 };
        for run in runs {
            match s.line {
                Line::Solid { width } => {
                    let style = ShapeStyle::from(&s.colour).stroke_width(width);
                    chart.draw_series(LineSeries::new(run, style).point_size(dot))?;
                }
                Line::Dashed => {
                    let style = ShapeStyle::from(&s.colour).stroke_width(2);
                    chart.draw_series(DashedLineSeries::new(run.clone(), 6, 5, style))?;
                    if dot > 0 {
                        chart.draw_series(
                            run.into_iter()
                                .map(|p| Circle::new(p, dot, ShapeStyle::from(&s.colour))),
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// What the legend strip shows for `series`, plus the fault swatch when faults are shaded.
fn legend_entries(series: &[Series], band: Option<&str>) -> Vec<Legend> {
    let mut entries: Vec<Legend> = series
        .iter()
        .map(|s| Legend {
            name: s.name.clone(),
            colour: s.colour,
            mark: Mark::Line(s.line),
        })
        .collect();
    if let Some(band) = band {
        entries.push(Legend {
            name: band.into(),
            colour: FAULT_SWATCH,
            mark: Mark::Swatch,
        });
    }
    entries
}

struct Legend {
    name: String,
    colour: RGBColor,
    mark: Mark,
}

enum Mark {
    Line(Line),
    Swatch,
}

/// One `<rect class="fault-window">` per fault, in pixels of the plot, with a tooltip, and
/// the fault's kind written at the top of its band (read on paper or a screenshot too).
/// Written by hand rather than through plotters so it carries a class the page (and the
/// browser test) can find, and goes under the data lines.
fn fault_shading(chart: &Chart<'_, '_>, faults: &[FaultWindow], x_max: f64) -> String {
    let (x_pixels, y_pixels) = chart.plotting_area().get_pixel_range();
    let mut out = String::new();
    for f in faults {
        let start = (f.start_ms as f64 / 1000.0).min(x_max);
        // A fault still on at the end (a crash without restart) shades to the edge.
        let end = f.end_ms.map_or(x_max, |end| {
            (end.max(f.start_ms) as f64 / 1000.0).min(x_max)
        });
        let (x0, _) = chart.backend_coord(&(start, 0.0));
        let (x1, _) = chart.backend_coord(&(end, 0.0));
        let x0 = x0.clamp(x_pixels.start, x_pixels.end);
        // A fault shorter than a pixel still shows as a thin band.
        let x1 = x1.clamp(x0 + 2, x_pixels.end.max(x0 + 2));
        let _ = writeln!(
            out,
            "<rect class=\"fault-window\" x=\"{x0}\" y=\"{y0}\" width=\"{w}\" height=\"{h}\" \
             fill=\"{FAULT_FILL}\" opacity=\"{FAULT_OPACITY}\"><title>{title}</title></rect>",
            y0 = y_pixels.start,
            w = x1 - x0,
            h = y_pixels.end - y_pixels.start,
            title = escape(&format!(
                "{} on {}: {}–{} s",
                f.kind,
                f.target,
                number(f.start_ms as f64 / 1000.0),
                f.end_ms
                    .map_or("end".to_owned(), |end| number(end as f64 / 1000.0))
            )),
        );
        let _ = writeln!(
            out,
            "<text class=\"fault-label\" x=\"{x}\" y=\"{y}\" font-size=\"11\" \
             font-family=\"sans-serif\" fill=\"#444\">{label}</text>",
            x = x0 + 3,
            y = y_pixels.start + 12,
            label = escape(&f.kind),
        );
    }
    out
}

/// Legend entries left to right in the strip above the plot: the series' stroke (or a
/// swatch for shaded areas) and the name.
fn draw_legend(area: &Area<'_>, entries: &[Legend]) -> Result<(), DrawError> {
    let mut x = 85;
    let y = LEGEND_HEIGHT as i32 / 2 + 2;
    let style = TextStyle::from((FONT, FONT_SIZE).into_font())
        .color(&BLACK)
        .pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Left,
            plotters::style::text_anchor::VPos::Center,
        ));
    for e in entries {
        let colour = ShapeStyle::from(&e.colour);
        match e.mark {
            Mark::Swatch => {
                area.draw(&Rectangle::new(
                    [(x, y - 7), (x + 24, y + 7)],
                    colour.filled(),
                ))?;
            }
            // Legend strokes are thin filled rectangles, not lines: polylines in a series
            // colour are the plotted data and nothing else (the browser test relies on it).
            Mark::Line(Line::Solid { width }) => {
                let half = (width.max(3) / 2) as i32;
                area.draw(&Rectangle::new(
                    [(x, y - half), (x + 24, y + half + 1)],
                    colour.filled(),
                ))?;
            }
            Mark::Line(Line::Dashed) => {
                for dash in [0, 9, 18] {
                    area.draw(&Rectangle::new(
                        [(x + dash, y - 1), (x + dash + 6, y + 2)],
                        colour.filled(),
                    ))?;
                }
            }
        }
        area.draw(&Text::new(e.name.clone(), (x + 30, y), style.clone()))?;
        x += 30 + CHAR_WIDTH_PX * e.name.chars().count() as i32 + 24;
    }
    Ok(())
}

fn x_max(series: &[Series], axis: &TimeAxis<'_>) -> f64 {
    let data = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0 + 0.5))
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    data.max(axis.seconds).max(1.0).ceil()
}

/// The top of the y axis: the largest value plus a tenth, at least `floor` so a flat zero
/// line still has an axis. Counts floor at 1; milliseconds at 2 µs, so a stage that takes
/// the histogram's 1 µs minimum shows at its scale instead of flat on the axis.
fn y_max(series: &[Series], floor: f64) -> f64 {
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max);
    (max * 1.1).max(floor)
}

const MS_FLOOR: f64 = 0.002;
const COUNT_FLOOR: f64 = 1.0;

/// Axis numbers: no trailing zeros, fewer decimals as numbers grow, enough below 1 to tell
/// ticks apart (0.0005, 0.001, ...).
fn number(v: f64) -> String {
    let decimals = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 || a == 0.0 || !a.is_finite() => 2,
        a => ((-a.log10().floor()) as usize + 1).min(6),
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The percentile axis puts 90, 99, 99.9 and 99.99 % one unit apart, and says so.
    #[test]
    fn percentile_axis_is_log_of_one_over_one_minus_p() {
        assert!((percentile_x(90.0) - 1.0).abs() < 1e-9);
        assert!((percentile_x(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_x(100.0), PERCENTILE_X_MAX);
        let labels: Vec<String> = (0..=4).map(|x| percentile_label(f64::from(x))).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    /// Axis numbers stay short and distinct, small ones included.
    #[test]
    fn axis_numbers() {
        let got: Vec<String> = [0.0, 0.0005, 0.2, 1.5, 12.25, 350.0]
            .iter()
            .map(|&v| number(v))
            .collect();
        assert_eq!(got, ["0", "0.0005", "0.2", "1.5", "12.2", "350"]);
    }

    /// Stage labels become ids with only letters, digits and single dashes.
    #[test]
    fn slugs_are_plain() {
        assert_eq!(
            slug("order.created -> order.fulfilled"),
            "order-created-order-fulfilled"
        );
        assert_eq!(slug("order.created"), "order-created");
    }

    /// The last second of a run that ended inside it is not drawn as a fall of the rate;
    /// a run that ended on a whole second keeps every point.
    #[test]
    fn a_partial_last_second_is_left_out_of_the_rate() {
        let mut s: Summary = serde_json::from_str(include_str!(
            "../../tests/fixtures/summaries/smoke-pass.json"
        ))
        .unwrap();
        s.rates.achieved_per_second = vec![40, 40, 3];
        s.duration_s = 2.1;
        assert_eq!(whole_seconds(&s), [40, 40]);
        s.duration_s = 3.0;
        assert_eq!(whole_seconds(&s), [40, 40, 3]);
    }

    /// A gap (`None`) splits a line instead of bridging it.
    #[test]
    fn gaps_split_runs() {
        let s = Series::new(
            "x",
            BLUE_,
            vec![
                (0.0, Some(1.0)),
                (1.0, None),
                (2.0, Some(2.0)),
                (3.0, Some(f64::NAN)),
            ],
        );
        assert_eq!(s.runs(), vec![vec![(0.0, 1.0)], vec![(2.0, 2.0)]]);
    }

    /// No data gives the placeholder with the chart's id, never a panic.
    #[test]
    fn empty_series_render_a_placeholder() {
        let svg = time_chart(
            "chart-x",
            Y::Milliseconds,
            &[],
            &TimeAxis {
                seconds: 0.0,
                faults: &[],
            },
        );
        assert!(svg.starts_with("<svg id=\"chart-x\""), "{svg}");
        assert!(svg.contains("no data"));
        assert!(!svg.contains("http"));
    }
}
