"""Read a ``torch.export`` archive (``*.pt2``) without unpickling anything.

``torch.export.load`` unpickles: the archive's sample inputs go through ``torch.load`` (which
falls back to ``weights_only=False`` when the restricted load fails), and weights of tensor
subclasses, torchbind and opaque constants are pickles too. Whoever wrote the file would run
code in the loading process. This reader takes only the parts that are data:

- ``models/model.json``: the program's graph, serialized as JSON by torch's own schema;
- ``data/weights/*`` and ``data/constants/tensor_*``: raw little-endian tensor bytes, laid out
  as the JSON payload configs beside them say (dtype, sizes, strides, storage offset);

and never opens the sample inputs. An archive whose payload config marks a tensor as pickled,
or that carries a non-tensor constant, is refused. The graph is rebuilt with torch's
``ExportedProgramDeserializer`` (given tensors, not bytes, so it unpickles nothing either).

The archive layout and the deserializer are those of torch 2.x's ``torch.export.save``
(``torch/export/pt2_archive/_package.py``); the layout names come from
``torch.export.pt2_archive.constants``. torch is imported only when a program is loaded.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

from .base import BackendError

MODEL = "model"  # the name torch.export.save gives the one program of an archive
REEXPORT = "re-export it with `l2s-export` (the torch backend reads the programs l2s-export writes)"


class ProgramError(BackendError):
    """A ``.pt2`` archive cannot be read as plain data (corrupt, or it needs unpickling)."""


def load_program(path: Path):
    """The ``torch.export.ExportedProgram`` saved in ``path``, read without unpickling.

    Raises:
        ProgramError: not a torch.export archive, a layout this reader does not know, or a
            payload that only a pickle could restore (named, with what to do).
    """
    import torch

    path = Path(path)
    try:  # torch's own schema and deserializer: the format is theirs
        from torch._export.serde import schema
        from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass
        from torch.export.pt2_archive import constants as layout
    except ImportError as exc:
        raise ProgramError(f"{path}: torch {torch.__version__} lacks the torch.export archive reader this "
                           f"backend uses ({exc}); install the torch version the README pins") from exc
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ProgramError(f"{path}: not a torch.export archive ({exc}); {REEXPORT}") from exc
    with archive:
        read = _Records(archive, path)
        if read(layout.ARCHIVE_FORMAT_PATH).decode(errors="replace") != layout.ARCHIVE_FORMAT_VALUE:
            raise ProgramError(f"{path}: archive format is not {layout.ARCHIVE_FORMAT_VALUE!r}; {REEXPORT}")
        version = read(layout.ARCHIVE_VERSION_PATH).decode(errors="replace")
        if version != layout.ARCHIVE_VERSION_VALUE:
            raise ProgramError(f"{path}: archive version {version}, this torch ({torch.__version__}) reads "
                               f"{layout.ARCHIVE_VERSION_VALUE}; {REEXPORT} under this torch")
        order = read("byteorder").decode(errors="replace") if read.has("byteorder") else "little"
        if order != sys.byteorder:
            raise ProgramError(f"{path}: tensors stored {order}-endian, this machine is {sys.byteorder}-endian")
        weights = _payload(torch, read, path, layout.WEIGHTS_DIR, layout.WEIGHTS_CONFIG_FILENAME_FORMAT.format(MODEL),
                           layout.WEIGHT_FILENAME_PREFIX)
        constants = _payload(torch, read, path, layout.CONSTANTS_DIR,
                             layout.CONSTANTS_CONFIG_FILENAME_FORMAT.format(MODEL),
                             layout.TENSOR_CONSTANT_FILENAME_PREFIX)
        try:
            program = _dict_to_dataclass(schema.ExportedProgram,
                                         json.loads(read(layout.MODELS_FILENAME_FORMAT.format(MODEL))))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ProgramError(f"{path}: the program's JSON is unreadable ({exc}); {REEXPORT}") from exc
    try:
        # example_inputs=None: the sample inputs are a pickle, and running the program needs none
        return ExportedProgramDeserializer().deserialize(program, weights, constants, None)
    except Exception as exc:  # noqa: BLE001 - torch's deserializer raises many kinds; one named error here
        first_line = (str(exc).splitlines() or [""])[0]
        raise ProgramError(f"{path}: torch {torch.__version__} cannot rebuild the program ({type(exc).__name__}: "
                           f"{first_line}); {REEXPORT} under this torch") from exc


class _Records:
    """Named records of the archive's single root folder (torch names it after the file)."""

    def __init__(self, archive: zipfile.ZipFile, path: Path):
        names = archive.namelist()
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1:
            raise ProgramError(f"{path}: not a torch.export archive (records under {sorted(roots)[:3]}); {REEXPORT}")
        self.archive, self.path, self.root = archive, path, roots.pop()
        self.names = set(names)

    def has(self, name: str) -> bool:
        return f"{self.root}/{name}" in self.names

    def __call__(self, name: str) -> bytes:
        if not self.has(name):
            raise ProgramError(f"{self.path}: the archive has no {name}; {REEXPORT}")
        try:
            return self.archive.read(f"{self.root}/{name}")
        except (OSError, zipfile.BadZipFile, EOFError) as exc:  # a truncated or altered file
            raise ProgramError(f"{self.path}: cannot read {name} ({exc}); {REEXPORT}") from exc


def _payload(torch, read: _Records, path: Path, folder: str, config_name: str, prefix: str) -> dict:
    """FQN -> tensor of one payload config (weights or constants), built from raw bytes.

    Tensors that share a record share its storage, as in the saved program.
    """
    from torch._export.serde import schema
    from torch._export.serde.serialize import deserialize_scalar_type

    records, tensors = {}, {}
    try:
        config = json.loads(read(config_name))["config"]
        for fqn, entry in config.items():
            name = entry["path_name"]
            if entry["use_pickle"] or not name.startswith(prefix):
                raise ProgramError(f"{path}: {fqn!r} is stored as a pickle ({folder}{name}), which the torch "
                                   f"backend never loads; {REEXPORT}")
            meta = entry["tensor_meta"]
            sizes = tuple(_int(v) for v in meta["sizes"])
            dtype = deserialize_scalar_type(schema.ScalarType(meta["dtype"]))
            if name not in records:
                data = read(folder + name)
                records[name] = torch.frombuffer(bytearray(data), dtype=dtype) if data else None
            if records[name] is None:  # torch.export.save writes empty tensors as empty records
                tensor = torch.zeros(sizes, dtype=dtype)
            else:
                tensor = torch.as_strided(records[name], sizes, tuple(_int(v) for v in meta["strides"]),
                                          _int(meta["storage_offset"]))
            device = meta.get("device") or {"type": "cpu"}
            if device["type"] != "cpu":
                tensor = tensor.to(torch.device(device["type"], device.get("index")))
            if entry.get("is_param"):
                tensor = torch.nn.Parameter(tensor, requires_grad=bool(meta.get("requires_grad")))
            tensors[fqn] = tensor
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as exc:
        raise ProgramError(f"{path}: {config_name} does not describe its tensors ({exc}); {REEXPORT}") from exc
    return tensors


def _int(value: dict) -> int:
    """A serialized SymInt that must be a plain integer (a saved tensor's sizes and strides are)."""
    if not isinstance(value, dict) or set(value) != {"as_int"}:
        raise ValueError(f"symbolic or malformed size {value!r}")
    return int(value["as_int"])
