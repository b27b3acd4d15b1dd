"""SUVbw factor (QIBA vendor-neutral pseudo-code): expected numbers are hand computations.

Every expected factor is weight[g] / (dose[Bq] * 2^(-decay[s] / T1/2[s])) written out here in
float64 with the decay counted by hand from the clock times, or a published value; never a
second call of the code under test.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from l2s_engine.errors import StudyError
from l2s_engine.suv import PetSeriesHeader, SuvError, parse_da, parse_dt, parse_tm, suv_factor

SOURCE = Path("/data/PT/0001.dcm")
F18 = 6586.2


def hms(h: int, m: int = 0, s: float = 0.0) -> float:
    """Seconds since midnight, by hand."""
    return h * 3600 + m * 60 + s


def expected(weight_kg: float, dose_bq: float, decay_s: float, half_life_s: float = F18) -> float:
    """The SUVbw factor from first principles: grams over the dose decayed to the scan start."""
    return weight_kg * 1000.0 / (dose_bq * 2.0 ** (-decay_s / half_life_s))


# The published GE check: 52 kg, 152,022,720 Bq, injection 08:45:00, series 09:56:21.
GE_DECAY_S = hms(9, 56, 21) - hms(8, 45)  # 4281 s


def header(**changes) -> PetSeriesHeader:
    base = PetSeriesHeader(
        source=SOURCE, units="BQML", decay_correction="START", corrected_image=("DECY", "ATTN", "SCAT"),
        patient_weight_kg=52.0, series_date="20240101", series_time="095621",
        acquisitions=(("20240101", "095621"), ("20240101", "100021"), ("20240101", "100421")),
        injection_datetime=None, injection_time="084500", total_dose_bq=152022720.0, half_life_s=F18)
    return dataclasses.replace(base, **changes)


def refused(expected_tag: str, value_text: str | None = None, **changes) -> SuvError:
    with pytest.raises(SuvError) as info:
        suv_factor(header(**changes))
    message = str(info.value)
    assert expected_tag in message, message
    if value_text is not None:
        assert value_text in message, message
    assert isinstance(info.value, StudyError) and info.value.path == SOURCE
    return info.value


# --- BQML ---------------------------------------------------------------------------------

def test_published_ge_check():
    result = suv_factor(header())
    assert result.factor == pytest.approx(5.3674e-4, rel=1e-4)
    assert result.factor == pytest.approx(expected(52, 152022720, GE_DECAY_S), rel=1e-12)
    assert result.method == "BQML"
    assert result.inputs["decay_s"] == pytest.approx(4281.0)
    assert result.inputs["scan_start"] == "2024-01-01T09:56:21"
    assert result.inputs["injection"] == "2024-01-01T08:45:00"


def test_series_time_after_earliest_acquisition_uses_the_earliest_acquisition():
    # a post-processed series: SeriesTime 11:30 is when it was made, the scan began 09:58:00
    result = suv_factor(header(series_time="113000",
                               acquisitions=(("20240101", "100500"), ("20240101", "095800"))))
    assert result.inputs["scan_start"] == "2024-01-01T09:58:00"
    assert result.inputs["scan_start_source"].startswith("earliest AcquisitionDate")
    assert result.factor == pytest.approx(expected(52, 152022720, hms(9, 58) - hms(8, 45)), rel=1e-12)


def test_series_time_after_earliest_acquisition_uses_the_ge_private_datetime():
    result = suv_factor(header(series_time="113000", ge_post_injection_datetime="20240101095000",
                               acquisitions=(("20240101", "100500"), ("20240101", "095800"))))
    assert result.inputs["scan_start"] == "2024-01-01T09:50:00"
    assert "0009,100D" in result.inputs["scan_start_source"]
    assert result.factor == pytest.approx(expected(52, 152022720, hms(9, 50) - hms(8, 45)), rel=1e-12)


def test_ge_private_datetime_ignored_when_series_time_is_not_after_the_acquisitions():
    result = suv_factor(header(ge_post_injection_datetime="20240101095000"))
    assert result.factor == pytest.approx(expected(52, 152022720, GE_DECAY_S), rel=1e-12)


def test_start_datetime_preferred_over_start_time():
    result = suv_factor(header(injection_datetime="20240101090000", injection_time="084500"))
    assert result.inputs["injection_source"] == "RadiopharmaceuticalStartDateTime"
    assert result.factor == pytest.approx(expected(52, 152022720, hms(9, 56, 21) - hms(9)), rel=1e-12)


def test_start_time_only_across_midnight():
    # injected 23:50 on the 1st, series at 00:40 on the 2nd: 50 minutes
    result = suv_factor(header(series_date="20240102", series_time="004000",
                               acquisitions=(("20240102", "004000"),), injection_time="235000"))
    assert result.inputs["decay_s"] == pytest.approx(50 * 60)
    assert result.inputs["injection"] == "2024-01-01T23:50:00"
    assert result.factor == pytest.approx(expected(52, 152022720, 3000.0), rel=1e-12)


def test_start_datetime_across_midnight():
    result = suv_factor(header(series_date="20240102", series_time="004000",
                               acquisitions=(("20240102", "004000"),), injection_datetime="20240101235000"))
    assert result.factor == pytest.approx(expected(52, 152022720, 3000.0), rel=1e-12)


def test_fractional_seconds_count():
    result = suv_factor(header(series_time="095621.750000", acquisitions=(("20240101", "095621.75"),),
                               injection_time="084500.25"))
    assert result.inputs["decay_s"] == pytest.approx(4281.5)


def test_utc_offsets_on_both_datetimes_are_honoured():
    # scan 09:50 at +0100 is 08:50 UTC; injection 07:45 UTC: 65 minutes
    result = suv_factor(header(series_time="113000", ge_post_injection_datetime="20240101095000+0100",
                               injection_datetime="20240101074500+0000"))
    assert result.factor == pytest.approx(expected(52, 152022720, 65 * 60.0), rel=1e-12)


# --- Philips CNTS and GML -----------------------------------------------------------------

def test_philips_suv_scale_factor():
    result = suv_factor(header(units="CNTS", philips_suv_factor=0.000731, philips_activity_factor=1.7))
    assert result.factor == 0.000731
    assert result.method == "CNTS (Philips SUV scale factor)"


def test_philips_activity_factor_then_bqml():
    result = suv_factor(header(units="CNTS", philips_activity_factor=1.7))
    assert result.method == "CNTS (Philips activity factor)"
    assert result.factor == pytest.approx(1.7 * expected(52, 152022720, GE_DECAY_S), rel=1e-12)


def test_philips_zero_suv_factor_falls_back_to_the_activity_factor():
    result = suv_factor(header(units="CNTS", philips_suv_factor=0.0, philips_activity_factor=1.7))
    assert result.factor == pytest.approx(1.7 * expected(52, 152022720, GE_DECAY_S), rel=1e-12)


def test_cnts_without_philips_factors_is_refused():
    error = refused("7053,1000", units="CNTS")
    assert "7053,1009" in str(error)


def test_cnts_with_negative_philips_factor_is_refused():
    refused("7053,1000", "-0.5", units="CNTS", philips_suv_factor=-0.5)


def test_gml_is_already_suv():
    result = suv_factor(header(units="GML", total_dose_bq=None, injection_time=None))
    assert result.factor == 1.0 and result.method == "GML"
    assert result.inputs["units"] == "GML"


# --- refusals -----------------------------------------------------------------------------

@pytest.mark.parametrize("tag, value, changes", [
    ("0028,0051", "DECY", {"corrected_image": ("DECY",)}),
    ("0028,0051", "ATTN", {"corrected_image": ("ATTN", "SCAT")}),
    ("0028,0051", "''", {"corrected_image": ()}),
    ("0054,1102", "ADMIN", {"decay_correction": "ADMIN"}),
    ("0054,1102", "NONE", {"decay_correction": "NONE"}),
    ("0054,1102", "None", {"decay_correction": None}),
    ("0054,1001", "None", {"units": None}),
    ("0054,1001", "PROPCPS", {"units": "PROPCPS"}),
    ("0010,1030", "None", {"patient_weight_kg": None}),
    ("0010,1030", "0.0", {"patient_weight_kg": 0.0}),
    ("0010,1030", "-70", {"patient_weight_kg": -70.0}),
    ("0010,1030", "nan", {"patient_weight_kg": float("nan")}),
    ("0018,1074", "None", {"total_dose_bq": None}),
    ("0018,1074", "0", {"total_dose_bq": 0}),
    ("0018,1075", "-6586.2", {"half_life_s": -6586.2}),
    ("0018,1072", "None", {"injection_time": None}),
    ("0018,1072", "8:45", {"injection_time": "8:45"}),
    ("0018,1078", "2024-01-01", {"injection_datetime": "2024-01-01"}),
    ("0008,0021", "None", {"series_date": None}),
    ("0008,0031", "9956", {"series_time": "9956"}),
    ("0008,0032", "None", {"acquisitions": ()}),
    ("0008,0032", "10051", {"acquisitions": (("20240101", "095621"), ("20240101", "10051"))}),
    ("0008,0022", "None", {"acquisitions": ((None, "095621"),)}),
])
def test_refusals_name_the_tag_and_value(tag, value, changes):
    refused(tag, value, **changes)


def test_scan_start_before_injection_is_refused():
    refused("0018,1078", "20240101100000", injection_datetime="20240101100000")


def test_absurd_decay_time_is_refused():
    refused("0018,1078", "20231231080000", injection_datetime="20231231080000")  # 26 h
    # StartTime 10:00 with the scan at 09:56: the midnight rule would mean 23 h 56 min
    refused("0018,1072", "100000", injection_time="100000")


def test_malformed_ge_datetime_is_refused_when_needed():
    refused("0009,100D", "20240101", series_time="113000", ge_post_injection_datetime="20240101")


def test_utc_offset_on_one_side_only_is_refused():
    refused("0018,1078", "+0100", injection_datetime="20240101084500+0100")


# --- the autoPET script's formula ---------------------------------------------------------

def test_autopet_difference_when_first_file_is_not_the_series_start():
    # the script times the first file (10:06:21, 600 s after the series start) instead:
    # its decayed dose is 2^(-600/T) smaller, so its factor is 2^(600/T) larger
    result = suv_factor(header(first_file_acquisition_time="100621"))
    autopet = 52 * 1000.0 / (152022720 * 0.5 ** ((hms(10, 6, 21) - hms(8, 45)) / F18))
    assert result.autopet_factor == pytest.approx(autopet, rel=1e-12)
    assert result.autopet_difference == pytest.approx(2.0 ** (600 / F18) - 1.0, rel=1e-9)
    assert result.autopet_difference == pytest.approx(0.0652, abs=1e-4)


def test_autopet_agrees_when_the_first_file_starts_the_series():
    result = suv_factor(header(first_file_acquisition_time="095621.000000"))
    assert result.autopet_difference == pytest.approx(0.0, abs=1e-12)


def test_autopet_ignores_midnight_and_dates():
    # the script's dt is 00:40 - 23:50 = -83400 s: no midnight handling
    result = suv_factor(header(series_date="20240102", series_time="004000", acquisitions=(("20240102", "004000"),),
                               injection_time="235000", first_file_acquisition_time="004000"))
    autopet = 52 * 1000.0 / (152022720 * 0.5 ** ((hms(0, 40) - hms(23, 50)) / F18))
    assert result.autopet_factor == pytest.approx(autopet, rel=1e-12)


@pytest.mark.parametrize("changes", [
    {"first_file_acquisition_time": None},
    {"first_file_acquisition_time": "0956"},  # the script's float("") fails on HHMM
    {"injection_time": None, "injection_datetime": "20240101084500", "first_file_acquisition_time": "095621"},
])
def test_autopet_none_where_the_script_cannot_compute(changes):
    result = suv_factor(header(**changes))
    assert result.autopet_factor is None and result.autopet_difference is None


def test_to_json_is_json_ready():
    data = json.loads(json.dumps(suv_factor(header(first_file_acquisition_time="095621")).to_json()))
    assert set(data) == {"factor", "method", "inputs", "autopet_factor", "autopet_difference"}
    assert data["inputs"]["weight_kg"] == 52.0 and data["inputs"]["dose_bq"] == 152022720.0


# --- DICOM string parsing -----------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("09", hms(9)), ("0956", hms(9, 56)), ("095621", hms(9, 56, 21)),
    ("095621.5", hms(9, 56, 21.5)), ("095621.000001", hms(9, 56, 21.000001)),
    ("095621.123456 ", hms(9, 56, 21.123456)), ("09:56:21.25", hms(9, 56, 21.25)), ("09:56", hms(9, 56)),
    ("235960", hms(23, 59, 60)), ("000000", 0.0),
])
def test_parse_tm(text, seconds):
    assert parse_tm(text) == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize("text", ["", "9", "956", "0956211", "095621.", "095621.1234567", "2400", "0960",
                                  "095661", "ab", "09:5621", "0956.5", "-09"])
def test_parse_tm_malformed(text):
    with pytest.raises(ValueError):
        parse_tm(text)


def test_parse_da():
    assert parse_da("20240229") == dt.date(2024, 2, 29)
    assert parse_da("2024.01.02") == dt.date(2024, 1, 2)
    for bad in ("20230229", "240101", "2024-01-02", "20241301", ""):
        with pytest.raises(ValueError):
            parse_da(bad)


def test_parse_dt():
    assert parse_dt("20240101084500") == dt.datetime(2024, 1, 1, 8, 45)
    assert parse_dt("2024010108") == dt.datetime(2024, 1, 1, 8)
    assert parse_dt("20240101084500.25") == dt.datetime(2024, 1, 1, 8, 45, 0, 250000)
    aware = parse_dt("20240101084500+0100")
    assert aware.utcoffset() == dt.timedelta(hours=1)
    assert aware == dt.datetime(2024, 1, 1, 7, 45, tzinfo=dt.timezone.utc)
    assert parse_dt("20240101084500-1200").utcoffset() == -dt.timedelta(hours=12)
    for bad in ("20240101", "202401010845001", "20240101084500+1500", "20240101084500+0160",
                "20240101084500+01", "2024-01-01T08:45:00", "20240132084500"):
        with pytest.raises(ValueError):
            parse_dt(bad)


def test_module_is_pure():
    import subprocess
    import sys

    code = "import sys, l2s_engine.suv; print(sorted({'pydicom', 'SimpleITK'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
