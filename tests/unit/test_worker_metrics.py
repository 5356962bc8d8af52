from collections import Counter

from streamproc.worker.metrics import WorkerCollector, WorkerMetrics


def test_worker_metrics_read_the_live_counters_at_scrape_time():
    counts: Counter[str] = Counter()
    swept = [0]
    metrics = WorkerMetrics(WorkerCollector(counts, records_swept=lambda: swept[0]))
    assert b"streamproc_worker_records_swept_total 0.0" in metrics.render()
    counts["folded"] += 3
    swept[0] = 2
    text = metrics.render().decode()
    assert 'streamproc_worker_events_total{outcome="folded"} 3.0' in text
    assert "streamproc_worker_records_swept_total 2.0" in text
    assert "charset" not in metrics.content_type
