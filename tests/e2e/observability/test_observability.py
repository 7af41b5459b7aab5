"""Traces and privacy through the real stack: Envoy (OpenTelemetry tracer) and the sidecar both
export over OTLP/gRPC to a real receiver.

- One trace per request: Envoy's ingress span -> its ext_proc egress span -> the decision span
  (the sidecar reads the parent from the stream's gRPC metadata), and no router span (the
  shipped spawn_upstream_span: false); the upstream cluster is on the ingress span. Expected
  attributes come from the core ``decide`` with the same rules file, for split v1 / v2,
  forced, rule and missing-id requests.
- Raw user ids are in no exported span byte, no metrics text (sidecar, Envoy) and no log line
  (sidecar with the decision log at rate 1, Envoy); decision log lines carry the keyed hash.
- A dead or hung receiver neither fails a request nor delays a decision into Envoy's
  fail-open (a delayed decision would time out after 0.2 s and land a v2 user on v1).
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator

import pytest

from extproc.core.decide import decide
from extproc.core.loader import load_rules
from extproc.core.model import Cohort, Reason, Rules
from extproc.stack import client
from extproc.stack.otlp import OtlpTarget
from extproc.stack.processes import free_port, wait_until
from extproc.stack.stack import DEFAULT_RULES, Stack
from extproc.telemetry.privacy import IdHasher
from tests.support import scrape
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.envoy

SECRET = "observability-e2e-key"
ENVOY_SERVICE = "tts-gateway"
SIDECAR_SERVICE = "tts-canary-extproc"  # the sidecar's default OTEL service name
SERVER, CLIENT = 2, 3  # OTLP span kinds
FAST_FLUSH_MS = 50
SIDECAR_ENV = {"EXTPROC_ID_HASH_KEY": SECRET, "EXTPROC_DECISION_LOG_RATE": "1"}
CASES = ["split-v1", "split-v2", "forced-v2", "forced-v1", "rule-v1", "missing-id"]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced_stack(
    receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    rules = tmp_path_factory.mktemp("rules") / "rules.yaml"
    shutil.copyfile(DEFAULT_RULES, rules)
    target = OtlpTarget("127.0.0.1", receiver.port, flush_interval_ms=FAST_FLUSH_MS)
    run_dir = tmp_path_factory.mktemp("traced-stack")
    with Stack.with_free_ports(
        run_dir=run_dir, rules=rules, otlp_endpoint=target, sidecar_env=SIDECAR_ENV
    ) as stack:
        yield stack


@pytest.fixture
def traced(traced_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The traced stack; its process logs are printed when the test fails."""
    yield traced_stack
    client.close_connections()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for process in traced_stack.processes():
            print(process.log_tail())


def first_user(rules: Rules, cohort: Cohort, prefix: str) -> str:
    """The first ``prefix-N`` user the default split puts in ``cohort``."""
    for n in range(100_000):
        user = f"{prefix}-{n}"
        decision = decide(rules, {rules.identity.user_header: user})
        if decision.cohort is cohort and decision.reason is Reason.SPLIT:
            return user
    raise AssertionError(f"no {cohort} user found")


def case_headers(rules: Rules, case: str) -> dict[str, str]:
    """Request headers for one named case, derived from the rules (nothing hard-coded)."""
    user_header = rules.identity.user_header
    if case == "split-v1":
        return {user_header: first_user(rules, Cohort.V1, "trace-user")}
    if case == "split-v2":
        return {user_header: first_user(rules, Cohort.V2, "trace-user")}
    if case == "forced-v2":
        return {user_header: sorted(rules.force_v2)[0]}
    if case == "forced-v1":
        return {user_header: sorted(rules.force_v1)[0]}
    if case == "rule-v1":
        rule = next(r for r in rules.rules if r.cohort is Cohort.V1 and r.when.regions)
        region = sorted(rule.when.regions or ())[0]
        return {user_header: "trace-rule-user", rules.attributes.region: region}
    assert case == "missing-id"
    return {}


def request_spans(spans: list[ReceivedSpan], request_id: str) -> dict[str, ReceivedSpan]:
    """The spans of the trace whose ingress span carries ``request_id``, by role."""
    ingress = [
        s
        for s in spans
        if s.service == ENVOY_SERVICE and s.attributes.get("guid:x-request-id") == request_id
    ]
    if len(ingress) != 1:
        return {}
    trace = [s for s in spans if s.trace_id == ingress[0].trace_id]
    found = {"ingress": ingress[0]}
    for span in trace:
        if span.service == SIDECAR_SERVICE:
            found["decision"] = span
        elif span.kind == CLIENT and "ExternalProcessor.Process" in span.name:
            found["ext_proc"] = span
        elif span.kind == CLIENT and span.name.startswith("router "):
            found["upstream"] = span
    return found


def traced_request(
    stack: Stack, receiver: OtlpReceiver, headers: dict[str, str]
) -> tuple[client.Reply, dict[str, ReceivedSpan]]:
    """Send one request with a fresh x-request-id; wait for its three spans."""
    request_id = str(uuid.uuid4())
    reply = client.send(stack, {**headers, "x-request-id": request_id})
    assert reply.status == 200
    roles = {"ingress", "ext_proc", "decision"}
    spans = receiver.wait_for(
        lambda s: set(request_spans(s, request_id)) == roles, f"the spans of {request_id}"
    )
    return reply, request_spans(spans, request_id)


@pytest.mark.parametrize("case", CASES)
def test_one_trace_from_envoy_through_the_decision_to_the_upstream(
    traced: Stack, receiver: OtlpReceiver, case: str
) -> None:
    rules = load_rules(traced.rules)
    headers = case_headers(rules, case)
    want = decide(rules, headers)
    reply, spans = traced_request(traced, receiver, headers)
    ingress, ext_proc, decision = (spans[k] for k in ("ingress", "ext_proc", "decision"))
    # One trace: ingress (root) -> ext_proc egress -> decision; no router span (the shipped
    # config leaves spawn_upstream_span off: the ingress span carries the upstream cluster).
    assert len({s.trace_id for s in spans.values()}) == 1
    assert "upstream" not in spans
    assert ingress.parent_span_id == "" and ingress.kind == SERVER
    assert ext_proc.parent_span_id == ingress.span_id
    assert decision.parent_span_id == ext_proc.span_id and decision.kind == SERVER
    # The upstream cluster on Envoy's ingress span is the decided cohort's, and it answered.
    cluster = f"tts_{want.cohort.value}"
    assert reply.version == want.cohort.value
    assert ingress.attributes["upstream_cluster"] == cluster
    assert ext_proc.attributes["upstream_cluster"] == "extproc_sidecar"
    # The decision's attributes, as the core decides them.
    key = headers.get(want.key_source) if want.key_source else None
    expected = {
        "feature_flag.key": rules.name,
        "feature_flag.result.variant": want.cohort.value,
        "feature_flag.result.reason": want.reason.value,
        "feature_flag.version": rules.version,
        "tts_canary.rule": want.rule,
        "tts_canary.bucket": want.bucket if want.bucket >= 0 else None,
        "feature_flag.context.id": IdHasher(SECRET.encode()).hash(key) if key else None,
        "tts_canary.key_header": want.key_source,
    }
    assert {k: decision.attributes.get(k) for k in expected} == expected


def test_raw_user_ids_leave_no_trace_in_spans_metrics_or_logs(
    traced: Stack, receiver: OtlpReceiver
) -> None:
    rules = load_rules(traced.rules)
    token = uuid.uuid4().hex
    raw_ids = [f"raw-user-{token}-{n}" for n in range(4)]
    requests = [{rules.identity.user_header: raw} for raw in raw_ids]
    device = f"raw-device-{token}"  # a fallback key is a user id too
    requests.append({rules.identity.fallback_headers[0]: device})
    raw_ids.append(device)
    for headers in requests:
        traced_request(traced, receiver, headers)
    hasher = IdHasher(SECRET.encode())

    def decision_log() -> dict[str, dict[str, object]]:
        text = traced.sidecar.log_path.read_text(encoding="utf-8", errors="replace")
        lines = [
            line.split("extproc.decisions: ", 1)[1]
            for line in text.splitlines()
            if "extproc.decisions: " in line
        ]
        entries = [json.loads(line) for line in lines]
        return {str(e["feature_flag.context.id"]): e for e in entries}

    hashes = {raw: hasher.hash(raw) for raw in raw_ids}
    wait_until(lambda: set(hashes.values()) <= set(decision_log()), "decision log lines", 10)
    for headers, raw in zip(requests, raw_ids, strict=True):
        entry = decision_log()[hashes[raw]]
        want = decide(rules, headers)
        assert entry["feature_flag.result.variant"] == want.cohort.value
        assert entry["feature_flag.result.reason"] == want.reason.value
        assert entry["rule"] == want.rule
    with receiver.lock:
        exported = b"".join(receiver.raw)
    texts = {
        "exported spans": exported,
        "sidecar /metrics": scrape.fetch(traced.metrics_url).encode(),
        "Envoy /stats/prometheus": scrape.fetch(traced.admin_url + "/stats/prometheus").encode(),
        "Envoy /stats": scrape.fetch(traced.admin_url + "/stats").encode(),
        "Envoy access log": traced.access_log_path.read_bytes(),
        **{f"{p.name} log": p.log_path.read_bytes() for p in traced.processes()},
    }
    leaks = [(raw, where) for raw in raw_ids for where, t in texts.items() if raw.encode() in t]
    assert not leaks
    assert all(hashes[raw].encode() in exported for raw in raw_ids)  # the hash is there


def decided_cohorts_survive(stack: Stack, users: list[str]) -> None:
    """Every user gets 200 from their decided cohort's model; Envoy never failed open."""
    rules = load_rules(stack.rules)
    for user in users:
        reply = client.send(stack, {rules.identity.user_header: user})
        assert reply.status == 200
        assert reply.version == decide(rules, {rules.identity.user_header: user}).cohort.value
    stats = stack.envoy_stats(r"ext_proc\.(failure_mode_allowed|message_timeouts)$")
    assert sum(stats.values()) == 0, stats  # usedonly: a counter never bumped is absent
    assert all(process.alive() for process in stack.processes())


def mixed_users(stack: Stack, count: int) -> list[str]:
    """``count`` users, at least one of them in v2 (so a fail-open would show)."""
    rules = load_rules(stack.rules)
    return [first_user(rules, Cohort.V2, "mixed"), *(f"mixed-{n}" for n in range(count - 1))]


def test_a_dead_receiver_fails_no_request_and_crashes_nothing(
    make_stack: Callable[..., Stack],
) -> None:
    nobody = OtlpTarget("127.0.0.1", free_port(), flush_interval_ms=FAST_FLUSH_MS)
    stack = make_stack(otlp_endpoint=nobody, sidecar_env=SIDECAR_ENV)
    decided_cohorts_survive(stack, mixed_users(stack, 20))

    def both_tried() -> bool:
        log = stack.sidecar.log_path.read_text(encoding="utf-8", errors="replace")
        sidecar_tried = "exporting traces to" in log or "Failed to export traces" in log
        envoy = stack.envoy_stats(r"^cluster\.otel_collector\.upstream_cx_connect_fail$")
        return sidecar_tried and sum(envoy.values()) > 0

    wait_until(both_tried, "Envoy and the sidecar to fail exporting", 30)
    decided_cohorts_survive(stack, mixed_users(stack, 20))  # also while retrying
    client.close_connections()


def test_a_hung_receiver_delays_no_decision(make_stack: Callable[..., Stack]) -> None:
    with OtlpReceiver(delay=120) as hung:
        target = OtlpTarget("127.0.0.1", hung.port, flush_interval_ms=FAST_FLUSH_MS)
        stack = make_stack(otlp_endpoint=target, sidecar_env=SIDECAR_ENV)
        client.send(stack, {"x-user-id": "first"})
        wait_until(lambda: hung.exports_in_flight >= 2, "exports stuck in the receiver", 30)
        decided_cohorts_survive(stack, mixed_users(stack, 40))
        client.close_connections()
        # While the receiver still hangs: the sidecar drains and exits 0 (bounded flush).
        assert stack.stop_sidecar() == 0


def test_sidecar_spans_follow_envoys_sampling(make_stack: Callable[..., Stack]) -> None:
    """At 0 % Envoy still passes a traceparent (flag 00); the sidecar then records nothing."""
    with OtlpReceiver() as quiet:
        target = OtlpTarget(
            "127.0.0.1", quiet.port, sampling_percent=0, flush_interval_ms=FAST_FLUSH_MS
        )
        stack = make_stack(otlp_endpoint=target, sidecar_env=SIDECAR_ENV)
        for n in range(10):
            assert client.send(stack, {"x-user-id": f"unsampled-{n}"}).status == 200
        client.close_connections()
        assert scrape.total(scrape.fetch(stack.metrics_url), "tts_canary_decisions_total") == 10
        assert stack.stop_sidecar() == 0  # a graceful stop flushes whatever spans were queued
        assert quiet.snapshot() == []


def runtime_modify(stack: Stack, key: str, value: str) -> None:
    url = f"{stack.admin_url}/runtime_modify?{urllib.parse.urlencode({key: value})}"
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5) as reply:
        assert reply.status == 200


def test_sampling_changes_at_run_time_through_the_admin_layer(
    traced: Stack, receiver: OtlpReceiver
) -> None:
    """The shipped layered_runtime keeps an admin layer: POST /runtime_modify sets the
    sampling of a running Envoy (here 0 %, then back to the stack's 100 %)."""
    runtime_modify(traced, "tracing.random_sampling", "0")
    try:
        unsampled_id = str(uuid.uuid4())
        assert client.send(traced, {"x-request-id": unsampled_id}).status == 200
    finally:
        runtime_modify(traced, "tracing.random_sampling", "100")
    _, spans = traced_request(traced, receiver, {})  # sampled again: its spans arrive
    assert spans["ingress"].trace_id
    # Envoy exports in order, so the unsampled request's span would have come first.
    assert not any(
        s.attributes.get("guid:x-request-id") == unsampled_id for s in receiver.snapshot()
    )
