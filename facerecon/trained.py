"""The one format in which training hands a model to fitting and meshing, and fitting
hands codes to meshing.

Files are written with ``torch.save`` of plain containers and tensors, and read with
``weights_only=True``: loading never runs code from the file. Each file carries a
format name and version, and enough identity to be refused when it does not belong:

* :class:`TrainedModel` (``model.pt``): the method's name, exactly the config sections
  that produced it (``facerecon.config.TRAINING_SECTIONS``), a digest of the training
  samples, the subject and scan index of the codes, the network and code tables.
* :class:`TrainingCheckpoint` (``model.pt.ckpt``): the same plus optimiser, scheduler
  and RNG states; one that does not match the run is set aside, never resumed.
* :class:`FittedCodes` (``fits/.../<scan>.pt``): one test scan's codes with the SHA-256
  of the model file they were fitted to.
* :class:`FitCheckpoint` (``<first scan's codes>.pt.ckpt``): an interrupted or finished
  fit of a group of test scans, until the fit job has written all their codes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from facerecon.config import TRAINING_SECTIONS, MethodConfig, from_dict
from facerecon.io import InputError, atomic_path
from facerecon.models import LatentCodes, Model, build_model


def training_config(sections: dict[str, Any]) -> dict[str, Any]:
    """The TRAINING_SECTIONS of a stage's parsed sections, as plain JSON-ready data."""
    return {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
            for k, v in sections.items() if k in TRAINING_SECTIONS}


T = TypeVar("T")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save(path: Path, kind: str, version: int, payload: dict[str, Any]) -> None:
    """Serialise in memory, then write the bytes atomically: a full disk is then an
    OSError naming ``path`` (torch's own file writer reports it as an opaque RuntimeError)."""
    buffer = io.BytesIO()
    torch.save({"format": kind, "version": version, **payload}, buffer)
    with atomic_path(path, suffix=".pt") as tmp:
        tmp.write_bytes(buffer.getbuffer())


def _load(path: Path, kind: str, version: int, what: str) -> dict[str, Any]:
    """The payload of a file written by :func:`_save`; InputError naming the file if it is
    missing, unreadable, of another format or another version."""
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise InputError(f"{path}: cannot read {what} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(data, dict) or data.get("format") != kind:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{path}: not a {what} file (format {found!r}, expected {kind!r})")
    if data.get("version") != version:
        raise InputError(f"{path}: {what} format version {data.get('version')!r}, this code "
                         f"reads version {version}; rerun the stage that wrote it")
    return data


def _from_payload(cls: type[T], data: dict[str, Any], path: Path, what: str) -> T:
    """Dataclass ``cls`` from a loaded payload; InputError naming ``path`` if a field lacks."""
    try:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
    except KeyError as exc:
        raise InputError(f"{path}: {what} lacks {exc}") from None


@dataclass
class TrainedModel:
    """A trained implicit model: network weights, code tables and where they came from."""

    FORMAT: ClassVar[str] = "facerecon.trained_model"
    VERSION: ClassVar[int] = 1

    method: str
    """Name of the method (a row of the tables) that trained it."""
    config: dict[str, Any]
    """The sections in TRAINING_SECTIONS, as plain JSON-ready data."""
    samples_digest: str
    """SHA-256 over the training samples (see :func:`facerecon.batches.samples_digest`)."""
    subjects: list[str]
    """Subjects, in the row order of the per-subject code tables."""
    scans: list[tuple[str, str]]
    """(subject, expression) pairs, in the row order of the per-scan code tables."""
    radius_mm: float
    """Crop radius of the samples: 1 unit of the model's space."""
    network: dict[str, torch.Tensor]
    """The model's state dict."""
    codes: dict[str, torch.Tensor]
    """The code tables' state dict (facerecon.models.LatentCodes)."""

    def __post_init__(self) -> None:
        self.scans = [tuple(s) for s in self.scans]  # a saved file holds them as lists

    @property
    def method_config(self) -> MethodConfig:
        """The method's resolved config (fit: the defaults; fitting takes its own)."""
        sections = {k: self.config[k] for k in ("model", "loss", "train")}
        return from_dict(MethodConfig, sections, f"trained model of {self.method}")

    def build(self, device: torch.device) -> tuple[Model, LatentCodes]:
        """The network (eval mode, weights frozen) and the training code tables."""
        model = build_model(self.method_config.model)
        model.load_state_dict(self.network)
        with torch.random.fork_rng(devices=[]):  # loaded, not drawn: leave the global RNG
            codes = LatentCodes(model.latent_spec(), len(self.subjects), len(self.scans))
        codes.load_state_dict(self.codes)
        return model.to(device).eval().requires_grad_(False), codes.to(device)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically."""
        _save(Path(path), self.FORMAT, self.VERSION, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: str | os.PathLike, method: str | None = None,
             config: dict[str, Any] | None = None) -> TrainedModel:
        """Read ``path``; refuse it (InputError naming the file) when it was trained by
        another method than ``method`` or with other settings than the sections in
        ``config`` (None: not checked)."""
        path = Path(path)
        data = _load(path, cls.FORMAT, cls.VERSION, "trained model")
        trained = _from_payload(cls, data, path, "trained model")
        trained.check(path, method, config)
        return trained

    def check(self, path: Path, method: str | None, config: dict[str, Any] | None) -> None:
        """InputError naming ``path`` if this model is not the one asked for."""
        if method is not None and self.method != method:
            raise InputError(f"{path}: trained for method {self.method!r}, not {method!r}; "
                             "delete it to retrain")
        if config is not None:
            changed = [k for k in config if self.config.get(k) != config[k]]
            if changed:
                raise InputError(f"{path}: trained with other {', '.join(changed)} settings "
                                 "than configured; delete it (or let Snakemake rerun train)")


@dataclass
class TrainingCheckpoint:
    """Everything needed to continue an interrupted training run bit for bit."""

    FORMAT: ClassVar[str] = "facerecon.training_checkpoint"
    VERSION: ClassVar[int] = 1

    model: TrainedModel
    epoch: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    generator: torch.Tensor
    torch_rng: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically."""
        payload = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        payload["model"] = dataclasses.asdict(self.model)
        _save(Path(path), self.FORMAT, self.VERSION, payload)

    @classmethod
    def resume(cls, path: str | os.PathLike, expected: TrainedModel) -> TrainingCheckpoint | None:
        """The checkpoint at ``path`` if it continues exactly the run of ``expected``
        (method, config sections, samples digest and scan index); otherwise None, and a
        checkpoint that exists but does not match (or cannot be read) is renamed aside
        with a message, so it never blocks a rerun."""

        def parse(data: dict[str, Any]) -> TrainingCheckpoint:
            model = _from_payload(TrainedModel, data.get("model", {}), Path(path), "its model")
            return _from_payload(cls, {**data, "model": model}, Path(path), "checkpoint")

        def mismatch(checkpoint: TrainingCheckpoint) -> str | None:
            for key in ("method", "config", "samples_digest", "subjects", "scans", "radius_mm"):
                if getattr(checkpoint.model, key) != getattr(expected, key):
                    return f"written for another {key.replace('_', ' ')}"
            return None

        return _resume(Path(path), cls.FORMAT, cls.VERSION, "training checkpoint", parse,
                       mismatch)


def _resume(path: Path, kind: str, version: int, what: str,
            parse: Callable[[dict[str, Any]], T], mismatch: Callable[[T], str | None]
            ) -> T | None:
    """The checkpoint at ``path`` parsed, if it exists and ``mismatch`` finds no reason
    against it; a checkpoint that cannot be read or does not match is renamed
    ``*.set-aside-<time>`` with a message (never deleted, never blocking a rerun)."""
    if not path.exists():
        return None
    try:
        checkpoint = parse(_load(path, kind, version, what))
    except (InputError, TypeError) as exc:
        reason: str | None = f"unreadable ({exc})"
    else:
        reason = mismatch(checkpoint)
        if reason is None:
            return checkpoint
    aside = path.with_name(f"{path.name}.set-aside-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(path, aside)
    print(f"not resuming from {path}: {reason}; moved to {aside}", flush=True)
    return None


@dataclass
class FittedCodes:
    """One test scan's codes, tied to the model file they were fitted to."""

    FORMAT: ClassVar[str] = "facerecon.fitted_codes"
    VERSION: ClassVar[int] = 1

    method: str
    """Method of the model."""
    model_sha256: str
    """SHA-256 of the trained model file (meshing refuses codes of another model)."""
    subject: str
    expression: str
    codes: dict[str, torch.Tensor]
    """Latent space name -> (dim,) code."""
    history: list[dict[str, float]]
    """Per-step loss terms."""
    seconds: float
    """Wall time of the optimisation."""

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically."""
        _save(Path(path), self.FORMAT, self.VERSION, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: str | os.PathLike, model_path: str | os.PathLike) -> FittedCodes:
        """Read ``path``; refuse codes fitted to another file than ``model_path``."""
        path = Path(path)
        data = _load(path, cls.FORMAT, cls.VERSION, "fitted codes")
        fitted = _from_payload(cls, data, path, "fitted codes")
        if fitted.model_sha256 != file_sha256(model_path):
            raise InputError(f"{path}: fitted to another model than {model_path} "
                             "(its SHA-256 differs); refit")
        return fitted


@dataclass
class FitCheckpoint:
    """An interrupted fit of a group of test scans (one batched problem), to continue bit
    for bit; also kept, finished, until every output of the fit job is written."""

    FORMAT: ClassVar[str] = "facerecon.fit_checkpoint"
    VERSION: ClassVar[int] = 1

    key: dict[str, Any]
    """What the fit is of: model SHA-256, fit section, scans; resumed only if equal."""
    step: int
    """Iterations done."""
    codes: dict[str, torch.Tensor]
    """The group's code tables (LatentCodes state dict)."""
    optimizer: dict[str, Any]
    generator: torch.Tensor
    """State of the point draws' generator."""
    torch_rng: torch.Tensor
    """State of torch's global CPU generator (loss terms draw from it)."""
    history: list[dict[str, float]]
    seconds: float
    """Optimisation wall time so far."""

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically."""
        _save(Path(path), self.FORMAT, self.VERSION, dataclasses.asdict(self))

    @classmethod
    def resume(cls, path: str | os.PathLike, key: dict[str, Any]) -> FitCheckpoint | None:
        """The checkpoint at ``path`` if it continues the fit ``key`` names, else None (one
        that exists but does not match is set aside, see :func:`_resume`)."""
        return _resume(Path(path), cls.FORMAT, cls.VERSION, "fit checkpoint",
                       lambda data: _from_payload(cls, data, Path(path), "fit checkpoint"),
                       lambda c: None if c.key == key else "written for another fit")
