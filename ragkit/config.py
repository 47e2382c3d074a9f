"""Experiment YAMLs: load, resolve catalog names, validate against constructors, expand sweeps.

Everything a user can get wrong is found here, before any model loads, and reported as a
:class:`ConfigError` naming the file, the field path and what was expected.

A component reference is one of
- a catalog name: ``retriever: bm25`` (the file ``retrievers/bm25.yaml``; a user's own folder
  of that name, in the working directory or ``$RAGKIT_CATALOG_PATH``, overrides the bundled one),
  or a registered type name with default parameters (``strategy: rag``); an arm's
  ``strategy:`` may name a catalog entry of ``strategies/`` too (``strategy: chain-of-agents``);
- ``{use: bm25, k1: 1.2}``: a catalog entry with overrides;
- ``{type: bm25, backend: rank_bm25}``: a type with parameters.

Sweeps: a list where a single value is expected is a sweep axis (``k: [1, 3, 5]``,
``retriever: [bm25, dense-minilm]``); a parameter whose own type is a list sweeps with a list of
lists. The experiment expands to the product of all axes within each arm, times the dataset and
generator axes.
"""

from __future__ import annotations

import copy
import difflib
import functools
import itertools
import os
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pydantic

from ragkit import registry, safe_yaml
from ragkit.constraints import Count, Seed
from ragkit.security import CodeReference, SafeName, code_reference_problem, name_problem
from ragkit.types import stable_hash

CATALOG_FOLDERS = {
    "retriever": "retrievers",
    "reranker": "rerankers",
    "pruner": "pruners",
    "dataset": "datasets",
    "generator": "generators",
    "strategy": "strategies",
    "gpu": "gpus",  # accelerators for the serving-cost model (ragkit.serving), not components
}


class ConfigError(ValueError):
    """A bad experiment or catalog file: says where and what was expected."""

    def __init__(self, file: str | os.PathLike[str] | None, field_path: str, message: str) -> None:
        self.file = str(file) if file else "<config>"
        self.field_path = field_path
        # one line: the CLI prints "error: <file>: <field>: <message>" and nothing else
        self.message = " ".join(str(message).split())
        message = self.message
        where = f"{self.file}: {field_path}" if field_path else self.file
        super().__init__(f"{where}: {message}")


# -- catalogs -------------------------------------------------------------------------------------
def bundled_catalog_root() -> Path:
    """Catalog folders shipped with ragkit: inside the wheel, or the repository in a dev install."""
    packaged = Path(__file__).parent / "_catalog"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent


def catalog_dirs(kind: str) -> list[Path]:
    folder = CATALOG_FOLDERS[kind]
    roots = [Path.cwd()]
    roots += [Path(p) for p in os.environ.get("RAGKIT_CATALOG_PATH", "").split(os.pathsep) if p]
    roots.append(bundled_catalog_root())
    out: list[Path] = []
    for root in roots:
        path = (root / folder).resolve()
        if path not in out:
            out.append(path)
    return out


def catalog_names(kind: str) -> list[str]:
    if kind not in CATALOG_FOLDERS:
        return []
    return sorted({p.stem for d in catalog_dirs(kind) if d.is_dir() for p in d.glob("*.yaml")})


def find_catalog(kind: str, name: str) -> Path | None:
    if kind not in CATALOG_FOLDERS:
        return None
    for directory in catalog_dirs(kind):
        path = directory / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """A YAML file read with :mod:`ragkit.safe_yaml` (duplicate keys, alias bombs, nesting and
    size are refused before anything is validated)."""
    path = Path(path)
    try:
        if not path.exists():
            raise ConfigError(path, "", "file not found")
        if not path.is_file():
            raise ConfigError(path, "", "not a regular file")
        size = path.stat().st_size
        if size > safe_yaml.MAX_BYTES:
            raise ConfigError(
                path, "", f"{size:,} bytes; an experiment or catalog file is at most {safe_yaml.MAX_BYTES:,}"
            )
        with open(path, "rb") as handle:
            data = handle.read(safe_yaml.MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the file ({exc.strerror or exc})") from None
    try:
        return safe_yaml.loads(data)
    except safe_yaml.YamlProblem as exc:
        where = f"line {exc.line}" if exc.line else ""
        message = str(exc).removeprefix(f"line {exc.line}: ") if exc.line else str(exc)
        raise ConfigError(path, where, f"not a valid experiment file: {message}") from None


# -- component kinds by annotation ---------------------------------------------------------------
@functools.cache
def _base_kinds() -> tuple[tuple[type, str], ...]:
    from ragkit.data.base import DatasetLoader
    from ragkit.data.chunking import Chunker
    from ragkit.generators.base import Generator
    from ragkit.pruners.base import Pruner
    from ragkit.rerankers.base import Reranker
    from ragkit.retrievers.base import Retriever

    return (
        (Retriever, "retriever"),
        (Reranker, "reranker"),
        (Pruner, "pruner"),
        (Chunker, "chunker"),
        (DatasetLoader, "dataset"),
        (Generator, "generator"),
    )


def component_kind(annotation: Any) -> str | None:
    """The component kind of a parameter annotation (``Retriever | None`` -> "retriever")."""
    candidates = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        candidates = [a for a in typing.get_args(annotation) if a is not type(None)]
    for candidate in candidates:
        for base, kind in _base_kinds():
            if isinstance(candidate, type) and issubclass(candidate, base):
                return kind
    return None


def settings_class(annotation: Any) -> type | None:
    """The settings group of a parameter annotation (``Retrieval`` -> the class), else None."""
    from ragkit.component import Settings

    candidates = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        candidates = [a for a in typing.get_args(annotation) if a is not type(None)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, Settings):
            return candidate
    return None


def groups_of(cls: type) -> dict[str, type]:
    """``cls``'s parameters that are settings groups: parameter name -> group class."""
    fields = registry.params_model(cls).model_fields
    return {name: group for name, info in fields.items() if (group := settings_class(info.annotation))}


def lift_settings(
    cls: type, spec: dict[str, Any], file: Any = None, path: str = "", flat: set[str] | None = None
) -> dict[str, Any]:
    """The flat form of a settings group: its fields written directly in the owner's mapping
    (``retriever: bm25`` and ``k: 5`` in a RAG arm, as before the retrieval settings were one
    setting) are moved into the group's mapping (``retrieval: {retriever: bm25, k: 5}``), so old
    experiment files and the run folders they wrote resolve exactly as the nested form does.
    ``flat`` collects the groups given only in the flat form (their errors name the flat path)."""
    own = registry.params_model(cls).model_fields
    spec = dict(spec)
    for pname, group in groups_of(cls).items():
        fields = registry.params_model(group).model_fields
        loose = [k for k in spec if k not in own and k in fields]
        if not loose:
            continue
        nested = spec.get(pname)
        if nested is not None and not isinstance(nested, dict):
            raise ConfigError(
                file, f"{path}.{loose[0]}", f"set it inside '{pname}:' (a mapping), not beside it"
            )
        if nested is None and flat is not None:
            flat.add(pname)
        nested = dict(nested or {})
        for key in loose:
            if key in nested:
                raise ConfigError(
                    file,
                    f"{path}.{key}",
                    f"given twice, beside '{pname}:' and inside it: keep the one in '{pname}:'",
                )
            nested[key] = spec.pop(key)
        spec[pname] = nested
    return spec


def lift_resolved(kind: str, resolved: dict[str, Any]) -> dict[str, Any]:
    """:func:`lift_settings` on a resolved component (a run folder's ``config.yaml``); a type
    that is no longer registered is returned unchanged."""
    try:
        cls = registry.get(kind, resolved["type"])
    except (registry.RegistryError, KeyError, TypeError):
        return resolved
    head = {k: resolved[k] for k in ("type", "name", "version") if k in resolved}
    rest = {k: v for k, v in resolved.items() if k not in head}
    return {**head, **lift_settings(cls, rest)}


def _is_list_type(annotation: Any) -> bool:
    origins = {typing.get_origin(annotation), annotation}
    for arg in typing.get_args(annotation):
        origins |= {typing.get_origin(arg), arg}
    return bool(origins & {list, tuple, set, frozenset})


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        annotation
    )


# -- resolution and expansion ----------------------------------------------------------------------
def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(name), list(dict.fromkeys(known)), n=3)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _reference(kind: str, ref: Any, file: Any, path: str) -> tuple[dict[str, Any], Any]:
    """A reference as {"name"?, "type", params...} and the file its parameters came from."""
    type_key = "strategy" if kind == "strategy" else "type"
    if isinstance(ref, str):
        if name_problem(ref):  # catalog names become file names: never a path
            raise ConfigError(file, path, f"expected a {kind} name: {name_problem(ref)}")
        catalog = find_catalog(kind, ref)
        if catalog is not None:
            data = read_yaml(catalog)
            if not isinstance(data, dict) or "type" not in data:
                raise ConfigError(catalog, "type", f"a {kind} catalog entry needs a 'type:' field")
            return {"name": ref, **data}, catalog
        if ref in registry.names(kind):
            return {"type": ref}, file
        known = catalog_names(kind) + registry.names(kind)
        searched = ", ".join(str(d) for d in catalog_dirs(kind)) if kind in CATALOG_FOLDERS else "-"
        raise ConfigError(
            file,
            path,
            f"unknown {kind} {ref!r}{_suggest(ref, known)} (catalog folders searched: {searched};"
            f" registered types: {', '.join(registry.names(kind))})",
        )
    if isinstance(ref, dict):
        ref = dict(ref)
        if "use" in ref:
            base, source = _reference(kind, ref.pop("use"), file, f"{path}.use")
            base.update(ref)
            return base, file if ref else source
        if type_key in ref:
            name = ref.pop(type_key)
            if not isinstance(name, str):
                hint = " (a strategy is not swept: write one arm per strategy)" if kind == "strategy" else ""
                raise ConfigError(
                    file, f"{path}.{type_key}", f"expected a {kind} type name, got {_shown(name)}{hint}"
                )
            if type_key != "type" and find_catalog(kind, name):
                # an arm's ``strategy: corag``: the catalog entry first (as ``retriever: hybrid``
                # names one), its fields overridden by the arm's; an explicit ``type:`` always
                # means the registered type (``type: hybrid`` with only ``first`` lacks ``second``)
                base, source = _reference(kind, name, file, f"{path}.{type_key}")
                base.update(ref)
                return base, file if ref else source
            ref["type"] = name
            return ref, file
        raise ConfigError(file, path, f"expected a {kind} name, or a mapping with 'use:' or '{type_key}:'")
    raise ConfigError(file, path, f"expected a {kind} name or mapping, got {_shown(ref)}")


def _shown(value: Any, limit: int = 80) -> str:
    """A value in an error message: its YAML kind and a short repr."""
    kinds = {type(None): "null", bool: "a boolean", dict: "a mapping", list: "a list", str: "text"}
    kinds |= {int: "a number", float: "a number"}
    kind = kinds.get(type(value), f"a {type(value).__name__}")
    text = repr(value)
    return f"{kind} {text if len(text) <= limit else text[: limit - 3] + '...'}"


def expand_component(
    kind: str, ref: Any, file: Any, path: str, *, seed: int | None = None
) -> list[dict[str, Any]]:
    """Every resolved alternative of a (possibly swept) component reference. ``seed`` (the
    experiment's) is the value of every ``seed`` parameter the reference leaves unset, in nested
    components too: one number seeds every random choice (sampling, demonstrations, haystacks)."""
    if isinstance(ref, list):
        if not ref:
            raise ConfigError(file, path, "an empty list sweeps over nothing")
        _check_sweep_size(len(ref), file, path)
        return [
            alt
            for i, r in enumerate(ref)
            for alt in expand_component(kind, r, file, f"{path}[{i}]", seed=seed)
        ]
    spec, source = _reference(kind, ref, file, path)
    type_name = spec.pop("type")
    name = spec.pop("name", None)
    try:
        cls = registry.get(kind, type_name)
    except registry.RegistryError as exc:
        raise ConfigError(source, f"{path}.type", str(exc)) from None
    head: dict[str, Any] = {"type": type_name}
    if name:
        head["name"] = name
    # the stage version is part of the identity: a code change that alters outputs (a new
    # prompt, a fixed bug) gets a new config hash, so old predictions are not resumed into it
    head["version"] = str(getattr(cls, "version", "1"))
    flat: set[str] = set()
    spec = lift_settings(cls, spec, source, path, flat)
    what = f"{kind} {type_name!r}"
    return [{**head, **combo} for combo in _expand_fields(cls, spec, source, path, what, flat, seed=seed)]


def _expand_settings(
    group: type, value: Any, file: Any, path: str, seed: int | None = None
) -> list[dict[str, Any]]:
    """Every alternative of a settings group: a mapping (its fields swept like the owner's) or a
    list of mappings (a sweep over whole settings, e.g. YAML anchors of several setups)."""
    if isinstance(value, list):
        if not value:
            raise ConfigError(file, path, "an empty list sweeps over nothing")
        _check_sweep_size(len(value), file, path)
        return [
            alt for i, v in enumerate(value) for alt in _expand_settings(group, v, file, f"{path}[{i}]", seed)
        ]
    if not isinstance(value, dict):
        raise ConfigError(
            file,
            path,
            f"expected a mapping of {group.__name__.lower()} settings, got {type(value).__name__} {value!r}",
        )
    return _expand_fields(group, dict(value), file, path, f"{group.__name__.lower()} settings", seed=seed)


def _expand_fields(
    cls: type,
    spec: dict[str, Any],
    source: Any,
    path: str,
    what: str,
    flat: set[str] | frozenset[str] = frozenset(),
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """The product of every parameter's alternatives (sweeps, nested components and settings); a
    settings group in ``flat`` was written in its owner's mapping, so its fields' errors name the
    owner's path."""
    model = registry.params_model(cls)
    fields = model.model_fields
    unknown = [k for k in spec if k not in fields]
    if unknown:
        inner = {g: list(registry.params_model(c).model_fields) for g, c in groups_of(cls).items()}
        known = list(fields) + [f for names in inner.values() for f in names]
        also = "".join(f"; or, inside {g}: {', '.join(names)}" for g, names in inner.items())
        raise ConfigError(
            source,
            f"{path}.{unknown[0]}",
            f"unknown parameter for {what}{_suggest(unknown[0], known)}"
            f" (expected one of: {', '.join(fields)}{also})",
        )
    axes: list[list[tuple[str, Any]]] = []
    for pname, info in fields.items():
        ppath = f"{path}.{pname}"
        if pname not in spec:
            if info.is_required():
                raise ConfigError(source, ppath, f"missing required parameter of {what}")
            if pname == "seed" and seed is not None:
                axes.append([(pname, seed)])
                continue
            default = info.get_default(call_default_factory=True)
            axes.append([(pname, default if _jsonable(default) else repr(default))])
            continue
        value = spec[pname]
        sub_kind = component_kind(info.annotation)
        group = settings_class(info.annotation)
        if sub_kind is not None or group is not None:
            if value is None and _optional(info.annotation):
                axes.append([(pname, None)])
            elif group is not None:
                gpath = path if pname in flat else ppath
                alternatives = _expand_settings(group, value, source, gpath, seed)
                _check_settings_constraints(cls, pname, alternatives, source, gpath)
                axes.append([(pname, alt) for alt in alternatives])
            else:
                alternatives = expand_component(sub_kind, value, source, ppath, seed=seed)
                axes.append([(pname, alt) for alt in alternatives])
            continue
        sweep = isinstance(value, list) and (
            not _is_list_type(info.annotation) or (value and all(isinstance(v, list) for v in value))
        )
        values = value if sweep else [value]
        if sweep and not values:
            raise ConfigError(source, ppath, "an empty list sweeps over nothing")
        if sweep:
            _check_sweep_size(len(values), source, ppath)
        # the declared annotation with its constraints (``Count``: ge=1), validated once per field
        adapter = pydantic.TypeAdapter(info.rebuild_annotation())
        axes.append([(pname, _check(adapter, v, source, ppath)) for v in values])
    total = 1
    for axis in axes:
        total *= len(axis)
    _check_sweep_size(total, source, path)
    # Options added after a component's configurations were first run stay out of the resolved
    # configuration (and so out of its hash) while at their default: adding an option must not
    # rename every earlier run folder and MLflow run. The constructor's default builds them.
    late = {p: fields[p].get_default() for p in getattr(cls, "late_params", ()) if p in fields}
    return [
        {k: v for k, v in combo if not (k in late and v == late[k])} for combo in itertools.product(*axes)
    ]


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict | tuple)


def _check(adapter: pydantic.TypeAdapter[Any], value: Any, file: Any, path: str) -> Any:
    try:
        checked = adapter.validate_python(value)
        if _has_bool(value):
            # lax validation reads true as 1 (`sample: true` ran one question): a boolean must be
            # one where the parameter's type says so
            adapter.validate_python(value, strict=True)
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        where, inner = _inner_path(value, problem["loc"])
        shown = "" if problem["type"] == "value_error" else f" (got {_shown(inner)})"
        raise ConfigError(file, path + where, f"{_message(problem)}{shown}") from None
    return value if isinstance(checked, tuple | set | frozenset) else checked


def _inner_path(value: Any, loc: tuple[Any, ...]) -> tuple[str, Any]:
    """The part of pydantic's error location that is inside ``value`` (``[0]``, ``.key``) and the
    value found there; union member tags such as ``constrained-float`` are not part of it."""
    where = ""
    for part in loc:
        if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            where, value = f"{where}[{part}]", value[part]
        elif isinstance(value, dict) and part in value:
            where, value = f"{where}.{part}", value[part]
    return where, value


def _has_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, list):
        return any(_has_bool(v) for v in value)
    if isinstance(value, dict):
        return any(_has_bool(v) for v in value.values())
    return False


def _message(problem: Any) -> str:
    """pydantic's message without its "Value error, " prefix (our validators say what's expected)."""
    return str(problem["msg"]).removeprefix("Value error, ")


# A sweep this large is a mistake (a generated list, a typo'd range): refuse it with the count
# before validating or expanding it, instead of hanging. Experiments choose their own limit.
MAX_CONFIGURATIONS = 1000
HARD_LIMIT = 100_000  # any single sweep inside a file, whatever the experiment's limit


def _check_sweep_size(count: int, file: Any, path: str, limit: int = HARD_LIMIT) -> None:
    if count > limit:
        raise ConfigError(
            file,
            path,
            f"expands to {count:,} configurations; the limit is {limit:,}"
            " (sweep fewer values, or raise the limit with --max-configurations)",
        )


def build_component(kind: str, resolved: dict[str, Any]) -> Any:
    """Construct a resolved component (nested components and settings first)."""
    return _build(registry.get(kind, resolved["type"]), resolved)


def _build(cls: type, resolved: dict[str, Any]) -> Any:
    fields = registry.params_model(cls).model_fields
    params = {}
    for pname, value in resolved.items():
        if pname in ("type", "name", "version"):
            continue
        sub_kind = component_kind(fields[pname].annotation)
        group = settings_class(fields[pname].annotation)
        if sub_kind is not None and isinstance(value, dict):
            value = build_component(sub_kind, value)
        elif group is not None and isinstance(value, dict):
            value = _build(group, value)
        params[pname] = value
    return cls(**params)


# -- the experiment ------------------------------------------------------------------------------
class Evaluation(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    judge: Any = None  # a generator reference; None: no judge
    breakdown: list[str] = ["type", "level"]  # Example.meta keys to break results down by


class Tracking(pydantic.BaseModel):
    """What goes to MLflow besides runs. ``traces``: an MLflow trace per question for ``all``
    questions, the first N of each configuration (the same questions in every configuration, so
    their traces compare side by side), or ``off``. Tracing never changes a result, so it is not
    part of any hash."""

    model_config = pydantic.ConfigDict(extra="forbid")
    traces: typing.Literal["all", "off"] | typing.Annotated[int, pydantic.Field(strict=True, ge=0)] = 25

    @pydantic.field_validator("traces", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare ``off`` as false (and ``on``/``yes`` as true)
        return {False: "off", True: "all"}.get(value, value) if isinstance(value, bool) else value

    def trace_limit(self) -> int | None:
        """Questions traced per configuration: None for all, 0 for none."""
        if self.traces == "all":
            return None
        return 0 if self.traces == "off" else int(self.traces)


# Evaluation fields that change neither a prediction nor a score (how tables are laid out): no key
# includes them, so editing them renames no run folder and no MLflow run.
DISPLAY_ONLY = frozenset({"breakdown"})
# The parts of a configuration that change its predictions; ``evaluation`` only changes scores.
PREDICTION_PARTS = ("dataset", "generator", "strategy")


def prediction_settings(resolved: dict[str, Any]) -> dict[str, Any]:
    """The settings that change a configuration's predictions (its identity and run folder)."""
    return {part: resolved[part] for part in PREDICTION_PARTS if part in resolved}


def scoring_settings(resolved: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """What turns finished predictions into scores: the evaluation settings (a judge) without the
    display-only ones, the scoring code's version and the seed of its bootstrap intervals."""
    from ragkit.metrics import SCORING_VERSION

    evaluation = {k: v for k, v in (resolved.get("evaluation") or {}).items() if k not in DISPLAY_ONLY}
    return {"evaluation": evaluation, "scoring_version": SCORING_VERSION, "seed": seed}


# MLflow tracking stores ragkit can log to; anything else (ftp://, a typo) fails here, not in MLflow.
TRACKING_SCHEMES = ("sqlite", "http", "https", "file", "databricks", "postgresql", "mysql", "mssql")


def _tracking_uri(value: str | None) -> str | None:
    if value is None:
        return None
    scheme = value.split("://", 1)[0].split("+", 1)[0].lower() if "://" in value else ""
    if (
        not value.strip()
        or (scheme and scheme not in TRACKING_SCHEMES)
        or (not scheme and value.startswith(("ftp:", "ssh:", "s3:", "gs:")))
    ):
        from ragkit.security import redact

        raise ValueError(
            "expected sqlite:///path/to/mlflow.db, http(s)://server, file:/folder or a database URL"
            f" ({', '.join(TRACKING_SCHEMES)}), got {redact(value)!r}"
        )
    return value


def _folder(value: str | None) -> str | None:
    if value is not None and (not value.strip() or "\0" in value):
        raise ValueError("expected a folder path")
    return value


class ExperimentFile(pydantic.BaseModel):
    """The top level of an experiment YAML."""

    model_config = pydantic.ConfigDict(extra="forbid")
    name: SafeName  # becomes a folder under output_dir and the MLflow experiment name
    description: str = ""
    dataset: Any
    generator: Any = "smollm2"
    arms: list[dict[str, Any]]
    evaluation: Evaluation = Evaluation()
    tracking_uri: Annotated[str | None, pydantic.AfterValidator(_tracking_uri)] = None
    tracking: Tracking = Tracking()
    output_dir: Annotated[str, pydantic.AfterValidator(_folder)] = "runs"
    cache_dir: Annotated[str | None, pydantic.AfterValidator(_folder)] = None
    batch_size: Annotated[Count, pydantic.Strict()] = 16
    limit: Annotated[Count | None, pydantic.Strict()] = None
    seed: Annotated[Seed, pydantic.Strict()] = 0
    # Where units run: ``local`` (this process) or ``{type: ray, address: ...}``. Not part of any
    # configuration's identity: the same YAML gives the same results on every executor.
    executor: Any = "local"


@dataclass
class Configuration:
    """One point of the expanded grid.

    Two keys: ``hash`` names the predictions (dataset, generator, strategy: the run folder and the
    MLflow child run), ``scoring_key`` the way they are scored (judge, scoring code, seed). Changing
    only how results are scored or displayed keeps the folder, so ``ragkit run`` re-scores the
    saved predictions instead of generating them again."""

    resolved: dict[str, Any]  # {"dataset", "generator", "strategy", "evaluation"}
    name: str
    arm: int
    seed: int = 0  # the experiment's seed (bootstrap intervals)

    @property
    def hash(self) -> str:
        return stable_hash(prediction_settings(self.resolved))

    @property
    def scoring_key(self) -> str:
        return stable_hash(scoring_settings(self.resolved, self.seed))

    @property
    def legacy_hash(self) -> str:
        """The run folder's name before ragkit keyed it on predictions only (the whole resolved
        configuration, evaluation included): found and renamed, so earlier runs are not lost."""
        return stable_hash(self.resolved)


@dataclass
class Experiment:
    file: Path | None
    spec: ExperimentFile
    raw: dict[str, Any]
    configurations: list[Configuration] = field(default_factory=list)
    executor: dict[str, Any] = field(default_factory=lambda: {"type": "local"})  # resolved

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hash(self) -> str:
        """The parent run's identity: the configurations' predictions (not their display)."""
        return stable_hash([c.hash for c in self.configurations])


def apply_overrides(raw: dict[str, Any], overrides: list[str], file: Any) -> dict[str, Any]:
    """``--set a.b.0.c=value`` (value parsed as YAML, so ``k=[1,2]`` sets a list)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(file, f"--set {item}", "an override must look like key.path=value")
        key, text = item.split("=", 1)
        try:
            value = safe_yaml.loads(text)
        except safe_yaml.YamlProblem as exc:
            message = str(exc).removeprefix(f"line {exc.line}: ") if exc.line else str(exc)
            raise ConfigError(
                file, f"--set {key}", f"the value {text!r} is not valid YAML: {message}"
            ) from None
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(file, f"--set {key}", "expected a dotted field path such as arms.0.k")
        node: Any = raw
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(file, key, f"{part!r} is not an index of a list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if not isinstance(node.get(part), dict | list):
                        node[part] = {} if node.get(part) is None else {"use": node[part]}
                    node = node[part]
            else:
                raise ConfigError(file, key, f"cannot set a field inside {_shown(node)}")
    return raw


def _varying_leaves(resolved: list[dict[str, Any]]) -> list[str]:
    """Dotted fields whose value differs between configurations; inside a component whose identity
    (name or type) itself varies, only the identity is reported."""
    flat = [_flatten(r) for r in resolved]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    varying = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]

    def identity_varies(key: str) -> bool:
        parts = key.split(".")
        for depth in range(1, len(parts) - 1 if parts[-1] in ("name", "type") else len(parts)):
            prefix = ".".join(parts[:depth])
            if f"{prefix}.name" in varying or f"{prefix}.type" in varying:
                return True
        return False

    return [
        k
        for k in varying
        if not identity_varies(k) and not (k.endswith(".type") and k[:-5] + ".name" in varying)
    ]


def _label(flat: dict[str, Any], key: str) -> Any:
    """A varying field's value in a configuration name: a component given inline (no catalog name)
    next to catalog entries is shown by its type; an absent one is "none"."""
    value = flat.get(key)
    if value is None and key.endswith(".name"):
        value = flat.get(key[: -len("name")] + "type")
    return "none" if value is None else value


@functools.cache
def _group_names() -> frozenset[str]:
    """Parameter names of the registered strategies' settings groups ("retrieval")."""
    return frozenset(n for t in registry.names("strategy") for n in groups_of(registry.get("strategy", t)))


def _short(path: str) -> str:
    """A field's name in a configuration name: "strategy.retrieval.k" reads "k" (the fields of a
    settings group read as the strategy's own, as in the flat form)."""
    skip = {"strategy", "dataset", "generator"} | _group_names()
    parts = [p for p in path.split(".") if p not in skip]
    if parts and parts[-1] in ("name", "type") and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts) or path


def load_experiment(
    source: str | os.PathLike[str] | dict[str, Any],
    overrides: list[str] | None = None,
    *,
    allow_code: bool = False,
    max_configurations: int = MAX_CONFIGURATIONS,
    executor: str | None = None,
) -> Experiment:
    """Read, validate and expand an experiment (a YAML path or an already-parsed dict).

    ``allow_code``: the file may name callables outside :data:`ragkit.security.ALLOWED_CODE_MODULES`
    (the user's ``--allow-code``). ``max_configurations``: refuse larger sweeps, with the count.
    ``executor`` (the command line's ``--executor``): an executor name, or a YAML mapping; a bare
    name that is the type the file already configures keeps the file's settings for it.
    """
    file = None if isinstance(source, dict) else Path(source)
    raw = source if isinstance(source, dict) else read_yaml(source)
    if not isinstance(raw, dict):
        raise ConfigError(file, "", f"an experiment file must be a mapping of fields, got {_shown(raw)}")
    raw = apply_overrides(raw, overrides or [], file)
    if executor is not None:
        raw = {**raw, "executor": _executor_override(raw.get("executor"), executor, file)}
    try:
        spec = ExperimentFile.model_validate(raw)
    except pydantic.ValidationError as exc:
        # an unknown field first: a misspelled `nmae` also makes `name` missing, and "unknown field
        # 'nmae'; did you mean 'name'" is the message that helps
        problems = sorted(exc.errors(), key=lambda p: p["type"] != "extra_forbidden")
        problem = problems[0]
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem["loc"]).lstrip(".")
        msg = _message(problem)
        if problem["type"] == "extra_forbidden":
            section = {"evaluation": Evaluation, "tracking": Tracking}.get(loc.split(".")[0], ExperimentFile)
            known = list(section.model_fields) if "." in loc else list(ExperimentFile.model_fields)
            key = str(problem["loc"][-1])
            msg = f"unknown field {key!r}{_suggest(key, known)}"
        elif problem["type"] not in ("missing", "value_error") and "input" in problem:
            msg = f"{msg} (got {_shown(problem['input'])})"
        raise ConfigError(file, loc, msg) from None
    if not spec.arms:
        raise ConfigError(file, "arms", "an experiment needs at least one arm")
    datasets = expand_component("dataset", spec.dataset, file, "dataset", seed=spec.seed)
    generators = expand_component("generator", spec.generator, file, "generator", seed=spec.seed)
    evaluation = spec.evaluation.model_dump()
    if evaluation["judge"] is not None:
        judges = expand_component("generator", evaluation["judge"], file, "evaluation.judge", seed=spec.seed)
        if len(judges) != 1:
            raise ConfigError(file, "evaluation.judge", "the judge cannot be swept")
        evaluation["judge"] = judges[0]
    configurations: list[Configuration] = []
    for index, arm in enumerate(spec.arms):
        arm = dict(arm)
        label = arm.pop("label", None)
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise ConfigError(file, f"arms[{index}].label", f"expected a non-empty text, got {_shown(label)}")
        if "strategy" not in arm:
            raise ConfigError(file, f"arms[{index}].strategy", "missing: which strategy this arm runs")
        strategies = expand_component("strategy", arm, file, f"arms[{index}]", seed=spec.seed)
        count = len(configurations) + len(datasets) * len(generators) * len(strategies)
        _check_sweep_size(count, file, f"arms[{index}]" if index else "arms", max_configurations)
        for ds, gen, strat in itertools.product(datasets, generators, strategies):
            resolved = {"dataset": ds, "generator": gen, "strategy": strat, "evaluation": evaluation}
            configurations.append(
                Configuration(resolved=resolved, name=label or strat["type"], arm=index, seed=spec.seed)
            )
    _check_code_references(configurations, file, allow_code, list(spec.arms))
    _check_answering(configurations, file)
    shared = [
        k for k in _varying_leaves([c.resolved for c in configurations]) if not k.startswith("strategy.")
    ]
    # A name shows what varies: across the whole experiment (dataset, generator), across the arms
    # of the same strategy (e.g. which pruner: several `rag` arms would otherwise all be "rag"),
    # and inside the arm (its sweep axes).
    for index in range(len(spec.arms)):
        group = [c for c in configurations if c.arm == index]
        kind = group[0].resolved["strategy"]["type"] if group else None
        same_type = [c for c in configurations if c.resolved["strategy"]["type"] == kind]
        varying = list(
            dict.fromkeys(
                shared
                + [k for k in _varying_leaves([c.resolved for c in same_type]) if k.startswith("strategy.")]
                + [k for k in _varying_leaves([c.resolved for c in group]) if k.startswith("strategy.")]
            )
        )
        for c in group:
            flat = _flatten(c.resolved)
            parts = [f"{_short(k)}={_label(flat, k)}" for k in varying if k != "strategy.type"]
            c.name = " ".join([c.name, *parts]) if parts else c.name
    # Still ambiguous: the difference hides inside a component whose identity varies (two arms
    # with the same pruner at different thresholds next to an arm with another pruner).
    by_name: dict[str, list[Configuration]] = {}
    for c in configurations:
        by_name.setdefault(c.name, []).append(c)
    for same in (g for g in by_name.values() if len(g) > 1):
        hidden = _varying_leaves([c.resolved for c in same])
        for c in same:
            flat = _flatten(c.resolved)
            c.name = " ".join([c.name, *(f"{_short(k)}={flat.get(k, 'none')}" for k in hidden)])
    names = [c.name for c in configurations]
    for c in configurations:
        if names.count(c.name) > 1:
            c.name = f"{c.name} (arm {c.arm})"
    seen: dict[str, int] = {}
    for c in configurations:
        if c.hash in seen:
            raise ConfigError(file, "arms", f"configuration {c.name!r} appears twice (same resolved config)")
        seen[c.hash] = 1
    executors = expand_component("executor", spec.executor, file, "executor")
    if len(executors) != 1:
        raise ConfigError(file, "executor", "the executor cannot be swept: name one")
    return Experiment(file=file, spec=spec, raw=raw, configurations=configurations, executor=executors[0])


def _executor_override(configured: Any, given: str, file: Any) -> Any:
    try:
        value = safe_yaml.loads(given)
    except safe_yaml.YamlProblem as exc:
        raise ConfigError(file, "--executor", f"the value {given!r} is not valid YAML: {exc}") from None
    if isinstance(configured, dict) and isinstance(value, str):
        return configured if value in (configured.get("type"), configured.get("use")) else value
    return value


def _code_references(
    kind: str | None, resolved: dict[str, Any], path: str, written: Any = None, cls: type | None = None
) -> Iterator[tuple[str, str, Any]]:
    """(field path, value, marker) of every parameter declared as a :class:`CodeReference`, in
    nested components and settings groups too; ``written`` (the file's own mapping at this level)
    names a settings group's fields where the file wrote them (beside the group or inside it)."""
    cls = cls or registry.get(kind, resolved["type"])
    fields = registry.params_model(cls).model_fields
    written = written if isinstance(written, dict) else {}
    for pname, info in fields.items():
        value = resolved.get(pname)
        sub_kind = component_kind(info.annotation)
        if sub_kind is not None and isinstance(value, dict):
            yield from _code_references(sub_kind, value, f"{path}.{pname}", written.get(pname))
            continue
        group = settings_class(info.annotation)
        if group is not None and isinstance(value, dict):
            inside = pname in written
            where = f"{path}.{pname}" if inside else path
            yield from _code_references(
                None, value, where, written.get(pname) if inside else written, cls=group
            )
            continue
        for marker in info.metadata:
            if isinstance(marker, CodeReference) and isinstance(value, str):
                yield f"{path}.{pname}", value, marker


def _check_answering(configurations: list[Configuration], file: Any) -> None:
    """A generator that cannot answer (``generator: none``) only runs retrieval-only arms."""
    for c in configurations:
        generator = registry.get("generator", c.resolved["generator"]["type"])
        strategy = registry.get("strategy", c.resolved["strategy"]["type"])
        if getattr(generator, "answers", True) is False and getattr(strategy, "answers", True):
            raise ConfigError(
                file,
                f"arms[{c.arm}].strategy",
                f"strategy {c.resolved['strategy']['type']!r} generates answers, but generator"
                f" {c.resolved['generator']['type']!r} cannot answer; use 'strategy: retrieve' for"
                " retrieval-only arms, or give the experiment a generator",
            )


def _check_settings_constraints(
    cls: type, pname: str, alternatives: list[dict[str, Any]], file: Any, path: str
) -> None:
    """A component's own limits on a shared settings group's fields (``settings_constraints``:
    Self-Route needs ``retrieval.k >= 1`` where RAG takes k = 0 as closed book)."""
    for name, annotation in (getattr(cls, "settings_constraints", None) or {}).items():
        group, _, field_name = name.partition(".")
        if group != pname:
            continue
        adapter = pydantic.TypeAdapter(annotation)
        for alt in alternatives:
            if field_name in alt:
                _check(adapter, alt[field_name], file, f"{path}.{field_name}")


def _check_code_references(
    configurations: list[Configuration], file: Any, allow_code: bool, arms: list[Any] | None = None
) -> None:
    """An experiment file that imports code is code: refuse it unless the user said --allow-code."""
    seen: set[tuple[str, str]] = set()
    for c in configurations:
        roots = [
            ("dataset", "dataset", c.resolved["dataset"]),
            ("generator", "generator", c.resolved["generator"]),
        ]
        roots.append(("strategy", f"arms[{c.arm}]", c.resolved["strategy"]))
        if c.resolved["evaluation"].get("judge"):
            roots.append(("generator", "evaluation.judge", c.resolved["evaluation"]["judge"]))
        for kind, path, resolved in roots:
            mine = arms[c.arm] if kind == "strategy" and arms and c.arm < len(arms) else None
            for field_path, value, marker in _code_references(kind, resolved, path, mine):
                if (field_path, value) in seen:
                    continue
                seen.add((field_path, value))
                problem = code_reference_problem(value, marker, allow_code)
                if problem:
                    raise ConfigError(file, field_path, problem)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list | tuple):
        return {prefix: ",".join(str(x) for x in d)}
    return {prefix: d}


def flatten(resolved: dict[str, Any]) -> dict[str, Any]:
    """Dotted parameter names for MLflow params and result tables."""
    return _flatten(resolved)
