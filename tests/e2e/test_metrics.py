"""Prometheus metrics at /metrics (docs/operations.md, "Metrics") and the JSON log format.

A scripted workload (PUTs and GETs in every SSE mode, a missing object, a bad signature, admin API calls, a paused
rewrap job) is scraped with plain urllib and parsed with the `prometheus_client` text parser, and the counters must
be exactly what the workload did. The endpoint can require a bearer token (read again on SIGHUP) or be turned off;
the alert rules shipped in docs/prometheus only use metrics a real scrape has. With `--log-format json` every log
line is a JSON object and request lines carry the operation, the access key, the status, the bytes and the duration.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request
from email.message import Message

import promql_parser
import pytest
import yaml
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from harness import REPO, CofferServer, Credentials, unique_name
from sse_helpers import CustomerKey, kms_admin_ok, no_retry_client, random_bytes

ALERT_RULES = REPO / "docs" / "prometheus" / "coffer-alerts.yml"
DASHBOARD = REPO / "docs" / "grafana" / "coffer-dashboard.json"
DAY = 86_400


def scrape(server: CofferServer, token: str | None = None, method: str = "GET") -> tuple[int, Message, str]:
    """(status, headers, body) of one unsigned request to /metrics."""
    request = urllib.request.Request(server.endpoint + "/metrics", method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


class Scrape:
    """One parsed scrape: every sample by its name and labels."""

    def __init__(self, text: str):
        self.families = list(text_string_to_metric_families(text))
        self.samples = {(sample.name, frozenset(sample.labels.items())): sample.value
                        for family in self.families for sample in family.samples}

    def value(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"no sample {name}{labels}; have {self.labelled(name)}"
        return self.samples[key]

    def labelled(self, name: str) -> list[dict]:
        return [dict(labels) for (sample, labels) in self.samples if sample == name]

    def names(self) -> set[str]:
        return {name for (name, _) in self.samples}


def scraped(server: CofferServer, token: str | None = None) -> Scrape:
    status, headers, text = scrape(server, token)
    assert status == 200, (status, text)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
    return Scrape(text)


# The workload: (key, size, PUT/GET parameters).
CUSTOMER = CustomerKey.generate()
OBJECTS = [
    ("plain-a", 1_000, {}),
    ("plain-b", 70_001, {}),
    ("sse-s3-a", 3_000, {"ServerSideEncryption": "AES256"}),
    ("sse-s3-b", 5_000, {"ServerSideEncryption": "AES256"}),
    ("sse-kms-a", 7_000, {"ServerSideEncryption": "aws:kms"}),
    ("sse-kms-b", 11_000, {"ServerSideEncryption": "aws:kms"}),
    ("sse-c", 13_000, CUSTOMER.boto()),
]


def test_a_scripted_workload_is_counted_exactly(coffer_factory):
    server = coffer_factory()
    expiring = unique_name("expiring")
    in_ten_days = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 10 * DAY))
    kms_admin_ok(server, "POST", "/keys", {"key_id": expiring, "expires_at": in_ten_days})
    admin_calls = 1

    bucket = unique_name()
    server.s3.create_bucket(Bucket=bucket)
    for number, (key, size, params) in enumerate(OBJECTS):
        server.s3.put_object(Bucket=bucket, Key=key, Body=random_bytes(size, seed=number), **params)
    for number, (key, size, params) in enumerate(OBJECTS):
        get_params = params if "SSECustomerKey" in params else {}
        body = server.s3.get_object(Bucket=bucket, Key=key, **get_params)["Body"].read()
        assert body == random_bytes(size, seed=number)
    with pytest.raises(ClientError) as missing:
        server.s3.head_object(Bucket=bucket, Key="missing")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as forged:
        server.s3_client(Credentials(server.root.access_key, "not-the-secret")).list_buckets()
    assert forged.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    # A rewrap job that runs one object a second, paused at once: its counters hold still while we compare.
    job = kms_admin_ok(server, "POST", "/jobs/rewrap", {"buckets": [bucket], "from": {"mode": "sse-s3"},
                                                        "objects_per_second": 1, "dry_run": True})
    kms_admin_ok(server, "POST", f"/jobs/{job['id']}/pause")
    job = kms_admin_ok(server, "GET", f"/jobs/{job['id']}")
    admin_calls += 3
    assert job["state"] == "paused", job

    metrics = scraped(server)
    stored = sum(size for _, size, _ in OBJECTS)
    requests = "coffer_s3_requests_total"
    assert metrics.value(requests, operation="CreateBucket", status="200") == 1
    assert metrics.value(requests, operation="PutObject", status="200") == len(OBJECTS)
    assert metrics.value(requests, operation="GetObject", status="200") == len(OBJECTS)
    assert metrics.value(requests, operation="HeadObject", status="404") == 1
    assert metrics.value(requests, operation="unknown", status="403") == 1  # refused before s3s named it
    assert metrics.value(requests, operation="AdminApi", status="200") == admin_calls
    expected_series = {("CreateBucket", "200"), ("PutObject", "200"), ("GetObject", "200"), ("HeadObject", "404"),
                       ("unknown", "403"), ("AdminApi", "200")}
    assert {(l["operation"], l["status"]) for l in metrics.labelled(requests)} == expected_series

    assert metrics.value("coffer_s3_request_body_bytes_total", operation="PutObject") == stored
    assert metrics.value("coffer_s3_response_body_bytes_total", operation="GetObject") == stored
    assert metrics.value("coffer_s3_response_body_bytes_total", operation="HeadObject") == 0
    duration = "coffer_s3_request_duration_seconds"
    assert metrics.value(duration + "_count", operation="PutObject") == len(OBJECTS)
    assert metrics.value(duration + "_bucket", operation="PutObject", le="+Inf") == len(OBJECTS)
    assert 0 < metrics.value(duration + "_sum", operation="PutObject") < 60 * len(OBJECTS)

    assert metrics.value("coffer_kms_state", state="Running") == 1
    assert metrics.value("coffer_kms_state", state="Error") == 0
    assert metrics.value("coffer_kms_store_healthy", store="local", backend="local", default="true") == 1
    hits, misses = metrics.value("coffer_kms_cache_hits_total"), metrics.value("coffer_kms_cache_misses_total")
    assert misses >= 1 and hits >= 1, (hits, misses)  # the second SSE-S3 PUT reuses the bucket key
    assert metrics.value("coffer_kms_cache_entries", store="local") >= 1
    assert metrics.value("coffer_kms_calls_total", operation="generate_data_key", outcome="ok") >= 1
    assert metrics.value("coffer_kms_calls_total", operation="create_key", outcome="ok") == 1
    for labels in metrics.labelled("coffer_kms_calls_total"):
        if labels["outcome"] == "error":
            assert metrics.value("coffer_kms_calls_total", **labels) == 0, labels

    left = metrics.value("coffer_kms_key_expiry_seconds", store="local", key=expiring)
    assert 10 * DAY - 600 < left <= 10 * DAY, left
    age = metrics.value("coffer_kms_key_rotation_age_seconds", store="local", key=expiring)
    assert 0 <= age < 600, age
    assert ("coffer_kms_key_expiry_seconds", frozenset({"store": "local", "key": "coffer-default"}.items())) \
        not in metrics.samples, "a key without an expiry has no expiry series"

    assert metrics.value("coffer_jobs", state="paused") == 1
    assert metrics.value("coffer_jobs", state="running") == 0
    assert metrics.value("coffer_job_state", job_id=job["id"], state="paused") == 1
    for kind in ("total", "examined", "changed", "unchanged", "skipped_sse_c", "failed"):
        assert metrics.value("coffer_job_objects", job_id=job["id"], kind=kind) == job["progress"][kind], kind
    assert job["progress"]["total"] == len(OBJECTS)

    # Scrapes are neither S3 requests nor counted; a HEAD gets the headers only.
    again = scraped(server)
    assert again.value(requests, operation="GetObject", status="200") == len(OBJECTS)
    assert {(l["operation"], l["status"]) for l in again.labelled(requests)} == expected_series
    status, headers, body = scrape(server, method="HEAD")
    assert (status, body) == (200, "") and int(headers["Content-Length"]) > 0
    kms_admin_ok(server, "POST", f"/jobs/{job['id']}/cancel")


def test_the_alert_rules_and_the_dashboard_use_only_exported_and_documented_metrics(coffer_factory):
    server = coffer_factory()
    server.s3.list_buckets()  # the request series appear with the first request
    families = scraped(server).families
    exported = {sample.name for family in families for sample in family.samples}
    # Series that appear only once a key has an expiry or a job is under way (see the workload test).
    later = {"coffer_kms_key_expiry_seconds", "coffer_job_state", "coffer_job_objects", "coffer_job_changed_bytes"}
    # Every metric is documented: a histogram by its name, the others by their series' name.
    names = {family.name for family in families if family.type == "histogram"}
    names |= {sample.name for family in families if family.type != "histogram" for sample in family.samples}
    documented = set(re.findall(r"`(coffer_[a-z0-9_]+)", (REPO / "docs" / "operations.md").read_text()))
    assert not (names | later) - documented, f"not in docs/operations.md: {(names | later) - documented}"

    rules = yaml.safe_load(ALERT_RULES.read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"CofferKmsStoreDown", "CofferKmsCacheHitRatioLow", "CofferKmsKeyExpiresSoon"} <= set(alerts)
    used = set()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        used |= metric_names(rule["expr"])
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used |= metric_names(target["expr"].replace("$__rate_interval", "5m"))
    unknown = used - exported - later
    assert not unknown, f"used but not exported: {unknown}"


def metric_names(expression: str) -> set[str]:
    names = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expression), pre_visit=visit)
    return names


def test_a_token_file_protects_the_endpoint_and_sighup_reads_it_again(coffer_factory, tmp_path):
    token_file = tmp_path / "metrics-token"
    token_file.write_text("first-metrics-token\n")
    server = coffer_factory(args=["--metrics-token-file", str(token_file)])

    status, headers, _ = scrape(server)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), (status, headers)
    assert scrape(server, token="not-the-token")[0] == 401
    assert scrape(server, token="first-metrics-token", method="HEAD")[0] == 200
    assert scraped(server, token="first-metrics-token").value("coffer_kms_state", state="Running") == 1

    token_file.write_text("second-metrics-token")
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "metrics token" not in server.log():
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.1)
    assert scrape(server, token="first-metrics-token")[0] == 401
    assert scrape(server, token="second-metrics-token")[0] == 200

    # A signed request to a bucket named `metrics` is S3, and counted as such.
    server.s3.create_bucket(Bucket="metrics")
    server.s3.put_object(Bucket="metrics", Key="k", Body=b"an object")
    assert [o["Key"] for o in server.s3.list_objects_v2(Bucket="metrics")["Contents"]] == ["k"]
    metrics = scraped(server, token="second-metrics-token")
    assert metrics.value("coffer_s3_requests_total", operation="ListObjectsV2", status="200") == 1
    server.stop_and_check()
    assert "metrics-token" not in server.log().replace(str(token_file), "")


def test_metrics_turned_off_in_the_config_file_answer_404(coffer_factory, tmp_path):
    config = tmp_path / "coffer.toml"
    config.write_text("metrics = false\n")
    server = coffer_factory(args=["--config", str(config)])
    assert scrape(server)[0] == 404
    assert scrape(server, method="HEAD")[0] == 404
    assert scrape(server, token="anything")[0] == 404
    with urllib.request.urlopen(server.endpoint + "/health/live", timeout=10) as response:
        assert response.status == 200


def test_json_log_lines_carry_the_request_fields(coffer_factory, tmp_path):
    config = tmp_path / "coffer.toml"
    config.write_text('log-format = "json"\n')
    server = coffer_factory(args=["--config", str(config)])
    bucket = unique_name()
    server.s3.create_bucket(Bucket=bucket)
    body = random_bytes(12_345, seed=5)
    server.s3.put_object(Bucket=bucket, Key="k", Body=body, ServerSideEncryption="aws:kms")
    assert server.s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body
    with pytest.raises(ClientError):
        server.s3.head_object(Bucket=bucket, Key="missing")
    server.stop_and_check()

    lines = [json.loads(line) for line in server.log().splitlines()]  # every line is one JSON object
    assert all({"timestamp", "level", "target", "message"} <= line.keys() for line in lines), lines[:3]
    assert any(line["message"].startswith("coffer listening on") for line in lines)
    requests = [line for line in lines if line["message"] == "request"]
    by_operation = {line["operation"]: line for line in requests}
    put, get, head = by_operation["PutObject"], by_operation["GetObject"], by_operation["HeadObject"]
    assert (put["status"], put["request_bytes"], put["response_bytes"]) == (200, len(body), 0), put
    assert (get["status"], get["request_bytes"], get["response_bytes"]) == (200, 0, len(body)), get
    assert (head["status"], head["response_bytes"]) == (404, 0), head
    for line in (put, get, head):
        assert line["access_key"] == server.root.access_key, line
        assert line["method"] in ("PUT", "GET", "HEAD") and line["path"].startswith(f"/{bucket}/"), line
        assert isinstance(line["ms"], (int, float)) and line["ms"] >= 0, line
        assert line["level"] == "INFO" and line["target"] == "coffer_server::request", line
        assert re.fullmatch(r"[0-9A-F]+", line["request_id"]), line
    assert server.root.secret_key not in server.log()


@pytest.mark.openbao
def test_a_kms_store_going_down_shows_in_store_health_and_call_errors(coffer_factory, openbao_factory):
    bao = openbao_factory()
    server = coffer_factory(args=["--kms-backend", "vault", "--kms-vault-address", bao.address,
                                  "--kms-retry-attempts", "0", "--kms-default-key-id", unique_name("metrics")],
                            env={"COFFER_KMS_VAULT_TOKEN": bao.token})
    before = scraped(server)
    [store] = before.labelled("coffer_kms_store_healthy")
    assert before.value("coffer_kms_store_healthy", **store) == 1
    assert store["backend"] == "vault-transit" and store["default"] == "true", store
    errors_before = before.value("coffer_kms_calls_total", operation="generate_data_key", outcome="error")

    bao.stop()
    bucket = unique_name()
    server.s3.create_bucket(Bucket=bucket)
    strict = no_retry_client(server)
    with pytest.raises(ClientError) as refused:
        strict.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, refused.value.response
    time.sleep(1.2)  # past the reuse window of the last KMS status
    after = scraped(server)
    assert after.value("coffer_kms_store_healthy", **store) == 0
    # botocore may send the refused PUT more than once; each one made exactly one failing KMS call.
    refused_puts = after.value("coffer_s3_requests_total", operation="PutObject", status="503")
    assert refused_puts >= 1
    errors = after.value("coffer_kms_calls_total", operation="generate_data_key", outcome="error")
    assert errors == errors_before + refused_puts, (errors_before, errors, refused_puts)
    assert after.value("coffer_kms_state", state="Running") == 1
