"""Prometheus metrics of the webhook, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from taskcore.fn import FN_LATENCY

REGISTRY = CollectorRegistry(auto_describe=True)

ADMISSIONS = Counter("fntc_admissions", "Admission reviews answered, by operation and outcome.",
                     ["operation", "outcome"], registry=REGISTRY)
ADMISSION_SECONDS = Histogram("fntc_admission_seconds", "Time to answer one admission review.",
                              ["operation"], registry=REGISTRY,
                              buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
FN_CALL_SECONDS = Histogram("fntc_fn_call_seconds", "Latency of calls to the Federated Node.",
                            ["call"], registry=REGISTRY,
                            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))

FN_LATENCY.sink = lambda call, seconds: FN_CALL_SECONDS.labels(call).observe(seconds)
