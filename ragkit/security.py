"""What an experiment file may do to the machine that runs it (README: "Trust and safety").

An experiment YAML is data until it names code: then it is code. ragkit's rules:

- **Code imports need the user's say-so.** A parameter declared as :class:`CodeReference` (the
  llama-index retriever's ``factory``, the llama-index chunker's ``parser``) names a Python
  callable as ``"package.module:attribute"``; importing and calling it runs that package's code
  with the user's rights (``torch.hub:load`` runs a ``hubconf.py`` from any folder). Only names built
  into the component and modules under :data:`ALLOWED_CODE_MODULES` are accepted unless the user
  passes ``--allow-code`` (``load_experiment(..., allow_code=True)``).
- **API keys go only where they should.** ``api_key_env`` must match :data:`API_KEY_ENV_PATTERN`
  (``*_API_KEY``): a YAML cannot name ``AWS_SECRET_ACCESS_KEY`` and have it sent as a bearer token.
  A key is never sent over plain HTTP to a host other than this machine unless the user sets
  ``RAGKIT_ALLOW_INSECURE_API_KEY=1``.
- **Credentials in URLs are redacted** (``https://user:secret@host`` -> ``https://user:***@host``,
  ``?api_key=...`` -> ``?api_key=***``) wherever ragkit writes or logs a configuration: MLflow
  params, ``config.yaml``, artifacts, the console.
- **Names are not paths.** An experiment name becomes a folder under ``output_dir``; catalog names
  become file names: path separators, ``..`` and control characters are rejected.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator

# Modules whose callables a YAML may name without --allow-code: llama-index's node parsers,
# retrievers and indexes (their constructors build in-memory structures from the nodes given).
ALLOWED_CODE_MODULES: tuple[str, ...] = (
    "llama_index.core.node_parser",
    "llama_index.core.retrievers",
    "llama_index.core.indices",
    "llama_index.retrievers",
)
ALLOW_INSECURE_KEY_ENV = "RAGKIT_ALLOW_INSECURE_API_KEY"
API_KEY_ENV_PATTERN = re.compile(r"[A-Z][A-Z0-9_]*_API_KEY")

_REFERENCE = re.compile(
    r"(?P<module>[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)"
)


@dataclass(frozen=True)
class CodeReference:
    """``Annotated[str, CodeReference(builtin=(...))]``: a parameter that may name code to import."""

    builtin: tuple[str, ...] = ()


def code_reference_problem(value: str, marker: CodeReference, allow_code: bool) -> str | None:
    """Why ``value`` may not be imported here (None: it may)."""
    if value in marker.builtin:
        return None
    match = _REFERENCE.fullmatch(value)
    if match is None:
        builtin = f"one of {', '.join(repr(b) for b in marker.builtin)} or " if marker.builtin else ""
        return f"expected {builtin}'package.module:callable', got {value!r}"
    if allow_code:
        return None
    module = match["module"]
    if any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED_CODE_MODULES):
        return None
    return (
        f"{value!r} imports and runs code from {module!r}; an experiment file that imports code is code:"
        f" pass --allow-code if you trust this file (allowed without it: modules under"
        f" {', '.join(ALLOWED_CODE_MODULES)})"
    )


# -- API keys --------------------------------------------------------------------------------------
def _api_key_env(value: str) -> str:
    if not API_KEY_ENV_PATTERN.fullmatch(value):
        raise ValueError(
            f"expected the name of an environment variable ending in _API_KEY (e.g. OPENAI_API_KEY),"
            f" got {value!r}: other variables are never sent to a server"
        )
    return value


ApiKeyEnv = Annotated[str, AfterValidator(_api_key_env)]


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def key_transport_problem(base_url: str, api_key_env: str) -> str | None:
    """Why the key in ``api_key_env`` must not go to ``base_url`` (None: it may, or there is none)."""
    if not os.environ.get(api_key_env):
        return None
    parts = urlsplit(base_url)
    if parts.scheme == "https" or is_loopback(parts.hostname):
        return None
    if os.environ.get(ALLOW_INSECURE_KEY_ENV) == "1":
        return None
    return (
        f"would send ${api_key_env} unencrypted to {redact(base_url)}; use https://, a server on this"
        f" machine, or set {ALLOW_INSECURE_KEY_ENV}=1 if the network is trusted"
    )


# -- redaction ------------------------------------------------------------------------------------
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<secret>[^@/\s]+)@")
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:api[_-]?key|apikey|access[_-]?token|token|password|passwd|secret|key|sig|signature)=)"
    r"(?P<secret>[^&;#\s]+)",
    re.IGNORECASE,
)


def redact(value: Any) -> Any:
    """``value`` with URL credentials replaced by ``***`` (strings inside dicts and lists too)."""
    if isinstance(value, str):
        if "://" not in value and "=" not in value:
            return value
        value = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", value)
        return _QUERY_SECRET.sub(lambda m: f"{m['key']}***", value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


# -- names that become paths ----------------------------------------------------------------------
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot name a folder or file (None: it can)."""
    if not value.strip():
        return "expected a non-empty name"
    if _UNSAFE.search(value) or ".." in value or value.strip() in (".", "..") or value.startswith("~"):
        return f"expected a name, not a path: no '/', '\\', '..' or control characters (got {value!r})"
    if len(value) > 200:
        return f"expected a name of at most 200 characters (got {len(value)})"
    return None


def _safe_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


SafeName = Annotated[str, AfterValidator(_safe_name)]
