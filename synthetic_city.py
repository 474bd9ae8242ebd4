"""The built-in default data set: a deterministic synthetic city, NOT real data.

Same shape and file format as BikeNYC (16x8 grid, hourly slots, 2014-04-01 .. 2014-09-30, keys
'data' (n, 2, 16, 8) float64 counts with flow 0 = trips started (outflow) and flow 1 = trips ended
(inflow), 'date' b'YYYYMMDDSS'), plus a holiday list in the TaxiBJ format. It is built to have
what ST-ResNet is designed to exploit, so that a default run shows the model working:
- regions of three characters (residential, business, leisure) mixed in space, each with its own
  daily profile: weekday commuting peaks, weekend leisure, a Friday-evening bump, quiet nights;
- holidays that follow the weekend profile;
- slow trends: a seasonal swell towards midsummer and regions whose usage grows over the months;
- weather: rainy spells lasting days that cut every region's trips, a citywide hour-to-hour
  fluctuation and local fluctuations (so the recent hours carry information the calendar lacks);
- spatial coupling: every trip ends in a region chosen by distance and time-dependent
  attractiveness, arriving in the same hour or the next;
- Poisson count noise; about a third of the cells hold no station and are always zero.
"""
import os

import h5py
import numpy as np

H, W, T = 16, 8, 24
START, DAYS = "2014-04-01", 183
HOLIDAYS = ("20140526", "20140704", "20140901")  # Memorial Day, Independence Day, Labor Day
SEED = 20170204
VERSION = f"synthetic_city 1, seed {SEED}"  # stored in the file; bump when generate() changes


def gauss(x, mu, sd):
    return np.exp(-0.5 * ((x - mu) / sd) ** 2)


def smooth(field, passes=2):
    """3x3 box blur with edge padding, applied `passes` times, over the last two axes."""
    for _ in range(passes):
        p = np.pad(field, [(0, 0)] * (field.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
        field = sum(p[..., i:i + field.shape[-2], j:j + field.shape[-1]]
                    for i in range(3) for j in range(3)) / 9.0
    return field


def regions(rng):
    """Character mix (3, H, W): residential, business, leisure; station mask; trip density."""
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    business = np.exp(-((yy - 5) ** 2 / 6 + (xx - 3) ** 2 / 3))
    leisure = (np.exp(-((yy - 12) ** 2 / 4 + (xx - 5.5) ** 2 / 3))
               + 0.6 * np.exp(-((yy - 2) ** 2 / 3 + (xx - 6.5) ** 2 / 2)))
    mix = np.stack([np.full((H, W), 0.35), business, leisure])
    mix /= mix.sum(axis=0)
    field = smooth(rng.normal(size=(H, W))) + 0.6 * business + 0.4 * leisure
    stations = field > np.quantile(field, 0.37)
    density = np.exp(rng.normal(0.0, 0.45, (H, W))) * (1 + 3 * business + 1.5 * leisure)
    return mix, stations, density * stations


def profiles(hour, weekday_, offday):
    """Departure (3, n) and destination (3, n) intensity per region character for each slot."""
    h = hour + 0.5
    night = 0.12 + 0.88 * (1 - gauss(h, 3.5, 1.8))
    work = ~offday
    friday = (weekday_ == 4) & work
    dep = np.stack([
        np.where(work, 0.15 + 1.0 * gauss(h, 8, 1.2) + 0.35 * gauss(h, 18, 2) + 0.2 * gauss(h, 13, 3),
                 0.1 + 0.7 * gauss(h, 12, 3) + 0.3 * gauss(h, 18, 2.5)),
        np.where(work, 0.1 + 0.25 * gauss(h, 9, 1) + 0.4 * gauss(h, 12.5, 1) + 1.0 * gauss(h, 17.5, 1.3),
                 0.1 + 0.3 * gauss(h, 14, 3)),
        np.where(work, 0.1 + 0.3 * gauss(h, 13, 3) + 0.6 * gauss(h, 19.5, 2),
                 0.1 + 1.0 * gauss(h, 14, 3.5) + 0.3 * gauss(h, 20, 2)),
    ]) * night
    dep[2] *= 1 + 0.6 * friday * gauss(h, 21, 2)
    dest = np.stack([
        np.where(work, 0.2 + 1.0 * gauss(h, 18, 2) + 0.3 * gauss(h, 13, 3), 0.3 + 0.6 * gauss(h, 18, 3)),
        np.where(work, 0.1 + 1.0 * gauss(h, 8.5, 1.3) + 0.4 * gauss(h, 13, 1), np.full(h.shape, 0.1)),
        np.where(work, 0.2 + 0.5 * gauss(h, 20, 2) + 0.3 * gauss(h, 13, 3), 0.3 + 1.0 * gauss(h, 14, 3)),
    ])
    return dep, dest


def ar1(rng, shape, rho, sd):
    """Stationary AR(1) series along axis 0 with marginal standard deviation sd."""
    e = rng.normal(0.0, sd * np.sqrt(1 - rho ** 2), shape)
    x = np.empty(shape)
    x[0] = rng.normal(0.0, sd, shape[1:])
    for t in range(1, shape[0]):
        x[t] = rho * x[t - 1] + e[t]
    return x


def generate(seed=SEED):
    """-> flows (n, 2, H, W) float64 [outflow, inflow], dates (n,) b'YYYYMMDDSS'."""
    rng = np.random.default_rng(seed)
    n = DAYS * T
    day = np.arange(n) // T
    hour = np.arange(n) % T
    dates = np.datetime64(START) + np.arange(DAYS)
    ymd = np.char.replace(dates.astype("U10"), "-", "")
    weekday_ = ((dates.astype(np.int64) + 3) % 7)[day]
    offday = (weekday_ >= 5) | np.isin(ymd, HOLIDAYS)[day]

    mix, stations, density = regions(rng)
    dep, dest = profiles(hour, weekday_, offday)
    departures = np.einsum("kn,khw->nhw", dep, mix)                     # (n, H, W)

    season = 1 + 0.35 * np.sin(np.pi * (day + 20) / (DAYS + 40))           # swell to midsummer
    growth = np.ones((H, W))
    growing = stations & (rng.random((H, W)) < 0.2)
    start_day = rng.integers(20, DAYS - 40, (H, W))
    ramp = np.clip((day[:, None, None] - start_day) / 45.0, 0, 1)          # (n, H, W)
    trend = season[:, None, None] * np.where(growing, 0.3 + 0.9 * ramp, growth)

    rainy = np.zeros(DAYS, bool)
    for d in range(1, DAYS):
        rainy[d] = rng.random() < (0.55 if rainy[d - 1] else 0.15)
    weather = np.where(rainy, rng.uniform(0.35, 0.7, DAYS), 1.0)[day]
    citywide = ar1(rng, (n,), 0.85, 0.15)
    local = smooth(ar1(rng, (n, H, W), 0.7, 0.25), passes=1)

    rate = density * departures * trend * weather[:, None, None] * np.exp(
        citywide[:, None, None] + local)
    rate *= 9.5 / rate.mean()                                             # about BikeNYC's level
    outflow = rng.poisson(rate).astype(np.float64)

    # Each trip ends in a region chosen by distance and the destination's attractiveness now;
    # 65% arrive within the same hour, the rest in the next.
    yy, xx = np.mgrid[0:H, 0:W]
    cells = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(float)
    near = np.exp(-np.linalg.norm(cells[:, None] - cells[None], axis=-1) / 2.0)   # (HW, HW)
    attract = np.einsum("kn,khw->nhw", dest, mix) * np.sqrt(density)      # (n, H, W)
    expected = np.zeros((n, H * W))
    for t in range(n):
        p = near * attract[t].ravel()[None, :]
        p /= p.sum(axis=1, keepdims=True)
        arrivals = outflow[t].ravel() @ p
        expected[t] += 0.65 * arrivals
        if t + 1 < n:
            expected[t + 1] += 0.35 * arrivals
    inflow = rng.poisson(expected).reshape(n, H, W).astype(np.float64)

    stamps = np.char.add(np.repeat(ymd, T), np.char.zfill((hour + 1).astype("U2"), 2))
    return np.stack([outflow, inflow], axis=1), np.char.encode(stamps, "ascii")


def write(path, holiday_path):
    """Generate the city and write it in the BikeNYC file format plus a holiday list. Each file
    appears whole or not at all (written under a temporary name, then renamed)."""
    flows, dates = generate()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(holiday_path + ".tmp", "w") as f:
        f.write("\n".join(HOLIDAYS) + "\n")
    os.replace(holiday_path + ".tmp", holiday_path)
    with h5py.File(path + ".tmp", "w") as f:
        f.create_dataset("data", data=flows)
        f.create_dataset("date", data=dates)
        f.attrs["generator"] = VERSION
    os.replace(path + ".tmp", path)


def is_current(path, holiday_path):
    """True when both files exist and the flow file was written by this version of generate()."""
    if not (os.path.isfile(path) and os.path.isfile(holiday_path)):
        return False
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("generator") == VERSION
    except OSError:
        return False
