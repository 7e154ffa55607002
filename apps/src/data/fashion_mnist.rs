//! Fashion-MNIST from the Debian package `dataset-fashion-mnist` to LIBSVM.
//!
//! The package installs four gzipped IDX files in [`DEFAULT_DIR`]:
//! `train-images-idx3-ubyte.gz` (60,000 images of 28×28 bytes),
//! `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz` (10,000 images)
//! and `t10k-labels-idx1-ubyte.gz`. Uncompressed copies (the same names
//! without `.gz`) are read too. [`convert`] checks the IDX magic numbers and
//! sizes, then writes `train.libsvm` and `test.libsvm`:
//!
//! - one line per image, features `1..=784` in row-major pixel order, values
//!   `pixel / 255` in `(0, 1]`, zero pixels omitted;
//! - labels are the class ids `0..=9` (see [`CLASS_NAMES`]), or with
//!   `binary: Some(c)`, `+1` for class `c` and `-1` for every other class.
//!
//! The sizes in an IDX header are checked before anything is sized by them:
//! the data they announce must be at most [`MAX_IDX_BYTES`] and, for an
//! uncompressed file, exactly what follows the header; a gzipped file is
//! decompressed no further than the announced size. Images hold at most
//! [`DEFAULT_MAX_FEATURES`] pixels, the features a LIBSVM reader accepts.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::libsvm::{Feature, LibsvmError, LibsvmWriter, DEFAULT_MAX_FEATURES};

/// Where `dataset-fashion-mnist` installs the IDX files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The Debian package that ships the data.
pub const DEBIAN_PACKAGE: &str = "dataset-fashion-mnist";

/// Names of the classes, by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// IDX magic number of unsigned-byte data with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// IDX magic number of unsigned-byte data with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// Most data bytes an IDX file may announce: 1 GiB (Fashion-MNIST's
/// training images are 47,040,000 bytes).
pub const MAX_IDX_BYTES: u64 = 1 << 30;

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// Options of [`convert`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FashionMnistOptions {
    /// Directory holding the IDX files (default [`DEFAULT_DIR`]).
    pub data_dir: PathBuf,
    /// Directory to write `train.libsvm` and `test.libsvm` into (created if
    /// missing; existing files of those names are replaced).
    pub out_dir: PathBuf,
    /// `Some(c)`: class `c` is +1 and the rest -1; `None`: labels `0..=9`.
    pub binary: Option<u8>,
}

impl FashionMnistOptions {
    /// Multiclass conversion from [`DEFAULT_DIR`] into `out_dir`.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        FashionMnistOptions {
            data_dir: PathBuf::from(DEFAULT_DIR),
            out_dir: out_dir.into(),
            binary: None,
        }
    }
}

/// What [`convert`] wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FashionMnistSummary {
    /// The training file.
    pub train_path: PathBuf,
    /// The test file.
    pub test_path: PathBuf,
    /// Training examples.
    pub train_rows: u64,
    /// Test examples.
    pub test_rows: u64,
    /// Number of features (pixels per image).
    pub features: u32,
    /// Non-zeros in the training file.
    pub train_nnz: u64,
    /// Non-zeros in the test file.
    pub test_nnz: u64,
    /// The positive class of a binary conversion.
    pub binary: Option<u8>,
    /// Examples labelled +1 in the training file (binary conversion only).
    pub train_positives: Option<u64>,
    /// Examples labelled +1 in the test file (binary conversion only).
    pub test_positives: Option<u64>,
}

/// Errors of [`convert`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FashionMnistError {
    /// An IDX file is not there.
    #[error(
        "Fashion-MNIST file {file}(.gz) not found in {dir}: install the data with \
         `apt-get install dataset-fashion-mnist` (it goes to /usr/share/datasets/fashion-mnist), \
         or give the directory that holds the IDX files"
    )]
    Missing {
        /// The directory searched.
        dir: PathBuf,
        /// The file name looked for, without `.gz`.
        file: String,
    },
    /// Reading, decompressing or creating a file failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The file is shorter than its IDX header.
    #[error("{file}: truncated IDX header ({len} bytes)")]
    ShortHeader {
        /// The file.
        file: String,
        /// Bytes in the (decompressed) file.
        len: usize,
    },
    /// The IDX magic number is not the expected one.
    #[error("{file}: IDX magic number {found:#010x}, expected {expected:#010x}")]
    BadMagic {
        /// The file.
        file: String,
        /// The magic number read.
        found: u32,
        /// The magic number expected.
        expected: u32,
    },
    /// The data after the header do not have the size the header gives.
    #[error("{file}: {actual} bytes of data, the IDX header announces {expected}")]
    SizeMismatch {
        /// The file.
        file: String,
        /// Bytes announced by the header.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// The header announces more data than an IDX file may hold.
    #[error(
        "{file}: the IDX header announces {expected} bytes of data, more than the limit of {limit}"
    )]
    TooLarge {
        /// The file.
        file: String,
        /// Bytes announced by the header.
        expected: u64,
        /// [`MAX_IDX_BYTES`].
        limit: u64,
    },
    /// The images are larger than a LIBSVM reader accepts.
    #[error("{file}: images of {rows}x{cols} pixels are beyond the limit of {limit} pixels")]
    ImageSize {
        /// The images file.
        file: String,
        /// Rows per image.
        rows: u32,
        /// Columns per image.
        cols: u32,
        /// [`DEFAULT_MAX_FEATURES`].
        limit: u32,
    },
    /// Images and labels do not pair up.
    #[error("{images} holds {image_count} images but {labels} holds {label_count} labels")]
    CountMismatch {
        /// The images file.
        images: String,
        /// Number of images.
        image_count: u32,
        /// The labels file.
        labels: String,
        /// Number of labels.
        label_count: u32,
    },
    /// A label is not a class id.
    #[error("{file}: label {label} of item {item} is not a class (0..=9)")]
    BadLabel {
        /// The labels file.
        file: String,
        /// 0-based item number.
        item: usize,
        /// The label byte.
        label: u8,
    },
    /// The requested binary class does not exist.
    #[error("binary class {0} is not a Fashion-MNIST class (0..=9)")]
    InvalidClass(u8),
    /// Writing the LIBSVM output failed.
    #[error(transparent)]
    Write(#[from] LibsvmError),
}

/// A decoded IDX file.
#[derive(Debug)]
struct Idx {
    dims: Vec<u32>,
    data: Vec<u8>,
}

/// Finds `name.gz` or `name` in `dir`.
fn locate(dir: &Path, name: &str) -> Result<PathBuf, FashionMnistError> {
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    Err(FashionMnistError::Missing {
        dir: dir.to_path_buf(),
        file: name.to_string(),
    })
}

/// The sizes an IDX header gives.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IdxHeader {
    dims: Vec<u32>,
    /// Bytes of the header.
    len: usize,
    /// Bytes of data the dimensions announce (saturated at `u64::MAX`).
    data: u64,
}

/// Reads the header of an IDX file whose magic must be `magic` from the
/// start of `bytes` (which may hold more than the header). Nothing is sized
/// by the header's numbers here.
fn parse_idx_header(bytes: &[u8], magic: u32, file: &str) -> Result<IdxHeader, FashionMnistError> {
    let short = || FashionMnistError::ShortHeader {
        file: file.to_string(),
        len: bytes.len(),
    };
    let word = |i: usize| -> Option<u32> {
        bytes
            .get(i..i.checked_add(4)?)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let found = word(0).ok_or_else(short)?;
    if found != magic {
        return Err(FashionMnistError::BadMagic {
            file: file.to_string(),
            found,
            expected: magic,
        });
    }
    // At most 255 dimensions: the header is at most 1,024 bytes.
    let ndims = (magic & 0xff) as usize;
    let dims = (0..ndims)
        .map(|d| word(4 + 4 * d).ok_or_else(short))
        .collect::<Result<Vec<u32>, _>>()?;
    let data = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .unwrap_or(u64::MAX);
    Ok(IdxHeader {
        dims,
        len: 4 + 4 * ndims,
        data,
    })
}

/// Reads an IDX file (gzipped or not) whose magic must be `magic`.
fn read_idx(path: &Path, magic: u32) -> Result<Idx, FashionMnistError> {
    let file = path.display().to_string();
    let io_err = |source| FashionMnistError::Io {
        file: file.clone(),
        source,
    };
    let f = File::open(path).map_err(io_err)?;
    let file_len = f.metadata().map_err(io_err)?.len();
    let mut input = BufReader::new(f);
    let gzipped = input.fill_buf().map_err(io_err)?.starts_with(&[0x1f, 0x8b]);
    if gzipped {
        read_idx_from(MultiGzDecoder::new(input), None, magic, &file)
    } else {
        read_idx_from(input, Some(file_len), magic, &file)
    }
}

/// Reads an IDX file from `input`, whose length is `len` when known (an
/// uncompressed file). The header is read first and its sizes checked
/// against `len` and [`MAX_IDX_BYTES`]; then no more than the announced data
/// is read.
fn read_idx_from(
    input: impl Read,
    len: Option<u64>,
    magic: u32,
    file: &str,
) -> Result<Idx, FashionMnistError> {
    let io_err = |source| FashionMnistError::Io {
        file: file.to_string(),
        source,
    };
    let ndims = (magic & 0xff) as u64;
    let mut input = input;
    let mut head = Vec::new();
    (&mut input)
        .take(4 + 4 * ndims)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    let header = parse_idx_header(&head, magic, file)?;
    let mismatch = |actual: u64| FashionMnistError::SizeMismatch {
        file: file.to_string(),
        expected: header.data,
        actual,
    };
    if let Some(len) = len {
        let actual = len.saturating_sub(header.len as u64);
        if actual != header.data {
            return Err(mismatch(actual));
        }
    }
    if header.data > MAX_IDX_BYTES {
        return Err(FashionMnistError::TooLarge {
            file: file.to_string(),
            expected: header.data,
            limit: MAX_IDX_BYTES,
        });
    }
    // The buffer grows with what is actually there: one byte more than
    // announced tells a longer stream.
    let mut data = Vec::new();
    input
        .take(header.data + 1)
        .read_to_end(&mut data)
        .map_err(io_err)?;
    if data.len() as u64 != header.data {
        // Past the announced size, the rest of the stream is not counted.
        return Err(mismatch(data.len() as u64));
    }
    Ok(Idx {
        dims: header.dims,
        data,
    })
}

/// Pixels per image of the images file `file` with dimensions `dims`
/// (count, rows, columns), at most [`DEFAULT_MAX_FEATURES`].
fn image_pixels(dims: &[u32], file: &str) -> Result<usize, FashionMnistError> {
    let (rows, cols) = match dims {
        [_, rows, cols] => (*rows, *cols),
        _ => (u32::MAX, u32::MAX),
    };
    let pixels = u64::from(rows) * u64::from(cols);
    if pixels > u64::from(DEFAULT_MAX_FEATURES) {
        return Err(FashionMnistError::ImageSize {
            file: file.to_string(),
            rows,
            cols,
            limit: DEFAULT_MAX_FEATURES,
        });
    }
    Ok(pixels as usize)
}

/// Counts of one converted split.
#[derive(Debug, Default)]
struct SplitCounts {
    rows: u64,
    nnz: u64,
    positives: u64,
    features: u32,
}

/// Converts one images/labels pair into the LIBSVM file `out`.
fn convert_split(
    dir: &Path,
    images_name: &str,
    labels_name: &str,
    binary: Option<u8>,
    out: &Path,
) -> Result<SplitCounts, FashionMnistError> {
    let images_path = locate(dir, images_name)?;
    let labels_path = locate(dir, labels_name)?;
    let images = read_idx(&images_path, IMAGES_MAGIC)?;
    let labels = read_idx(&labels_path, LABELS_MAGIC)?;
    let pixels = image_pixels(&images.dims, &images_path.display().to_string())?;
    let count = images.dims.first().copied().unwrap_or(0);
    let label_count = labels.dims.first().copied().unwrap_or(0);
    if label_count != count {
        return Err(FashionMnistError::CountMismatch {
            images: images_path.display().to_string(),
            image_count: count,
            labels: labels_path.display().to_string(),
            label_count,
        });
    }
    if let Some((item, &label)) = labels.data.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(FashionMnistError::BadLabel {
            file: labels_path.display().to_string(),
            item,
            label,
        });
    }
    // At most DEFAULT_MAX_FEATURES, so the pixel count fits.
    let features = u32::try_from(pixels).unwrap_or(u32::MAX);

    let mut tmp_name = out.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".partial");
    let tmp = out.with_file_name(tmp_name);
    let result = (|| {
        let mut writer = LibsvmWriter::create(&tmp)?;
        // Sized by the data read, not by the header alone.
        let mut row: Vec<Feature> = Vec::with_capacity(pixels.min(images.data.len()));
        let mut counts = SplitCounts {
            features,
            ..SplitCounts::default()
        };
        for (i, &class) in labels.data.iter().enumerate() {
            // The header sizes were checked against the data: every image
            // is there.
            let image = images
                .data
                .get(i * pixels..(i + 1) * pixels)
                .unwrap_or_default();
            row.clear();
            row.extend(
                image
                    .iter()
                    .enumerate()
                    .filter(|(_, &p)| p != 0)
                    .map(|(j, &p)| Feature {
                        index: j as u32,
                        value: f32::from(p) / 255.0,
                    }),
            );
            let label = match binary {
                Some(c) if c == class => 1.0,
                Some(_) => -1.0,
                None => f64::from(class),
            };
            if label > 0.0 && binary.is_some() {
                counts.positives += 1;
            }
            counts.rows += 1;
            counts.nnz += row.len() as u64;
            writer.write(label, None, &row)?;
        }
        writer.flush()?;
        Ok::<_, FashionMnistError>(counts)
    })();
    match result {
        Ok(counts) => {
            fs::rename(&tmp, out).map_err(|source| FashionMnistError::Io {
                file: out.display().to_string(),
                source,
            })?;
            Ok(counts)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Converts the Fashion-MNIST IDX files in `opts.data_dir` into
/// `train.libsvm` and `test.libsvm` in `opts.out_dir`.
///
/// Fails with [`FashionMnistError::Missing`] (whose message says
/// `apt-get install dataset-fashion-mnist`) when a file is not there, and with
/// a typed error when a file is not valid IDX.
pub fn convert(opts: &FashionMnistOptions) -> Result<FashionMnistSummary, FashionMnistError> {
    if let Some(c) = opts.binary {
        if c > 9 {
            return Err(FashionMnistError::InvalidClass(c));
        }
    }
    // Check that all four files are there before writing anything.
    for name in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        locate(&opts.data_dir, name)?;
    }
    fs::create_dir_all(&opts.out_dir).map_err(|source| FashionMnistError::Io {
        file: opts.out_dir.display().to_string(),
        source,
    })?;
    let train_path = opts.out_dir.join("train.libsvm");
    let test_path = opts.out_dir.join("test.libsvm");
    let train = convert_split(
        &opts.data_dir,
        TRAIN_IMAGES,
        TRAIN_LABELS,
        opts.binary,
        &train_path,
    )?;
    let test = convert_split(
        &opts.data_dir,
        TEST_IMAGES,
        TEST_LABELS,
        opts.binary,
        &test_path,
    )?;
    Ok(FashionMnistSummary {
        train_path,
        test_path,
        train_rows: train.rows,
        test_rows: test.rows,
        features: train.features.max(test.features),
        train_nnz: train.nnz,
        test_nnz: test.nnz,
        binary: opts.binary,
        train_positives: opts.binary.map(|_| train.positives),
        test_positives: opts.binary.map(|_| test.positives),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::libsvm::{Example, LibsvmReader};
    use crate::data::testutil::TempDir;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Writes a tiny data set of 2×2 images: 3 training and 2 test images.
    fn write_tiny(dir: &Path, compress: bool) {
        let train_images = [0u8, 255, 0, 51, 0, 0, 0, 0, 1, 2, 3, 4];
        let train_labels = [9u8, 0, 3];
        let test_images = [255u8, 0, 0, 0, 0, 0, 0, 128];
        let test_labels = [3u8, 7];
        let files = [
            (TRAIN_IMAGES, idx(IMAGES_MAGIC, &[3, 2, 2], &train_images)),
            (TRAIN_LABELS, idx(LABELS_MAGIC, &[3], &train_labels)),
            (TEST_IMAGES, idx(IMAGES_MAGIC, &[2, 2, 2], &test_images)),
            (TEST_LABELS, idx(LABELS_MAGIC, &[2], &test_labels)),
        ];
        for (name, bytes) in files {
            if compress {
                fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
            } else {
                fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }

    fn read(path: &Path) -> Vec<Example> {
        LibsvmReader::open(path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn opts(data: &Path, out: &Path, binary: Option<u8>) -> FashionMnistOptions {
        FashionMnistOptions {
            data_dir: data.to_path_buf(),
            out_dir: out.to_path_buf(),
            binary,
        }
    }

    #[test]
    fn converts_multiclass_from_gzip_and_raw() {
        for compress in [true, false] {
            let dir = TempDir::new("fm");
            write_tiny(dir.path(), compress);
            let out = dir.path().join("out");
            let s = convert(&opts(dir.path(), &out, None)).unwrap();
            assert_eq!((s.train_rows, s.test_rows, s.features), (3, 2, 4));
            assert_eq!((s.train_nnz, s.test_nnz), (6, 2));
            assert_eq!(s.train_positives, None);
            let text = fs::read_to_string(&s.train_path).unwrap();
            assert_eq!(
                text,
                "9 2:1 4:0.2\n0\n3 1:0.003921569 2:0.007843138 3:0.011764706 4:0.015686275\n"
            );
            let test = read(&s.test_path);
            assert_eq!(test.len(), 2);
            assert_eq!(test[0].label, 3.0);
            assert_eq!(test[1].label, 7.0);
            assert_eq!(test[1].features[0].index, 3);
            assert_eq!(test[1].features[0].value, 128.0 / 255.0);
        }
    }

    #[test]
    fn converts_one_class_against_the_rest() {
        let dir = TempDir::new("fm-bin");
        write_tiny(dir.path(), true);
        let out = dir.path().join("out");
        let s = convert(&opts(dir.path(), &out, Some(3))).unwrap();
        let labels: Vec<f64> = read(&s.train_path).iter().map(|e| e.label).collect();
        assert_eq!(labels, vec![-1.0, -1.0, 1.0]);
        let labels: Vec<f64> = read(&s.test_path).iter().map(|e| e.label).collect();
        assert_eq!(labels, vec![1.0, -1.0]);
        assert_eq!(s.train_positives, Some(1));
        assert_eq!(s.test_positives, Some(1));
        assert_eq!(s.binary, Some(3));
    }

    #[test]
    fn missing_package_says_how_to_install() {
        let dir = TempDir::new("fm-missing");
        let err = convert(&opts(&dir.path().join("nothing"), dir.path(), None)).unwrap_err();
        assert!(matches!(err, FashionMnistError::Missing { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("apt-get install dataset-fashion-mnist"),
            "{msg}"
        );
        assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");
        // Nothing was written.
        assert!(!dir.path().join("train.libsvm").exists());
        // One file missing among four.
        write_tiny(dir.path(), false);
        fs::remove_file(dir.path().join(TEST_LABELS)).unwrap();
        let err = convert(&opts(dir.path(), &dir.path().join("o"), None)).unwrap_err();
        match err {
            FashionMnistError::Missing { file, .. } => assert_eq!(file, TEST_LABELS),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn invalid_idx_files_are_typed_errors() {
        let check = |name: &str, bytes: Vec<u8>| -> FashionMnistError {
            let dir = TempDir::new("fm-bad");
            write_tiny(dir.path(), false);
            fs::write(dir.path().join(name), bytes).unwrap();
            convert(&opts(dir.path(), &dir.path().join("o"), None)).unwrap_err()
        };
        // Labels where images are expected.
        let err = check(TRAIN_IMAGES, idx(LABELS_MAGIC, &[3], &[0, 0, 0]));
        assert!(matches!(
            err,
            FashionMnistError::BadMagic {
                found: LABELS_MAGIC,
                expected: IMAGES_MAGIC,
                ..
            }
        ));
        // Truncated data.
        let err = check(TRAIN_IMAGES, idx(IMAGES_MAGIC, &[3, 2, 2], &[0; 11]));
        assert!(matches!(
            err,
            FashionMnistError::SizeMismatch {
                expected: 12,
                actual: 11,
                ..
            }
        ));
        // Truncated header.
        let err = check(TRAIN_LABELS, vec![0, 0, 8, 1, 0]);
        assert!(matches!(err, FashionMnistError::ShortHeader { len: 5, .. }));
        // Too few labels.
        let err = check(TRAIN_LABELS, idx(LABELS_MAGIC, &[2], &[0, 0]));
        assert!(matches!(
            err,
            FashionMnistError::CountMismatch {
                image_count: 3,
                label_count: 2,
                ..
            }
        ));
        // A label that is not a class.
        let err = check(TRAIN_LABELS, idx(LABELS_MAGIC, &[3], &[0, 10, 0]));
        assert!(matches!(
            err,
            FashionMnistError::BadLabel {
                item: 1,
                label: 10,
                ..
            }
        ));
        // Huge dimensions do not overflow.
        let err = check(
            TRAIN_IMAGES,
            idx(IMAGES_MAGIC, &[u32::MAX, u32::MAX, 4], &[]),
        );
        assert!(matches!(err, FashionMnistError::SizeMismatch { .. }));
        // A corrupt gzip stream.
        let dir = TempDir::new("fm-gz");
        write_tiny(dir.path(), true);
        let path = dir.path().join(format!("{TEST_IMAGES}.gz"));
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() / 2);
        fs::write(&path, bytes).unwrap();
        let err = convert(&opts(dir.path(), &dir.path().join("o"), None)).unwrap_err();
        assert!(matches!(err, FashionMnistError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(TEST_IMAGES));
        assert!(!dir.path().join("o").join("test.libsvm.partial").exists());
    }

    #[test]
    fn header_sizes_are_checked_before_anything_is_sized_by_them() {
        let check = |name: &str, bytes: Vec<u8>, compress: bool| -> FashionMnistError {
            let dir = TempDir::new("fm-header");
            write_tiny(dir.path(), false);
            let _ = fs::remove_file(dir.path().join(name));
            if compress {
                fs::write(dir.path().join(format!("{name}.gz")), gz(&bytes)).unwrap();
            } else {
                fs::write(dir.path().join(name), bytes).unwrap();
            }
            convert(&opts(dir.path(), &dir.path().join("o"), None)).unwrap_err()
        };
        // No images of 65536x65536 pixels (a 32 GiB row buffer before),
        // even when there are none of them.
        for compress in [false, true] {
            let err = check(
                TRAIN_IMAGES,
                idx(IMAGES_MAGIC, &[0, 65_536, 65_536], &[]),
                compress,
            );
            assert!(
                matches!(
                    err,
                    FashionMnistError::ImageSize {
                        rows: 65_536,
                        cols: 65_536,
                        limit: DEFAULT_MAX_FEATURES,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains(TRAIN_IMAGES), "{err}");
            let err = check(
                TRAIN_IMAGES,
                idx(IMAGES_MAGIC, &[0, u32::MAX, u32::MAX], &[]),
                compress,
            );
            assert!(
                matches!(err, FashionMnistError::ImageSize { .. }),
                "{err:?}"
            );
        }
        // A gzipped file announcing more than the limit is not decompressed.
        let err = check(TRAIN_LABELS, idx(LABELS_MAGIC, &[u32::MAX], &[0; 16]), true);
        assert!(
            matches!(
                err,
                FashionMnistError::TooLarge {
                    expected: 4_294_967_295,
                    limit: MAX_IDX_BYTES,
                    ..
                }
            ),
            "{err:?}"
        );
        // A gzipped file longer or shorter than announced.
        let err = check(TRAIN_LABELS, idx(LABELS_MAGIC, &[3], &[0; 9]), true);
        assert!(
            matches!(
                err,
                FashionMnistError::SizeMismatch {
                    expected: 3,
                    actual: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = check(TRAIN_LABELS, idx(LABELS_MAGIC, &[3], &[0; 2]), true);
        assert!(
            matches!(
                err,
                FashionMnistError::SizeMismatch {
                    expected: 3,
                    actual: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        // An uncompressed file is measured before it is read.
        let err = check(TRAIN_LABELS, idx(LABELS_MAGIC, &[1 << 31], &[0; 4]), false);
        assert!(
            matches!(
                err,
                FashionMnistError::SizeMismatch {
                    expected: 2_147_483_648,
                    actual: 4,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn idx_reader_never_panics_on_arbitrary_bytes(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            images in proptest::prelude::any::<bool>(),
            with_magic in proptest::prelude::any::<bool>(),
            known_len in proptest::prelude::any::<bool>(),
        ) {
            let magic = if images { IMAGES_MAGIC } else { LABELS_MAGIC };
            let mut bytes = Vec::new();
            if with_magic {
                bytes.extend_from_slice(&magic.to_be_bytes());
            }
            bytes.extend_from_slice(&body);
            let _ = parse_idx_header(&bytes, magic, "p");
            let len = known_len.then_some(bytes.len() as u64);
            if let Ok(idx) = read_idx_from(&bytes[..], len, magic, "p") {
                // What is accepted holds exactly what its header announces.
                let announced = idx.dims.iter().map(|&d| u64::from(d)).product::<u64>();
                proptest::prop_assert_eq!(idx.data.len() as u64, announced);
                if images {
                    let _ = image_pixels(&idx.dims, "p");
                }
            }
        }
    }

    #[test]
    fn rejects_a_class_out_of_range() {
        let dir = TempDir::new("fm-class");
        write_tiny(dir.path(), false);
        let err = convert(&opts(dir.path(), dir.path(), Some(10))).unwrap_err();
        assert!(matches!(err, FashionMnistError::InvalidClass(10)));
    }

    /// Converts the data of the installed Debian package; run with
    /// `cargo test -p malt --release -- --ignored fashion` after
    /// `apt-get install dataset-fashion-mnist`.
    #[test]
    #[ignore = "needs the dataset-fashion-mnist package; slow in debug builds"]
    fn converts_the_installed_package() {
        let dir = TempDir::new("fm-real");
        let mut o = FashionMnistOptions::new(dir.path());
        o.binary = Some(0);
        let s = convert(&o).unwrap();
        assert_eq!(
            (s.train_rows, s.test_rows, s.features),
            (60_000, 10_000, 784)
        );
        // Fashion-MNIST is balanced: 6,000 and 1,000 images per class.
        assert_eq!(s.train_positives, Some(6_000));
        assert_eq!(s.test_positives, Some(1_000));
        let train = crate::data::libsvm::SparseDataset::load(&s.train_path).unwrap();
        assert_eq!(train.len(), 60_000);
        assert!(train.dim() <= 784);
        assert_eq!(train.nnz() as u64, s.train_nnz);
        eprintln!("{s:?}");
    }
}
