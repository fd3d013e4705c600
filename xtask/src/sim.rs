//! `cargo xtask sim ...`: thin front-end over the simulators in `vpn-core`
//! (`vpn_core::sim`): parse flags, load the matrix, run, write
//! `relay-sim.json`, `relay-sim.md` and `relay-sim.png`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use vpn_core::relay::Strategy;
use vpn_core::sim::{
    self, report, AsymmetryPolicy, LoadOptions, LoadReport, MissingPolicy, RelaySimParams,
    RelaySimReport, Unit,
};

#[derive(clap::Args)]
pub struct SimArgs {
    #[command(subcommand)]
    cmd: SimCmd,
}

#[derive(clap::Subcommand)]
enum SimCmd {
    /// Relay selection vs overlay routing vs direct on a latency matrix
    /// (paper Fig. 5). Writes DIR/relay-sim.{json,md,png}.
    Relays(RelaysArgs),
}

#[derive(clap::Args)]
struct RelaysArgs {
    /// Square RTT matrix, plain or gzip, tab- or space-separated.
    #[arg(long)]
    matrix: PathBuf,
    /// Unit of the matrix values: ms or s.
    #[arg(long, default_value = "ms")]
    unit: Unit,
    /// Missing entries (0 or negative off the diagonal): drop-host, skip-pair or error.
    #[arg(long, default_value = "drop-host")]
    missing: MissingPolicy,
    /// Asymmetric entries: mean, max, min or keep (directed).
    #[arg(long, default_value = "mean")]
    asymmetry: AsymmetryPolicy,
    /// Network sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "25,50,100,200,400")]
    sizes: Vec<usize>,
    /// Trials per size.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Seed (the results are a function of it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kademlia bucket size.
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Worker threads (default: all cores; results do not depend on it).
    #[arg(long)]
    threads: Option<usize>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: SimArgs) -> anyhow::Result<()> {
    match a.cmd {
        SimCmd::Relays(r) => relays(r),
    }
}

fn relays(a: RelaysArgs) -> anyhow::Result<()> {
    let opts = LoadOptions {
        unit: a.unit,
        missing: a.missing,
        asymmetry: a.asymmetry,
    };
    let mut params = RelaySimParams {
        sizes: a.sizes,
        trials: a.trials,
        seed: a.seed,
        ..RelaySimParams::default()
    };
    params.overlay.k = a.k;
    if let Some(t) = a.threads {
        params.threads = t;
    }
    run_relays(&a.matrix, opts, &params, &a.out, None)
}

/// Loads, runs, writes. `data_note` describes the data set in the report.
fn run_relays(
    matrix_path: &Path,
    opts: LoadOptions,
    params: &RelaySimParams,
    out: &Path,
    data_note: Option<&str>,
) -> anyhow::Result<()> {
    let (matrix, load) = sim::load(matrix_path, opts)
        .with_context(|| format!("loading {}", matrix_path.display()))?;
    eprintln!(
        "matrix {}: {} hosts ({} dropped, {} unknown pairs, {} asymmetric pairs)",
        matrix_path.display(),
        matrix.len(),
        load.dropped_hosts.len(),
        load.missing_pairs,
        load.asymmetric_pairs
    );
    let machine = machine();
    let started = Instant::now();
    let result = sim::run(&matrix, params)?;
    let elapsed = started.elapsed();
    eprintln!("simulated in {:.1} s", elapsed.as_secs_f64());
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("/"));
    let ctx = RunContext {
        matrix_label: matrix_path
            .strip_prefix(root)
            .unwrap_or(matrix_path)
            .display()
            .to_string(),
        opts,
        load: &load,
        hosts: matrix.len(),
        params,
        elapsed_s: elapsed.as_secs_f64(),
        machine,
        data_note: data_note.unwrap_or(USER_DATA_NOTE),
    };
    write(
        &out.join("relay-sim.json"),
        &(serde_json::to_string_pretty(&json(&result, &ctx)?)? + "\n"),
    )?;
    write(&out.join("relay-sim.md"), &markdown(&result, &ctx))?;
    let title = match data_note {
        Some(_) => {
            "Mean RTT, pairs two or more overlay hops apart (PlanetLab 490, stand-in for King)"
                .to_owned()
        }
        None => format!(
            "Mean RTT, pairs two or more overlay hops apart ({})",
            ctx.matrix_label
        ),
    };
    draw(&result, &out.join("relay-sim.png"), &title)?;
    eprint!("{}", report::table(&result));
    for t in report::check_targets(&result) {
        eprintln!("[{}] {}", if t.met { "met" } else { "NOT met" }, t.what);
    }
    eprintln!("wrote {}/relay-sim.{{json,md,png}}", out.display());
    Ok(())
}

const USER_DATA_NOTE: &str = "user-supplied matrix";

/// Where the shipped matrix comes from; said wherever its results are shown.
const PLANETLAB_NOTE: &str = "PlanetLab all-pairs RTT matrix, 490 hosts (R. Zhu et al., IEEE/ACM ToN 2017; \
repository uofa-rzhu3/NetLatency-Data, MIT licence; see data/latency/README.md). It stands in for the MIT \
King data set (1,740 hosts) that the paper's Fig. 5 uses, which is not available here, so absolute numbers \
differ from the paper's.";

struct RunContext<'a> {
    matrix_label: String,
    opts: LoadOptions,
    load: &'a LoadReport,
    hosts: usize,
    params: &'a RelaySimParams,
    elapsed_s: f64,
    machine: Machine,
    data_note: &'a str,
}

struct Machine {
    /// `/proc/loadavg`'s 1-minute figure when the run started.
    load: String,
    nproc: usize,
    cpu: String,
    kernel: String,
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    Machine {
        load,
        nproc: std::thread::available_parallelism().map_or(1, usize::from),
        cpu,
        kernel,
    }
}

fn json(r: &RelaySimReport, ctx: &RunContext<'_>) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(r)?;
    let p = ctx.params;
    v["meta"] = serde_json::json!({
        "matrix": ctx.matrix_label,
        "data_set": ctx.data_note,
        "hosts": ctx.hosts,
        "unit": ctx.opts.unit.to_string(),
        "missing": ctx.opts.missing.to_string(),
        "asymmetry": ctx.opts.asymmetry.to_string(),
        "dropped_hosts": ctx.load.dropped_hosts,
        "unknown_pairs": ctx.load.missing_pairs,
        "asymmetric_pairs": ctx.load.asymmetric_pairs,
        "trials": p.trials,
        "sizes": p.sizes,
        "threads": p.threads,
        "elapsed_s": ctx.elapsed_s,
        "latency": "round-trip time in ms; a path's latency is the sum of its hops' RTTs",
        "machine": {"load_average_at_start": ctx.machine.load, "nproc": ctx.machine.nproc, "cpu": ctx.machine.cpu, "kernel": ctx.machine.kernel},
        "variants": p.strategies.iter().map(|v| (v.name.clone(), serde_json::Value::from(format!("{:?}", v.config)))).collect::<serde_json::Map<_, _>>(),
        "overlay": format!("{:?}", p.overlay),
    });
    if let Some(rows) = v["rows"].as_array_mut() {
        for (row, r) in rows.iter_mut().zip(&r.rows) {
            let ours = r.relay_ms[Strategy::DEFAULT.name()];
            row["default_gain_over_overlay_pct"] =
                report::improvement_pct(r.overlay_ms, ours).into();
            row["default_reduction_vs_overlay_pct"] =
                report::reduction_pct(r.overlay_ms, ours).into();
            row["default_over_direct_pct"] = report::over_direct_pct(r.direct_ms, ours).into();
            row["found_without_creating_overlap"] = r
                .strategies
                .iter()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        serde_json::Value::from(s.found_without_creating_overlap),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
    }
    Ok(v)
}

/// The paper's Fig. 5 figures (King data set, Brunet overlay) next to ours.
fn paper_comparison(r: &RelaySimReport) -> String {
    let mut s = String::from(
        "## Comparison with the paper\n\nThe paper (section V-A, Fig. 5; King data set, Brunet ring overlay) \
reports that two-hop relays improve on overlay routing by about 54% at 100 nodes and 87% at 200.\n\n\
| size | paper (Fig. 5) | default here | paper's strategy here |\n|---:|---:|---:|---:|\n",
    );
    for (size, paper) in [(100, "54%"), (200, "87%")] {
        let Some(row) = r.rows.iter().find(|x| x.size == size && x.pairs > 0.0) else {
            continue;
        };
        let gain = |name: &str| {
            row.relay_ms.get(name).map_or_else(
                || "–".to_owned(),
                |&v| format!("{:.0}%", report::improvement_pct(row.overlay_ms, v)),
            )
        };
        s.push_str(&format!(
            "| {size} | {paper} | {} | {} |\n",
            gain(Strategy::DEFAULT.name()),
            gain(Strategy::PaperClosest.name())
        ));
    }
    s.push_str(
        "\nThe overlays differ (Kademlia with k = 20 here: short paths, about two hops) and so do the data \
sets, so the comparison is of orders of magnitude, not digits.\n",
    );
    s
}

fn markdown(r: &RelaySimReport, ctx: &RunContext<'_>) -> String {
    let p = ctx.params;
    let m = &ctx.machine;
    let mut s = String::new();
    s.push_str("# Relay selection vs overlay routing vs direct (paper Fig. 5)\n\n");
    s.push_str(&format!(
        "Generated by `cargo xtask sim relays` (`cargo xtask bench --suite relay-sim` for this file); \
see `docs/relays.md` for the model and its caveats.\n\n\
- Data: {}\n- Matrix: `{}`: {} hosts used (unit {}, missing entries: {}, asymmetry: {}; \
{} hosts dropped, {} unknown pairs, {} asymmetric pairs).\n\
- Run: sizes {:?}, {} trials per size, seed {}, k = {}, default strategy `{}`; {} threads, {:.1} s.\n\
- Machine: nproc {}, CPU {}, kernel {}; 1-minute load average {} when the run started (the time above is wall-clock on a shared machine).\n\n",
        ctx.data_note,
        ctx.matrix_label,
        ctx.hosts,
        ctx.opts.unit,
        ctx.opts.missing,
        ctx.opts.asymmetry,
        ctx.load.dropped_hosts.len(),
        ctx.load.missing_pairs,
        ctx.load.asymmetric_pairs,
        p.sizes,
        p.trials,
        p.seed,
        p.overlay.k,
        r.default_strategy,
        p.threads,
        ctx.elapsed_s,
        m.nproc,
        m.cpu,
        m.kernel,
        m.load,
    ));
    s.push_str(
        "Mean round-trip time in ms over all ordered pairs whose overlay path takes two hops or more, \
averaged over trials. Gain over overlay = overlay / relay - 1 (the paper's \"performance increase\").\n\n",
    );
    s.push_str(&report::table(r));
    s.push_str("\n![relay latency vs network size](relay-sim.png)\n\n");
    s.push_str(&paper_comparison(r));
    s.push_str("\n## Targets\n\n");
    for t in report::check_targets(r) {
        s.push_str(&format!(
            "- [{}] {}\n",
            if t.met { "x" } else { " " },
            t.what
        ));
    }
    s.push_str("\n## Per strategy\n\n");
    s.push_str(&report::details_table(r));
    s
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The shipped benchmark: the PlanetLab 490 matrix at sizes 25 to 490, 20
/// trials, seed 1. `cargo xtask bench --suite relay-sim` calls this.
pub fn bench_suite(out_dir: &Path) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let matrix = root.join("data/latency/planetlab490-slice1.tsv.gz");
    let params = RelaySimParams {
        sizes: vec![25, 50, 100, 200, 400, 490],
        trials: 20,
        seed: 1,
        ..RelaySimParams::default()
    };
    run_relays(
        &matrix,
        LoadOptions::default(),
        &params,
        out_dir,
        Some(PLANETLAB_NOTE),
    )
}

/// The figure: mean RTT vs network size for direct, overlay and each strategy.
fn draw(r: &RelaySimReport, path: &Path, title: &str) -> anyhow::Result<()> {
    use plotters::prelude::*;
    register_font()?;
    let series: Vec<(String, Vec<(f64, f64)>)> = {
        let mut v = vec![
            (
                "overlay routing".to_owned(),
                r.rows
                    .iter()
                    .map(|x| (x.size as f64, x.overlay_ms))
                    .collect(),
            ),
            (
                "direct".to_owned(),
                r.rows
                    .iter()
                    .map(|x| (x.size as f64, x.direct_ms))
                    .collect(),
            ),
        ];
        let names: Vec<&String> = r
            .rows
            .first()
            .map(|x| x.relay_ms.keys().collect())
            .unwrap_or_default();
        for name in names {
            let pts: Vec<(f64, f64)> = r
                .rows
                .iter()
                .filter_map(|x| x.relay_ms.get(name).map(|&y| (x.size as f64, y)))
                .collect();
            let label = if *name == r.default_strategy {
                format!("relay: {name} (default)")
            } else {
                format!("relay: {name}")
            };
            v.push((label, pts));
        }
        // Sizes without a pair two hops apart have no means.
        for (_, pts) in &mut v {
            pts.retain(|p| p.1.is_finite());
        }
        v
    };
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max)
        * 1.1;
    let xmax = r.rows.iter().map(|x| x.size).max().unwrap_or(1) as f64 * 1.05;
    let root = BitMapBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax.max(1.0))
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    chart
        .configure_mesh()
        .x_desc("network size (members)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .y_desc("mean RTT (ms)")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    let colours = [
        BLACK,
        RGBColor(120, 120, 120),
        RGBColor(200, 60, 40),
        RGBColor(60, 140, 60),
        RGBColor(150, 80, 190),
        RGBColor(230, 150, 30),
        RGBColor(40, 170, 190),
    ];
    let mut next_colour = colours.iter().cycle();
    for (label, pts) in &series {
        let default = label.ends_with("(default)");
        let c = if default {
            BLUE
        } else {
            *next_colour.next().unwrap_or(&BLACK)
        };
        let style = ShapeStyle::from(&c).stroke_width(if default { 3 } else { 2 });
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    Ok(())
}

/// Plotters' `ab_glyph` text needs a registered font: DejaVu Sans from the
/// Debian package `fonts-dejavu-core` (or `GROUPVPN_PLOT_FONT`).
fn register_font() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = std::env::var_os("GROUPVPN_PLOT_FONT")
            .map_or_else(|| PathBuf::from("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), PathBuf::from);
        let bytes = std::fs::read(&path).map_err(|e| {
            format!("reading font {} ({e}); install the Debian package fonts-dejavu-core or set GROUPVPN_PLOT_FONT", path.display())
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a usable font", path.display()))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small matrix file through the whole front-end: the three files,
    /// and the JSON keys other tools read.
    #[test]
    fn writes_json_md_png() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let n = 40;
        let mut text = String::from("# ring-ish test matrix, seconds\n");
        for i in 0..n {
            let row: Vec<String> = (0..n)
                .map(|j| {
                    let d = (i as i64 - j as i64)
                        .unsigned_abs()
                        .min(n - (i as i64 - j as i64).unsigned_abs());
                    format!(
                        "{}",
                        if i == j {
                            0.0
                        } else {
                            0.005 * d as f64 + 0.001
                        }
                    )
                })
                .collect();
            text.push_str(&row.join("\t"));
            text.push('\n');
        }
        let matrix = dir.join("m.tsv");
        std::fs::write(&matrix, text)?;
        let mut params = RelaySimParams {
            sizes: vec![30, 40],
            trials: 2,
            seed: 5,
            threads: 2,
            ..RelaySimParams::default()
        };
        // Small buckets, so that even 30 members are not fully connected.
        params.overlay.k = 4;
        let opts = LoadOptions {
            unit: Unit::S,
            ..LoadOptions::default()
        };
        let out = dir.join("out");
        let result = run_relays(&matrix, opts, &params, &out, None);
        let check = || -> anyhow::Result<()> {
            result?;
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("relay-sim.json"))?)?;
            assert_eq!(json["default_strategy"], "latency-stable");
            let rows = json["rows"].as_array().context("rows")?;
            assert_eq!(rows.len(), 2);
            for (row, size) in rows.iter().zip([30, 40]) {
                assert_eq!(row["size"], size);
                assert_eq!(row["trials"], 2);
                assert!(row["direct_ms"].as_f64().is_some_and(|v| v > 1.0));
                assert!(row["overlay_ms"].as_f64().is_some());
                for st in Strategy::ALL {
                    assert!(row["relay_ms"][st.name()].as_f64().is_some(), "{st}");
                    let share = row["found_without_creating_overlap"][st.name()].as_f64();
                    assert!(share.is_some_and(|v| (0.0..=1.0).contains(&v)), "{st}");
                }
            }
            let md = std::fs::read_to_string(out.join("relay-sim.md"))?;
            assert!(md.contains("| 40 |") && md.contains("nproc"));
            let png = std::fs::read(out.join("relay-sim.png"))?;
            assert!(png.starts_with(b"\x89PNG"));
            Ok(())
        };
        let verdict = check();
        std::fs::remove_dir_all(&dir)?;
        verdict
    }
}
