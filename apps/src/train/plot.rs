//! A run's curves against training time, as PNG and SVG, in the style of
//! MALT's figures: the run's curve, optionally the single-rank run on the same
//! axes, a dashed line at the goal loss and the speedup to the goal written on
//! the plot.
//!
//! # Panels
//!
//! - **Objective** (top): the training objective of every evaluation, the
//!   initial model's included. The vertical axis covers the whole curve
//!   (and the goal): it is linear, and logarithmic when the largest value
//!   is more than [`LOG_RATIO`] times the smallest positive one, so that a
//!   start far above the end does not flatten the rest of the curve.
//! - **Test metric** (bottom, when the run has a test set): test error in
//!   percent (svm) or test RMSE (mf) at the same times, on an axis chosen the
//!   same way, with the noise floor as a dashed line when it is known (the
//!   synthetic ratings' noise standard deviation: no model's test RMSE is
//!   expected below it).
//!
//! The SVG also carries the title and the panels in its `<title>` and
//! `<desc>` elements.
//!
//! Text is drawn with a TrueType font found at run time (no system font
//! library is linked): the file named by `MALT_PLOT_FONT`, else the first of
//! a few usual sans-serif fonts under the system font directories (DejaVu
//! Sans, Liberation Sans, Noto Sans, ...), else any `.ttf` found there. When
//! no font is found the plot is drawn without text.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::metrics::{MetricPoint, TestMetric};
use super::TrainError;

/// Family name under which the font found is registered.
pub(crate) const FAMILY: &str = "sans-serif";
/// Environment variable naming a `.ttf` file to draw text with.
pub const FONT_ENV: &str = "MALT_PLOT_FONT";

/// Preferred font files, searched for by name under the font directories.
const PREFERRED: &[&str] = &[
    "DejaVuSans.ttf",
    "LiberationSans-Regular.ttf",
    "NotoSans-Regular.ttf",
    "FreeSans.ttf",
    "Arial.ttf",
    "arial.ttf",
    "Helvetica.ttf",
];

/// Size of the pictures in pixels.
const SIZE: (u32, u32) = (960, 900);

/// A vertical axis turns logarithmic when its largest value is more than
/// this many times its smallest (all positive).
pub const LOG_RATIO: f64 = 20.0;

/// One curve of a plot.
#[derive(Debug, Clone, Copy)]
pub struct Curve<'a> {
    /// Legend text.
    pub label: &'a str,
    /// The points; `time_s` against `objective`, and against `test` in the
    /// test panel.
    pub points: &'a [MetricPoint],
}

/// What to draw.
#[derive(Debug, Clone, Copy)]
pub struct PlotSpec<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// Label of the objective's axis.
    pub y_label: &'a str,
    /// What the points' `test` values are.
    pub metric: TestMetric,
    /// The run.
    pub main: Curve<'a>,
    /// The single-rank run to compare with.
    pub baseline: Option<Curve<'a>>,
    /// The goal loss, drawn as a dashed horizontal line.
    pub goal: Option<f64>,
    /// The speedup to the goal, written on the plot.
    pub speedup: Option<f64>,
    /// The lowest test metric any model is expected to reach (the noise
    /// floor of synthetic ratings), drawn as a dashed line in the test panel.
    pub floor: Option<f64>,
}

/// The files written by [`plot_objective`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotFiles {
    /// The PNG picture.
    pub png: PathBuf,
    /// The SVG picture.
    pub svg: PathBuf,
    /// Whether text (title, axes, legend) was drawn.
    pub has_text: bool,
}

/// Writes `<stem>.png` and `<stem>.svg`.
pub fn plot_objective(stem: &Path, spec: &PlotSpec<'_>) -> Result<PlotFiles, TrainError> {
    if spec.main.points.is_empty() {
        return Err(TrainError::Plot {
            file: stem.display().to_string(),
            message: "no points to plot".into(),
        });
    }
    let text = font_available();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let fail = |file: &Path| {
        let file = file.display().to_string();
        move |message: String| TrainError::Plot {
            file: file.clone(),
            message,
        }
    };
    let layout = Layout::of(spec);
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, spec, &layout, text).map_err(fail(&png))?;
        root.present().map_err(|e| fail(&png)(e.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, spec, &layout, text).map_err(fail(&svg))?;
        root.present().map_err(|e| fail(&svg)(e.to_string()))?;
    }
    describe_svg(&svg, spec.title, &layout).map_err(|e| fail(&svg)(e.to_string()))?;
    Ok(PlotFiles {
        png,
        svg,
        has_text: text,
    })
}

/// Registers a font once per process; whether one was found.
pub(crate) fn font_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        for path in font_candidates() {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            // The font table must live as long as the process: it is loaded
            // once and kept.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                tracing::debug!(font = %path.display(), "plot font");
                return true;
            }
        }
        tracing::warn!(
            "no TrueType font found (set {FONT_ENV} to a .ttf file); plots are drawn without text"
        );
        false
    })
}

fn font_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(data) = std::env::var_os("XDG_DATA_HOME") {
        dirs.push(PathBuf::from(data).join("fonts"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(&home).join(".local/share/fonts"));
        dirs.push(PathBuf::from(&home).join(".fonts"));
        dirs.push(PathBuf::from(&home).join("Library/Fonts"));
    }
    for d in [
        "/usr/share/fonts",
        "/usr/local/share/fonts",
        "/Library/Fonts",
        "/System/Library/Fonts",
    ] {
        dirs.push(PathBuf::from(d));
    }
    if let Some(windir) = std::env::var_os("WINDIR") {
        dirs.push(PathBuf::from(windir).join("Fonts"));
    }
    dirs
}

/// Every `.ttf` under `dir`, depth-first, at most a few levels deep.
fn ttf_files(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if depth > 0 {
                ttf_files(&p, depth - 1, out);
            }
        } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")) {
            out.push(p);
        }
    }
}

fn font_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(FONT_ENV) {
        out.push(PathBuf::from(p));
    }
    let mut all = Vec::new();
    for d in font_dirs() {
        ttf_files(&d, 4, &mut all);
    }
    for name in PREFERRED {
        out.extend(
            all.iter()
                .filter(|p| p.file_name().is_some_and(|f| f == *name))
                .cloned(),
        );
    }
    out.extend(all);
    out
}

/// A vertical axis: its range, and whether it is logarithmic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
}

impl Axis {
    /// The axis showing every finite value of `values`, with a margin:
    /// logarithmic when they are all positive and the largest is more than
    /// [`LOG_RATIO`] times the smallest. Not below 0 when no value is.
    pub(crate) fn covering(values: impl IntoIterator<Item = f64>) -> Axis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return Axis {
                lo: 0.0,
                hi: 1.0,
                log: false,
            };
        }
        if lo > 0.0 && hi / lo > LOG_RATIO {
            return Axis {
                lo: lo / 1.25,
                hi: hi * 1.25,
                log: true,
            };
        }
        let span = (hi - lo).max(hi.abs() * 1e-3).max(1e-9);
        let mut bottom = lo - 0.05 * span;
        if lo >= 0.0 {
            bottom = bottom.max(0.0);
        }
        Axis {
            lo: bottom,
            hi: hi + 0.08 * span,
            log: false,
        }
    }

    #[cfg(test)]
    /// Whether `v` is drawn inside the axis.
    pub(crate) fn shows(&self, v: f64) -> bool {
        self.lo <= v && v <= self.hi
    }
}

/// One panel: a caption, an axis label and what is drawn on it.
#[derive(Debug, Clone)]
struct Panel {
    caption: String,
    y_desc: String,
    axis: Axis,
    /// Per curve (baseline first, then the run): its points.
    curves: Vec<Vec<(f64, f64)>>,
    /// Dashed horizontal lines with their legend.
    lines: Vec<(f64, String)>,
}

/// What the plot shows: the time axis, the objective panel and the test
/// panel (when some point has a test value).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    x1: f64,
    objective: Panel,
    test: Option<Panel>,
}

impl Layout {
    pub(crate) fn of(spec: &PlotSpec<'_>) -> Layout {
        let curves: Vec<&[MetricPoint]> = spec
            .baseline
            .iter()
            .map(|c| c.points)
            .chain(std::iter::once(spec.main.points))
            .collect();
        let x1 = curves
            .iter()
            .flat_map(|c| c.iter().map(|p| p.time_s))
            .filter(|t| t.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-6)
            * 1.02;
        let finite = |pts: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
            pts.into_iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect()
        };
        let objective_curves: Vec<Vec<(f64, f64)>> = curves
            .iter()
            .map(|c| finite(c.iter().map(|p| (p.time_s, p.objective)).collect()))
            .collect();
        let goal_line: Vec<(f64, String)> = spec
            .goal
            .filter(|g| g.is_finite())
            .map(|g| (g, format!("goal {g:.5}")))
            .into_iter()
            .collect();
        let objective = Panel {
            caption: "objective vs. training time".into(),
            y_desc: spec.y_label.into(),
            axis: Axis::covering(
                objective_curves
                    .iter()
                    .flatten()
                    .map(|p| p.1)
                    .chain(goal_line.iter().map(|l| l.0)),
            ),
            curves: objective_curves,
            lines: goal_line,
        };
        let (name, axis_name, scale) = match spec.metric {
            TestMetric::Error => ("test error", "test error (%)", 100.0),
            TestMetric::Rmse => ("test RMSE", "test RMSE", 1.0),
        };
        let test_curves: Vec<Vec<(f64, f64)>> = curves
            .iter()
            .map(|c| {
                finite(
                    c.iter()
                        .filter_map(|p| Some((p.time_s, p.test? * scale)))
                        .collect(),
                )
            })
            .collect();
        let test = test_curves.iter().any(|c| !c.is_empty()).then(|| {
            let floor_line: Vec<(f64, String)> = spec
                .floor
                .filter(|f| f.is_finite())
                .map(|f| (f * scale, format!("noise floor {}", super::short_number(f))))
                .into_iter()
                .collect();
            Panel {
                caption: format!("{name} vs. training time"),
                y_desc: axis_name.into(),
                axis: Axis::covering(
                    test_curves
                        .iter()
                        .flatten()
                        .map(|p| p.1)
                        .chain(floor_line.iter().map(|l| l.0)),
                ),
                curves: test_curves,
                lines: floor_line,
            }
        });
        Layout {
            x1,
            objective,
            test,
        }
    }

    #[cfg(test)]
    /// The axis of the objective panel.
    pub(crate) fn objective_axis(&self) -> Axis {
        self.objective.axis
    }

    #[cfg(test)]
    /// The axis of the test panel, if there is one.
    pub(crate) fn test_axis(&self) -> Option<Axis> {
        self.test.as_ref().map(|p| p.axis)
    }

    fn panels(&self) -> impl Iterator<Item = &Panel> {
        std::iter::once(&self.objective).chain(self.test.as_ref())
    }
}

/// Writes the SVG's `<title>` and `<desc>` (the title and the panels) after
/// its opening tag.
fn describe_svg(svg: &Path, title: &str, layout: &Layout) -> std::io::Result<()> {
    let text = std::fs::read_to_string(svg)?;
    let Some(open) = text.find("<svg") else {
        return Ok(());
    };
    let Some(end) = text[open..].find('>').map(|i| open + i + 1) else {
        return Ok(());
    };
    let panels: Vec<String> = layout
        .panels()
        .map(|p| format!("{} ({})", p.caption, p.y_desc))
        .collect();
    let meta = format!(
        "\n<title>{}</title>\n<desc>Panels: {}.</desc>",
        xml_escape(title),
        xml_escape(&panels.join("; "))
    );
    let mut out = String::with_capacity(text.len() + meta.len());
    out.push_str(&text[..end]);
    out.push_str(&meta);
    out.push_str(&text[end..]);
    std::fs::write(svg, out)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Colours of the baseline and of the run.
const BASELINE: RGBColor = RGBColor(200, 60, 40);
const MAIN: RGBColor = RGBColor(30, 90, 200);
const LINE: RGBColor = RGBColor(90, 90, 90);

fn area_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> String {
    e.to_string()
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    spec: &PlotSpec<'_>,
    layout: &Layout,
    text: bool,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(area_err)?;
    let body = if text {
        root.titled(spec.title, (FAMILY, 24)).map_err(area_err)?
    } else {
        root.clone()
    };
    let mut labels: Vec<(&str, RGBColor)> = Vec::new();
    if let Some(b) = &spec.baseline {
        labels.push((b.label, BASELINE));
    }
    labels.push((spec.main.label, MAIN));
    let (top, bottom) = match &layout.test {
        Some(_) => {
            let h = body.dim_in_pixel().1;
            let (a, b) = body.split_vertically(h * 11 / 20);
            (a, Some(b))
        }
        None => (body, None),
    };
    draw_panel(&top, &layout.objective, layout.x1, &labels, text)?;
    if let (Some(area), Some(panel)) = (&bottom, &layout.test) {
        draw_panel(area, panel, layout.x1, &labels, text)?;
    }
    if text {
        if let Some(s) = spec.speedup {
            let (w, h) = top.dim_in_pixel();
            top.draw(&Text::new(
                format!("speedup to goal: {s:.2}x"),
                (w as i32 / 2 - 60, h as i32 / 2 - 20),
                (FAMILY, 26).into_font().color(&BLACK),
            ))
            .map_err(area_err)?;
        }
    }
    Ok(())
}

/// Draws `panel` into `area`, its curves labelled and coloured by `labels`.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    x1: f64,
    labels: &[(&str, RGBColor)],
    text: bool,
) -> Result<(), String> {
    let mut builder = ChartBuilder::on(area);
    builder.margin(15);
    if text {
        builder
            .caption(&panel.caption, (FAMILY, 19))
            .x_label_area_size(45)
            .y_label_area_size(80);
    }
    let (lo, hi) = (panel.axis.lo, panel.axis.hi);
    if panel.axis.log {
        let chart = builder
            .build_cartesian_2d(0f64..x1, (lo..hi).log_scale())
            .map_err(area_err)?;
        fill_chart(chart, panel, x1, labels, text)
    } else {
        let chart = builder
            .build_cartesian_2d(0f64..x1, lo..hi)
            .map_err(area_err)?;
        fill_chart(chart, panel, x1, labels, text)
    }
}

fn fill_chart<'a, DB, Y>(
    mut chart: ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    panel: &Panel,
    x1: f64,
    labels: &[(&str, RGBColor)],
    text: bool,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    {
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(RGBColor(235, 235, 235));
        if text {
            mesh.x_desc("training time (s)")
                .y_desc(panel.y_desc.as_str())
                .label_style((FAMILY, 15))
                .axis_desc_style((FAMILY, 17));
        } else {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw().map_err(area_err)?;
    }
    for (pts, &(label, color)) in panel.curves.iter().zip(labels) {
        if pts.is_empty() {
            continue;
        }
        let style = ShapeStyle::from(&color).stroke_width(3);
        let drawn = chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(area_err)?;
        if text {
            drawn
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(area_err)?;
    }
    for (y, label) in &panel.lines {
        let style = ShapeStyle::from(&LINE).stroke_width(2);
        let drawn = chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, *y), (x1, *y)],
                10,
                6,
                style,
            ))
            .map_err(area_err)?;
        if text {
            drawn
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FAMILY, 16))
            .draw()
            .map_err(area_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;

    /// A falling objective from 1.0 with a test metric that falls too.
    fn curve(scale: f64) -> Vec<MetricPoint> {
        (0..12)
            .map(|i| {
                let t = f64::from(i) * scale;
                let objective = 0.3 + 0.7 / (1.0 + 3.0 * f64::from(i));
                MetricPoint {
                    time_s: t,
                    epoch: f64::from(i),
                    examples: 1000 * i as u64,
                    objective,
                    test: Some(objective / 3.0),
                }
            })
            .collect()
    }

    fn spec<'a>(
        main: &'a [MetricPoint],
        baseline: Option<&'a [MetricPoint]>,
        metric: TestMetric,
    ) -> PlotSpec<'a> {
        PlotSpec {
            title: "test plot",
            y_label: "objective (λ/2 |w|² + mean hinge loss)",
            metric,
            main: Curve {
                label: "2 ranks",
                points: main,
            },
            baseline: baseline.map(|points| Curve {
                label: "1 rank",
                points,
            }),
            goal: None,
            speedup: None,
            floor: None,
        }
    }

    fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
    }

    #[test]
    fn the_objective_axis_covers_the_whole_curve() {
        let single = curve(1.0);
        let multi = curve(0.5);
        let mut s = spec(&multi, Some(&single), TestMetric::Error);
        s.goal = Some(0.25);
        let layout = Layout::of(&s);
        let axis = layout.objective_axis();
        let (lo, hi) = range(single.iter().chain(&multi).map(|p| p.objective));
        // The initial objective (1.0) is on the plot, as are the lowest
        // point and the goal.
        assert_eq!(hi, 1.0);
        assert!(!axis.log, "{axis:?}");
        assert!(
            axis.shows(lo) && axis.shows(hi) && axis.shows(0.25),
            "{axis:?}"
        );
        // The test panel covers the test errors, in percent.
        let test = layout.test_axis().expect("a test panel");
        let (tlo, thi) = range(multi.iter().map(|p| 100.0 * p.test.unwrap()));
        assert!(test.shows(tlo) && test.shows(thi), "{test:?}");
    }

    #[test]
    fn a_wide_range_gets_a_log_axis() {
        let mut pts = curve(1.0);
        for (i, p) in pts.iter_mut().enumerate() {
            p.objective = 100.0 / (1.0 + 10.0 * i as f64);
        }
        let layout = Layout::of(&spec(&pts, None, TestMetric::Error));
        let axis = layout.objective_axis();
        assert!(axis.log, "{axis:?}");
        let (lo, hi) = range(pts.iter().map(|p| p.objective));
        assert!(hi / lo > LOG_RATIO);
        assert!(axis.shows(lo) && axis.shows(hi), "{axis:?}");
        assert!(axis.lo > 0.0);
        // Within the ratio, or down to zero: linear, from 0 at the lowest.
        let flat = Axis::covering([1.0, 0.1]);
        assert!(!flat.log && flat.shows(0.1) && flat.shows(1.0), "{flat:?}");
        let zero = Axis::covering([0.0, 5.0, 1.0]);
        assert!(!zero.log && zero.lo == 0.0 && zero.shows(5.0), "{zero:?}");
        let none = Axis::covering([f64::NAN]);
        assert!(none.lo < none.hi);
    }

    #[test]
    fn the_noise_floor_is_on_the_test_panel_and_its_axis() {
        let mut pts = curve(1.0);
        for p in &mut pts {
            p.test = p.test.map(|t| 0.8 + t);
        }
        let mut s = spec(&pts, None, TestMetric::Rmse);
        s.floor = Some(0.5);
        let layout = Layout::of(&s);
        let test = layout.test.as_ref().unwrap();
        assert_eq!(test.lines, vec![(0.5, "noise floor 0.5".to_string())]);
        assert!(test.axis.shows(0.5), "{:?}", test.axis);
        // Without a test value there is no test panel, floor or not.
        for p in &mut pts {
            p.test = None;
        }
        assert!(Layout::of(&spec(&pts, None, TestMetric::Rmse))
            .test_axis()
            .is_none());
    }

    #[test]
    fn writes_png_and_svg_with_both_panels_and_a_baseline() {
        let dir = TempDir::new("train-plot");
        let single = curve(1.0);
        let multi = curve(0.5);
        let mut s = spec(&multi, Some(&single), TestMetric::Error);
        s.goal = Some(0.36);
        s.speedup = Some(2.0);
        let files = plot_objective(&dir.path().join("objective"), &s).unwrap();
        let png = std::fs::read(&files.png).unwrap();
        assert!(png.len() > 1000, "png of {} bytes", png.len());
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(&files.svg).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        assert!(svg.contains("<title>test plot</title>"), "{}", &svg[..400]);
        assert!(
            svg.contains(
                "<desc>Panels: objective vs. training time (objective (λ/2 |w|² + \
                          mean hinge loss)); test error vs. training time (test error (%)).</desc>"
            ),
            "{}",
            &svg[..600]
        );
        if files.has_text {
            for caption in [
                "objective vs. training time",
                "test error vs. training time",
                "training time (s)",
                "test error (%)",
                "speedup to goal: 2.00x",
                "2 ranks",
                "1 rank",
                "goal 0.36000",
            ] {
                assert!(svg.contains(caption), "no `{caption}` in the SVG");
            }
        }
    }

    #[test]
    fn an_mf_plot_shows_the_rmse_panel_and_the_noise_floor() {
        let dir = TempDir::new("train-plot-mf");
        let pts = curve(1.0);
        let mut s = spec(&pts, None, TestMetric::Rmse);
        s.y_label = "training RMSE";
        s.floor = Some(0.5);
        let files = plot_objective(&dir.path().join("objective"), &s).unwrap();
        let svg = std::fs::read_to_string(&files.svg).unwrap();
        assert!(svg.contains("test RMSE vs. training time (test RMSE)"));
        if files.has_text {
            assert!(svg.contains("noise floor 0.5"));
            assert!(svg.contains("training RMSE"));
        }
        // Without a test set: the objective panel alone.
        let bare: Vec<MetricPoint> = pts
            .iter()
            .map(|p| MetricPoint { test: None, ..*p })
            .collect();
        let files = plot_objective(
            &dir.path().join("bare"),
            &spec(&bare, None, TestMetric::Rmse),
        )
        .unwrap();
        let svg = std::fs::read_to_string(&files.svg).unwrap();
        assert!(svg.contains("<desc>Panels: objective vs. training time"));
        assert!(!svg.contains("test RMSE"));
    }

    #[test]
    fn no_points_is_an_error() {
        let dir = TempDir::new("train-plot-empty");
        let err =
            plot_objective(&dir.path().join("x"), &spec(&[], None, TestMetric::Error)).unwrap_err();
        assert!(matches!(err, TrainError::Plot { .. }), "{err}");
    }
}
