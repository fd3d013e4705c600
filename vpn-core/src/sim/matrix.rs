//! Latency-matrix loader: a square matrix of round-trip times, one row per
//! line, tab- or space-separated, plain or gzip (detected by its magic bytes).
//!
//! Blank lines and lines starting with `#` are skipped (line numbers in
//! errors still count them). Entries that are 0 or negative off the diagonal
//! are *missing*; the diagonal is ignored. Non-finite values (`nan`, `inf`)
//! are rejected like any other non-number.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::str::FromStr;

/// Unit of the values in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Unit {
    /// Milliseconds.
    #[default]
    Ms,
    /// Seconds.
    S,
}

/// What to do with missing entries (0 or negative off the diagonal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MissingPolicy {
    /// Repeatedly drop the host with the most missing entries until none is
    /// left (ties: the lowest index). Applied after symmetrisation, so under
    /// `mean`/`max`/`min` a pair measured in one direction is not missing.
    #[default]
    DropHost,
    /// Keep every host; the pair stays unknown. The simulator leaves out
    /// pairs whose direct latency is unknown and treats an unknown hop as an
    /// unmeasured neighbour (never a relay) or an unusable overlay hop.
    SkipPair,
    /// Any missing entry is an error naming its line and column.
    Error,
}

/// How asymmetric entries (`m[a][b] != m[b][a]`) are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AsymmetryPolicy {
    /// The mean of the two directions (the one present, if only one is).
    #[default]
    Mean,
    /// The larger of the two.
    Max,
    /// The smaller of the two.
    Min,
    /// Keep both directions: `a → b` uses row `a`, column `b`.
    Keep,
}

macro_rules! named_enum {
    ($t:ty, $what:literal, $($name:literal => $v:expr),+) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($v),)+
                    _ => Err(format!(concat!("unknown ", $what, " {:?} (expected {})"), s,
                        [$($name),+].join(", "))),
                }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                $(if *self == $v { return f.write_str($name); })+
                unreachable!()
            }
        }
    };
}
named_enum!(Unit, "unit", "ms" => Unit::Ms, "s" => Unit::S);
named_enum!(MissingPolicy, "missing-entry policy",
    "drop-host" => MissingPolicy::DropHost, "skip-pair" => MissingPolicy::SkipPair,
    "error" => MissingPolicy::Error);
named_enum!(AsymmetryPolicy, "asymmetry policy",
    "mean" => AsymmetryPolicy::Mean, "max" => AsymmetryPolicy::Max,
    "min" => AsymmetryPolicy::Min, "keep" => AsymmetryPolicy::Keep);

/// How to read a matrix file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Unit of the values.
    pub unit: Unit,
    /// Missing entries.
    pub missing: MissingPolicy,
    /// Asymmetric entries.
    pub asymmetry: AsymmetryPolicy,
}

/// A malformed or unusable matrix file.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The file could not be opened or read (also: corrupt gzip, not UTF-8).
    #[error("{}reading the matrix: {source}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Io {
        /// The line being read, if any had been.
        line: Option<usize>,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A token that is not a finite number.
    #[error("line {line}, column {column}: {token:?} is not a number")]
    NotANumber {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The offending token.
        token: String,
    },
    /// A row whose length differs from the first row's.
    #[error("line {line}: ragged row: {found} columns, but the first row (line {first_line}) has {expected}")]
    Ragged {
        /// 1-based line of the bad row.
        line: usize,
        /// Its column count.
        found: usize,
        /// The first row's column count.
        expected: usize,
        /// The first row's line.
        first_line: usize,
    },
    /// More or fewer rows than columns.
    #[error("line {line}: matrix is not square: {rows} rows of {cols} columns")]
    NotSquare {
        /// The line where this became certain (the extra row, or the last row).
        line: usize,
        /// Rows read (so far).
        rows: usize,
        /// Columns per row.
        cols: usize,
    },
    /// No rows at all.
    #[error("the matrix file holds no rows")]
    Empty,
    /// A missing entry under [`MissingPolicy::Error`].
    #[error(
        "line {line}, column {column}: missing entry ({value}) off the diagonal (see --missing)"
    )]
    Missing {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The value read.
        value: f64,
    },
    /// Fewer than two hosts remain after dropping hosts with missing entries.
    #[error("only {0} host(s) left after dropping hosts with missing entries")]
    TooFewHosts(usize),
}

/// What loading did to the data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Hosts in the file.
    pub hosts_in_file: usize,
    /// Original indices (0-based rows) of the hosts dropped for missing entries.
    pub dropped_hosts: Vec<usize>,
    /// Unordered pairs left unknown (under `skip-pair`).
    pub missing_pairs: usize,
    /// Unordered pairs measured both ways with different values.
    pub asymmetric_pairs: usize,
}

/// A square RTT matrix in milliseconds. Unknown entries are `NaN` inside and
/// `None` outside.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyMatrix {
    n: usize,
    ms: Vec<f64>,
    /// Row index in the file of each host.
    origin: Vec<usize>,
}

impl LatencyMatrix {
    /// Builds a matrix from rows in milliseconds (`None`, 0 or negative off the
    /// diagonal: unknown). Used by tests and generators.
    ///
    /// # Panics
    /// If the rows are not square.
    #[must_use]
    pub fn from_rows_ms(rows: &[Vec<Option<f64>>]) -> Self {
        let n = rows.len();
        let mut ms = Vec::with_capacity(n * n);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), n, "row {i} is not {n} long");
            for (j, v) in row.iter().enumerate() {
                ms.push(match v {
                    _ if i == j => 0.0,
                    Some(x) if *x > 0.0 && x.is_finite() => *x,
                    _ => f64::NAN,
                });
            }
        }
        LatencyMatrix {
            n,
            ms,
            origin: (0..n).collect(),
        }
    }

    /// Number of hosts.
    #[must_use]
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no hosts.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// RTT from `a` to `b` in milliseconds, if known (0 on the diagonal).
    #[must_use]
    pub fn get(&self, a: usize, b: usize) -> Option<f64> {
        let v = self.ms[a * self.n + b];
        (!v.is_nan()).then_some(v)
    }

    /// The file row of host `i`.
    #[must_use]
    pub fn origin(&self, i: usize) -> usize {
        self.origin[i]
    }
}

/// Loads a matrix file (plain or gzip).
pub fn load(path: &Path, opts: LoadOptions) -> Result<(LatencyMatrix, LoadReport), MatrixError> {
    let io = |source| MatrixError::Io { line: None, source };
    let mut f = BufReader::new(File::open(path).map_err(io)?);
    let gz = f.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead> = if gz {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(f)))
    } else {
        Box::new(f)
    };
    parse(reader, opts)
}

/// Parses a matrix from any reader (plain text).
pub fn parse<R: Read>(
    reader: R,
    opts: LoadOptions,
) -> Result<(LatencyMatrix, LoadReport), MatrixError> {
    let scale = match opts.unit {
        Unit::Ms => 1.0,
        Unit::S => 1000.0,
    };
    let mut raw: Vec<f64> = Vec::new();
    let mut rows = 0usize;
    let mut cols = 0usize;
    let mut first_line = 0usize;
    let mut line_no = 0usize;
    let mut last_row_line = 0usize;
    let mut first_missing: Option<(usize, usize, f64)> = None;
    let mut buf = String::new();
    let mut reader = BufReader::new(reader);
    loop {
        buf.clear();
        let read = reader
            .read_line(&mut buf)
            .map_err(|source| MatrixError::Io {
                line: Some(line_no + 1),
                source,
            })?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let text = buf.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let start = raw.len();
        for (c, tok) in text.split_whitespace().enumerate() {
            let v = f64::from_str(tok)
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| MatrixError::NotANumber {
                    line: line_no,
                    column: c + 1,
                    token: tok.to_owned(),
                })?;
            if v <= 0.0 && c != rows && first_missing.is_none() {
                first_missing = Some((line_no, c + 1, v));
            }
            raw.push(v * scale);
        }
        let found = raw.len() - start;
        if rows == 0 {
            cols = found;
            first_line = line_no;
        } else if found != cols {
            return Err(MatrixError::Ragged {
                line: line_no,
                found,
                expected: cols,
                first_line,
            });
        }
        rows += 1;
        last_row_line = line_no;
        if rows > cols {
            return Err(MatrixError::NotSquare {
                line: line_no,
                rows,
                cols,
            });
        }
    }
    if rows == 0 {
        return Err(MatrixError::Empty);
    }
    if rows != cols {
        return Err(MatrixError::NotSquare {
            line: last_row_line,
            rows,
            cols,
        });
    }
    if let (MissingPolicy::Error, Some((line, column, value))) = (opts.missing, first_missing) {
        return Err(MatrixError::Missing {
            line,
            column,
            value,
        });
    }
    let (matrix, report) = finish(rows, raw, opts);
    if matrix.len() < 2 {
        return Err(MatrixError::TooFewHosts(matrix.len()));
    }
    Ok((matrix, report))
}

fn finish(n: usize, mut m: Vec<f64>, opts: LoadOptions) -> (LatencyMatrix, LoadReport) {
    let mut report = LoadReport {
        hosts_in_file: n,
        ..LoadReport::default()
    };
    for i in 0..n {
        for j in 0..n {
            let v = &mut m[i * n + j];
            *v = if i == j {
                0.0
            } else if *v > 0.0 {
                *v
            } else {
                f64::NAN
            };
        }
    }
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (m[i * n + j], m[j * n + i]);
            if !a.is_nan() && !b.is_nan() && (a - b).abs() > 1e-9 * a.max(b) {
                report.asymmetric_pairs += 1;
            }
            let v = match opts.asymmetry {
                AsymmetryPolicy::Keep => continue,
                _ if a.is_nan() => b,
                _ if b.is_nan() => a,
                AsymmetryPolicy::Mean => (a + b) / 2.0,
                AsymmetryPolicy::Max => a.max(b),
                AsymmetryPolicy::Min => a.min(b),
            };
            m[i * n + j] = v;
            m[j * n + i] = v;
        }
    }
    let mut keep: Vec<usize> = (0..n).collect();
    if opts.missing == MissingPolicy::DropHost {
        loop {
            let worst = keep
                .iter()
                .map(|&i| {
                    let c = keep
                        .iter()
                        .filter(|&&j| m[i * n + j].is_nan() || m[j * n + i].is_nan())
                        .count();
                    (c, std::cmp::Reverse(i))
                })
                .max();
            match worst {
                Some((c, std::cmp::Reverse(i))) if c > 0 => {
                    keep.retain(|&h| h != i);
                    report.dropped_hosts.push(i);
                }
                _ => break,
            }
        }
        report.dropped_hosts.sort_unstable();
    }
    let k = keep.len();
    let mut ms = Vec::with_capacity(k * k);
    for &i in &keep {
        for &j in &keep {
            ms.push(m[i * n + j]);
        }
    }
    for a in 0..k {
        for b in a + 1..k {
            if ms[a * k + b].is_nan() || ms[b * k + a].is_nan() {
                report.missing_pairs += 1;
            }
        }
    }
    (
        LatencyMatrix {
            n: k,
            ms,
            origin: keep,
        },
        report,
    )
}
