"""Parses a scrape with the official Python client's parsers and prints its
samples as JSON: [{"name", "labels", "value", "exemplar"}], exemplar being
{"labels", "value", "timestamp"} or null. Argument: "text" (the Prometheus
text format) or "openmetrics" (OpenMetrics 1.0, exemplars included). A
scrape either parser refuses exits non-zero with its reason."""

import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

kind = sys.argv[1]
text = sys.stdin.read()
families = openmetrics_families(text) if kind == "openmetrics" else text_families(text)
samples = []
for family in families:
    for sample in family.samples:
        exemplar = None
        if sample.exemplar is not None:
            exemplar = {
                "labels": sample.exemplar.labels,
                "value": sample.exemplar.value,
                "timestamp": float(sample.exemplar.timestamp),
            }
        samples.append(
            {
                "family": family.name,
                "type": family.type,
                "unit": family.unit,
                "name": sample.name,
                "labels": sample.labels,
                "value": sample.value,
                "exemplar": exemplar,
            }
        )
json.dump(samples, sys.stdout)
