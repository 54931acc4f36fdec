"""Consent-check benchmark: ``GET /api/v1/consent/check`` against ``GET /healthz`` on the same
gunicorn server, in the same run.

Run it with the environment of ``make test`` (``DATABASE_URL``, ``REDIS_URL``,
``CELERY_BROKER_URL``), e.g.::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/compliance \\
    REDIS_URL=redis://127.0.0.1:6379/ CELERY_BROKER_URL=redis://127.0.0.1:6379/ \\
    .venv/bin/python bench/consent_check.py

It creates a database of its own on the server named by ``DATABASE_URL`` (only host, port,
user and password are used), migrates it, seeds 10,000 customers x 5 purposes with a
consent history for some of them, starts gunicorn with ``compliance.gunicorn_conf`` on
that database and Redis, and drives it with ``wrk`` (``apt-get install -y wrk``), a C load
generator that costs the 2-core machine far less CPU than a Python client would.

Phases, each after a warm-up, at the same concurrency (the cache is pre-warmed before phase 2
with one batch check per 1,000 customers and one GET check per customer, so it measures the
steady state):

1. ``GET /healthz``: the bare endpoint (Django, no database, no cache): the baseline.
2. ``GET /api/v1/consent/check`` for random (customer, purpose) pairs out of 10,000 x 5,
   through the full stack: API key authentication, the request-rate throttle (on, with a
   limit too high to trigger), the subject lookup, the cached states.
3. ``POST /api/v1/consent/check`` with batches of 1,000 random pairs: pairs per second.

``--rounds N`` repeats phases 1 and 2 N times, alternating, and reports the median ratio, so
a change of load on a shared machine weighs on both. ``--floor`` also measures an ASGI
application that only returns a constant (``bench/constant_asgi.py``) under the same
gunicorn settings and load: the best p99 this machine gives at that concurrency.

It prints requests/s, p50 and p99 of each and the ratio check/healthz, then stops gunicorn
and drops the database (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import create_database, drop_database, dsn  # noqa: E402

DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/compliance"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/"
DATABASE = "bench_consent_check"
PURPOSES = [
    "conversation-logging",
    "ai-improvement",
    "marketing",
    "third-party-sharing",
    "analytics",
]
ACTOR = "bench"
AIM_RATIO = 0.6
AIM_P99_MS = 20.0

WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, "
    .. "\\"errors\\": %d, \\"non_2xx\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""

CHECK_SCRIPT = """
local purposes = {%(purposes)s}
local subjects = %(subjects)d
local key = "%(key)s"
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
init = function(args)
  math.randomseed(seed * 7919 + os.time())
end
request = function()
  local path = "/api/v1/consent/check?subject=customer_id:BENCH-" .. math.random(0, subjects - 1)
    .. "&purpose=" .. purposes[math.random(1, #purposes)]
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. key})
end
"""

BATCH_SCRIPT = """
local purposes = {%(purposes)s}
local subjects = %(subjects)d
local key = "%(key)s"
local bodies = {}
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
init = function(args)
  math.randomseed(seed * 104729 + os.time())
  for b = 1, 16 do
    local pairs = {}
    for i = 1, %(batch)d do
      pairs[i] = string.format('{"subject":"customer_id:BENCH-%%d","purpose":"%%s"}',
        math.random(0, subjects - 1), purposes[math.random(1, #purposes)])
    end
    bodies[b] = '{"checks":[' .. table.concat(pairs, ",") .. ']}'
  end
end
request = function()
  return wrk.format("POST", "/api/v1/consent/check",
    {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"},
    bodies[math.random(1, #bodies)])
end
"""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=32, help="concurrent clients")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--duration", type=int, default=20, help="seconds per measured phase")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up per phase")
    parser.add_argument("--batch", type=int, default=1000, help="pairs per batch request")
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate healthz and check N times (median)"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure a constant ASGI app under the same gunicorn settings",
    )
    return parser.parse_args(argv)


def _environment(server_url: str, var_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    env.update(
        {
            "DATABASE_URL": dsn(server_url, DATABASE).replace("postgresql://", "postgres://", 1),
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL") or redis_url,
            "SECRET_KEY": "bench-only-not-secret",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "COMPLIANCE_VAR_DIR": var_dir,
            # The throttle stays on (its cache round trips are part of every API request), with
            # a limit this run cannot reach.
            "API_RATE_PER_MINUTE": "1000000000",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.pop("COMPLIANCE_TESTING", None)
    return env


# --- seeding (in this process, on the benchmark database) -------------------------------------


def _seed(subjects: int) -> str:
    import django

    django.setup()
    from django.db import transaction

    from compliance.models import DataSubject, Jurisdiction, SubjectIdentity
    from compliance.services import api_client_create, api_key_issue
    from consent import services
    from consent.models import (
        STATUS_AFTER,
        ConsentAction,
        ConsentEvent,
        ConsentSource,
        ConsentState,
        LawfulBasis,
        Purpose,
    )

    bases = {
        "conversation-logging": LawfulBasis.LEGITIMATE_INTEREST,
        "analytics": LawfulBasis.LEGITIMATE_INTEREST,
    }
    purposes = [
        services.purpose_create(
            slug=slug,
            name=slug.replace("-", " ").capitalize(),
            description=f"Benchmark purpose {slug}.",
            lawful_basis=bases.get(slug, LawfulBasis.CONSENT),
            notice_text=f"Notice for {slug}.",
            sold_or_shared=slug == "third-party-sharing",
            actor=ACTOR,
        )
        for slug in PURPOSES
    ]
    notices = {p.pk: p.notices.get() for p in purposes}
    rng = random.Random(7)
    jurisdictions = Jurisdiction.values
    # Bulk rows, not one service call per event: the benchmark measures reads, and 10,000
    # audited writes would only make the set-up slow. The rows are what the services write.
    with transaction.atomic():
        rows = [
            DataSubject(
                external_id=f"BENCH-{n}", jurisdiction=jurisdictions[n % len(jurisdictions)]
            )
            for n in range(subjects)
        ]
        DataSubject.objects.bulk_create(rows, batch_size=2000)
        SubjectIdentity.objects.bulk_create(
            (SubjectIdentity(subject=s, type="customer_id", value=s.external_id) for s in rows),
            batch_size=2000,
        )
        events = []
        for subject in rows:
            for purpose in purposes:
                if rng.random() < 0.3:
                    action = rng.choice(
                        [ConsentAction.GRANT, ConsentAction.WITHDRAW, ConsentAction.OBJECT]
                    )
                    events.append(
                        ConsentEvent(
                            subject=subject,
                            purpose=purpose,
                            action=action,
                            source=ConsentSource.PORTAL,
                            notice=notices[purpose.pk],
                            jurisdiction=subject.jurisdiction,
                            actor=ACTOR,
                        )
                    )
        ConsentEvent.objects.bulk_create(events, batch_size=2000)
        ConsentState.objects.bulk_create(
            (
                ConsentState(
                    subject=e.subject,
                    purpose=e.purpose,
                    status=STATUS_AFTER[ConsentAction(e.action)],
                    source=e.source,
                    since=e.occurred_at,
                    last_event=e,
                )
                for e in events
            ),
            batch_size=2000,
        )
    assert Purpose.objects.count() == len(PURPOSES) + 2  # plus the two CCPA purposes
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh tables: give the planner statistics, as in production
    client = api_client_create(name="bench", scopes=["consent:read"], actor=ACTOR)
    _, raw_key = api_key_issue(client=client, actor=ACTOR)
    print(f"seeded {subjects} customers x {len(PURPOSES)} purposes, {len(events)} consent events")
    return raw_key


def _forget_cache() -> None:
    """Remove this run's keys from the shared Redis."""
    from compliance.models import DataSubject, SubjectIdentity
    from consent import cache

    ids = list(DataSubject.objects.values_list("id", flat=True))
    keys = [cache.generation_key(i) for i in ids] + [cache.state_key(i) for i in ids]
    keys += [
        cache.identity_key(cache.identity_digest(t, v))
        for t, v in SubjectIdentity.objects.values_list("type", "value")
    ]
    cache._cache().delete_many(keys)


# --- the server and the load ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_gunicorn(
    env: dict[str, str], port: int, app: str = "compliance.asgi", cwd: Path = ROOT
) -> subprocess.Popen:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    env = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [
            str(gunicorn),
            app,
            "--config",
            "python:compliance.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "--access-logfile",
            "/dev/null",
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
        if process.poll() is not None:
            sys.exit(f"gunicorn exited: {process.stderr.read().decode()[-2000:]}")
    process.terminate()
    sys.exit("gunicorn did not answer /healthz within 30 s.")


def _wrk(
    port: int, path: str, script: str, *, connections: int, threads: int, seconds: int
) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + WRK_REPORT)
        script_path = handle.name
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                script_path,
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script_path)
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    result = json.loads(line[len("WRK_JSON ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def _phase(port, name, path, script, args, *, connections=None) -> dict:
    connections = connections or args.connections
    options = {"connections": connections, "threads": min(args.wrk_threads, connections)}
    _wrk(port, path, script, seconds=args.warmup, **options)
    result = _wrk(port, path, script, seconds=args.duration, **options)
    if result["non_2xx"] or result["errors"]:
        sys.exit(f"{name}: {result['non_2xx']} non-2xx answers and {result['errors']} errors.")
    return result


def _prewarm(port: int, raw_key: str, subjects: int, batch: int) -> float:
    """Put every customer's states in the cache once (batches of ``batch`` pairs), and every
    customer's identity (one GET check each, 8 at a time), so the measured phases see the
    steady state rather than 10,000 first-time misses."""
    started = time.monotonic()
    for first in range(0, subjects, batch):
        body = json.dumps(
            {
                "checks": [
                    {"subject": f"customer_id:BENCH-{n}", "purpose": PURPOSES[n % len(PURPOSES)]}
                    for n in range(first, min(first + batch, subjects))
                ]
            }
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/consent/check",
            data=body,
            headers={"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            assert response.status == 200

    def check_each(first: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {raw_key}"}
        for n in range(first, subjects, 8):
            purpose = PURPOSES[n % len(PURPOSES)]
            connection.request(
                "GET",
                f"/api/v1/consent/check?subject=customer_id:BENCH-{n}&purpose={purpose}",
                headers=headers,
            )
            response = connection.getresponse()
            response.read()
            assert response.status == 200
        connection.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(check_each, range(8)))
    return time.monotonic() - started


def _floor(env: dict[str, str], args) -> dict:
    """An app that returns a constant, under the same gunicorn settings and wrk load."""
    port = _free_port()
    process = _start_gunicorn(
        env, port, app="constant_asgi:application", cwd=Path(__file__).resolve().parent
    )
    try:
        return _phase(port, "constant", "/healthz", "", args)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def _load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def _line(name: str, r: dict, unit: float = 1.0, label: str = "req/s") -> str:
    return (
        f"{name:<28} {r['rps'] * unit:>10.0f} {label:<8} p50 {r['p50_us'] / 1000:>6.2f} ms"
        f"   p99 {r['p99_us'] / 1000:>6.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    server_url = os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL
    var_dir = tempfile.mkdtemp(prefix="bench-consent-")
    env = _environment(server_url, var_dir)
    create_database(server_url, DATABASE)
    process = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        os.environ.update(env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "compliance.settings")
        raw_key = _seed(args.subjects)
        port = args.port or _free_port()
        process = _start_gunicorn(env, port)
        values = {
            "purposes": ", ".join(f'"{p}"' for p in PURPOSES),
            "subjects": args.subjects,
            "key": raw_key,
            "batch": args.batch,
        }
        from compliance import gunicorn_conf

        print(
            f"gunicorn ({gunicorn_conf.workers} workers, {gunicorn_conf.worker_class}, "
            f"{os.environ.get('WEB_THREADS', '4')} threads each for Django) on 127.0.0.1:{port}; "
            f"wrk -t{args.wrk_threads} "
            f"-c{args.connections}, {args.duration} s per phase after {args.warmup} s warm-up; "
            f"{_load()}"
        )
        seconds = _prewarm(port, raw_key, args.subjects, args.batch)
        print(f"cache pre-warmed for {args.subjects} customers in {seconds:.1f} s")
        rounds = []
        for number in range(1, args.rounds + 1):
            healthz = _phase(port, "healthz", "/healthz", "", args)
            check = _phase(port, "check", "/api/v1/consent/check", CHECK_SCRIPT % values, args)
            rounds.append((healthz, check))
            if args.rounds > 1:
                print(
                    f"round {number}: healthz {healthz['rps']:.0f} req/s "
                    f"(p99 {healthz['p99_us'] / 1000:.1f} ms), check {check['rps']:.0f} req/s "
                    f"(p99 {check['p99_us'] / 1000:.1f} ms), ratio "
                    f"{check['rps'] / healthz['rps']:.2f}; {_load()}"
                )
        batch = _phase(
            port,
            "batch",
            "/api/v1/consent/check",
            BATCH_SCRIPT % values,
            args,
            connections=args.batch_connections,
        )
        floor = _floor(env, args) if args.floor else None
        # The round with the median ratio is the one reported.
        by_ratio = sorted(rounds, key=lambda r: r[1]["rps"] / r[0]["rps"])
        healthz, check = by_ratio[len(rounds) // 2]
        ratio = check["rps"] / healthz["rps"]
        print()
        print(_line("GET /healthz", healthz))
        print(_line("GET /api/v1/consent/check", check))
        print(
            _line(f"POST check ({args.batch} pairs)", batch, unit=args.batch, label="pairs/s")
            + f"   ({batch['rps']:.1f} req/s, {args.batch_connections} clients)"
        )
        if floor is not None:
            print(_line("constant ASGI app (floor)", floor))
        ratios = " ".join(f"{c['rps'] / h['rps']:.2f}" for h, c in rounds)
        print(
            f"check / healthz throughput: {ratio:.2f} (aim >= {AIM_RATIO})"
            + (f"; the median of the rounds' {ratios}" if len(rounds) > 1 else "")
        )
        # The p99 of each round, and their median: one round's tail is one moment of the
        # machine's load.
        p99s = [c["p99_us"] / 1000 for _, c in rounds]
        p99 = sorted(p99s)[len(p99s) // 2]
        print(
            f"check p99: {p99:.2f} ms (aim < {AIM_P99_MS:.0f} ms)"
            + (
                f"; the median of the rounds' {' '.join(f'{v:.1f}' for v in p99s)}"
                if len(rounds) > 1
                else ""
            )
        )
        met = ratio >= AIM_RATIO and p99 < AIM_P99_MS
        print("aims met" if met else "aims NOT met")
        print(_load())
        _forget_cache()
        return 0
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if "django.db" in sys.modules:
            from django.db import connections

            connections.close_all()
        if not args.keep:
            drop_database(server_url, DATABASE)
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
