"""Redaction of secrets from agent output before HOL stores or shows it.

Agents print what they see: environment dumps, curl commands, config files. Anything that looks
like a credential is replaced by a marker before it reaches the chat, the trace folder or the
database. It errs towards redacting too much: a lost fragment of log costs less than a leaked key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"

# Whole-token shapes that are credentials wherever they appear.
_TOKEN_PATTERNS = [
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",  # JWT
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{30,}\b",
    r"\bglpat-[A-Za-z0-9_-]{20,}\b",  # GitLab
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",  # Slack
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}\b",  # OpenAI / Anthropic style API keys
    r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
    r"\b[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9._~+/=-]{8,}",
    r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)",  # user:password@ in URLs
]
# `name=value` / `name: value` where the name says it is a secret: the value goes.
_ASSIGNMENT = re.compile(
    r"(?i)\b([A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"credential|auth)[A-Za-z0-9_.-]*[\"']?\s*[:=]\s*)([\"']?)([^\s\"',;]{4,})"
)
_TOKENS = re.compile("|".join(f"(?:{pattern})" for pattern in _TOKEN_PATTERNS))


def redact(text: str, *, secrets: Iterable[str] = ()) -> str:
    """`text` with known secret values, credential-shaped tokens and the values of secret-named
    assignments replaced by [REDACTED]."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, REDACTED)
    text = _TOKENS.sub(REDACTED, text)
    return _ASSIGNMENT.sub(lambda match: f"{match.group(1)}{match.group(2)}{REDACTED}", text)
