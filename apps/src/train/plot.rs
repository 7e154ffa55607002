//! Objective against training time, as PNG and SVG, in the style of MALT's
//! figures: the run's curve, optionally the single-rank run on the same axes,
//! a dashed line at the goal loss and the speedup to the goal written on the
//! plot.
//!
//! Text is drawn with a TrueType font found at run time (no system font
//! library is linked): the file named by `MALT_PLOT_FONT`, else the first of
//! a few usual sans-serif fonts under the system font directories (DejaVu
//! Sans, Liberation Sans, Noto Sans, ...), else any `.ttf` found there. When
//! no font is found the plot is drawn without text.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::metrics::MetricPoint;
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
const SIZE: (u32, u32) = (960, 600);

/// One curve of a plot.
#[derive(Debug, Clone, Copy)]
pub struct Curve<'a> {
    /// Legend text.
    pub label: &'a str,
    /// The points; `time_s` and `objective` are plotted.
    pub points: &'a [MetricPoint],
}

/// What to draw.
#[derive(Debug, Clone, Copy)]
pub struct PlotSpec<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// Label of the vertical axis.
    pub y_label: &'a str,
    /// The run.
    pub main: Curve<'a>,
    /// The single-rank run to compare with.
    pub baseline: Option<Curve<'a>>,
    /// The goal loss, drawn as a dashed horizontal line.
    pub goal: Option<f64>,
    /// The speedup to the goal, written on the plot.
    pub speedup: Option<f64>,
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
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, spec, text).map_err(fail(&png))?;
        root.present().map_err(|e| fail(&png)(e.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, spec, text).map_err(fail(&svg))?;
        root.present().map_err(|e| fail(&svg)(e.to_string()))?;
    }
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

/// Splits a polyline into the runs that lie at or below `top`, cutting the
/// segments that cross it at the crossing.
fn clip_top(points: &[(f64, f64)], top: f64) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    let cross = |a: (f64, f64), b: (f64, f64)| {
        let f = (top - a.1) / (b.1 - a.1);
        (a.0 + f * (b.0 - a.0), top)
    };
    for (i, &p) in points.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| points[j]);
        if p.1 <= top {
            if let Some(q) = prev.filter(|q| q.1 > top) {
                cur.push(cross(q, p));
            }
            cur.push(p);
        } else if let Some(q) = prev.filter(|q| q.1 <= top) {
            cur.push(cross(q, p));
            runs.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        runs.push(cur);
    }
    runs
}

/// The vertical range: from the lowest objective to the highest one after
/// the first evaluation (the initial model's objective is usually far above
/// the rest and would flatten the interesting part), with a margin.
fn y_range(curves: &[&[MetricPoint]], goal: Option<f64>) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for pts in curves {
        for (i, p) in pts.iter().enumerate() {
            lo = lo.min(p.objective);
            if i > 0 || pts.len() == 1 {
                hi = hi.max(p.objective);
            }
        }
    }
    if let Some(g) = goal {
        lo = lo.min(g);
        hi = hi.max(g);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(hi.abs() * 1e-3).max(1e-9);
    (lo - 0.05 * span, hi + 0.08 * span)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    spec: &PlotSpec<'_>,
    text: bool,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let mut curves: Vec<&[MetricPoint]> = vec![spec.main.points];
    if let Some(b) = &spec.baseline {
        curves.push(b.points);
    }
    let (y0, y1) = y_range(&curves, spec.goal);
    let x1 = curves
        .iter()
        .flat_map(|c| c.iter().map(|p| p.time_s))
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.02;

    let mut builder = ChartBuilder::on(root);
    builder.margin(20);
    if text {
        builder
            .caption(spec.title, (FAMILY, 24))
            .x_label_area_size(50)
            .y_label_area_size(80);
    }
    let mut chart = builder.build_cartesian_2d(0f64..x1, y0..y1).map_err(e)?;
    {
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(RGBColor(235, 235, 235));
        if text {
            mesh.x_desc("training time (s)")
                .y_desc(spec.y_label)
                .label_style((FAMILY, 15))
                .axis_desc_style((FAMILY, 17));
        } else {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw().map_err(e)?;
    }

    let series: Vec<(Curve<'_>, RGBColor)> = spec
        .baseline
        .iter()
        .map(|c| (*c, RGBColor(200, 60, 40)))
        .chain(std::iter::once((spec.main, RGBColor(30, 90, 200))))
        .collect();
    for (curve, color) in series {
        let pts: Vec<(f64, f64)> = curve
            .points
            .iter()
            .map(|p| (p.time_s, p.objective))
            .collect();
        let style = ShapeStyle::from(&color).stroke_width(3);
        let mut first = true;
        for run in clip_top(&pts, y1) {
            let drawn = chart.draw_series(LineSeries::new(run, style)).map_err(e)?;
            if first && text {
                drawn
                    .label(curve.label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            }
            first = false;
        }
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| p.1 <= y1)
                    .map(|&p| Circle::new(p, 3, color.filled())),
            )
            .map_err(e)?;
    }

    if let Some(goal) = spec.goal {
        let gray = RGBColor(90, 90, 90);
        let style = ShapeStyle::from(&gray).stroke_width(2);
        let drawn = chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, goal), (x1, goal)],
                10,
                6,
                style,
            ))
            .map_err(e)?;
        if text {
            drawn
                .label(format!("goal {goal:.5}"))
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
            .map_err(e)?;
        if let Some(s) = spec.speedup {
            let (w, h) = root.dim_in_pixel();
            root.draw(&Text::new(
                format!("speedup to goal: {s:.2}x"),
                (w as i32 / 2 - 60, h as i32 / 2 - 40),
                (FAMILY, 26).into_font().color(&BLACK),
            ))
            .map_err(e)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;

    fn curve(scale: f64) -> Vec<MetricPoint> {
        (0..12)
            .map(|i| {
                let t = f64::from(i) * scale;
                MetricPoint {
                    time_s: t,
                    epoch: f64::from(i),
                    examples: 1000 * i as u64,
                    objective: 0.3 + 0.7 / (1.0 + 3.0 * f64::from(i)),
                    test: None,
                }
            })
            .collect()
    }

    #[test]
    fn clip_cuts_at_the_top() {
        let runs = clip_top(&[(0.0, 2.0), (1.0, 0.0), (2.0, 0.5)], 1.0);
        assert_eq!(runs, vec![vec![(0.5, 1.0), (1.0, 0.0), (2.0, 0.5)]]);
        let runs = clip_top(&[(0.0, 0.0), (1.0, 2.0), (2.0, 0.0)], 1.0);
        assert_eq!(
            runs,
            vec![vec![(0.0, 0.0), (0.5, 1.0)], vec![(1.5, 1.0), (2.0, 0.0)]]
        );
        assert!(clip_top(&[(0.0, 5.0)], 1.0).is_empty());
    }

    #[test]
    fn y_range_skips_the_initial_point_and_covers_the_goal() {
        let pts = curve(1.0);
        let (lo, hi) = y_range(&[&pts], Some(0.2));
        assert!(lo < 0.2);
        assert!(hi < 1.0 && hi > pts[1].objective, "{hi}");
    }

    #[test]
    fn writes_png_and_svg_with_a_baseline() {
        let dir = TempDir::new("train-plot");
        let single = curve(1.0);
        let multi = curve(0.5);
        let files = plot_objective(
            &dir.path().join("objective"),
            &PlotSpec {
                title: "test plot",
                y_label: "objective",
                main: Curve {
                    label: "2 ranks",
                    points: &multi,
                },
                baseline: Some(Curve {
                    label: "1 rank",
                    points: &single,
                }),
                goal: Some(0.36),
                speedup: Some(2.0),
            },
        )
        .unwrap();
        let png = std::fs::read(&files.png).unwrap();
        assert!(png.len() > 1000, "png of {} bytes", png.len());
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(&files.svg).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        if files.has_text {
            assert!(svg.contains("speedup to goal: 2.00x"));
            assert!(svg.contains("2 ranks") && svg.contains("1 rank"));
        }
    }

    #[test]
    fn no_points_is_an_error() {
        let dir = TempDir::new("train-plot-empty");
        let err = plot_objective(
            &dir.path().join("x"),
            &PlotSpec {
                title: "t",
                y_label: "y",
                main: Curve {
                    label: "none",
                    points: &[],
                },
                baseline: None,
                goal: None,
                speedup: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, TrainError::Plot { .. }), "{err}");
    }
}
