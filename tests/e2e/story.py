"""What the scripted model answers in the end-to-end story, as a real model would.

The fake OpenAI server picks a rule by a substring of the last `user` message of each request (see
`tests.fakes.openai_server`): the task, the feedback, or the execution result fed back. The code uses
offline sample data (the sandbox has no network in tests), matplotlib and `plt.show()`, as LLMs (and
AutoGen's own NVDA/TESLA example) write it.
"""

from __future__ import annotations

from typing import Any

TASK = "Plot a chart of NVDA and TESLA stock price change YTD."
FEEDBACK = "No, please plot % change!"

_SAMPLE_DATA = """\
import matplotlib.pyplot as plt
import numpy as np

# Offline sample data (no network here): 60 trading days since January 1.
days = np.arange(60)
rng = np.random.default_rng(7)
nvda = 495.2 * np.cumprod(1 + rng.normal(0.004, 0.02, days.size))
tsla = 248.4 * np.cumprod(1 + rng.normal(-0.002, 0.03, days.size))
"""

PRICE_CODE = (
    "# filename: stock_prices.py\n"
    + _SAMPLE_DATA
    + """\
plt.figure(figsize=(8, 4))
plt.plot(days, nvda, label="NVDA")
plt.plot(days, tsla, label="TSLA")
plt.title("NVDA and TESLA stock price YTD (sample data)")
plt.xlabel("trading day")
plt.ylabel("price (USD)")
plt.legend()
plt.show()
print(f"plotted prices: NVDA {nvda[-1]:.2f} USD, TSLA {tsla[-1]:.2f} USD")
"""
)

CHANGE_CODE = (
    "# filename: stock_change.py\n"
    + _SAMPLE_DATA
    + """\
nvda_pct = (nvda / nvda[0] - 1) * 100
tsla_pct = (tsla / tsla[0] - 1) * 100
plt.figure(figsize=(8, 4))
plt.plot(days, nvda_pct, label="NVDA")
plt.plot(days, tsla_pct, label="TSLA")
plt.axhline(0, color="grey", linewidth=0.8)
plt.title("NVDA and TESLA % change YTD (sample data)")
plt.xlabel("trading day")
plt.ylabel("% change")
plt.legend()
plt.show()
print(f"plotted pct change: NVDA {nvda_pct[-1]:+.1f}%, TSLA {tsla_pct[-1]:+.1f}%")
"""
)

CSV_TASK = "Summarize the monthly sales I am about to share, with a chart."
CSV_NAME = "sales.csv"
CSV_CONTENT = b"month,revenue\n2024-01,1200\n2024-02,1350\n2024-03,990\n2024-04,1610\n"
CSV_CODE = """\
import csv
import matplotlib.pyplot as plt

with open("sales.csv", newline="") as f:
    rows = list(csv.DictReader(f))
months = [r["month"] for r in rows]
revenue = [float(r["revenue"]) for r in rows]
plt.bar(months, revenue)
plt.title("Monthly revenue")
plt.savefig("revenue.png")
best = months[revenue.index(max(revenue))]
print(f"total revenue: {sum(revenue):.0f} over {len(rows)} months; best {best}")
"""


def fenced(intro: str, code: str, outro: str = "") -> str:
    return f"{intro}\n\n```python\n{code}```\n{outro}".rstrip()


PRICE_REPLY = fenced(
    "Here is the code. There is no network access, so it uses offline sample data that looks like "
    "this year's prices, and shows the chart with matplotlib.",
    PRICE_CODE,
)
CHANGE_REPLY = fenced(
    "Sure. This version plots the % change since the start of the year for both stocks.", CHANGE_CODE
)
CSV_ASK = "Please share the CSV file in this thread and I will summarize it. TERMINATE"
CSV_REPLY = fenced("Here is code that reads sales.csv, sums the revenue and draws a bar chart.", CSV_CODE)

RULES: list[dict[str, Any]] = [
    # results fed back (the most specific first)
    {"match": "plotted pct change", "reply": "The chart above shows the % change YTD of NVDA and TESLA "
     "(sample data). TERMINATE"},
    {"match": "plotted prices", "reply": "The chart above shows NVDA and TESLA prices YTD (sample data). "
     "TERMINATE"},
    {"match": "total revenue", "reply": "Revenue totals 5150 over four months; April was the best. "
     "TERMINATE"},
    {"match": "exitcode: 1", "reply": "The code failed; see the output above. TERMINATE"},
    # what people say
    {"match": "% change", "reply": CHANGE_REPLY},
    {"match": "NVDA and TESLA", "reply": PRICE_REPLY},
    {"match": CSV_NAME, "reply": CSV_REPLY},
    {"match": "monthly sales", "reply": CSV_ASK},
    {"match": "try again", "reply": "Sorry about that. Here I am again. TERMINATE"},
    {"match": "hello", "reply": "Hello! How can I help? TERMINATE"},
]  # fmt: skip
UNSCRIPTED = "UNSCRIPTED REPLY"


def script(*replies: object, rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A script file for the fake OpenAI server: `replies` first (in order), then `rules` and the story's."""
    return {"replies": list(replies), "rules": [*(rules or []), *RULES], "default": f"{UNSCRIPTED} TERMINATE"}
