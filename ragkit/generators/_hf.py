"""Shared by the transformers and vLLM generators: a model's tokenizer, prompt rendering and size
facts from its Hugging Face files, without loading its weights.

``model`` is a packaged model name (``smollm2``, see :mod:`ragkit.generators.packaged`), a local
folder, a local ``.gguf`` file or a hub id (offline runs need it in the local HF cache). A GGUF's
tokenizer and config take ~10 s to parse, so their converted form is kept under the run's cache
folder (keyed by the file's path, size, mtime and the transformers version).
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ragkit.generators import packaged
from ragkit.generators.base import GenerationRequest, Generator, Message, ModelInfo

log = logging.getLogger(__name__)

PromptStyle = Literal["auto", "chat", "completion"]


class ModelLoadError(OSError):
    """A model that cannot be found or loaded here."""


class HFTokenizer:
    """The HF tokenizer as the model sees prompts: chat prompts already carry their special tokens
    (the template adds them), completion prompts get the tokenizer's own (BOS)."""

    def __init__(self, hf: Any, add_special_tokens: bool) -> None:
        self.hf = hf
        self.add_special_tokens = add_special_tokens

    def encode(self, text: str) -> list[int]:
        return self.hf(text, add_special_tokens=self.add_special_tokens)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)


def render_completion(messages: Sequence[Message]) -> str:
    """Plain-text prompt for base models: system text, user text, then an "Answer:" cue (not
    repeated when the user text already ends with a cue such as ragkit's "Answer (a few words):")."""
    parts = []
    for m in messages:
        parts.append(f"Answer: {m['content']}" if m["role"] == "assistant" else m["content"])
    text = "\n\n".join(p.strip() for p in parts if p.strip())
    return text if text.endswith(":") else f"{text}\nAnswer:"


class HFPromptGenerator(Generator):
    """Tokenizer, prompt rendering and model facts from a model's HF files, without its weights.
    Subclasses set ``model``, ``gguf_file``, ``prompt_style``, ``context_window_`` and ``stop``."""

    model: str
    gguf_file: str | None
    prompt_style: PromptStyle
    context_window_: int | None
    stop: list[str] | None

    def get_params(self) -> dict[str, Any]:
        # ``context_window`` reads back as given (None: the model's own), not through the base
        # class property, so spec() and repr() never need the model's files.
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {n: self.context_window_ if n == "context_window" else getattr(self, n) for n in names}

    # -- where the files are ------------------------------------------------------------------
    def _source(self) -> tuple[str, str | None]:
        """``(folder or hub id, gguf file name or None)``."""
        if self.model in packaged.PACKAGED and self.gguf_file is None:
            folder, name = packaged.resolve(self.model)
            return str(folder), name
        path = Path(self.model).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            return str(path.parent), path.name
        return (str(path) if path.exists() else self.model), self.gguf_file

    def check(self) -> None:
        """The model's files can be found here (packaged, local, or a hub id already in the local
        Hugging Face cache), before the tokenizer or weights load: a wrong path used to fail only
        after minutes of data loading, or at the first batch."""
        if self.model in packaged.PACKAGED and self.gguf_file is None:
            packaged.resolve(self.model)  # PackagedModelError names the pip command
            return
        path = Path(self.model).expanduser()
        if path.exists():
            if path.is_dir() and self.gguf_file and not (path / self.gguf_file).is_file():
                raise ModelLoadError(f"model {self.model!r}: no file {self.gguf_file!r} in that folder")
            return
        if self.model.startswith(("/", "./", "../", "~")) or self.model.endswith(".gguf"):
            raise ModelLoadError(f"model {self.model!r}: no such file or folder")
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(self.model, self.gguf_file or "config.json")
        if not isinstance(cached, str):
            raise self._load_error("files", FileNotFoundError("not in the local Hugging Face cache"))

    def model_fingerprint(self) -> str:
        """What identifies the weights beyond ``model`` (package version, file size)."""
        if self.model in packaged.PACKAGED and self.gguf_file is None:
            return packaged.fingerprint(self.model)
        folder, gguf = self._source()
        target = Path(folder) / gguf if gguf else Path(folder)
        return f"{target.name}:{target.stat().st_size}" if target.is_file() else self.model

    def _load_error(self, what: str, exc: Exception) -> ModelLoadError:
        offline = " (offline: HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        return ModelLoadError(
            f"cannot load the {what} of model {self.model!r}"
            + (f" (gguf_file {self.gguf_file!r})" if self.gguf_file else "")
            + f": it is not a packaged model ({', '.join(packaged.PACKAGED)}), a local folder or .gguf "
            f"file here, or a hub id in the local Hugging Face cache{offline}. Cause: {exc}"
        )

    def _converted_dir(self) -> Path | None:
        """Folder with this GGUF's tokenizer and config saved in HF format (None for non-GGUF)."""
        folder, gguf = self._source()
        if not gguf:
            return None
        import transformers

        from ragkit.cache import cache_key

        target = Path(folder) / gguf
        stat = target.stat()
        key = cache_key(
            "hf-gguf-meta", str(target.resolve()), stat.st_size, stat.st_mtime_ns, transformers.__version__
        )
        return self.stage_cache().root / "hf-gguf-meta" / key

    def _load_meta(self) -> None:
        """Load tokenizer and config (never the weights) into ``hf_tokenizer_`` and ``config_``."""
        if getattr(self, "config_", None) is not None:
            return
        from transformers import AutoConfig, AutoTokenizer

        folder, gguf = self._source()
        converted = self._converted_dir()
        try:
            if converted is not None and (converted / "config.json").is_file():
                tokenizer = AutoTokenizer.from_pretrained(converted)
                config = AutoConfig.from_pretrained(converted)
            else:
                extra = {"gguf_file": gguf} if gguf else {}
                tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
                config = AutoConfig.from_pretrained(folder, **extra)
                if converted is not None:
                    _save_converted(converted, tokenizer, config)
        except (OSError, ValueError) as exc:
            raise self._load_error("tokenizer and config", exc) from exc
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # batched generation continues from the right edge
        self.hf_tokenizer_ = tokenizer
        self.config_ = config

    # -- the Generator interface -------------------------------------------------------------
    def resolved_prompt_style(self) -> Literal["chat", "completion"]:
        self._load_meta()
        has_template = bool(getattr(self.hf_tokenizer_, "chat_template", None))
        if self.prompt_style == "chat" and not has_template:
            raise ValueError(
                f"generator {self.model!r}: prompt_style 'chat' but its tokenizer has no chat template; "
                "use prompt_style: completion (base models) or auto"
            )
        if self.prompt_style == "auto":
            return "chat" if has_template else "completion"
        return self.prompt_style

    @property
    def tokenizer(self) -> HFTokenizer:
        if getattr(self, "tokenizer_", None) is None:
            self._load_meta()
            self.tokenizer_ = HFTokenizer(self.hf_tokenizer_, self.resolved_prompt_style() == "completion")
        return self.tokenizer_

    def render(self, messages: Sequence[Message]) -> str:
        if self.resolved_prompt_style() == "completion":
            return render_completion(messages)
        return self.hf_tokenizer_.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )

    def model_info(self) -> ModelInfo:
        self._load_meta()
        config = self.config_.get_text_config()
        window = self.context_window_ or getattr(config, "max_position_embeddings", None)
        if not window:
            raise ValueError(
                f"generator {self.model!r}: its config has no max_position_embeddings; set context_window"
            )
        heads = getattr(config, "num_attention_heads", None)
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else None)
        return ModelInfo(
            n_params=self._n_params(),
            n_layers=int(config.num_hidden_layers),
            d_model=int(config.hidden_size),
            context_window=int(window),
            n_heads=int(heads) if heads else None,
            n_kv_heads=int(kv_heads) if kv_heads else None,
            head_dim=int(head_dim) if head_dim else None,
            layer_windows=layer_windows(config),
            vocab_size=getattr(config, "vocab_size", None),
        )

    def _n_params(self) -> int:
        """Exact parameter count: from the loaded model, else from a weightless (meta) copy."""
        loaded = getattr(self, "model_", None)
        if loaded is not None:
            return sum(p.numel() for p in loaded.parameters())
        if getattr(self, "n_params_", None) is None:
            import torch
            from transformers import AutoModelForCausalLM

            try:
                with torch.device("meta"):
                    meta = AutoModelForCausalLM.from_config(self.config_)
                self.n_params_ = sum(p.numel() for p in meta.parameters())
            except (ValueError, KeyError, TypeError):  # unknown architecture: the usual estimate
                c = self.config_.get_text_config()
                self.n_params_ = 12 * c.num_hidden_layers * c.hidden_size**2 + c.vocab_size * c.hidden_size
        return self.n_params_

    def dequantised_folder(self, dtype: str) -> Path | None:
        """A Hugging Face model folder (config + safetensors) of this GGUF's weights de-quantised
        to ``dtype``, written once under the cache (the one the transformers generator loads):
        what vLLM loads, as its GGUF support covers fewer architectures and quantisations. The
        tokenizer is in :meth:`_converted_dir`. None for models that are not a GGUF file."""
        self._load_meta()
        converted = self._converted_dir()
        if converted is None:
            return None
        folder = converted / f"weights-{dtype}"
        if not (folder / WEIGHTS_FILE).is_file():
            import torch
            from transformers import AutoModelForCausalLM

            source, gguf = self._source()
            try:
                model = AutoModelForCausalLM.from_pretrained(
                    source, gguf_file=gguf, dtype=getattr(torch, dtype)
                )
            except (OSError, ValueError) as exc:
                raise self._load_error("weights", exc) from exc
            save_dequantised(folder, model, force=True)
            del model
        if not (folder / WEIGHTS_FILE).is_file():
            raise ModelLoadError(f"could not write the de-quantised weights of {self.model!r} to {folder}")
        return folder

    def stop_strings(self, request: GenerationRequest) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*(self.stop or []), *request.stop]))


def layer_windows(config: Any) -> tuple[int | None, ...]:
    """Each layer's sliding attention window (None: full attention). Configs that interleave local
    and global layers (Gemma 3: five 512-token sliding layers per full one) list ``layer_types``;
    older ones (Mistral 7B v0.1) set one ``sliding_window`` for every layer, and some (Qwen2) carry
    a window that ``use_sliding_window: false`` switches off."""
    n = int(config.num_hidden_layers)
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if types and len(types) == n:
        return tuple(int(window) if window and "sliding" in str(t) else None for t in types)
    if window and getattr(config, "use_sliding_window", True) is not False:
        return (int(window),) * n
    return (None,) * n


def _save_converted(folder: Path, tokenizer: Any, config: Any) -> None:
    """Best effort: a read-only cache only costs the slow path next time."""
    tmp = folder.with_name(f"tmp_{os.getpid()}_{folder.name}")
    try:
        tokenizer.save_pretrained(tmp)
        config.save_pretrained(tmp)
        os.replace(tmp, folder)  # the rename is the "done" marker
    except OSError as exc:
        log.info("could not cache the converted GGUF tokenizer at %s: %s", folder, exc)


# -- de-quantised GGUF weights ----------------------------------------------------------------
# transformers de-quantises a GGUF's tensors in Python on every load (SmolLM2-135M: ~19 s, Gemma 3
# 270M: ~40 s of every run's start-up) and refuses save_pretrained on the result ("quantized with
# gguf and is not serializable"). The de-quantised tensors are plain floats, so ragkit writes them
# once as safetensors next to the converted config; a later load reads them in ~0.1 s with
# identical logits. Cost: the float weights on disk (SmolLM2 fp32 ~540 MB, Gemma 3 270M ~1.1 GB)
# under the cache folder, keyed like the converted config (file, size, mtime, transformers
# version) plus the dtype. RAGKIT_GGUF_WEIGHT_CACHE=0 turns it off.
WEIGHTS_FILE = "model.safetensors"


def _weight_cache_enabled() -> bool:
    return os.environ.get("RAGKIT_GGUF_WEIGHT_CACHE", "1").strip().lower() not in ("0", "false", "no")


def load_dequantised(folder: Path, dtype: Any) -> Any | None:
    """The model saved by :func:`save_dequantised`, or None (nothing cached, caching off, or a
    broken entry, which is removed so that the caller re-converts and saves it again)."""
    if not _weight_cache_enabled() or not (folder / WEIGHTS_FILE).is_file():
        return None
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    except Exception as exc:  # truncated file, foreign layout: any failure means "recompute"
        log.warning("unreadable cached de-quantised weights at %s (%s); converting again", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    with torch.no_grad():  # read the (memory-mapped) weights now: the first batch's prefill
        for parameter in model.parameters():  # time would otherwise include paging them in
            parameter.sum()
    return model


def save_dequantised(folder: Path, model: Any, *, force: bool = False) -> None:
    """Best effort, like :func:`_save_converted`: config plus every distinct tensor once (tied
    weights share storage; transformers re-ties them on load), renamed into place when complete.
    ``force``: write even with the cache turned off (another engine needs the folder)."""
    if not (force or _weight_cache_enabled()) or folder.exists():
        return
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            tensors[name] = tensor.detach().cpu().contiguous()
    _remove_abandoned(folder)
    tmp = folder.with_name(f"tmp_{os.getpid()}_{folder.name}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        model.config.save_pretrained(tmp)
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        os.replace(tmp, folder)  # the rename is the "done" marker
    except Exception as exc:  # a full disk raises safetensors' own error: never fail the run for it
        shutil.rmtree(tmp, ignore_errors=True)
        if not folder.exists():  # else another process finished the same entry first: fine
            log.warning("could not cache the de-quantised GGUF weights at %s: %s", folder, exc)


def _remove_abandoned(folder: Path) -> None:
    """Half-written copies of ``folder`` left by killed processes (0.5-1 GB each)."""
    for tmp in folder.parent.glob(f"tmp_*_{folder.name}"):
        pid = tmp.name.split("_")[1]
        try:
            os.kill(int(pid), 0)  # still running: its write may be in progress
        except (ValueError, OverflowError, ProcessLookupError):
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # running, under another user
            continue


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """``text`` up to the earliest stop string, and that stop string (None when none occurs).
    Stops count only after the first non-blank character: a base model that opens its answer with
    a blank line ("Answer:\n\nThe ...") would otherwise stop on "\n\n" before saying anything."""
    start = len(text) - len(text.lstrip())
    hits = [(text.find(s, start), s) for s in stops if s and s in text[start:]]
    if not hits:
        return text, None
    pos, stop = min(hits)
    return text[:pos], stop
