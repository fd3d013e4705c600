//! The latency-matrix loader: formats, units, policies, and errors that name
//! the line.

use std::io::Write as _;
use std::path::PathBuf;

use vpn_core::sim::matrix::parse;
use vpn_core::sim::{load, AsymmetryPolicy, LoadOptions, MatrixError, MissingPolicy, Unit};

fn opts(missing: MissingPolicy, asymmetry: AsymmetryPolicy) -> LoadOptions {
    LoadOptions {
        unit: Unit::Ms,
        missing,
        asymmetry,
    }
}

fn err(text: &str) -> MatrixError {
    parse(text.as_bytes(), LoadOptions::default()).expect_err("must be rejected")
}

/// A file in the temp dir, removed on drop.
struct TempFile(PathBuf);
impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let p = std::env::temp_dir().join(format!("vpn-core-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).expect("write temp file");
        TempFile(p)
    }
}
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const GOOD: &str = "# a comment\n0\t10\t20\n10 0  30\n\n20\t30\t0\n";

#[test]
fn tabs_spaces_comments_and_blank_lines() {
    let (m, rep) = parse(GOOD.as_bytes(), LoadOptions::default()).expect("parses");
    assert_eq!(m.len(), 3);
    assert_eq!(m.get(0, 1), Some(10.0));
    assert_eq!(m.get(2, 1), Some(30.0));
    assert_eq!(m.get(1, 1), Some(0.0));
    assert_eq!(rep.hosts_in_file, 3);
    assert!(rep.dropped_hosts.is_empty());
}

#[test]
fn gzip_and_plain_files_load_the_same() {
    let plain = TempFile::new("plain.tsv", GOOD.as_bytes());
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(GOOD.as_bytes()).expect("gzip");
    let gz = TempFile::new("m.tsv.gz", &enc.finish().expect("gzip"));
    let a = load(&plain.0, LoadOptions::default()).expect("plain");
    let b = load(&gz.0, LoadOptions::default()).expect("gzip");
    assert_eq!(a, b);
}

#[test]
fn corrupt_gzip_and_missing_file_are_io_errors() {
    let bad = TempFile::new("bad.gz", &[0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(matches!(
        load(&bad.0, LoadOptions::default()),
        Err(MatrixError::Io { .. })
    ));
    let gone = std::env::temp_dir().join("vpn-core-no-such-matrix");
    assert!(matches!(
        load(&gone, LoadOptions::default()),
        Err(MatrixError::Io { line: None, .. })
    ));
}

#[test]
fn seconds_are_converted() {
    let o = LoadOptions {
        unit: Unit::S,
        ..LoadOptions::default()
    };
    let (m, _) = parse("0 0.25\n0.25 0\n".as_bytes(), o).expect("parses");
    assert_eq!(m.get(0, 1), Some(250.0));
}

#[test]
fn ragged_row_names_its_line() {
    let e = err("0 1 2\n1 0 2\n\n2 2\n");
    assert!(
        matches!(
            e,
            MatrixError::Ragged {
                line: 4,
                found: 2,
                expected: 3,
                first_line: 1
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("line 4:"), "{e}");
}

#[test]
fn non_number_names_line_and_column() {
    for (text, col, tok) in [
        ("0 1\n1 x\n", 2, "x"),
        ("0 1\nNaN 0\n", 1, "NaN"),
        ("0 inf\n1 0\n", 2, "inf"),
    ] {
        let e = err(text);
        let line = if text.starts_with("0 inf") { 1 } else { 2 };
        match &e {
            MatrixError::NotANumber {
                line: l,
                column,
                token,
            } => {
                assert_eq!((*l, *column, token.as_str()), (line, col, tok), "{text:?}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
        assert!(
            e.to_string()
                .starts_with(&format!("line {line}, column {col}:")),
            "{e}"
        );
    }
}

#[test]
fn non_square_names_the_line() {
    // Too many rows: the extra row's line.
    let e = err("0 1\n1 0\n1 1\n");
    assert!(
        matches!(
            e,
            MatrixError::NotSquare {
                line: 3,
                rows: 3,
                cols: 2
            }
        ),
        "{e:?}"
    );
    // Too few rows: the last row's line.
    let e = err("0 1 2\n1 0 2\n");
    assert!(
        matches!(
            e,
            MatrixError::NotSquare {
                line: 2,
                rows: 2,
                cols: 3
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("line 2"), "{e}");
    assert!(matches!(err("# nothing\n\n"), MatrixError::Empty));
    assert!(matches!(err("0\n"), MatrixError::TooFewHosts(1)));
}

#[test]
fn missing_entries_follow_the_policy() {
    // Host 2 misses both directions to host 0 (0 and -1); host 1 is complete.
    let text = "0 10 0\n10 0 30\n-1 30 0\n";
    let e = parse(
        text.as_bytes(),
        opts(MissingPolicy::Error, AsymmetryPolicy::Mean),
    )
    .expect_err("strict");
    assert!(
        matches!(
            e,
            MatrixError::Missing {
                line: 1,
                column: 3,
                ..
            }
        ),
        "{e:?}"
    );

    let (m, rep) = parse(
        text.as_bytes(),
        opts(MissingPolicy::SkipPair, AsymmetryPolicy::Mean),
    )
    .expect("skip");
    assert_eq!(m.len(), 3);
    assert_eq!(m.get(0, 2), None);
    assert_eq!(m.get(2, 0), None);
    assert_eq!(rep.missing_pairs, 1);

    let (m, rep) = parse(
        text.as_bytes(),
        opts(MissingPolicy::DropHost, AsymmetryPolicy::Mean),
    )
    .expect("drop");
    assert_eq!(m.len(), 2);
    assert_eq!(rep.dropped_hosts, vec![0]);
    assert_eq!((m.origin(0), m.origin(1)), (1, 2));
    assert_eq!(m.get(0, 1), Some(30.0));
}

#[test]
fn one_way_measurements_are_not_missing_after_symmetrisation() {
    let text = "0 10 0\n10 0 30\n25 30 0\n";
    let (m, rep) = parse(
        text.as_bytes(),
        opts(MissingPolicy::DropHost, AsymmetryPolicy::Mean),
    )
    .expect("parses");
    assert_eq!(m.len(), 3);
    assert_eq!((m.get(0, 2), m.get(2, 0)), (Some(25.0), Some(25.0)));
    assert!(rep.dropped_hosts.is_empty());
    // Kept directed, the missing direction stays missing and host 0 goes
    // (it has the most missing entries, tie broken towards the lower index).
    let (m, rep) = parse(
        text.as_bytes(),
        opts(MissingPolicy::DropHost, AsymmetryPolicy::Keep),
    )
    .expect("parses");
    assert_eq!(m.len(), 2);
    assert_eq!(rep.dropped_hosts, vec![0]);
}

#[test]
fn asymmetry_policies() {
    let text = "0 10\n30 0\n";
    let get = |a| {
        parse(text.as_bytes(), opts(MissingPolicy::Error, a))
            .expect("parses")
            .0
    };
    assert_eq!(get(AsymmetryPolicy::Mean).get(0, 1), Some(20.0));
    assert_eq!(get(AsymmetryPolicy::Max).get(1, 0), Some(30.0));
    assert_eq!(get(AsymmetryPolicy::Min).get(1, 0), Some(10.0));
    let keep = get(AsymmetryPolicy::Keep);
    assert_eq!((keep.get(0, 1), keep.get(1, 0)), (Some(10.0), Some(30.0)));
    let (_, rep) = parse(
        text.as_bytes(),
        opts(MissingPolicy::Error, AsymmetryPolicy::Mean),
    )
    .expect("parses");
    assert_eq!(rep.asymmetric_pairs, 1);
}

#[test]
fn policy_names_parse() {
    assert_eq!("s".parse::<Unit>(), Ok(Unit::S));
    assert_eq!(
        "skip-pair".parse::<MissingPolicy>(),
        Ok(MissingPolicy::SkipPair)
    );
    assert_eq!("keep".parse::<AsymmetryPolicy>(), Ok(AsymmetryPolicy::Keep));
    assert!("us".parse::<Unit>().is_err());
    assert_eq!(MissingPolicy::DropHost.to_string(), "drop-host");
}

#[test]
fn shipped_matrix_loads() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data/latency/planetlab490-slice1.tsv.gz");
    let (m, rep) = load(&path, LoadOptions::default()).expect("shipped matrix");
    assert_eq!(m.len(), 490);
    assert!(rep.dropped_hosts.is_empty());
    assert_eq!(rep.missing_pairs, 0);
}
