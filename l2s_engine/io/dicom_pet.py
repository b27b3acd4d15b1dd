"""What SUV needs from a PT series' DICOM headers (``l2s_engine.suv`` does the arithmetic).

Vendor private tags are read through their private creators, never by a fixed element
number alone: GE's post-injection time (0009,xx0d of "GEMS_PETD_01") and Philips' scale
factors (7053,xx00 and 7053,xx09 of "Philips PET Private Group").
"""

from __future__ import annotations

from pathlib import Path

from ..suv import PetSeriesHeader

GE_CREATOR, GE_POST_INJECTION = "GEMS_PETD_01", (0x0009, 0x0D)
PHILIPS_CREATOR = "Philips PET Private Group"
PHILIPS_SUV, PHILIPS_ACTIVITY = (0x7053, 0x00), (0x7053, 0x09)


def pet_series_header(headers: list, first_file: Path) -> PetSeriesHeader:
    """The SUV inputs of a PT series, from its headers (any order) and its first file as listed.

    ``first_file`` is the file the autoPET conversion script would read (the first one of
    the folder's listing): its AcquisitionTime goes into that script's formula, for comparison.
    """
    ds = headers[0]
    info = ds.get("RadiopharmaceuticalInformationSequence")
    drug = info[0] if info else {}
    first = next((h for h in headers if Path(h.filename) == Path(first_file)), ds)
    return PetSeriesHeader(
        source=Path(ds.filename),
        units=_text(ds.get("Units")),
        decay_correction=_text(ds.get("DecayCorrection")),
        corrected_image=tuple(str(v).upper() for v in _values(ds.get("CorrectedImage"))),
        patient_weight_kg=_number(ds.get("PatientWeight")),
        series_date=_text(ds.get("SeriesDate")),
        series_time=_text(ds.get("SeriesTime")),
        acquisitions=tuple((_text(h.get("AcquisitionDate")), _text(h.get("AcquisitionTime"))) for h in headers),
        injection_datetime=_text(drug.get("RadiopharmaceuticalStartDateTime")),
        injection_time=_text(drug.get("RadiopharmaceuticalStartTime")),
        total_dose_bq=_number(drug.get("RadionuclideTotalDose")),
        half_life_s=_number(drug.get("RadionuclideHalfLife")),
        ge_post_injection_datetime=_text(_private(ds, GE_CREATOR, GE_POST_INJECTION)),
        philips_suv_factor=_number(_private(ds, PHILIPS_CREATOR, PHILIPS_SUV)),
        philips_activity_factor=_number(_private(ds, PHILIPS_CREATOR, PHILIPS_ACTIVITY)),
        first_file_acquisition_time=_text(first.get("AcquisitionTime")),
    )


def _private(ds, creator: str, tag: tuple[int, int]):
    try:
        return ds.get_private_item(tag[0], tag[1], creator).value
    except (KeyError, ValueError):
        return None


def _values(element):
    value = getattr(element, "value", element)
    if value in (None, ""):
        return ()
    return (value,) if isinstance(value, (str, bytes)) else tuple(value)


def _text(element) -> str | None:
    value = getattr(element, "value", element)
    if isinstance(value, bytes):  # private elements of implicit-VR files arrive as raw bytes
        value = value.decode("ascii", "replace").strip("\x00 ")
    return None if value in (None, "") else str(value).strip()


def _number(element) -> float | str | None:
    """A number, or the text itself when it is not one (so that the SUV error shows the value)."""
    text = _text(element)
    if text is None:
        return None
    try:
        return float(text.split("\\")[0])
    except ValueError:
        return text
