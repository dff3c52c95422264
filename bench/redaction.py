"""Redaction benchmark (run on demand; never a timed assert in the tests).

MB/s masking 1 MB of text with 10, 1,000 and 10,000 secrets, each secret in all its wire
forms (sealflow.redaction.forms), through `Redactor.text` (known values, then the token and
card detectors), side by side with a baseline written here: one regular expression that
alternates every form of every secret, longest first, the approach common in workflow tools.

    .venv/bin/python bench/redaction.py
    .venv/bin/python bench/redaction.py --secrets 10 100 1000 10000 --lengths 8-14

The text is JSON lines shaped like API responses (ids, names, timestamps, URLs, amounts,
base64 etags, sentences) with --occurrences secret forms spliced in at random places; the
same text for every row. Secrets are random tokens (letters and digits, a third of them with
punctuation too) of --lengths characters. Times are the best of --repeat runs after a warm-up
run that also builds the automaton (its build time is shown apart); each row runs in a fresh
interpreter, so one row's garbage does not shape the next one's memory. The baseline runs on
a prefix of the text that it masks in about --baseline-seconds, and its MB/s is that
prefix's rate. Exit status 0 only when every target holds.
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import random
import re
import resource
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import quote

from sealflow.redaction import RedactionPolicy, Redactor, spans
from sealflow.redaction.forms import wire_forms
from sealflow.redaction.masker import KnownValues

MB = 1_000_000
TARGET_MBPS = 50.0
TARGET_FLAT = 1.5  # slowest row at most this many times slower than the fastest
TARGET_VS_BASELINE = 20.0  # at 1,000 secrets
WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from "
    "or one had by word but not what all were we when your can said there use an each which "
    "she do how their if will up other about out many then them these so some her would make "
    "like him into time has look two more write go see number no way could people my than "
    "first water been call who oil its now find long down day did get come made may part"
).split()


def make_text(rnd: random.Random, size: int) -> str:
    lines, total = [], 0
    while total < size:
        record = {
            "id": str(uuid.UUID(int=rnd.getrandbits(128))),
            "name": " ".join(rnd.choices(WORDS, k=2)).title(),
            "email": f"{rnd.choice(WORDS)}.{rnd.choice(WORDS)}@example.com",
            "created_at": f"2025-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}T"
            f"{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}Z",
            "amount": rnd.randint(0, 100_000),
            "status": rnd.choice(["active", "pending", "closed"]),
            "description": " ".join(rnd.choices(WORDS, k=rnd.randint(5, 25))),
            "url": f"https://api.example.com/v1/items/{rnd.randint(1, 10**6)}"
            f"?page={rnd.randint(1, 50)}",
            "etag": base64.b64encode(rnd.randbytes(12)).decode(),
        }
        line = json.dumps(record)
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)[:size]


def make_secrets(rnd: random.Random, count: int, lengths: tuple[int, int]) -> list[str]:
    out = []
    for i in range(count):
        alphabet = string.ascii_letters + string.digits
        if i % 3 == 2:
            alphabet += "-_.~+/=!@#$%&*"
        out.append("".join(rnd.choices(alphabet, k=rnd.randint(*lengths))))
    return out


def splice(rnd: random.Random, text: str, secrets: list[str], occurrences: int) -> str:
    """`text` with `occurrences` wire forms of random secrets inserted between words."""
    cuts = sorted(rnd.sample(range(len(text)), occurrences))
    parts, last = [], 0
    for cut in cuts:
        secret = rnd.choice(secrets)
        form = rnd.choice(
            [
                secret,
                base64.b64encode(secret.encode()).decode(),
                secret.encode().hex(),
                quote(secret, safe=""),
                json.dumps(secret)[1:-1],
            ]
        )
        parts += (text[last:cut], f" {form} ")
        last = cut
    parts.append(text[last:])
    return "".join(parts)[: len(text)]


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def baseline_rate(forms: dict[str, str], text: str, seconds: float) -> tuple[float, float, int]:
    """(MB/s, compile seconds, characters measured) of one alternation of every form."""
    start = time.perf_counter()
    alternation = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    pattern = re.compile(alternation)
    compiled = time.perf_counter() - start

    def mask(chunk: str) -> str:
        return pattern.sub(lambda m: forms[m.group()], chunk)

    size = 1024
    while True:
        chunk = text[:size]
        elapsed = best_of(lambda: mask(chunk), 1)  # noqa: B023 - called right here
        if elapsed >= seconds or size >= len(text):
            return size / MB / elapsed, compiled, size
        size = min(len(text), max(size * 2, int(size * seconds / max(elapsed, 1e-6))))


@dataclass
class Row:
    secrets: int
    forms: int
    build_s: float
    mbps: float
    known_mbps: float
    baseline_mbps: float
    baseline_compile_s: float
    baseline_chars: int
    rss_mb: float

    @property
    def ratio(self) -> float:
        return self.known_mbps / self.baseline_mbps


def measure(count: int, args: argparse.Namespace, text: str, secrets: list[str]) -> Row:
    redactor = Redactor(RedactionPolicy.default())
    for i, secret in enumerate(secrets):
        redactor.add_secret(f"auth {i}", secret)
    start = time.perf_counter()
    masked = redactor.text(text)  # warm-up: builds the automaton and the filter
    build = time.perf_counter() - start - best_of(lambda: redactor.text(text), 1)
    mbps = len(text) / MB / best_of(lambda: redactor.text(text), args.repeat)
    for secret in secrets:  # sanity: nothing spliced in survives
        assert secret not in masked, "a secret survived"

    known = KnownValues()
    labels: dict[str, str] = {}
    for i, secret in enumerate(secrets):
        known.add(f"auth {i}", secret)
        for form in wire_forms(secret):
            labels.setdefault(form, f"[REDACTED:auth {i}]")
    spans.apply(text, known.find(text))
    known_mbps = len(text) / MB / best_of(lambda: spans.apply(text, known.find(text)), args.repeat)

    if args.no_baseline:
        base, compiled, chars = float("nan"), float("nan"), 0
    else:
        base, compiled, chars = baseline_rate(labels, text, args.baseline_seconds)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Row(count, len(labels), max(build, 0.0), mbps, known_mbps, base, compiled, chars, rss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secrets", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--lengths", default="16-48", help="secret lengths, e.g. 8-14")
    parser.add_argument("--size", type=int, default=MB, help="characters of text")
    parser.add_argument("--occurrences", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--baseline-seconds", type=float, default=1.0)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one row
    args = parser.parse_args()
    low, high = (int(x) for x in args.lengths.split("-"))

    if args.one is not None:  # a child: one row, printed as JSON
        plain = make_text(random.Random(args.seed), args.size)
        secrets = make_secrets(random.Random(args.one), args.one, (low, high))
        text = splice(random.Random(args.one + 1), plain, secrets, args.occurrences)
        print(json.dumps(asdict(measure(args.one, args, text, secrets))))
        return 0

    print(
        f"python {platform.python_version()}, {platform.machine()}; {args.size:,} characters "
        f"of JSON lines, {args.occurrences} spliced forms, secrets of {low}-{high} characters\n"
    )
    rows = []
    for count in args.secrets:
        child = [sys.executable, __file__, *sys.argv[1:], "--one", str(count)]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        rows.append(Row(**json.loads(out.splitlines()[-1])))

    print(
        f"{'secrets':>8} {'forms':>7} {'build s':>7} {'RSS MB':>6} | {'known MB/s':>10} "
        f"{'text() MB/s':>11} | {'regex MB/s':>10} {'compile s':>9} | {'known/regex':>11}"
    )
    for r in rows:
        print(
            f"{r.secrets:>8,} {r.forms:>7,} {r.build_s:>7.2f} {r.rss_mb:>6.0f} | "
            f"{r.known_mbps:>10.1f} {r.mbps:>11.1f} | {r.baseline_mbps:>10.4f} "
            f"{r.baseline_compile_s:>9.2f} | {r.ratio:>10.0f}x"
        )
    print(
        "\nknown: known-value masking (automaton, its filter, the replacement), what the regex "
        "does;\ntext(): Redactor.text, known values plus the token and card detectors;\n"
        "regex: one alternation of every form, timed on the first "
        + ", ".join(f"{r.baseline_chars:,}" for r in rows)
        + " characters.\n"
    )

    checks = []
    for label, rates in (
        ("known", [r.known_mbps for r in rows]),
        ("text()", [r.mbps for r in rows]),
    ):
        slowest, fastest = min(rates), max(rates)
        checks.append(
            (
                f"{label} >= {TARGET_MBPS:.0f} MB/s at every row",
                slowest >= TARGET_MBPS,
                f"slowest {slowest:.1f} MB/s",
            )
        )
        checks.append(
            (
                f"{label} flat: fastest/slowest <= {TARGET_FLAT}",
                fastest / slowest <= TARGET_FLAT,
                f"{fastest / slowest:.2f}x",
            )
        )
    at_1000 = [r for r in rows if r.secrets == 1000]
    if at_1000 and not args.no_baseline:
        ratio = at_1000[0].ratio
        checks.append(
            (
                f"known >= {TARGET_VS_BASELINE:.0f}x the regex at 1,000 secrets",
                ratio >= TARGET_VS_BASELINE,
                f"{ratio:.0f}x",
            )
        )
    for name, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
