"""Writing phantom studies to disk in the layouts real data comes in (SimpleITK)."""

from __future__ import annotations

import uuid
from pathlib import Path

from ..io.images import image_from_array, write_image_atomic
from .study import PhantomStudy

LAYOUTS = ("autopet", "grand-challenge", "dicom")


def write_study(study: PhantomStudy, out_dir: Path, layout: str = "autopet") -> Path:
    """Write one phantom study below ``out_dir``; returns the study folder.

    Layouts:
        autopet: ``PETCT_<id>/<study>/{SUV,CTres,SEG}.nii.gz`` (TCIA conversion names; CTres
            is the CT on the PET grid, stored as int16 HU).
        grand-challenge: ``<case>/images/pet/<uuid>.mha`` and ``<case>/images/ct/<uuid>.mha``
            (no label: the challenge container gets none).
        dicom: ``<case>/PT/*`` and ``<case>/CT/*``, the series a scanner sends (Bq/mL with the
            SUV tags, CT in HU at twice the PET's in-plane resolution; no label), see
            ``l2s_engine.phantoms.dicom``.
    """
    if layout == "dicom":
        from .dicom import write_dicom_study

        return write_dicom_study(study, out_dir, ct_zoom=2)
    out_dir = Path(out_dir)
    pet = image_from_array(study.pet, study.geometry)
    ct = image_from_array(study.ct, study.geometry)
    if layout == "autopet":
        folder = out_dir / study.case_id / study.study_name
        write_image_atomic(pet, folder / "SUV.nii.gz")
        write_image_atomic(ct, folder / "CTres.nii.gz")
        write_image_atomic(image_from_array(study.seg, study.geometry), folder / "SEG.nii.gz")
        return folder
    if layout == "grand-challenge":
        folder = out_dir / study.case_id
        name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"l2s-phantom/{study.case_id}"))
        write_image_atomic(pet, folder / "images" / "pet" / f"{name}.mha")
        write_image_atomic(ct, folder / "images" / "ct" / f"{name}.mha")
        return folder
    raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
