//! `Engine::process` on a 4 MiB chunk of realistic audit lines, prefilter on and off, and in
//! stateful mode (every RBAC change extracted, with its body decoded, for the tracker).
//!
//! The lines come from `data/sample.jsonl`, made by the workload generator:
//! `python3 /work/shared/bench/gen_audit.py --events 2000 --seed 7 > data/sample.jsonl`
//! (2.3 MB, 33 lines mention `clusterroles`, 3 must alert). It is repeated to fill the chunk.

use audit::framing::LineChunker;
use audit::Chunk;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use detect::clusterrole_pod_write::RuleOptions;
use detect::engine::Finding;
use detect::{Config, Engine, EngineOptions, Suppressions};
use std::hint::black_box;
use std::time::Duration;

const SAMPLE: &[u8] = include_bytes!("data/sample.jsonl");
const CHUNK: usize = 4 << 20;

/// One chunk of whole lines, about 4 MiB, as the reader would hand it to a worker.
fn chunk() -> Chunk {
    let mut buf = Vec::with_capacity(CHUNK + SAMPLE.len());
    while buf.len() < CHUNK {
        buf.extend_from_slice(SAMPLE);
    }
    // Cut at the last newline before 4 MiB.
    let end = buf[..CHUNK]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(buf.len(), |i| i + 1);
    buf.truncate(end);
    let mut chunks = LineChunker::new(&buf[..], Vec::new(), buf.len() + 1, 1 << 20);
    let c = chunks.next().expect("one chunk").expect("in memory");
    assert_eq!(c.bytes().len(), buf.len(), "the whole buffer is one chunk");
    c
}

fn engine(prefilter: bool, stateful: bool) -> Engine {
    Engine::new(
        EngineOptions {
            rule: RuleOptions::default(),
            prefilter,
            max_record: 1 << 20,
            stateful,
            input_format: audit::InputFormat::Auto,
            envelopes: false,
        },
        Suppressions::new(&Config::default()),
    )
}

fn bench(c: &mut Criterion) {
    let chunk = chunk();
    let mut g = c.benchmark_group("engine_process_4MiB");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(chunk.bytes().len() as u64));
    let mut alerts = Vec::new();
    for (name, prefilter) in [("prefilter", true), ("no-prefilter", false)] {
        let e = engine(prefilter, false);
        let rep = e.process(&chunk);
        alerts.push(
            rep.findings
                .iter()
                .filter(|f| matches!(f, Finding::Alert { .. }))
                .count(),
        );
        g.bench_function(name, |b| b.iter(|| e.process(black_box(&chunk)).events));
    }
    let e = engine(true, true);
    let changes = e
        .process(&chunk)
        .findings
        .iter()
        .filter(|f| matches!(f, Finding::Change { .. }))
        .count();
    g.bench_function("stateful", |b| {
        b.iter(|| e.process(black_box(&chunk)).findings.len())
    });
    g.finish();
    assert_eq!(alerts[0], alerts[1], "the prefilter changed the alerts");
    assert!(alerts[0] > 0, "the sample has alerting events");
    assert!(changes > 0, "the sample has RBAC changes");
}

criterion_group!(benches, bench);
criterion_main!(benches);
