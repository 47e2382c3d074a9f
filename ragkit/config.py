"""Experiment YAMLs: load, resolve catalog names, validate against constructors, expand sweeps.

Everything a user can get wrong is found here, before any model loads, and reported as a
:class:`ConfigError` naming the file, the field path and what was expected.

A component reference is one of
- a catalog name: ``retriever: bm25`` (the file ``retrievers/bm25.yaml``; a user's own folder
  of that name, in the working directory or ``$RAGKIT_CATALOG_PATH``, overrides the bundled one),
  or a registered type name with default parameters (``strategy: rag``);
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from ragkit import registry
from ragkit.types import stable_hash

CATALOG_FOLDERS = {
    "retriever": "retrievers",
    "reranker": "rerankers",
    "pruner": "pruners",
    "dataset": "datasets",
    "generator": "generators",
    "gpu": "gpus",  # accelerators for the serving-cost model (ragkit.serving), not components
}


class ConfigError(ValueError):
    """A bad experiment or catalog file: says where and what was expected."""

    def __init__(self, file: str | os.PathLike[str] | None, field_path: str, message: str) -> None:
        self.file = str(file) if file else "<config>"
        self.field_path = field_path
        self.message = message
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
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "", "file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"not valid YAML: {exc}") from None


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
    close = difflib.get_close_matches(name, known, n=3)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _reference(kind: str, ref: Any, file: Any, path: str) -> tuple[dict[str, Any], Any]:
    """A reference as {"name"?, "type", params...} and the file its parameters came from."""
    type_key = "strategy" if kind == "strategy" else "type"
    if isinstance(ref, str):
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
            ref["type"] = ref.pop(type_key)
            return ref, file
        raise ConfigError(file, path, f"expected a {kind} name, or a mapping with 'use:' or '{type_key}:'")
    raise ConfigError(file, path, f"expected a {kind} name or mapping, got {type(ref).__name__} {ref!r}")


def expand_component(kind: str, ref: Any, file: Any, path: str) -> list[dict[str, Any]]:
    """Every resolved alternative of a (possibly swept) component reference."""
    if isinstance(ref, list):
        if not ref:
            raise ConfigError(file, path, "an empty list sweeps over nothing")
        return [alt for i, r in enumerate(ref) for alt in expand_component(kind, r, file, f"{path}[{i}]")]
    spec, source = _reference(kind, ref, file, path)
    type_name = spec.pop("type")
    name = spec.pop("name", None)
    try:
        cls = registry.get(kind, type_name)
    except registry.RegistryError as exc:
        raise ConfigError(source, f"{path}.type", str(exc)) from None
    model = registry.params_model(cls)
    fields = model.model_fields
    unknown = [k for k in spec if k not in fields]
    if unknown:
        raise ConfigError(
            source,
            f"{path}.{unknown[0]}",
            f"unknown parameter for {kind} {type_name!r}{_suggest(unknown[0], list(fields))}"
            f" (expected one of: {', '.join(fields)})",
        )
    axes: list[list[tuple[str, Any]]] = []
    for pname, info in fields.items():
        ppath = f"{path}.{pname}"
        if pname not in spec:
            if info.is_required():
                raise ConfigError(source, ppath, f"missing required parameter of {kind} {type_name!r}")
            default = info.get_default(call_default_factory=True)
            axes.append([(pname, default if _jsonable(default) else repr(default))])
            continue
        value = spec[pname]
        sub_kind = component_kind(info.annotation)
        if sub_kind is not None:
            if value is None and _optional(info.annotation):
                axes.append([(pname, None)])
            else:
                axes.append([(pname, alt) for alt in expand_component(sub_kind, value, source, ppath)])
            continue
        sweep = isinstance(value, list) and (
            not _is_list_type(info.annotation) or (value and all(isinstance(v, list) for v in value))
        )
        values = value if sweep else [value]
        if sweep and not values:
            raise ConfigError(source, ppath, "an empty list sweeps over nothing")
        axes.append([(pname, _check(info.annotation, v, source, ppath)) for v in values])
    out = []
    for combo in itertools.product(*axes):
        resolved: dict[str, Any] = {"type": type_name}
        if name:
            resolved["name"] = name
        # the stage version is part of the identity: a code change that alters outputs (a new
        # prompt, a fixed bug) gets a new config hash, so old predictions are not resumed into it
        resolved["version"] = str(getattr(cls, "version", "1"))
        resolved.update(combo)
        out.append(resolved)
    return out


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict | tuple)


def _check(annotation: Any, value: Any, file: Any, path: str) -> Any:
    try:
        checked = pydantic.TypeAdapter(annotation).validate_python(value)
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        raise ConfigError(file, path, f"{problem['msg']} (got {value!r})") from None
    return value if isinstance(checked, tuple | set | frozenset) else checked


def build_component(kind: str, resolved: dict[str, Any]) -> Any:
    """Construct a resolved component (nested components first)."""
    cls = registry.get(kind, resolved["type"])
    fields = registry.params_model(cls).model_fields
    params = {}
    for pname, value in resolved.items():
        if pname in ("type", "name", "version"):
            continue
        sub_kind = component_kind(fields[pname].annotation)
        if sub_kind is not None and isinstance(value, dict):
            value = build_component(sub_kind, value)
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


class ExperimentFile(pydantic.BaseModel):
    """The top level of an experiment YAML."""

    model_config = pydantic.ConfigDict(extra="forbid")
    name: str
    description: str = ""
    dataset: Any
    generator: Any = "smollm2"
    arms: list[dict[str, Any]]
    evaluation: Evaluation = Evaluation()
    tracking_uri: str | None = None
    tracking: Tracking = Tracking()
    output_dir: str = "runs"
    cache_dir: str | None = None
    batch_size: int = pydantic.Field(16, ge=1)
    limit: int | None = pydantic.Field(None, ge=1)
    seed: int = 0


@dataclass
class Configuration:
    """One point of the expanded grid."""

    resolved: dict[str, Any]  # {"dataset", "generator", "strategy", "evaluation"}
    name: str
    arm: int

    @property
    def hash(self) -> str:
        return stable_hash(self.resolved)


@dataclass
class Experiment:
    file: Path | None
    spec: ExperimentFile
    raw: dict[str, Any]
    configurations: list[Configuration] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hash(self) -> str:
        return stable_hash([c.resolved for c in self.configurations])


def apply_overrides(raw: dict[str, Any], overrides: list[str], file: Any) -> dict[str, Any]:
    """``--set a.b.0.c=value`` (value parsed as YAML, so ``k=[1,2]`` sets a list)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(file, item, "an override must look like key.path=value")
        key, value = item.split("=", 1)
        parts = key.split(".")
        node: Any = raw
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(file, key, f"{part!r} is not an index of a list of {len(node)}")
                if last:
                    node[int(part)] = yaml.safe_load(value)
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = yaml.safe_load(value)
                else:
                    if not isinstance(node.get(part), dict | list):
                        node[part] = {} if node.get(part) is None else {"use": node[part]}
                    node = node[part]
            else:
                raise ConfigError(file, key, f"cannot set a field inside {node!r}")
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


def _short(path: str) -> str:
    parts = [p for p in path.split(".") if p not in ("strategy", "dataset", "generator")]
    if parts and parts[-1] in ("name", "type") and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts) or path


def load_experiment(
    source: str | os.PathLike[str] | dict[str, Any],
    overrides: list[str] | None = None,
) -> Experiment:
    """Read, validate and expand an experiment (a YAML path or an already-parsed dict)."""
    file = None if isinstance(source, dict) else Path(source)
    raw = source if isinstance(source, dict) else read_yaml(source)
    if not isinstance(raw, dict):
        raise ConfigError(file, "", "an experiment file must be a mapping")
    raw = apply_overrides(raw, overrides or [], file)
    try:
        spec = ExperimentFile.model_validate(raw)
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        loc = ".".join(str(p) for p in problem["loc"])
        msg = problem["msg"]
        if problem["type"] == "extra_forbidden":
            msg = f"unknown field{_suggest(str(problem['loc'][-1]), list(ExperimentFile.model_fields))}"
        raise ConfigError(file, loc, msg) from None
    if not spec.arms:
        raise ConfigError(file, "arms", "an experiment needs at least one arm")
    datasets = expand_component("dataset", spec.dataset, file, "dataset")
    generators = expand_component("generator", spec.generator, file, "generator")
    evaluation = spec.evaluation.model_dump()
    if evaluation["judge"] is not None:
        judges = expand_component("generator", evaluation["judge"], file, "evaluation.judge")
        if len(judges) != 1:
            raise ConfigError(file, "evaluation.judge", "the judge cannot be swept")
        evaluation["judge"] = judges[0]
    configurations: list[Configuration] = []
    for index, arm in enumerate(spec.arms):
        arm = dict(arm)
        label = arm.pop("label", None)
        if "strategy" not in arm:
            raise ConfigError(file, f"arms[{index}].strategy", "missing: which strategy this arm runs")
        strategies = expand_component("strategy", arm, file, f"arms[{index}]")
        for ds, gen, strat in itertools.product(datasets, generators, strategies):
            resolved = {"dataset": ds, "generator": gen, "strategy": strat, "evaluation": evaluation}
            configurations.append(Configuration(resolved=resolved, name=label or strat["type"], arm=index))
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
    return Experiment(file=file, spec=spec, raw=raw, configurations=configurations)


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
