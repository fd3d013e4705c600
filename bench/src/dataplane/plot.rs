//! `dataplane.png`: one bar chart per figure, a bar per configuration,
//! plus the BPF programs' per-packet cost.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::report::{fmt, Report};
use super::results::Figure;
use super::topology::Config;
use crate::stats::median;

const FONT_ENV: &str = "GROUPVPN_PLOT_FONT";
const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const COLOURS: [RGBColor; 4] = [
    RGBColor(120, 120, 120), // veth
    RGBColor(200, 60, 40),   // kernel
    RGBColor(60, 110, 190),  // userspace
    RGBColor(60, 150, 70),   // boringtun
];

/// Plotters' `ab_glyph` backend draws text only with a registered font:
/// DejaVu Sans (Debian `fonts-dejavu-core`) or the file `GROUPVPN_PLOT_FONT`
/// names. `Err` says why there is none.
fn register_font() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = std::env::var(FONT_ENV).unwrap_or_else(|_| DEFAULT_FONT.to_owned());
        let bytes = std::fs::read(&path).map_err(|e| {
            format!("font {path}: {e} (install fonts-dejavu-core or set {FONT_ENV})")
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a usable font"))
    })
    .clone()
}

/// One panel: title, unit, and a value (or none) per bar.
struct Panel {
    title: String,
    labels: Vec<String>,
    values: Vec<Option<f64>>,
    colours: Vec<RGBColor>,
    text: Vec<String>,
}

/// Draws the figure into `path`. `Ok(false)` (with a message on stderr)
/// when no font is available: the plot is optional, the tables are not.
pub fn draw(report: &Report, path: &Path) -> Result<bool> {
    if let Err(e) = register_font() {
        eprintln!("bench: no plot ({e})");
        return Ok(false);
    }
    let mut panels = Vec::new();
    for f in Figure::ALL {
        let values: Vec<Option<f64>> = Config::ALL
            .iter()
            .map(|c| report.configs.get(c).and_then(|r| r.median(f)))
            .collect();
        let scale = if f == Figure::UdpPps { 1e-3 } else { 1.0 };
        panels.push(Panel {
            title: if f == Figure::UdpPps {
                "UDP MTU-size (kpkt/s)".to_owned()
            } else {
                f.heading().to_owned()
            },
            labels: Config::ALL.iter().map(|c| c.name().to_owned()).collect(),
            text: values.iter().map(|v| fmt(f, *v)).collect(),
            values: values.iter().map(|v| v.map(|x| x * scale)).collect(),
            colours: COLOURS.to_vec(),
        });
    }
    let bpf = [
        median(&report.bpf.egress_ns),
        median(&report.bpf.ingress_ns),
    ];
    panels.push(Panel {
        title: "BPF ns per 1,400-byte packet (kernel)".to_owned(),
        labels: vec!["vpn_encrypt".into(), "vpn_decrypt".into()],
        text: bpf
            .iter()
            .map(|v| v.map_or("–".to_owned(), |x| format!("{x:.0}")))
            .collect(),
        values: bpf.to_vec(),
        colours: vec![COLOURS[1], COLOURS[1]],
    });
    let root = BitMapBackend::new(path, (1200, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let (title, body) = root.split_vertically(50);
    title
        .titled(
            &format!(
                "GroupVPN data plane, medians of {} rounds",
                report.method.runs
            ),
            ("sans-serif", 24),
        )
        .map_err(|e| anyhow!("plot: {e}"))?;
    for (area, panel) in body.split_evenly((2, 3)).iter().zip(&panels) {
        draw_panel(area, panel)?;
    }
    root.present().map_err(|e| anyhow!("plot: {e}"))?;
    Ok(true)
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    p: &Panel,
) -> Result<()> {
    let n = p.values.len();
    let ymax = p.values.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    let ymax = if ymax > 0.0 { ymax * 1.2 } else { 1.0 };
    // Bar i spans [i + 0.15, i + 0.85]; its label sits at the tick i + 0.5
    // (ticks every 0.5 for this many labels).
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 17))
        .margin(10)
        .x_label_area_size(28)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..n as f64, 0f64..ymax)
        .map_err(|e| anyhow!("plot: {e}"))?;
    let labels = p.labels.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(2 * n + 1)
        .x_label_formatter(&move |x| {
            let i = x.floor();
            if (x - i - 0.5).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    chart
        .draw_series(p.values.iter().enumerate().filter_map(|(i, v)| {
            let v = (*v)?;
            let colour = p.colours.get(i).copied().unwrap_or(BLACK);
            let x = i as f64;
            Some(Rectangle::new(
                [(x + 0.15, 0.0), (x + 0.85, v)],
                colour.filled(),
            ))
        }))
        .map_err(|e| anyhow!("plot: {e}"))?;
    chart
        .draw_series(
            p.values
                .iter()
                .zip(&p.text)
                .enumerate()
                .filter_map(|(i, (v, t))| {
                    v.map(|v| {
                        Text::new(
                            t.clone(),
                            (i as f64 + 0.5, v),
                            ("sans-serif", 13).into_font().color(&BLACK).pos(
                                plotters::style::text_anchor::Pos::new(
                                    plotters::style::text_anchor::HPos::Center,
                                    plotters::style::text_anchor::VPos::Bottom,
                                ),
                            ),
                        )
                    })
                }),
        )
        .map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}
