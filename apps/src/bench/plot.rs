//! The benchmark report's plot: throughput against size on log-log axes,
//! one panel per comparison, one line per system with the spread over runs
//! as a vertical bar, written as PNG and SVG.
//!
//! Text is drawn with a TrueType font found at run time: the file named by
//! `MALT_PLOT_FONT`, else a usual sans-serif font under the system font
//! directories, else any `.ttf` there; without one the plot has no text.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

use super::report::Row;
use crate::train::plot::{font_available, FAMILY};
const PANEL: (u32, u32) = (1000, 460);
const COLORS: [RGBColor; 5] = [
    RGBColor(30, 90, 200),
    RGBColor(200, 60, 40),
    RGBColor(40, 150, 70),
    RGBColor(120, 120, 120),
    RGBColor(150, 80, 170),
];

/// One line: points `(bytes, median, low, high)`.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(x, median, min, max)` per size.
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// One comparison.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title.
    pub title: String,
    /// Vertical axis label.
    pub y_label: String,
    /// Lines.
    pub series: Vec<Series>,
}

/// The lines of one panel: for each of `systems` (`(key, legend)`) measured
/// at `ranks` ranks, its median and spread over runs at every size of
/// `rows`. Exchanges are drawn as vector Gbit/s per round, so that faster is
/// higher in both kinds of panel.
pub fn series(rows: &[Row], ranks: usize, systems: &[(&str, &str)], exchange: bool) -> Vec<Series> {
    systems
        .iter()
        .filter_map(|(key, label)| {
            let points: Vec<(f64, f64, f64, f64)> = rows
                .iter()
                .filter(|r| r.ranks == ranks)
                .filter_map(|r| {
                    let s = r.systems.get(*key)?;
                    let x = r.bytes as f64;
                    // Exchanges: vector bytes per second of round, in Gbit/s.
                    let y = |v: f64| if exchange { x * 8.0 / (v * 1e3) } else { v };
                    let (a, b) = (y(s.value.min), y(s.value.max));
                    Some((x, y(s.value.median), a.min(b), a.max(b)))
                })
                .collect();
            (!points.is_empty()).then(|| Series {
                label: label.to_string(),
                points,
            })
        })
        .collect()
}

/// Axis label of a byte count at a power of ten: 10 kB, 1 MB, ...
fn size_label(x: f64) -> String {
    let (v, unit) = if x >= 1e9 {
        (x / 1e9, "GB")
    } else if x >= 1e6 {
        (x / 1e6, "MB")
    } else if x >= 1e3 {
        (x / 1e3, "kB")
    } else {
        (x, "B")
    };
    format!("{} {unit}", (v * 10.0).round() / 10.0)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    text: bool,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let xs = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [p.2, p.3]))
        .filter(|y| *y > 0.0 && y.is_finite());
    let (x0, x1) = xs.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    let (y0, y1) = ys.fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
    if !(x0.is_finite() && y0.is_finite() && x1 > 0.0 && y1 > 0.0) {
        return Ok(());
    }
    let mut builder = ChartBuilder::on(area);
    builder.margin(18);
    if text {
        builder
            .caption(&panel.title, (FAMILY, 20))
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    let mut chart = builder
        .build_cartesian_2d(
            (x0 / 1.5..x1 * 1.5).log_scale(),
            (y0 / 1.5..y1 * 1.5).log_scale(),
        )
        .map_err(e)?;
    {
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(RGBColor(235, 235, 235));
        if text {
            mesh.x_desc("size (bytes per message or vector)")
                .y_desc(panel.y_label.as_str())
                .x_label_formatter(&|x| size_label(*x))
                .label_style((FAMILY, 14))
                .axis_desc_style((FAMILY, 15));
        } else {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw().map_err(e)?;
    }
    for (i, s) in panel.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = ShapeStyle::from(&color).stroke_width(3);
        let line: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.1 > 0.0)
            .map(|p| (p.0, p.1))
            .collect();
        let drawn = chart
            .draw_series(LineSeries::new(line.clone(), style))
            .map_err(e)?;
        if text {
            drawn
                .label(s.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(e)?;
        chart
            .draw_series(s.points.iter().filter(|p| p.2 > 0.0).map(|p| {
                PathElement::new(
                    vec![(p.0, p.2), (p.0, p.3)],
                    ShapeStyle::from(&color).stroke_width(2),
                )
            }))
            .map_err(e)?;
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

fn draw_all<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[Panel],
    text: bool,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel, text)?;
    }
    Ok(())
}

/// Writes `<stem>.png` and `<stem>.svg`; on failure, the file and why.
pub fn draw(stem: &Path, panels: &[Panel]) -> Result<(), (String, String)> {
    let text = font_available();
    let size = (PANEL.0, PANEL.1 * panels.len().max(1) as u32);
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let fail = |p: &Path, m: String| (p.display().to_string(), m);
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_all(&root, panels, text).map_err(|m| fail(&png, m))?;
        root.present().map_err(|m| fail(&png, m.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw_all(&root, panels, text).map_err(|m| fail(&svg, m))?;
        root.present().map_err(|m| fail(&svg, m.to_string()))?;
    }
    Ok(())
}
