"""Per-step training logs: a CSV and TensorBoard scalars, written as each step finishes.

TensorBoard's event files are written here directly (TFRecord framing with masked
CRC-32C, and the three protobuf fields of a scalar Event) rather than through
``torch.utils.tensorboard``, which needs the ``tensorboard`` package and its server
dependencies (about 57 MB) just to write scalars; the tests read the files back with
TensorBoard's own reader.
"""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

from facerecon.io import atomic_path, write_text

#: Default per-step log names, beside the model file.
STEPS_CSV, TENSORBOARD_DIR = "train_steps.csv", "tensorboard"
#: The per-step log's event file (TensorBoard reads files whose name holds "tfevents").
EVENTS_FILE = "events.out.tfevents.facerecon-train"


def _crc32c_table() -> list[int]:
    """Lookup table of CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C = _crc32c_table()
_FLOAT32_MAX = 3.4028234663852886e38


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C of ``data``, rotated right by 15 bits plus a constant."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _float32(value: float) -> bytes:
    """Little-endian float32 of ``value``; beyond float32's range, infinity of its sign."""
    return struct.pack("<f", math.copysign(math.inf, value) if abs(value) > _FLOAT32_MAX
                       else value)


def _message_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (string, bytes or message)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def event_record(wall_time: float, step: int, scalars: dict[str, float] | None = None) -> bytes:
    """One TFRecord holding a TensorBoard ``Event``: the file-version header when
    ``scalars`` is None, else a ``Summary`` of ``simple_value`` scalars.

    Event: wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5;
    Summary.value = 1; Value: tag = 1, simple_value = 2 (float). A record is the data's
    length (uint64), its masked CRC-32C, the data, the data's masked CRC-32C."""
    if scalars is None:
        body = _message_field(3, b"brain.Event:2")
    else:
        body = _message_field(5, b"".join(
            _message_field(1, _message_field(1, tag.encode()) + b"\x15" + _float32(value))
            for tag, value in scalars.items()))
    data = b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step) + body
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


class StepLog:
    """Every optimisation step's scalars (epoch, step, wall_time, loss, the weighted terms,
    lr_<group>), one row each, appended to a CSV and to a TensorBoard event file and flushed
    as written: a killed run keeps every step it finished (a row cut short is dropped on
    the next start).

    On start both logs are cut back to their first ``keep_steps`` steps (0 for a fresh run,
    the checkpoint's step count on resume) and the event file is rebuilt from the CSV, so
    the steps a killed run logged after its last checkpoint, which the resumed run redoes,
    appear once. A term the header lacks (one that only some steps have) widens the CSV,
    rewritten atomically; a step without a term leaves its cell empty."""

    def __init__(self, csv_path: Path, tensorboard_dir: Path, keep_steps: int) -> None:
        self.csv_path, self.events_path = csv_path, tensorboard_dir / EVENTS_FILE
        columns, rows = self._read()
        rows = [r for r in rows if int(r["step"]) <= keep_steps]
        if len(rows) < keep_steps:
            print(f"{csv_path}: {len(rows)} of the checkpoint's {keep_steps} steps found; "
                  "the step logs go on without the others", flush=True)
        self.columns = columns if rows else []
        self._write_csv(rows)
        with atomic_path(self.events_path) as tmp:
            tmp.write_bytes(event_record(time.time(), 0) + b"".join(
                event_record(float(r["wall_time"]), int(r["step"]), self._scalars(r))
                for r in rows))
        self._csv = open(self.csv_path, "a")
        self._events = open(self.events_path, "ab")

    def _read(self) -> tuple[list[str], list[dict[str, str]]]:
        """Header and complete rows of the CSV; none when it is absent or not a step log."""
        if not self.csv_path.is_file():
            return [], []
        lines = self.csv_path.read_text().splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines.pop()  # cut short by a kill
        columns = lines[0].rstrip("\n").split(",") if lines else []
        if "step" not in columns:
            return [], []
        rows = [dict(zip(columns, cells, strict=True)) for cells in
                (line.rstrip("\n").split(",") for line in lines[1:]) if len(cells) == len(columns)]
        return columns, [r for r in rows if r["step"].isdigit()]

    def _write_csv(self, rows: list[dict[str, str]]) -> None:
        """Replace the CSV atomically by the header and ``rows``."""
        header = ",".join(self.columns) + "\n" if self.columns else ""
        write_text(self.csv_path, header + "".join(
            ",".join(r.get(c, "") for c in self.columns) + "\n" for r in rows))

    @staticmethod
    def _scalars(row: dict[str, float] | dict[str, str]) -> dict[str, float]:
        """The row's TensorBoard scalars: every non-empty cell but step and wall_time."""
        return {f"train/{k}": float(v) for k, v in row.items()
                if k not in ("step", "wall_time") and v != ""}

    def append(self, row: dict[str, float]) -> None:
        """Log one step; ``row`` holds 'epoch', 'step', 'wall_time' and the scalars."""
        if any(k not in self.columns for k in row):
            self._csv.close()
            self.columns, rows = self._read()
            self.columns += [k for k in row if k not in self.columns]
            self._write_csv(rows)
            self._csv = open(self.csv_path, "a")
        self._csv.write(",".join(repr(row[c]) if c in row else "" for c in self.columns)
                        + "\n")
        self._csv.flush()
        self._events.write(event_record(row["wall_time"], row["step"], self._scalars(row)))
        self._events.flush()

    def close(self) -> None:
        """Close both files."""
        self._csv.close()
        self._events.close()
