//! Block round trips, corruption, truncation, writer contract and temp-file handling.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::format::{self, FOOTER_LEN, Footer, SECTION_ORDER, SectionInfo};
use super::*;
use crate::model::Labels;

/// Deterministic xorshift, so data is irregular but every run sees the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type Model = BTreeMap<Labels, Vec<ChunkData>>;

const ODD_VALUES: &[&str] = &[
    "a\"quoted\"value",
    "back\\slash",
    "new\nline",
    "日本語",
    "ünïcödé-ß",
    "😀 emoji",
    " ",
    "x",
    "tab\there",
    "{braces}=,",
];

fn irregular_labels(rng: &mut Rng, i: u64) -> Labels {
    let metrics = [
        "http_requests_total",
        "up",
        "node:cpu:rate5m",
        "a",
        "zz_last",
    ];
    let mut pairs: Vec<(String, String)> = vec![(
        "__name__".into(),
        metrics[rng.below(metrics.len() as u64) as usize].into(),
    )];
    pairs.push((
        "instance".into(),
        format!("10.0.{}.{}:9100", i % 7, i * 13 % 251),
    ));
    if rng.below(3) == 0 {
        pairs.push((
            "path".into(),
            ODD_VALUES[rng.below(ODD_VALUES.len() as u64) as usize].into(),
        ));
    }
    if rng.below(4) == 0 {
        pairs.push(("_underscore".into(), format!("{}", rng.below(5))));
    }
    if rng.below(5) == 0 {
        let long: String = std::iter::repeat_n('v', 1 + rng.below(300) as usize).collect();
        pairs.push(("long".into(), long));
    }
    pairs.push(("id".into(), format!("s{i}")));
    Labels::new(pairs).unwrap()
}

fn irregular_chunks(rng: &mut Rng) -> Vec<ChunkData> {
    let mut t = 1_700_000_000_000i64 - 5_000_000 + rng.below(10_000_000) as i64;
    (0..1 + rng.below(5))
        .map(|_| {
            let n = 1 + rng.below(150) as u32;
            let mint = t + 1 + rng.below(40_000) as i64;
            let maxt = mint + i64::from(n - 1) * 15_000 + rng.below(997) as i64;
            t = maxt;
            let len = 1 + rng.below(400) as usize;
            let data = (0..len).map(|_| rng.next() as u8).collect();
            ChunkData {
                mint,
                maxt,
                num_samples: n,
                data,
            }
        })
        .collect()
}

fn model(seed: u64, n: u64) -> Model {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| (irregular_labels(&mut rng, i), irregular_chunks(&mut rng)))
        .collect()
}

fn write_block(dir: &Path, m: &Model) -> BlockMeta {
    let mut w = BlockWriter::new(dir, 1, vec![BlockId::generate(), BlockId::generate()]).unwrap();
    for (l, c) in m {
        w.add_series(l, c).unwrap();
    }
    w.finish().unwrap()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn footer_of(bytes: &[u8]) -> Footer {
    Footer::decode(&bytes[bytes.len() - FOOTER_LEN as usize..]).unwrap()
}

fn write_copy(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn block_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Block>();
}

#[test]
fn round_trip_preserves_labels_chunks_and_postings() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(0x9e37_79b9_7f4a_7c15, 420);
    assert!(m.len() > 400);
    let meta = write_block(dir.path(), &m);

    let all: Vec<&ChunkData> = m.values().flatten().collect();
    assert_eq!(meta.num_series, m.len() as u64);
    assert_eq!(meta.num_chunks, all.len() as u64);
    assert_eq!(
        meta.num_samples,
        all.iter().map(|c| u64::from(c.num_samples)).sum::<u64>()
    );
    assert_eq!(meta.mint, all.iter().map(|c| c.mint).min().unwrap());
    assert_eq!(meta.maxt, all.iter().map(|c| c.maxt).max().unwrap());
    assert_eq!(meta.level, 1);
    assert_eq!(meta.sources.len(), 2);
    let name = meta.path.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        parse_block_file_name(name),
        Some((meta.mint, meta.maxt, meta.id.clone()))
    );
    assert_eq!(list_blocks(dir.path()).unwrap(), vec![meta.path.clone()]);
    assert_eq!(
        std::fs::metadata(&meta.path).unwrap().len(),
        meta.size_bytes
    );

    let b = Block::open(&meta.path).unwrap();
    assert_eq!(*b.meta(), meta);
    assert_eq!(b.num_series() as usize, m.len());
    b.verify().unwrap();

    let mut pairs: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    for (id, (labels, chunks)) in m.iter().enumerate() {
        let (got_labels, metas) = b.series(id as u32).unwrap();
        assert_eq!(&got_labels, labels);
        assert_eq!(metas.len(), chunks.len());
        for (cm, c) in metas.iter().zip(chunks) {
            assert_eq!(
                (cm.mint, cm.maxt, cm.num_samples, cm.len as usize),
                (c.mint, c.maxt, c.num_samples, c.data.len())
            );
            assert_eq!(b.read_chunk(cm).unwrap(), c.data);
        }
        for (n, v) in labels.iter() {
            pairs
                .entry((n.into(), v.into()))
                .or_default()
                .push(id as u32);
        }
    }
    for ((n, v), ids) in &pairs {
        assert_eq!(&b.postings(n, v), ids, "postings of {n}={v:?}");
    }
    assert!(b.postings("instance", "nope").is_empty());
    assert!(b.postings("nope", "x").is_empty());
    // A string that is a symbol, but not a value of this name.
    assert!(b.postings("path", "instance").is_empty());

    let names: BTreeSet<&str> = pairs.keys().map(|(n, _)| n.as_str()).collect();
    assert_eq!(b.label_names(), names.into_iter().collect::<Vec<_>>());
    for name in b.label_names() {
        let values: Vec<&str> = pairs
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(b.label_values(name), values);
    }
    assert!(b.label_values("missing").is_empty());
    for v in ODD_VALUES {
        if pairs.contains_key(&("path".to_string(), v.to_string())) {
            assert!(b.label_values("path").contains(v));
        }
    }

    assert!(matches!(
        b.series(b.num_series()),
        Err(SstError::UnknownSeries { .. })
    ));
    let bogus = ChunkMeta {
        mint: 0,
        maxt: 0,
        num_samples: 1,
        offset: meta.size_bytes - 10,
        len: 100,
    };
    assert!(matches!(
        b.read_chunk(&bogus),
        Err(SstError::InvalidChunkRef { .. })
    ));
    // Misaligned but inside the section: the CRC check refuses it.
    let (_, first) = b.series(0).unwrap();
    let shifted = ChunkMeta {
        offset: first[0].offset + 1,
        ..first[0]
    };
    assert!(b.read_chunk(&shifted).unwrap_err().corrupt_section() == Some(Section::Chunks));
}

#[test]
fn single_series_single_sample_block() {
    let dir = tempfile::tempdir().unwrap();
    let l = Labels::new([("__name__", "x")]).unwrap();
    let c = ChunkData {
        mint: -17,
        maxt: -17,
        num_samples: 1,
        data: vec![0],
    };
    let source = BlockId::generate();
    let lower = BlockId(source.0.to_lowercase());
    let mut w = BlockWriter::new(dir.path(), 3, vec![lower]).unwrap();
    w.add_series(&l, std::slice::from_ref(&c)).unwrap();
    let meta = w.finish().unwrap();
    assert_eq!((meta.mint, meta.maxt, meta.level), (-17, -17, 3));
    assert_eq!(meta.sources, vec![source]);
    let b = Block::open(&meta.path).unwrap();
    assert_eq!(*b.meta(), meta);
    b.verify().unwrap();
    let (got, metas) = b.series(0).unwrap();
    assert_eq!(got, l);
    assert_eq!(b.read_chunk(&metas[0]).unwrap(), vec![0]);
    assert_eq!(b.postings("__name__", "x"), vec![0]);
    assert_eq!(list_blocks(dir.path()).unwrap(), vec![meta.path]);
}

/// Byte offsets inside `[start, end)` to flip: both edges, the middle and a few others.
fn probe_offsets(start: u64, end: u64, rng: &mut Rng) -> Vec<u64> {
    let mut v = vec![start, end - 1, start + (end - start) / 2];
    v.extend((0..5).map(|_| start + rng.below(end - start)));
    v.sort();
    v.dedup();
    v
}

#[test]
fn flipped_byte_in_every_section_is_reported_with_its_section() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(42, 300);
    let meta = write_block(dir.path(), &m);
    let orig = std::fs::read(&meta.path).unwrap();
    let footer = footer_of(&orig);
    let mut rng = Rng(7);

    let mut regions: Vec<(Section, u64, u64)> = vec![(Section::Header, 0, 8)];
    for s in SECTION_ORDER {
        let info = footer.section(s);
        assert!(info.len > 0, "{s} empty");
        regions.push((s, info.offset, info.end()));
    }
    let footer_at = orig.len() as u64 - FOOTER_LEN;
    regions.push((Section::Footer, footer_at, orig.len() as u64));
    // The index sections compress.
    for s in [Section::Symbols, Section::Series, Section::Postings] {
        assert_eq!(footer.section(s).codec, format::Codec::Snappy, "{s}");
    }

    let mut checked = 0;
    for (section, start, end) in regions {
        for off in probe_offsets(start, end, &mut rng) {
            let mut bytes = orig.clone();
            bytes[off as usize] ^= 1 << (off % 8);
            let path = write_copy(dir.path(), "flipped.sst", &bytes);
            let err = match Block::open(&path) {
                Err(e) => e,
                Ok(b) => {
                    assert_eq!(
                        section,
                        Section::Chunks,
                        "flip at {off} in {section} not caught at open"
                    );
                    let verify_err = b.verify().unwrap_err();
                    // The chunk holding the flipped byte must refuse to be read.
                    let mut hit = None;
                    for id in 0..b.num_series() {
                        for c in b.series(id).unwrap().1 {
                            let r = b.read_chunk(&c);
                            if (c.offset..c.offset + u64::from(c.len) + 4).contains(&off) {
                                hit = Some(r.unwrap_err());
                            } else {
                                assert!(r.is_ok());
                            }
                        }
                    }
                    let read_err = hit.expect("no chunk covers the flipped byte");
                    assert_eq!(read_err.corrupt_section(), Some(Section::Chunks));
                    verify_err
                }
            };
            assert_eq!(err.corrupt_section(), Some(section), "flip at {off}: {err}");
            let msg = err.to_string();
            assert!(
                msg.contains(section.name()) && msg.contains("flipped.sst"),
                "{msg}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 40);
}

#[test]
fn truncated_or_extended_files_never_open() {
    let dir = tempfile::tempdir().unwrap();
    let meta = write_block(dir.path(), &model(3, 60));
    let orig = std::fs::read(&meta.path).unwrap();
    let n = orig.len();
    let mut lengths: Vec<usize> = (0..n).step_by(37).collect();
    lengths.extend(n - 300..n);
    lengths.extend(0..20);
    for len in lengths {
        let path = write_copy(dir.path(), "cut.sst", &orig[..len]);
        let err = Block::open(&path).unwrap_err();
        assert!(err.corrupt_section().is_some(), "length {len}: {err}");
    }
    let mut longer = orig.clone();
    longer.extend_from_slice(&[0u8; 3]);
    let path = write_copy(dir.path(), "long.sst", &longer);
    assert_eq!(
        Block::open(&path).unwrap_err().corrupt_section(),
        Some(Section::Footer)
    );
}

#[test]
fn writer_rejects_out_of_order_and_invalid_series_but_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let chunk = |mint: i64, maxt: i64, n: u32| ChunkData {
        mint,
        maxt,
        num_samples: n,
        data: vec![1, 2, 3],
    };
    let a = Labels::new([("__name__", "m"), ("job", "a")]).unwrap();
    let b = Labels::new([("__name__", "m"), ("job", "b")]).unwrap();
    let c = Labels::new([("__name__", "m"), ("job", "b"), ("x", "1")]).unwrap();
    let mut w = BlockWriter::new(dir.path(), 0, Vec::new()).unwrap();
    w.add_series(&b, &[chunk(10, 20, 2)]).unwrap();
    assert!(matches!(
        w.add_series(&a, &[chunk(10, 20, 2)]),
        Err(SstError::OutOfOrder { .. })
    ));
    assert!(matches!(
        w.add_series(&b, &[chunk(30, 40, 2)]),
        Err(SstError::OutOfOrder { .. })
    ));
    let invalid: Vec<Vec<ChunkData>> = vec![
        vec![],
        vec![chunk(10, 20, 0)],
        vec![ChunkData {
            data: Vec::new(),
            ..chunk(10, 20, 2)
        }],
        vec![chunk(20, 10, 1)],
        vec![chunk(10, 12, 5)],
        vec![chunk(10, 10, 2)],
        vec![chunk(10, 20, 2), chunk(20, 30, 2)],
        vec![chunk(30, 40, 2), chunk(10, 20, 2)],
    ];
    for chunks in &invalid {
        assert!(
            matches!(
                w.add_series(&c, chunks),
                Err(SstError::InvalidSeries { .. })
            ),
            "{chunks:?} accepted"
        );
    }
    assert!(matches!(
        w.add_series(&Labels::empty(), &[chunk(1, 1, 1)]),
        Err(SstError::InvalidSeries { .. })
    ));
    w.add_series(&c, &[chunk(10, 20, 2), chunk(21, 21, 1)])
        .unwrap();
    let meta = w.finish().unwrap();
    assert_eq!(
        (meta.num_series, meta.num_chunks, meta.num_samples),
        (2, 3, 5)
    );
    let blk = Block::open(&meta.path).unwrap();
    blk.verify().unwrap();
    assert_eq!(blk.series(1).unwrap().0, c);
    assert_eq!(blk.postings("job", "b"), vec![0, 1]);
    assert_eq!(blk.postings("x", "1"), vec![1]);
}

#[test]
fn empty_block_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = BlockWriter::new(dir.path(), 0, Vec::new()).unwrap();
    assert_eq!(dir_names(dir.path()).len(), 1);
    assert!(matches!(w.finish(), Err(SstError::EmptyBlock)));
    assert!(dir_names(dir.path()).is_empty());
}

#[test]
fn unfinished_writers_never_show_up_as_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(11, 20);
    let published = write_block(dir.path(), &m);

    // Dropped: the temp file is removed.
    let mut w = BlockWriter::new(dir.path(), 0, Vec::new()).unwrap();
    let (l, c) = m.iter().next().unwrap();
    w.add_series(l, c).unwrap();
    drop(w);
    assert_eq!(dir_names(dir.path()).len(), 1);

    // A crash before the rename (no destructor runs): the temp file stays but is not a block.
    let mut w = BlockWriter::new(dir.path(), 0, Vec::new()).unwrap();
    w.add_series(l, c).unwrap();
    let crashed = w.id().clone();
    std::mem::forget(w);
    std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
    std::fs::write(dir.path().join("junk.sst"), b"x").unwrap();
    let names = dir_names(dir.path());
    assert!(names.contains(&format!(".{crashed}.sst.tmp")), "{names:?}");
    assert_eq!(
        list_blocks(dir.path()).unwrap(),
        vec![published.path.clone()]
    );

    assert_eq!(remove_temp_files(dir.path()).unwrap(), 1);
    assert!(
        !dir_names(dir.path())
            .iter()
            .any(|n| n.ends_with(TEMP_SUFFIX))
    );
    assert_eq!(list_blocks(dir.path()).unwrap(), vec![published.path]);
}

#[test]
fn invalid_source_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = BlockWriter::new(dir.path(), 1, vec![BlockId("not-a-ulid".into())]);
    assert!(matches!(r, Err(SstError::InvalidBlockId(_))));
    assert!(dir_names(dir.path()).is_empty());
}

#[test]
fn block_file_names_parse_with_negative_times() {
    let id = BlockId::generate();
    assert_eq!(
        parse_block_file_name(&format!("-500--20-{id}.sst")),
        Some((-500, -20, id.clone()))
    );
    assert_eq!(
        parse_block_file_name(&format!("-5-1700000000000-{id}.sst")),
        Some((-5, 1_700_000_000_000, id.clone()))
    );
    assert_eq!(parse_block_file_name(&format!("9-3-{id}.sst")), None);
    assert_eq!(parse_block_file_name(&format!(".{id}.sst.tmp")), None);
    assert_eq!(parse_block_file_name("1-2-zzz.sst"), None);
}

/// Many series: opening is fast and the in-memory index costs a few bytes per series beyond
/// the decoded sections.
#[test]
fn large_block_has_compact_index() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000u32;
    let mut w = BlockWriter::new(dir.path(), 0, Vec::new()).unwrap();
    let mut rng = Rng(99);
    let mut series: Vec<Labels> = (0..n)
        .map(|i| {
            Labels::new([
                ("__name__", format!("metric_{}", i % 97)),
                ("instance", format!("host-{}:9100", i % 1_013)),
                ("job", format!("job{}", i % 7)),
                (
                    "pod",
                    format!("pod-{:x}", u64::from(i) * 2_654_435_761 % 1_000_003),
                ),
            ])
            .unwrap()
        })
        .collect();
    series.sort();
    series.dedup();
    let t0 = 1_700_000_000_000i64;
    for l in &series {
        let mint = t0 + rng.below(30_000) as i64;
        let chunks = [ChunkData {
            mint,
            maxt: mint + 119 * 15_000 + rng.below(500) as i64,
            num_samples: 120,
            data: vec![rng.next() as u8; 16 + rng.below(48) as usize],
        }];
        w.add_series(l, &chunks).unwrap();
    }
    let meta = w.finish().unwrap();
    let started = std::time::Instant::now();
    let b = Block::open(&meta.path).unwrap();
    let open_time = started.elapsed();
    let ns = u64::from(b.num_series());
    assert_eq!(ns, series.len() as u64);

    let bytes = std::fs::read(&meta.path).unwrap();
    let footer = footer_of(&bytes);
    let index_on_disk: u64 = [
        Section::Symbols,
        Section::Series,
        Section::Postings,
        Section::Sources,
    ]
    .iter()
    .map(|&s| footer.section(s).len)
    .sum::<u64>()
        + FOOTER_LEN;
    let tables = b.memory_bytes() - b.index_section_bytes();
    eprintln!(
        "{ns} series: open {open_time:?}; index on disk {:.1} B/series; decoded sections {:.1} B/series; tables {:.1} B/series",
        index_on_disk as f64 / ns as f64,
        b.index_section_bytes() as f64 / ns as f64,
        tables as f64 / ns as f64,
    );
    assert!(tables as u64 <= 32 * ns, "{tables} bytes of tables");
    assert!((b.memory_bytes() as u64) < 200 * ns);
    assert_eq!(
        b.postings("job", "job3").len(),
        series
            .iter()
            .filter(|l| l.get("job") == Some("job3"))
            .count()
    );
    let last = b.num_series() - 1;
    assert_eq!(b.series(last).unwrap().0, series[last as usize]);
}

/// Replaces one section's decoded bytes and rewrites offsets, CRCs and the footer, so the
/// decoders see malformed content behind valid checksums.
fn rebuild_with_section(orig: &[u8], target: Section, raw: Vec<u8>) -> Vec<u8> {
    let footer = footer_of(orig);
    let mut out = orig[..8].to_vec();
    let mut sections = footer.sections;
    for (i, s) in SECTION_ORDER.iter().enumerate() {
        let old = footer.sections[i];
        let (stored, codec, raw_len) = if *s == target {
            let raw_len = raw.len() as u64;
            let (stored, codec) = if matches!(s, Section::Chunks | Section::Sources) {
                (raw.clone(), format::Codec::None)
            } else {
                format::compress_section(raw.clone())
            };
            (stored, codec, raw_len)
        } else {
            (
                orig[old.offset as usize..old.end() as usize].to_vec(),
                old.codec,
                old.raw_len,
            )
        };
        sections[i] = SectionInfo {
            offset: out.len() as u64,
            len: stored.len() as u64,
            raw_len,
            crc: crc32c::crc32c(&stored),
            codec,
        };
        out.extend_from_slice(&stored);
    }
    out.extend_from_slice(&Footer { sections, ..footer }.encode());
    out
}

fn decoded_section(orig: &[u8], s: Section) -> Vec<u8> {
    let info = footer_of(orig).section(s);
    let stored = orig[info.offset as usize..info.end() as usize].to_vec();
    format::decompress_section(s, &info, stored).unwrap()
}

/// Opens and reads everything; must never panic, whatever the bytes.
fn exercise(path: &Path) -> Result<(), SstError> {
    let b = Block::open(path)?;
    for name in b.label_names() {
        for v in b.label_values(name) {
            b.postings(name, v);
        }
    }
    for id in 0..b.num_series() {
        if let Ok((_, metas)) = b.series(id) {
            for c in metas {
                let _ = b.read_chunk(&c);
            }
        }
    }
    b.verify()
}

fn fixed_config(cases: u32, seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

#[test]
fn rebuilt_unchanged_file_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let meta = write_block(dir.path(), &model(5, 30));
    let orig = std::fs::read(&meta.path).unwrap();
    for s in SECTION_ORDER {
        let raw = if s == Section::Chunks {
            let i = footer_of(&orig).section(s);
            orig[i.offset as usize..i.end() as usize].to_vec()
        } else {
            decoded_section(&orig, s)
        };
        assert_eq!(rebuild_with_section(&orig, s, raw), orig, "{s}");
    }
}

proptest! {
    #![proptest_config(fixed_config(48, 0x5eed_b10c))]

    #[test]
    fn random_byte_damage_is_always_detected(
        edits in proptest::collection::vec((any::<u32>(), 1u8..=255), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let meta = write_block(dir.path(), &model(17, 12));
        let orig = std::fs::read(&meta.path).unwrap();
        let mut bytes = orig.clone();
        for (at, mask) in edits {
            let i = at as usize % bytes.len();
            bytes[i] ^= mask;
        }
        // Two edits of one byte can cancel out.
        prop_assume!(bytes != orig);
        let path = write_copy(dir.path(), "damaged.sst", &bytes);
        let r = exercise(&path);
        prop_assert!(r.is_err());
        prop_assert!(r.unwrap_err().corrupt_section().is_some());
    }

    #[test]
    fn malformed_sections_behind_valid_crcs_never_panic(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<u32>(), any::<u8>()), 1..8),
        cut in any::<u16>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let meta = write_block(dir.path(), &model(23, 15));
        let orig = std::fs::read(&meta.path).unwrap();
        let section = SECTION_ORDER[which];
        let mut raw = if section == Section::Chunks {
            let i = footer_of(&orig).section(section);
            orig[i.offset as usize..i.end() as usize].to_vec()
        } else {
            decoded_section(&orig, section)
        };
        for (at, v) in edits {
            let i = at as usize % raw.len();
            raw[i] = v;
        }
        if cut % 3 == 0 {
            raw.truncate(usize::from(cut) % (raw.len() + 1));
        }
        let path = write_copy(dir.path(), "crafted.sst", &rebuild_with_section(&orig, section, raw));
        // Any outcome but a panic is acceptable: some edits leave a valid block.
        let _ = exercise(&path);
    }
}
