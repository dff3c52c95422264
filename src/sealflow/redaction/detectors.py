"""Well-known token formats, masked wherever they appear even when no authentication holds
them (a key pasted into a step's input, a token echoed by an API).

A hit is the whole token, bounded by characters that cannot belong to it:
- aws: an access key id, AKIA/ASIA/ABIA/ACCA and 16 upper-case letters or digits;
- github: ghp_/gho_/ghu_/ghs_/ghr_ and 36+ letters or digits, or github_pat_ and 22+;
- slack: xoxa-/xoxb-/xoxp-/xoxo-/xoxr-/xoxs- and xapp- tokens, hooks.slack.com webhook paths;
- stripe: sk_/rk_ live or test keys, whsec_ webhook secrets (pk_ keys are public by design);
- jwt: three dot-separated base64url parts whose first two decode to JSON objects ("eyJ");
- pem: a PEM private key block, BEGIN to END (or to the end of its base64 body if cut off);
- card: see cards.py.

Each regular expression starts with a literal, which `re` finds with a fast scan; the check
that nothing word-like precedes the token is a look-behind placed after that literal, so the
scan stays fast. A short string is first tried against one pattern of all the literals.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from sealflow.redaction import cards, spans

DETECTORS = ("aws", "github", "slack", "stripe", "jwt", "pem", "card")


class _Detector(NamedTuple):
    name: str
    pattern: re.Pattern[str]
    back: int  # characters of the token before where the pattern starts matching


_TOKENS = (
    _Detector(
        "aws",
        re.compile(r"A(?<![A-Za-z0-9]A)(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        0,
    ),
    _Detector(
        "github",
        re.compile(r"gh(?<![A-Za-z0-9_]gh)[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9_])"),
        0,
    ),
    _Detector(
        "github",
        re.compile(r"github_pat_(?<![A-Za-z0-9_]github_pat_)[A-Za-z0-9_]{22,255}"),
        0,
    ),
    _Detector(
        "slack",
        re.compile(r"x(?<![A-Za-z0-9]x)(?:ox[abposr]|app)-[A-Za-z0-9-]{10,255}"),
        0,
    ),
    _Detector(
        "slack",
        re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{8,255}"),
        0,
    ),
    # Starts at the "k" of sk_/rk_ (a one-letter literal); `back` widens the span to the s/r.
    _Detector(
        "stripe",
        re.compile(r"k(?<=[sr]k)(?<![A-Za-z0-9][sr]k)_(?:live|test)_[A-Za-z0-9]{10,255}"),
        1,
    ),
    _Detector("stripe", re.compile(r"whsec_[A-Za-z0-9+/=]{20,255}"), 0),
    # Starts at the rare "J" of "eyJ" rather than at the common "e".
    _Detector(
        "jwt",
        re.compile(
            r"J(?<=eyJ)(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
        ),
        2,
    ),
    _Detector(
        "pem",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]{0,16384}?-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
            r"|[A-Za-z0-9+/=\s\\:,-]*)"
        ),
        0,
    ),
)

# Every token above contains one of these; a string with none of them has no token.
_ANY_ANCHOR = re.compile(
    r"AKIA|ASIA|ABIA|ACCA|gh[pousr]_|github_pat_|xox[abposr]-|xapp-|hooks\.slack\.com/"
    r"|[sr]k_(?:live|test)_|whsec_|eyJ|PRIVATE KEY"
)
_SHORTEST_TOKEN = 20  # an AWS key id; the others are longer
_ONE_PASS_BELOW = 1024  # characters: one anchor search is cheaper than eight scans


def find(text: str, enabled: frozenset[str], data: bytes | None = None) -> list[spans.Span]:
    """Spans of the `enabled` detectors' hits; `data` is `text` in UTF-8, if at hand."""
    out: list[spans.Span] = []
    if "card" in enabled:
        out += cards.find(text, data)
    if len(text) < _SHORTEST_TOKEN or (
        len(text) < _ONE_PASS_BELOW and _ANY_ANCHOR.search(text) is None
    ):
        return out
    for name, pattern, back in _TOKENS:
        if name in enabled:
            label = f"[REDACTED:{name}]"
            for m in pattern.finditer(text):
                out.append(spans.detected(m.start() - back, m.end(), label))
    return out
