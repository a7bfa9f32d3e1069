"""When people shop: the daily intensity over the period (weekly shape, yearly shape, holiday
peak, sale days) and the hour-of-day profile, plus seasonal demand per top-level category."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recommndr.data.synthetic.params import N_DAYS, N_WEEKS, PERIOD_START

F64 = npt.NDArray[np.float64]

# Monday..Sunday: online shopping peaks on Sunday and Monday evenings and dips on Friday/Saturday.
WEEKDAY = np.array([1.07, 1.03, 1.00, 0.98, 0.91, 0.89, 1.12])
# Mid-month level, January..December: post-holiday sales, a February trough, a flat summer,
# and the November-December gift season.
MONTH = np.array([0.90, 0.90, 0.96, 0.97, 0.99, 0.99, 1.03, 1.00, 0.95, 1.00, 1.10, 1.08])
# Single-day multipliers (month, day): Black Friday, Cyber Monday, a mid-July sale, Christmas.
SPECIAL_DAYS = {
    (11, 28): 2.3,
    (11, 29): 1.6,
    (11, 30): 1.5,
    (12, 1): 2.1,
    (12, 2): 1.3,
    (7, 8): 1.6,
    (7, 9): 1.5,
    (12, 24): 0.7,
    (12, 25): 0.55,
    (12, 26): 1.2,
}
HOUR = np.array(
    [
        0.35,
        0.22,
        0.15,
        0.12,
        0.12,
        0.18,
        0.35,
        0.60,
        0.80,
        0.90,
        0.95,
        1.00,
        1.05,
        1.00,
        0.95,
        0.95,
        1.00,
        1.10,
        1.25,
        1.40,
        1.50,
        1.40,
        1.05,
        0.65,
    ]
)


def day_dates() -> npt.NDArray[np.datetime64]:
    """The period's days as datetime64[D]."""
    days: npt.NDArray[np.datetime64] = PERIOD_START.astype("datetime64[D]") + np.arange(N_DAYS)
    return days


def daily_intensity() -> F64:
    """Relative shopping intensity of each day of the period (mean 1)."""
    days = day_dates()
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    month = days.astype("datetime64[M]").astype(np.int64) % 12
    dom = (days - days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    # Smooth the monthly level: interpolate between mid-month anchors.
    anchors = np.arange(12) * (N_DAYS / 12) + N_DAYS / 24
    level = np.interp(np.arange(N_DAYS), anchors, MONTH)
    # The gift season ramps up from Black Friday week to just before Christmas.
    gift = np.zeros(N_DAYS)
    for (m, d), mult in SPECIAL_DAYS.items():
        gift[(month == m - 1) & (dom == d)] = mult - 1.0
    xmas_run = (month == 11) & (dom >= 8) & (dom <= 21)
    gift[xmas_run] += 0.25
    intensity = level * WEEKDAY[weekday] * (1.0 + gift)
    return np.asarray(intensity / intensity.mean(), dtype=np.float64)


def week_of_day() -> npt.NDArray[np.int64]:
    return np.arange(N_DAYS) // 7


def gift_season_days() -> npt.NDArray[np.bool_]:
    """Days of the gift season (from mid-November to Christmas Eve)."""
    days = day_dates()
    month = days.astype("datetime64[M]").astype(np.int64) % 12
    dom = (days - days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    return np.asarray(((month == 10) & (dom >= 15)) | ((month == 11) & (dom <= 24)))


def category_season(holiday_boost: F64, summer_boost: F64) -> F64:
    """Weekly demand multiplier per top-level category, shape (N_WEEKS, n_l1)."""
    weeks = np.arange(N_WEEKS)
    centre_day = weeks * 7 + 3.5
    holiday = np.exp(-0.5 * ((centre_day - 340.0) / 16.0) ** 2)  # peaks early December
    summer = np.exp(-0.5 * ((centre_day - 180.0) / 40.0) ** 2)  # peaks late June
    return np.asarray(
        1.0 + np.outer(holiday, holiday_boost - 1.0) + np.outer(summer, summer_boost - 1.0),
        dtype=np.float64,
    )
