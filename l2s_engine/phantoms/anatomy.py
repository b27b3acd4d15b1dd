"""The phantom patient: a whole-body FDG-PET/CT plan drawn at random per study.

Sizes are those of an adult (scaled per study), uptake values typical of FDG at one hour:
brain 6-11 SUV, tonsils 3-7 and parotids 2-4, myocardium 2-10 (it varies most), kidneys and their urine, a bladder
10-40, liver 1.8-2.8, blood pool ~1.7, muscle ~0.7, fat ~0.3, lungs ~0.45. Lesions are
3-30 mm, SUV 3-20, in the lungs, the liver, lymph-node stations, and right next to the
bladder, kidneys and heart, where physiological uptake hides them.

The wide variety (``WIDE``, ``sample_wide_lesions``) draws the body and every organ's uptake
from wider ranges, raises the arms in half the patients, and puts 4-40 mm lesions 2-20 SUV
above their background in the lungs, the liver, bone, five lymph-node regions, and next to the
bladder, kidneys, heart and (just under the cortex) in the brain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import Ellipsoid, Lesion, Part, Tissue, Tube

AIR = Tissue(0.0, -1000.0)
FAT = Tissue(0.3, -100.0)
MUSCLE = Tissue(0.7, 45.0)
BONE = Tissue(0.9, 700.0)
MARROW = Tissue(1.6, 300.0)
LUNG = Tissue(0.45, -830.0)
BLOOD = Tissue(1.7, 40.0)

LESION_SITES = ("lung", "liver", "node", "near_bladder", "near_kidney", "near_heart")
_SITE_WEIGHTS = (0.2, 0.15, 0.35, 0.1, 0.1, 0.1)
# Lymph-node stations (u, v, d) mm at scale 1: cervical, supraclavicular, axillary,
# mediastinal, hilar, para-aortic, iliac, inguinal.
_NODE_STATIONS = (
    (35, 0, 250), (-35, 0, 250), (60, 5, 300), (-60, 5, 300), (135, 15, 360), (-135, 15, 360),
    (5, -15, 420), (40, 15, 450), (-40, 15, 450), (30, 40, 700), (-10, 40, 740),
    (65, 20, 830), (-65, 20, 830), (85, -45, 905), (-85, -45, 905),
)


@dataclass(frozen=True)
class AnatomyRanges:
    """The uniform ranges one patient is drawn from.

    The defaults are the standard phantoms' (``STANDARD``); ``WIDE`` spans low to high of
    what FDG studies show, so that a model trained on it has seen more than one habitus and
    one uptake pattern. The draws happen in the same order whatever the ranges, so the
    standard phantoms stay bit-identical.
    """

    scale: tuple[float, float] = (0.88, 1.0)       # body size
    girth: tuple[float, float] = (0.9, 1.12)
    fat_mm: tuple[float, float] = (8.0, 22.0)      # subcutaneous fat thickness
    brain: tuple[float, float] = (6.0, 11.0)       # SUV ranges from here on
    parotid: tuple[float, float] = (1.8, 4.0)
    tonsil: tuple[float, float] = (3.0, 7.0)
    heart: tuple[float, float] = (2.0, 10.0)
    liver: tuple[float, float] = (1.8, 2.8)
    spleen: tuple[float, float] = (1.5, 2.2)
    stomach: tuple[float, float] = (1.2, 2.5)
    kidney: tuple[float, float] = (2.5, 6.0)
    renal_pelvis: tuple[float, float] = (5.0, 25.0)
    bowel: tuple[float, float] = (1.2, 3.5)
    bladder: tuple[float, float] = (10.0, 40.0)
    bladder_size: tuple[float, float] = (0.7, 1.2)


STANDARD = AnatomyRanges()
# Fasted or not, metformin (hot bowel), a voided or a full bladder, a hypometabolic or a young
# brain, a suppressed or a glucose-loaded heart: each organ from low to high.
WIDE = AnatomyRanges(scale=(0.8, 1.08), girth=(0.82, 1.25), fat_mm=(4.0, 35.0), brain=(3.0, 14.0),
                     parotid=(1.2, 5.0), tonsil=(1.5, 9.0), heart=(1.0, 15.0), liver=(1.0, 4.0),
                     spleen=(1.0, 3.5), stomach=(0.8, 5.0), kidney=(1.5, 9.0), renal_pelvis=(2.0, 60.0),
                     bowel=(0.8, 8.0), bladder=(2.0, 80.0), bladder_size=(0.4, 1.5))


def sample_anatomy(rng: np.random.Generator, with_lesions: bool, ranges: AnatomyRanges = STANDARD,
                   arms_up: bool = False) -> tuple[list[Part], list[Lesion], float]:
    """Draw one patient.

    Args:
        ranges: what the body and the uptake are drawn from.
        arms_up: arms raised beside the head (as in many PET/CT protocols) instead of down
            beside the trunk.

    Returns:
        (parts in painting order, lesions, body scale). Coordinates are in the body frame
        (see ``shapes``), already scaled.
    """
    r = ranges
    s = float(rng.uniform(*r.scale))          # body size
    w = float(rng.uniform(*r.girth))          # girth
    fat = float(rng.uniform(*r.fat_mm))       # subcutaneous fat thickness, mm

    def jitter(mm: float = 6.0) -> float:
        return float(rng.uniform(-mm, mm))

    def E(c, semi) -> Ellipsoid:
        return Ellipsoid(tuple(s * x for x in c), tuple(s * x for x in semi))

    def T(knots, cu, cv, a, b) -> Tube:
        return Tube(*(tuple(s * x for x in k) for k in (knots, cu, cv, a, b)))

    trunk_d = (285, 320, 400, 500, 600, 700, 800, 860, 900)
    trunk_a = tuple(w * x for x in (70, 160, 158, 152, 145, 145, 162, 158, 120))
    trunk_b = tuple(w * x for x in (62, 100, 110, 115, 110, 105, 110, 105, 80))
    trunk_cv = (10, 10, 5, 0, 0, 0, 5, 5, 5)
    trunk = T(trunk_d, (0,) * 9, trunk_cv, trunk_a, trunk_b)
    head = E((0, 0, 110), (75, 95, 112))
    neck = T((200, 300), (0, 0), (15, 15), (55, 55), (55, 55))
    arms = _raised_arms(trunk_a[1], T) if arms_up else _lowered_arms(trunk_d, trunk_a, T)
    legs = [T((850, 1000, 1150), (side * 85,) * 3, (5, 5, 5), (w * 80, w * 72, 65), (w * 85, w * 78, 70))
            for side in (1, -1)]
    body = [head, neck, trunk, *arms, *legs]
    back = s * max(b + cv for b, cv in zip(trunk_b, trunk_cv))

    parts = [Part("table", Tube((-200 * s, 1300 * s), (0, 0), (back + 14,) * 2, (230, 230), (6, 6)), Tissue(0.0, -250.0))]
    parts += [Part("fat", shape, FAT) for shape in body]
    parts += [Part("muscle", shape.shrunk(fat), MUSCLE) for shape in body[2:]]
    parts += [Part("scalp", head.shrunk(5), MUSCLE)]
    for i in range(12):  # ribs: a thin bone ring, hollowed out again by soft tissue
        d0 = 330 + 22 * i
        ring = T((d0, d0 + 8), (0, 0), trunk_cv[2:4], trunk_a[2:4], trunk_b[2:4]).shrunk(fat + 2 * s)
        parts += [Part("rib", ring, BONE), Part("muscle", ring.shrunk(8 * s), MUSCLE)]

    brain_suv = rng.uniform(*r.brain)
    parts += [
        Part("skull", head.shrunk(9 * s), BONE),
        Part("brain", E((0, 5, 100), (62, 80, 72)), Tissue(brain_suv, 35.0)),
        Part("spine", T((230, 870), (0, 0), (62, 62), (16, 17), (16, 17)), MARROW),
        *[Part("parotid", E((side * 52, 10, 185), (14, 18, 24)), Tissue(rng.uniform(*r.parotid), 40.0))
          for side in (1, -1)],
        *[Part("tonsil", E((side * 15, -5, 212), (8, 8, 10)), Tissue(rng.uniform(*r.tonsil), 45.0))
          for side in (1, -1)],
        Part("lung", E((75 + jitter(3), 5, 450), (62, 85, 135)), LUNG),
        Part("lung", E((-75 + jitter(3), 5, 445), (68, 85, 130)), LUNG),
    ]
    heart = E((25 + jitter(), -30, 505 + jitter()), (55, 50, 58))
    liver = E((-65 + jitter(), 0, 640 + jitter()), (95, 90, 85))
    parts += [
        Part("heart", heart, Tissue(rng.uniform(*r.heart), 45.0)),
        Part("blood", heart.shrunk(13 * s), BLOOD),
        Part("aorta", T((400, 780), (15, 10), (30, 30), (12, 11), (12, 11)), BLOOD),
        Part("liver", liver, Tissue(rng.uniform(*r.liver), 60.0)),
        Part("spleen", E((95, 40, 620 + jitter()), (32, 40, 50)), Tissue(rng.uniform(*r.spleen), 50.0)),
        Part("stomach", E((50, -30, 610), (45, 40, 45)), Tissue(rng.uniform(*r.stomach), 20.0)),
    ]
    kidneys = [E((70, 55, 690 + jitter()), (30, 28, 55)), E((-70, 55, 715 + jitter()), (30, 28, 55))]
    for k in kidneys:
        pelvis_c = (k.center[0] - np.sign(k.center[0]) * 10 * s, k.center[1] - 5 * s, k.center[2])
        parts += [Part("kidney", k, Tissue(rng.uniform(*r.kidney), 35.0)),
                  Part("renal_pelvis", Ellipsoid(pelvis_c, (12 * s, 10 * s, 20 * s)), Tissue(rng.uniform(*r.renal_pelvis), 10.0))]
    for _ in range(int(rng.integers(4, 8))):
        c = (rng.uniform(-100, 100), rng.uniform(-60, 20), rng.uniform(730, 820))
        parts.append(Part("bowel", E(c, tuple(rng.uniform(12, 25, 3))), Tissue(rng.uniform(*r.bowel), 15.0)))
    k = rng.uniform(*r.bladder_size)
    bladder = E((0, -35, 885), (40 * k, 32 * k, 32 * k))
    parts += [Part("bladder", bladder, Tissue(rng.uniform(*r.bladder), 8.0))]
    for side in (1, -1):
        parts += [Part("ilium", E((side * 85, 40, 800), (45, 25, 55)), Tissue(1.2, 350.0)),
                  Part("femur", E((side * 80, 5, 878), (22, 22, 22)), BONE),
                  Part("femur", T((880, 1150), (side * 88,) * 2, (5, 5), (14, 14), (14, 14)), BONE)]
    for arm in arms:
        parts.append(Part("humerus", Tube(arm.knots, arm.cu, arm.cv, (11 * s,) * 5, (11 * s,) * 5), BONE))

    organs = {"lung": [p.shape for p in parts if p.name == "lung"], "liver": [liver],
              "near_bladder": [bladder], "near_kidney": kidneys, "near_heart": [heart]}
    lesions = _sample_lesions(rng, organs, s) if with_lesions else []
    return parts, lesions, s


def _lowered_arms(trunk_d, trunk_a, T) -> list[Tube]:
    """Arms down beside the trunk, shoulder to hand (the standard phantoms' pose)."""
    arm_d = (320, 450, 600, 750, 900)
    arm_half = tuple(np.interp(arm_d, trunk_d, trunk_a))
    return [T(arm_d, tuple(side * (x + 12 + 38) for x in arm_half), (5,) * 5,
              (40, 36, 32, 30, 28), (45, 40, 36, 33, 30)) for side in (1, -1)]


def _raised_arms(shoulder_half: float, T) -> list[Tube]:
    """Arms raised beside the head, hands above the vertex; ``shoulder_half`` is the trunk's
    half width at the shoulders (girth included, body scale not yet)."""
    arm_d = (-150, 0, 150, 280, 340)                    # hand, forearm, elbow, upper arm, shoulder
    cu = (100, 118, 125, (125 + shoulder_half - 15) / 2, shoulder_half - 15)  # clear of the head (75)
    return [T(arm_d, tuple(side * x for x in cu), (15,) * 5, (28, 32, 34, 38, 42), (30, 34, 36, 40, 45))
            for side in (1, -1)]


def _sample_lesions(rng: np.random.Generator, organs: dict, s: float) -> list[Lesion]:
    count = int(min(1 + rng.poisson(2.0), 10))
    lesions = []
    for _ in range(count):
        site = str(rng.choice(LESION_SITES, p=_SITE_WEIGHTS))
        diameter = float(np.exp(rng.uniform(np.log(3.0), np.log(30.0))))
        semi = tuple(diameter / 2 * rng.uniform(0.8, 1.25, 3))
        r = float(np.cbrt(np.prod(semi)))
        if site == "node":
            station = _NODE_STATIONS[int(rng.integers(len(_NODE_STATIONS)))]
            center = tuple(s * x + rng.uniform(-8, 8) for x in station)
        elif site in ("lung", "liver"):
            organ = organs[site][int(rng.integers(len(organs[site])))]
            center = _inside(rng, organ, r)
        else:
            organ = organs[site][int(rng.integers(len(organs[site])))]
            center = _next_to(rng, organ, r + rng.uniform(0.0, 3.0))
        hu = 40.0 if site == "liver" else 35.0
        lesions.append(Lesion(site, Ellipsoid(center, semi), float(rng.uniform(3.0, 20.0)), hu))
    return lesions


WIDE_LESION_SITES = ("lung", "liver", "bone", "node_neck", "node_axilla", "node_mediastinum", "node_abdomen",
                     "node_groin", "near_bladder", "near_kidney", "near_heart", "near_brain")
WIDE_LESION_DIAMETER_MM = (4.0, 40.0)
WIDE_LESION_CONTRAST = (2.0, 20.0)   # SUV over the local background
WIDE_MAX_LESIONS = 12
# The lymph-node stations above, by region.
_NODE_REGIONS = {"node_neck": _NODE_STATIONS[0:4], "node_axilla": _NODE_STATIONS[4:6],
                 "node_mediastinum": _NODE_STATIONS[6:9], "node_abdomen": _NODE_STATIONS[9:13],
                 "node_groin": _NODE_STATIONS[13:15]}


def sample_wide_lesions(rng: np.random.Generator, parts: list[Part], s: float) -> list[Lesion]:
    """Lesions of the wide variety, placed in the body ``parts`` of a patient of scale ``s``.

    1 to ``WIDE_MAX_LESIONS`` lesions (Poisson, with a mean drawn per study), every site of
    ``WIDE_LESION_SITES`` equally likely. Diameters and contrasts are log-uniform, so that
    small and faint lesions (the ones a model misses) are as common as large and bright ones.
    Each lesion's ``suv`` is a contrast over the local background (``relative``): the
    background is only known once the body is painted.
    """
    organs: dict[str, list] = {}
    for part in parts:
        organs.setdefault(part.name, []).append(part.shape)
    count = int(min(1 + rng.poisson(rng.uniform(0.5, 4.0)), WIDE_MAX_LESIONS))
    lesions = []
    for _ in range(count):
        site = str(rng.choice(WIDE_LESION_SITES))
        diameter = _log_uniform(rng, *WIDE_LESION_DIAMETER_MM)
        stretch = rng.uniform(0.75, 1.33, 3)
        semi = tuple(float(x) for x in diameter / 2 * stretch / np.cbrt(np.prod(stretch)))  # geometric mean: diameter
        center = _wide_lesion_center(rng, site, organs, s, diameter / 2)
        lesions.append(Lesion(site, Ellipsoid(center, semi), _log_uniform(rng, *WIDE_LESION_CONTRAST),
                              _lesion_hu(rng, site), relative=True))
    return lesions


def _wide_lesion_center(rng: np.random.Generator, site: str, organs: dict, s: float, r: float) -> tuple[float, ...]:
    """Where a lesion of radius ``r`` mm at ``site`` is centred (body frame)."""
    def pick(name: str, kind=object):
        shapes = [shape for shape in organs[name] if isinstance(shape, kind)]
        return shapes[int(rng.integers(len(shapes)))]

    if site in _NODE_REGIONS:
        stations = _NODE_REGIONS[site]
        station = stations[int(rng.integers(len(stations)))]
        return tuple(float(s * x + rng.uniform(-10, 10)) for x in station)
    if site in ("lung", "liver"):
        return _inside(rng, pick(site), r)
    if site == "bone":  # vertebrae, pelvis or femoral heads; large lesions break out of the bone
        name = ("spine", "ilium", "femur")[int(rng.integers(3))]
        bone = pick(name, Tube if name == "spine" else Ellipsoid)   # femur: the heads, not the shafts
        return _inside_tube(rng, bone) if isinstance(bone, Tube) else _inside(rng, bone, r / 2)
    if site == "near_brain":  # just under the cortex, where the brain's own uptake hides it
        return _next_to(rng, pick("brain"), -(r + rng.uniform(0.0, 3.0)))
    organ = pick(site.removeprefix("near_"))
    return _next_to(rng, organ, r + rng.uniform(0.0, 3.0))


def _lesion_hu(rng: np.random.Generator, site: str) -> float:
    """CT density of a lesion: soft tissue, hypodense in the liver, lytic or sclerotic in bone."""
    if site == "bone":
        return float(rng.uniform(0.0, 80.0) if rng.uniform() < 0.5 else rng.uniform(400.0, 1000.0))
    lo, hi = {"liver": (25.0, 50.0), "lung": (10.0, 50.0)}.get(site, (20.0, 60.0))
    return float(rng.uniform(lo, hi))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _inside_tube(rng: np.random.Generator, tube: Tube) -> tuple[float, ...]:
    """A random point on the axis of ``tube``, away from its ends (a vertebral body)."""
    lo, hi = tube.knots[0], tube.knots[-1]
    d = rng.uniform(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo))
    return (float(np.interp(d, tube.knots, tube.cu)), float(np.interp(d, tube.knots, tube.cv)), float(d))


def _unit(rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=3)
    return x / np.linalg.norm(x)


def _inside(rng: np.random.Generator, organ: Ellipsoid, margin: float) -> tuple[float, ...]:
    """A random point of ``organ`` at least about ``margin`` mm inside its surface."""
    semi = np.maximum(np.asarray(organ.semi) - margin, 1.0)
    p = np.asarray(organ.center) + semi * _unit(rng) * np.cbrt(rng.uniform())
    return tuple(float(x) for x in p)


def _next_to(rng: np.random.Generator, organ: Ellipsoid, offset: float) -> tuple[float, ...]:
    """A point ``offset`` mm outside ``organ``'s surface (inside where negative), in a random direction."""
    c, semi = np.asarray(organ.center), np.asarray(organ.semi)
    surface = c + semi * _unit(rng)
    normal = (surface - c) / semi**2
    normal /= np.linalg.norm(normal)
    return tuple(float(x) for x in surface + normal * offset)
