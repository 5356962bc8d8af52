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


def test_consumer_lag_is_a_gauge_per_partition():
    lag = {("recordings.raw", 1): 7, ("recordings.raw", 0): 0}
    metrics = WorkerMetrics(WorkerCollector(Counter(), lambda: 0, consumer_lag=lambda: lag))
    text = metrics.render().decode()
    assert "# TYPE streamproc_worker_consumer_lag gauge" in text
    assert 'streamproc_worker_consumer_lag{partition="1",topic="recordings.raw"} 7.0' in text
