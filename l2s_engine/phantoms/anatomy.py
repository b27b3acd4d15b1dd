"""The phantom patient: a whole-body FDG-PET/CT plan drawn at random per study.

Sizes are those of an adult (scaled per study), uptake values typical of FDG at one hour:
brain 6-11 SUV, tonsils 3-7 and parotids 2-4, myocardium 2-10 (it varies most), kidneys and their urine, a bladder
10-40, liver 1.8-2.8, blood pool ~1.7, muscle ~0.7, fat ~0.3, lungs ~0.45. Lesions are
3-30 mm, SUV 3-20, in the lungs, the liver, lymph-node stations, and right next to the
bladder, kidneys and heart, where physiological uptake hides them.
"""

from __future__ import annotations

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


def sample_anatomy(rng: np.random.Generator, with_lesions: bool) -> tuple[list[Part], list[Lesion], float]:
    """Draw one patient.

    Returns:
        (parts in painting order, lesions, body scale). Coordinates are in the body frame
        (see ``shapes``), already scaled.
    """
    s = float(rng.uniform(0.88, 1.0))         # body size
    w = float(rng.uniform(0.9, 1.12))         # girth
    fat = float(rng.uniform(8.0, 22.0))       # subcutaneous fat thickness, mm

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
    arm_d = (320, 450, 600, 750, 900)
    arm_half = tuple(np.interp(arm_d, trunk_d, trunk_a))
    arms = [T(arm_d, tuple(side * (x + 12 + 38) for x in arm_half), (5,) * 5,
              (40, 36, 32, 30, 28), (45, 40, 36, 33, 30)) for side in (1, -1)]
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

    brain_suv = rng.uniform(6.0, 11.0)
    parts += [
        Part("skull", head.shrunk(9 * s), BONE),
        Part("brain", E((0, 5, 100), (62, 80, 72)), Tissue(brain_suv, 35.0)),
        Part("spine", T((230, 870), (0, 0), (62, 62), (16, 17), (16, 17)), MARROW),
        *[Part("parotid", E((side * 52, 10, 185), (14, 18, 24)), Tissue(rng.uniform(1.8, 4.0), 40.0))
          for side in (1, -1)],
        *[Part("tonsil", E((side * 15, -5, 212), (8, 8, 10)), Tissue(rng.uniform(3.0, 7.0), 45.0))
          for side in (1, -1)],
        Part("lung", E((75 + jitter(3), 5, 450), (62, 85, 135)), LUNG),
        Part("lung", E((-75 + jitter(3), 5, 445), (68, 85, 130)), LUNG),
    ]
    heart = E((25 + jitter(), -30, 505 + jitter()), (55, 50, 58))
    liver = E((-65 + jitter(), 0, 640 + jitter()), (95, 90, 85))
    parts += [
        Part("heart", heart, Tissue(rng.uniform(2.0, 10.0), 45.0)),
        Part("blood", heart.shrunk(13 * s), BLOOD),
        Part("aorta", T((400, 780), (15, 10), (30, 30), (12, 11), (12, 11)), BLOOD),
        Part("liver", liver, Tissue(rng.uniform(1.8, 2.8), 60.0)),
        Part("spleen", E((95, 40, 620 + jitter()), (32, 40, 50)), Tissue(rng.uniform(1.5, 2.2), 50.0)),
        Part("stomach", E((50, -30, 610), (45, 40, 45)), Tissue(rng.uniform(1.2, 2.5), 20.0)),
    ]
    kidneys = [E((70, 55, 690 + jitter()), (30, 28, 55)), E((-70, 55, 715 + jitter()), (30, 28, 55))]
    for k in kidneys:
        pelvis_c = (k.center[0] - np.sign(k.center[0]) * 10 * s, k.center[1] - 5 * s, k.center[2])
        parts += [Part("kidney", k, Tissue(rng.uniform(2.5, 6.0), 35.0)),
                  Part("renal_pelvis", Ellipsoid(pelvis_c, (12 * s, 10 * s, 20 * s)), Tissue(rng.uniform(5.0, 25.0), 10.0))]
    for _ in range(int(rng.integers(4, 8))):
        c = (rng.uniform(-100, 100), rng.uniform(-60, 20), rng.uniform(730, 820))
        parts.append(Part("bowel", E(c, tuple(rng.uniform(12, 25, 3))), Tissue(rng.uniform(1.2, 3.5), 15.0)))
    k = rng.uniform(0.7, 1.2)
    bladder = E((0, -35, 885), (40 * k, 32 * k, 32 * k))
    parts += [Part("bladder", bladder, Tissue(rng.uniform(10.0, 40.0), 8.0))]
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


def _unit(rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=3)
    return x / np.linalg.norm(x)


def _inside(rng: np.random.Generator, organ: Ellipsoid, margin: float) -> tuple[float, ...]:
    """A random point of ``organ`` at least about ``margin`` mm inside its surface."""
    semi = np.maximum(np.asarray(organ.semi) - margin, 1.0)
    p = np.asarray(organ.center) + semi * _unit(rng) * np.cbrt(rng.uniform())
    return tuple(float(x) for x in p)


def _next_to(rng: np.random.Generator, organ: Ellipsoid, offset: float) -> tuple[float, ...]:
    """A point ``offset`` mm outside ``organ``'s surface, in a random direction."""
    c, semi = np.asarray(organ.center), np.asarray(organ.semi)
    surface = c + semi * _unit(rng)
    normal = (surface - c) / semi**2
    normal /= np.linalg.norm(normal)
    return tuple(float(x) for x in surface + normal * offset)
