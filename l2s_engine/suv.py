"""SUV body-weight (SUVbw) scale factor of one DICOM PET series, from header strings only.

The caller reads the files and fills :class:`PetSeriesHeader`; SUVbw = (stored value *
RescaleSlope + RescaleIntercept) * factor. The rules are the QIBA vendor-neutral SUV
pseudo-code's (QIBA wiki, "Standardized Uptake Value (SUV)"), also implemented by
cornerstonejs/calculate-suv. Nothing is guessed: :class:`SuvError` names the tag, its value and
what to do. The DICOM string parsers raise ``ValueError``, which :func:`suv_factor` turns into
a :class:`SuvError` naming the tag.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import StudyError

# Longest injection-to-scan time accepted: 12 h is 6.5 F-18 half-lives (1% of the dose left),
# beyond any FDG protocol, and it catches a RadiopharmaceuticalStartTime just after the scan's
# time of day, which the midnight rule would otherwise read as a ~24 h uptake.
MAX_DECAY_S = 12 * 3600.0
UNITS = ("BQML", "CNTS", "GML")

CORRECTED, DECAY, UNITS_TAG = "CorrectedImage (0028,0051)", "DecayCorrection (0054,1102)", "Units (0054,1001)"
WEIGHT, DOSE, HALF_LIFE = ("PatientWeight (0010,1030)", "RadionuclideTotalDose (0018,1074)",
                           "RadionuclideHalfLife (0018,1075)")
SERIES_DATE, SERIES_TIME = "SeriesDate (0008,0021)", "SeriesTime (0008,0031)"
ACQ_DATE, ACQ_TIME = "AcquisitionDate (0008,0022)", "AcquisitionTime (0008,0032)"
INJ_DT, INJ_TM = "RadiopharmaceuticalStartDateTime (0018,1078)", "RadiopharmaceuticalStartTime (0018,1072)"
GE_SCAN = "GE private scan DateTime (0009,100D) 'GEMS_PETD_01'"
PH_SUV, PH_ACT = "Philips SUV scale factor (7053,1000)", "Philips activity concentration factor (7053,1009)"
_FIX = "correct the header (or re-export the series from the scanner) and run again"


class SuvError(StudyError):
    """The PET series' headers do not give a trustworthy SUV: the message names the tag, its value and what to do."""


@dataclass(frozen=True)
class PetSeriesHeader:
    """What SUV needs from one PT series; DICOM strings as written in the file (None where absent)."""

    source: Path                      # the series' first file (named in errors)
    units: str | None                 # (0054,1001) Units: BQML, CNTS, GML, ...
    decay_correction: str | None      # (0054,1102) START, ADMIN, NONE
    corrected_image: tuple[str, ...]  # (0028,0051) values, e.g. ("ATTN", "DECY", ...)
    patient_weight_kg: float | None   # (0010,1030)
    series_date: str | None           # DA
    series_time: str | None           # TM
    acquisitions: tuple[tuple[str | None, str | None], ...]  # (AcquisitionDate, AcquisitionTime) per slice
    injection_datetime: str | None    # RadiopharmaceuticalStartDateTime (DT), sequence item 0
    injection_time: str | None        # RadiopharmaceuticalStartTime (TM)
    total_dose_bq: float | None       # RadionuclideTotalDose
    half_life_s: float | None         # RadionuclideHalfLife
    ge_post_injection_datetime: str | None = None  # (0009,100D), creator "GEMS_PETD_01", DT
    philips_suv_factor: float | None = None        # (7053,1000)
    philips_activity_factor: float | None = None   # (7053,1009): counts -> Bq/mL
    first_file_acquisition_time: str | None = None  # AcquisitionTime of the first file (autoPET formula)


@dataclass(frozen=True)
class SuvFactor:
    """The SUVbw factor of a series, how it was found, and the autoPET script's value beside it."""

    factor: float
    method: str
    inputs: dict
    autopet_factor: float | None
    autopet_difference: float | None  # autopet_factor / factor - 1

    def to_json(self) -> dict:
        """All fields as a JSON-ready dict."""
        return {"factor": self.factor, "method": self.method, "inputs": dict(self.inputs),
                "autopet_factor": self.autopet_factor, "autopet_difference": self.autopet_difference}


def parse_da(text: str) -> dt.date:
    """Parse a DICOM DA ``YYYYMMDD`` (or pre-3.0 ``YYYY.MM.DD``); ValueError if malformed or no such day."""
    s = text.strip()
    if re.fullmatch(r"\d{4}\.\d{2}\.\d{2}", s):
        s = s.replace(".", "")
    if not re.fullmatch(r"\d{8}", s):
        raise ValueError(f"DA {text!r} is not YYYYMMDD")
    return dt.date(int(s[:4]), int(s[4:6]), int(s[6:]))


def parse_tm(text: str) -> float:
    """Seconds since midnight of a DICOM TM ``HH[MM[SS[.F...]]]`` (1-6 fraction digits) or pre-3.0 ``HH:MM:SS.F``.

    Absent minutes/seconds count as 0; SS may be 60 (a leap second). ValueError if malformed or
    out of range.
    """
    s = text.strip()
    if re.fullmatch(r"\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?", s):
        s = s.replace(":", "")
    m = re.fullmatch(r"(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,6})?)?)?", s)
    if not m:
        raise ValueError(f"TM {text!r} is not HH[MM[SS[.FFFFFF]]]")
    hh, mm, ss = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    if hh > 23 or mm > 59 or ss > 60:
        raise ValueError(f"TM {text!r} is out of range")
    return hh * 3600.0 + mm * 60.0 + ss + float(m[4] or 0.0)


def parse_dt(text: str) -> dt.datetime:
    """Parse a DICOM DT ``YYYYMMDDHH[MM[SS[.FFFFFF]]][&ZZXX]``: timezone-aware if it has a UTC offset.

    ValueError if malformed, out of range (offsets -1200 to +1400), or coarser than the hour
    (such a DT cannot time a decay).
    """
    m = re.fullmatch(r"(\d{8})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)([+-]\d{4})?", text.strip())
    if not m:
        raise ValueError(f"DT {text!r} is not YYYYMMDDHH[MM[SS[.FFFFFF]]][&ZZXX]")
    when = _combine(parse_da(m[1]), parse_tm(m[2]))
    if m[3] is None:
        return when
    sign, hours, minutes = (1 if m[3][0] == "+" else -1), int(m[3][1:3]), int(m[3][3:])
    offset = sign * dt.timedelta(hours=hours, minutes=minutes)
    if minutes > 59 or not -dt.timedelta(hours=12) <= offset <= dt.timedelta(hours=14):
        raise ValueError(f"DT {text!r} has an invalid UTC offset")
    return when.replace(tzinfo=dt.timezone(offset))


def suv_factor(header: PetSeriesHeader) -> SuvFactor:
    """The SUVbw scale factor of one PT series (QIBA vendor-neutral pseudo-code).

    Raises:
        SuvError: the headers do not give a trustworthy factor (the message says why).
    """
    h = header
    units = _check_series(h)
    # QIBA uses the weight only where it computes; calculate-suv requires it for every Units
    weight = _positive(h, WEIGHT, h.patient_weight_kg)
    inputs: dict = {"units": units, "corrected_image": list(h.corrected_image),
                    "decay_correction": "START", "weight_kg": weight}
    if units == "GML":  # QIBA: GML taken as SUVbw (not SUVlbm), already SUV
        factor, method = 1.0, "GML"
    elif units == "CNTS" and _given(h, PH_SUV, h.philips_suv_factor):
        factor, method = float(h.philips_suv_factor), "CNTS (Philips SUV scale factor)"
        inputs["philips_suv_factor"] = factor
    else:
        activity, method = 1.0, "BQML"
        if units == "CNTS":  # QIBA: (7053,1009) x slope gives Bq/mL, then as BQML
            if not _given(h, PH_ACT, h.philips_activity_factor):
                _refuse(h, PH_SUV, h.philips_suv_factor, f"Units are CNTS and neither it nor {PH_ACT} "
                        f"= {h.philips_activity_factor!r} is given", "use a BQML series")
            activity, method = float(h.philips_activity_factor), "CNTS (Philips activity factor)"
            inputs["philips_activity_factor"] = activity
        factor = activity * _bqml_factor(h, weight, inputs)
    autopet = _autopet_factor(h)
    return SuvFactor(factor, method, inputs, autopet, None if autopet is None else autopet / factor - 1.0)


def _check_series(h: PetSeriesHeader) -> str:
    """QIBA's preconditions (ATTN and DECY corrected, decay corrected to START); returns Units."""
    if not {"ATTN", "DECY"} <= {v.strip().upper() for v in h.corrected_image or ()}:
        _refuse(h, CORRECTED, "\\".join(h.corrected_image or ()), "it must contain ATTN and DECY",
                "use the attenuation- and decay-corrected PET series")
    if _blank(h.decay_correction) or h.decay_correction.strip() != "START":
        _refuse(h, DECAY, h.decay_correction, "SUV needs images decay corrected to the scan start",
                "export the series with DecayCorrection START")
    units = None if _blank(h.units) else h.units.strip()
    if units not in UNITS:
        _refuse(h, UNITS_TAG, h.units, f"it must be one of {', '.join(UNITS)}", "use a quantitative PET series")
    return units


def _bqml_factor(h: PetSeriesHeader, weight: float, inputs: dict) -> float:
    """weight * 1000 / (dose * 2^(-decay / half-life)), decay from injection to the scan start."""
    dose, half_life = _positive(h, DOSE, h.total_dose_bq), _positive(h, HALF_LIFE, h.half_life_s)
    scan, scan_tag, scan_why = _scan_start(h)
    injection, inj_tag, inj_why = _injection(h, scan, scan_tag)
    if (injection.tzinfo is None) != (scan.tzinfo is None):  # only the two DTs can carry an offset
        tag, raw = (INJ_DT, h.injection_datetime) if injection.tzinfo else (GE_SCAN, h.ge_post_injection_datetime)
        _refuse(h, tag, raw, "it has a UTC offset and the time it is compared with has none, so the "
                "decay time is unknown", "check the site's time zone and correct the header")
    decay = (scan - injection).total_seconds()
    raw, read = (h.injection_datetime if inj_tag == INJ_DT else h.injection_time), f"{injection} ({inj_why})"
    if decay < 0:
        _refuse(h, inj_tag, raw, f"the injection {read} is after the scan start {scan} ({scan_why})", _FIX)
    if decay > MAX_DECAY_S:
        _refuse(h, inj_tag, raw, f"the injection {read} is {decay:.0f} s before the scan start {scan} "
                f"({scan_why}), more than the {MAX_DECAY_S:.0f} s this engine accepts", _FIX)
    inputs.update(dose_bq=dose, half_life_s=half_life, scan_start=scan.isoformat(), scan_start_source=scan_why,
                  injection=injection.isoformat(), injection_source=inj_why, decay_s=decay)
    return weight * 1000.0 / (dose * 2.0 ** (-decay / half_life))


def _scan_start(h: PetSeriesHeader) -> tuple[dt.datetime, str, str]:
    """QIBA: the series start, unless after the earliest acquisition (a post-processed series)."""
    def when(date_tag, date, time_tag, time):
        return _combine(_parsed(h, date_tag, date, parse_da), _parsed(h, time_tag, time, parse_tm))
    series = when(SERIES_DATE, h.series_date, SERIES_TIME, h.series_time)
    if not h.acquisitions:
        _refuse(h, ACQ_TIME, None, "no slice gives an acquisition date and time", _FIX)
    earliest = min(when(f"{ACQ_DATE} of slice {i}", d, f"{ACQ_TIME} of slice {i}", t)
                   for i, (d, t) in enumerate(h.acquisitions))
    if series <= earliest:
        return series, SERIES_TIME, "SeriesDate/SeriesTime (not after the earliest acquisition)"
    if not _blank(h.ge_post_injection_datetime):
        return (_parsed(h, GE_SCAN, h.ge_post_injection_datetime, parse_dt), GE_SCAN,
                "GE private (0009,100D): the series time is after the earliest acquisition")
    # QIBA's other choice, back-computing from FrameReferenceTime, needs tags this header
    # lacks; QIBA warns the earliest acquisition is wrong for Siemens PETsyngo 3.x multi-injection.
    return earliest, ACQ_TIME, "earliest AcquisitionDate/AcquisitionTime: the series time is after it"


def _injection(h: PetSeriesHeader, scan: dt.datetime, scan_tag: str) -> tuple[dt.datetime, str, str]:
    """StartDateTime, else StartTime on the scan start's day (the day before past midnight)."""
    if not _blank(h.injection_datetime):
        return _parsed(h, INJ_DT, h.injection_datetime, parse_dt), INJ_DT, "RadiopharmaceuticalStartDateTime"
    if _blank(h.injection_time):
        _refuse(h, INJ_TM, h.injection_time, f"no usable injection time ({INJ_DT} is absent too)", _FIX)
    # QIBA: "decay Time = scan Time - start Time", the start date taken as the series date but
    # "consider spanning midnight". We anchor on the scan start's date: that is the series date
    # except in a post-processed series, whose series date is when it was made.
    injection = _combine(scan.date(), _parsed(h, INJ_TM, h.injection_time, parse_tm))
    if injection > scan.replace(tzinfo=None):
        return injection - dt.timedelta(days=1), INJ_TM, "RadiopharmaceuticalStartTime, day before the scan"
    return injection, INJ_TM, "RadiopharmaceuticalStartTime on the scan start's date"


def _autopet_factor(h: PetSeriesHeader) -> float | None:
    """The autoPET TCIA script's factor: first file's AcquisitionTime minus StartTime, time of day only."""
    def seconds(tm: str | None) -> float | None:  # the script's arithmetic on the raw string
        try:
            return float(tm[:2]) * 3600 + float(tm[2:4]) * 60 + float(tm[4:13])
        except (TypeError, ValueError):
            return None
    acquired, injected = seconds(h.first_file_acquisition_time), seconds(h.injection_time)
    weight, dose, half_life = (_number(v) for v in (h.patient_weight_kg, h.total_dose_bq, h.half_life_s))
    if None in (acquired, injected, weight, dose, half_life):
        return None
    return weight * 1000.0 / (dose * 0.5 ** ((acquired - injected) / half_life))


def _combine(day: dt.date, seconds: float) -> dt.datetime:
    """A date plus seconds since its midnight."""
    return dt.datetime(day.year, day.month, day.day) + dt.timedelta(seconds=seconds)


def _parsed(h: PetSeriesHeader, tag: str, text: str | None, parse):
    """``parse(text)``, or SuvError naming the tag when the text is missing or malformed."""
    if _blank(text):
        _refuse(h, tag, text, "it is missing", _FIX)
    try:
        return parse(text)
    except ValueError as err:
        _refuse(h, tag, text, str(err), _FIX)


def _positive(h: PetSeriesHeader, tag: str, value) -> float:
    """``value`` as a float if finite and > 0, else SuvError naming the tag."""
    if _number(value) is None:
        _refuse(h, tag, value, "it must be a number > 0", _FIX)
    return _number(value)


def _given(h: PetSeriesHeader, tag: str, value) -> bool:
    """Whether a Philips factor is given: absent or 0 is not (as calculate-suv reads it); < 0 or NaN is refused."""
    return value is not None and value != 0 and _positive(h, tag, value) > 0


def _number(value) -> float | None:
    """``value`` as a float if it is a finite number > 0 (numpy and pydicom DS included), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _blank(text: str | None) -> bool:
    """Whether a DICOM string is absent or empty (an empty element is as good as none)."""
    return text is None or not str(text).strip()


def _refuse(h: PetSeriesHeader, tag: str, value: object, problem: str, remedy: str):
    """Raise the SuvError for ``tag`` holding ``value``."""
    raise SuvError(h.source, f"{tag} = {value!r}: {problem}; {remedy}", value)
