"""Caption phrasing for the synthetic TSFragment stand-in (see ``captions_synth``).

Design: the generator decides *what is true* (a ``facts`` dict of generating parameters) and
this module only decides *how to say it*.  Every template is filled from those facts or from
statistics measured here on the final, rounded series, so phrasing can vary (synonyms, frames,
three caption levels) without ever claiming something the series does not show:

* point level    -- concrete values and 1-based step positions read off the series itself;
* fragment level -- shape words: direction, rate, cycle count, position third of an event;
* instance level -- a source-style description ("Hourly electricity load over two days that ...").

Position words are the only way an index is described in words: ``POSITIONS[3 * i // L]``, i.e.
"near the start" / "in the middle" / "near the end" are exactly the first / middle / last third.

Every choice draws from ``r`` (a ``random.Random().random`` bound method owned by the generator),
so captions are deterministic from the generator's seed.  The module also holds the hashed
bag-of-words projection that fills TSFragment's ``TextEmbedding`` column.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from functools import lru_cache
from typing import Callable

import numpy as np

LEVELS = ("point", "fragment", "instance")
POSITIONS = ("near the start", "in the middle", "near the end")
EMBED_DIM = 128

RISE = ("rises", "climbs", "increases", "grows")
FALL = ("falls", "drops", "declines", "decreases")
_NUM = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
_PERMS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
_ADJ = {"steadily": "steady", "sharply": "sharp", "gradually": "gradual"}

# Instance-level wording per TSFragment source: (capitalised, mid-sentence) descriptions.
SOURCE_DESCRIPTIONS = {
    "ETTh1": (("Hourly transformer oil temperature", "hourly transformer oil temperature"),
              ("Hourly oil temperature of an electricity transformer",
               "hourly oil temperature of an electricity transformer")),
    "ETTh1s": (("Hourly oil temperature from a transformer station",
                "hourly oil temperature from a transformer station"),
               ("Hourly transformer oil temperature", "hourly transformer oil temperature")),
    "ETTm1": (("15-minute transformer oil temperature", "15-minute transformer oil temperature"),
              ("Transformer oil temperature sampled every 15 minutes",
               "transformer oil temperature sampled every 15 minutes")),
    "airquality": (("Hourly PM2.5 concentration", "hourly PM2.5 concentration"),
                   ("Hourly air pollution level", "hourly air pollution level")),
    "electricity": (("Hourly electricity load", "hourly electricity load"),
                    ("Hourly power consumption of one client", "hourly power consumption of one client")),
    "exchangerate": (("Daily exchange rate", "daily exchange rate"),
                     ("Daily currency exchange rate", "daily currency exchange rate")),
    "traffic": (("Hourly road occupancy", "hourly road occupancy"),
                ("Hourly freeway occupancy rate", "hourly freeway occupancy rate")),
}

R = Callable[[], float]


def position_word(index: int, length: int) -> str:
    """Third of the series that ``index`` falls in, as the caption words for it."""
    return POSITIONS[3 * index // length]


def source_description(source: str, r: R) -> tuple[str, str]:
    return _pick(r, SOURCE_DESCRIPTIONS[source])


def _pick(r: R, options):
    return options[int(r() * len(options))]


def _count(r: R, k: int) -> str:
    # Cycle counts are spelled out half the time so the model sees both forms.
    return _NUM[k] if k in _NUM and r() < 0.5 else str(k)


def _num(v: float, d: int) -> str:
    return f"{round(v, d) + 0.0:.{d}f}"  # + 0.0 turns "-0.000" into "0.000"


# Plain reductions instead of ndarray.mean/std/np.median: those wrappers cost 5-50 us each on
# these tiny arrays and dominated the per-fragment time.  Same definitions (population sd).
def mean(v: np.ndarray) -> float:
    return float(v.sum()) / len(v)


def sd(v: np.ndarray) -> float:
    dev = v - v.sum() / len(v)
    return math.sqrt(float(dev @ dev) / len(v))


def median(v: np.ndarray) -> float:
    s = sorted(v.tolist())
    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2


def span_words(length: int, minutes: int) -> str:
    """How much time ``length`` samples cover, e.g. "two days", "12 hours", "24 days"."""
    total = length * minutes
    for unit, size in (("day", 1440), ("hour", 60), ("minute", 1)):
        if total % size == 0:
            n = total // size
            word = "one" if n == 1 else _NUM.get(n, str(n))
            return f"{word} {unit}" + ("" if n == 1 else "s")
    return f"{total} minutes"  # unreachable: minutes divide everything


# -- shape vocabulary -------------------------------------------------------------------------
# Each builder returns (verb phrases, noun phrases) for one fragment; both feed the fragment
# and instance levels.  Verb phrases are third person singular so "The series {vp}." and
# "... that {vp}." both read naturally.

def _shape_phrases(f: dict, r: R) -> tuple[list[str], list[str]]:
    dom = f["domain"]
    pos = f.get("position", "")
    if dom == "trend":
        up = f["direction"] == "up"
        v = (lambda: _pick(r, RISE)) if up else (lambda: _pick(r, FALL))
        word = "upward" if up else "downward"
        noun = "rise" if up else "decline"
        if f["style"] == "steady":
            vps = [f"{v()} steadily", f"{v()} at a steady pace", f"{v()} at a roughly constant rate"]
            nps = [f"a steady {word} trend", f"a steady {noun}"]
        else:
            vps = [f"{v()} at an accelerating pace", f"{v()} slowly at first, then ever more steeply",
                   f"{v()} faster and faster"]
            nps = [f"an accelerating {word} trend", f"a {noun} that keeps speeding up"]
    elif dom == "seasonality":
        k = f["cycles"]
        vps = [f"oscillates through {_count(r, k)} full cycles", f"repeats the same wave {_count(r, k)} times",
               f"shows a regular periodic pattern with {_count(r, k)} cycles",
               f"goes up and down in {_count(r, k)} regular cycles"]
        nps = [f"{_count(r, k)} regular cycles", f"a periodic pattern of {_count(r, k)} cycles"]
    elif dom == "level_shift":
        hi = f["direction"] == "up"
        lvl, way = ("higher", "upward") if hi else ("lower", "downward")
        step = "steps up" if hi else "steps down"
        vps = [f"{step} to a {lvl} level {pos}", f"jumps to a {lvl} plateau {pos}",
               f"shifts abruptly {way} {pos}", f"has a sudden {way} level shift {pos}"]
        nps = [f"an abrupt {way} level shift {pos}", f"a step to a {lvl} level {pos}"]
    elif dom == "spike":
        ev = _pick(r, ("spike", "peak")) if f["spike_sign"] > 0 else _pick(r, ("dip", "plunge"))
        base = f["baseline"]
        if base == "flat":
            vps = [f"stays flat apart from one sharp {ev} {pos}", f"has a single sharp {ev} {pos}",
                   f"is steady except for a sudden {ev} {pos}", f"shows one isolated {ev} {pos}"]
            nps = [f"one sharp {ev} {pos}", f"a single isolated {ev} {pos}"]
        else:
            up = base == "rising"
            drift = _pick(r, ("climbs gently", "rises gradually")) if up else \
                _pick(r, ("declines gently", "falls gradually"))
            word = "upward" if up else "downward"
            vps = [f"{drift}, with one sharp {ev} {pos}", f"trends gently {word} with a single {ev} {pos}",
                   f"{drift} and shows one sudden {ev} {pos}"]
            nps = [f"a gentle {word} drift and one sharp {ev} {pos}", f"a mild {word} trend with a single {ev} {pos}"]
    elif dom == "regime_change":
        if f["order"] == "calm_first":
            vps = [f"is calm at first, then turns volatile {pos}", f"stays quiet, then becomes erratic {pos}",
                   f"shifts from a calm regime to a volatile one {pos}"]
            nps = [f"a calm stretch that turns volatile {pos}", f"a switch from calm to volatile behaviour {pos}"]
        else:
            vps = [f"swings wildly at first, then calms down {pos}", f"is volatile at first and settles down {pos}",
                   f"shifts from a volatile regime to a calm one {pos}"]
            nps = [f"a volatile stretch that calms down {pos}", f"a switch from volatile to calm behaviour {pos}"]
    elif dom == "noise":
        vps = ["fluctuates randomly around a stable level", "is flat apart from random noise",
               "hovers noisily around a constant level", "shows irregular noise around a steady mean"]
        nps = ["random fluctuation around a stable level", "noise around a constant mean"]
    elif dom == "random_walk":
        end = {"up": "ending higher than it started", "down": "ending lower than it started",
               "flat": "ending close to where it started"}[f["net"]]
        vps = [f"wanders like a random walk, {end}", f"drifts unpredictably, {end}",
               "meanders with no regular pattern", "wanders without a repeating pattern"]
        nps = ["an irregular, wandering path", "random-walk-like drift"]
    elif dom == "piecewise_trend":
        up = f["first_direction"] == "up"
        v1, v2 = (_pick(r, RISE), _pick(r, FALL)) if up else (_pick(r, FALL), _pick(r, RISE))
        a1, a2 = f["first_rate"], f["second_rate"]
        n1, n2 = ("rise", "drop") if up else ("decline", "rebound")
        turn = "peak" if up else "trough"
        vps = [f"{v1} {a1} until a turning point {pos}, then {v2} {a2}",
               f"{v1} {a1} to a {turn} {pos}, then {v2} {a2}"]
        if f["position"] == POSITIONS[2]:  # only then does the second move happen "near the end"
            vps.append(f"{v1} {a1}, then {v2} {a2} {pos}")
        nps = [f"a {_ADJ[a1]} {n1} that turns {pos} into a {_ADJ[a2]} {n2}", f"a {turn} {pos} between a {_ADJ[a1]} "
               f"{n1} and a {_ADJ[a2]} {n2}"]
    else:  # pragma: no cover - the generator only emits the domains above
        raise KeyError(dom)
    return vps, nps


# -- point level ------------------------------------------------------------------------------
# Templates are zero-argument lambdas: only the one or two a fragment actually uses get rendered,
# which halves the per-fragment cost (the numbers need numpy reductions on the series).

def _point(x: np.ndarray, f: dict, d: int, r: R) -> list[Callable[[], str]]:
    L = len(x)
    n = lambda v: _num(float(v), d)  # noqa: E731 - local shorthands keep the templates readable
    lo, hi = lambda: n(x.min()), lambda: n(x.max())  # noqa: E731
    amn, amx = lambda: int(x.argmin()) + 1, lambda: int(x.argmax()) + 1  # 1-based steps  # noqa: E731
    dom = f["domain"]
    if dom == "trend":
        return [lambda: f"Starts at {n(x[0])} and ends at {n(x[-1])} after {L} steps.",
                lambda: f"Goes from {n(x[0])} to {n(x[-1])} over {L} steps, with a low of {lo()} and a high of {hi()}.",
                lambda: f"Reaches its maximum of {hi()} at step {amx()} of {L} and its minimum of {lo()} at step "
                        f"{amn()}."]
    if dom == "seasonality":
        k = f["cycles"]
        per = str(L // k) if L % k == 0 else f"about {round(L / k)}"
        every = f"every {per}" if L % k == 0 else f"roughly every {round(L / k)}"
        return [lambda: f"Oscillates between {lo()} and {hi()}, repeating {every} steps ({k} cycles in {L} steps).",
                lambda: f"Peaks at {hi()} around step {amx()} of {L}; the pattern repeats {every} steps.",
                lambda: f"Swings from a low of {lo()} to a high of {hi()} with a period of {per} steps."]
    if dom == "level_shift":
        s = f["shift_index"]
        m1, m2 = lambda: n(mean(x[:s])), lambda: n(mean(x[s:]))  # noqa: E731
        return [lambda: f"Holds around {m1()} for the first {s} steps, then around {m2()} for the remaining {L - s}.",
                lambda: f"Shifts from about {m1()} to about {m2()} at step {s + 1} of {L}.",
                lambda: f"Averages {m1()} before step {s + 1} of {L} and {m2()} from then on."]
    if dom == "spike":
        i, med = f["spike_index"], lambda: n(median(x))  # noqa: E731
        word = ("Peaks at", "Spikes to") if f["spike_sign"] > 0 else ("Dips to", "Plunges to")
        return [lambda: f"{_pick(r, word)} {n(x[i])} around step {i + 1} of {L}, against a typical level of about "
                        f"{med()}.",
                lambda: f"Stays near {med()} except for a value of {n(x[i])} at step {i + 1} of {L}.",
                lambda: f"Ranges from {lo()} to {hi()}; the extreme value {n(x[i])} sits at step {i + 1} of {L}."]
    if dom == "regime_change":
        c = f["change_index"]
        s1, s2 = lambda: n(sd(x[:c])), lambda: n(sd(x[c:]))  # noqa: E731
        return [lambda: f"Varies by about ±{s1()} around {n(mean(x[:c]))} for the first {c} steps, "
                        f"then by about ±{s2()} for the remaining {L - c}.",
                lambda: f"Its standard deviation changes from {s1()} to {s2()} at step {c + 1} of {L}.",
                lambda: f"Ranges from {lo()} to {hi()}; variability switches from ±{s1()} to ±{s2()} at step "
                        f"{c + 1}."]
    if dom == "noise":
        return [lambda: f"Hovers around {n(mean(x))}, staying between {lo()} and {hi()} over {L} steps.",
                lambda: f"Averages {n(mean(x))} with a standard deviation of {n(sd(x))} over {L} steps.",
                lambda: f"Fluctuates between {lo()} (step {amn()}) and {hi()} (step {amx()}) around {n(mean(x))}."]
    if dom == "random_walk":
        return [lambda: f"Starts at {n(x[0])}, wanders between {lo()} and {hi()}, and ends at {n(x[-1])} after {L} "
                        "steps.",
                lambda: f"Hits a low of {lo()} at step {amn()} and a high of {hi()} at step {amx()} of {L}.",
                lambda: f"Drifts from {n(x[0])} to {n(x[-1])} over {L} steps without a repeating pattern."]
    b, up = f["break_index"], f["first_direction"] == "up"  # piecewise_trend
    return [lambda: f"Moves from {n(x[0])} to {n(x[b])} by step {b + 1}, then to {n(x[-1])} by step {L} of {L}.",
            lambda: (f"Peaks at {hi()} around step {amx()}" if up else f"Bottoms out at {lo()} around step {amn()}")
            + f" of {L}, after starting at {n(x[0])}; it ends at {n(x[-1])}.",
            lambda: f"Turns at step {b + 1} of {L} at a value of {n(x[b])}, between a start of {n(x[0])} and an end "
                    f"of {n(x[-1])}."]


# -- assembly ---------------------------------------------------------------------------------

def make_captions(x: np.ndarray, f: dict, desc: tuple[str, str], span: str, d: int, k: int,
                  r: R) -> tuple[tuple[str, str], ...]:
    """``k`` (1-5) distinct (level, text) captions for one fragment.

    ``x`` is the final series (float64, already rounded to ``d`` decimals), ``desc`` the source
    description (capitalised, mid-sentence) and ``span`` the time it covers.  Captions cycle
    through the three levels in a random order, so any three consecutive ones cover all levels;
    each level has >= 2 structurally different templates and uses consecutive ones, so no text
    repeats within a fragment.
    """
    if f["domain"] == "random_walk":  # net move judged on the final values, relative to the range
        move = float(x[-1] - x[0])
        f["net"] = "flat" if abs(move) < 0.1 * float(x.max() - x.min()) else ("up" if move > 0 else "down")
    vps, nps = _shape_phrases(f, r)
    frame = _pick(r, ("{V}.", "The series {v}.", "Over the window, it {v}."))
    L = len(x)
    options = (
        _point(x, f, d, r),
        [lambda vp=vp: frame.format(v=vp, V=vp[0].upper() + vp[1:]) for vp in vps],
        [lambda: f"{desc[0]} over {span} that {_pick(r, vps)}.",
         lambda: f"{span[0].upper() + span[1:]} of {desc[1]} showing {_pick(r, nps)}.",
         lambda: f"{desc[0]} ({L} readings) with {_pick(r, nps)}."],
    )
    order = _PERMS[int(r() * 6)]
    starts = [int(r() * len(o)) for o in options]
    out = []
    for j in range(k):
        lv = order[j % 3]
        opts = options[lv]
        out.append((LEVELS[lv], opts[(starts[lv] + j // 3) % len(opts)]()))
    return tuple(out)


# -- TextEmbedding stand-in -------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z]+|\d+(?:\.\d+)?")


@lru_cache(maxsize=1 << 16)  # bounded: number tokens are unbounded, memory must not grow with n
def _slots(token: str) -> tuple[tuple[int, float], ...]:
    # blake2b, not hash(): Python's str hash is salted per process and would break determinism.
    h = hashlib.blake2b(token.encode(), digest_size=8).digest()
    return tuple((h[j] % EMBED_DIM, 1.0 if (h[4] >> j) & 1 else -1.0) for j in range(4))


def _hashed_counts(text: str) -> tuple[list[float], float]:
    """Signed slot counts (4 slots per word/number token) and their Euclidean norm."""
    acc = [0.0] * EMBED_DIM
    for tok in _TOKEN.findall(text.lower()):
        for i, s in _slots(tok):
            acc[i] += s
    norm = math.sqrt(sum(map(operator.mul, acc, acc)))
    if norm == 0.0:  # every token cancelled out: fall back to a fixed unit vector
        acc[0], norm = 1.0, 1.0
    return acc, norm


def hashed_embedding(text: str) -> np.ndarray:
    """Unit-norm 128-d signed feature-hashing projection of the caption's word/number tokens."""
    acc, norm = _hashed_counts(text)
    return np.array(acc) / norm


def embedding_repr(text: str) -> str:
    """``hashed_embedding(text)`` written like a numpy array repr: ``[ 0.01234567 -0.2 ...]``."""
    acc, norm = _hashed_counts(text)
    # The counts are small integers, so there are only a handful of distinct values: format each
    # once (the same c / norm division as hashed_embedding) instead of 128 times -- 10x faster.
    text_of = {c: f"{c / norm: .8f}" for c in set(acc)}
    return "[" + " ".join(map(text_of.__getitem__, acc)) + "]"
