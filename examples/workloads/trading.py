"""Trading: a multi-agent trading firm, after TradingAgents, as used in the Helium paper.

Four analysts (market, news, fundamentals, sentiment) write reports in parallel; a bull and a bear
researcher debate for ``num_invest_rounds`` rounds; a research manager writes an investment plan;
``num_traders`` traders with distinct styles each turn it into a trade proposal; every proposal
gets its own risk debate (aggressive, neutral, conservative analysts, ``num_risk_rounds`` rounds,
each turn reading the debate so far) and, when ``risk_judge_per_trader`` is on, a risk judge's
verdict; a fund manager takes the final decision.

Graph::

    START --> analyst_market, analyst_news, analyst_fundamentals, analyst_sentiment (parallel)
          --> bull <-> bear (conditional loop) --> research_manager
          --Send x num_traders--> trader --> collect_plans
          --Send x num_traders--> risk_debate (3 * num_risk_rounds [+ 1 judge] calls in a loop)
          --> fund_manager --> END

LLM calls per input: ``4 + 2*R + 1 + T*(1 + 3*K + J) + 1`` with R = num_invest_rounds,
T = num_traders, K = num_risk_rounds, J = 1 if risk_judge_per_trader else 0. The defaults
(R=1, T=8, K=3, J=0) give the paper's 88 calls and 19 distinct agent roles; with the per-trader
judge on, 96 calls and 20 roles. Nodes are async: use ``ainvoke``/``abatch``.

Example:
    >>> import asyncio
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> graph = build(FakeListChatModel(responses=["HOLD"]), num_traders=2, num_risk_rounds=1)
    >>> asyncio.run(graph.ainvoke(make_inputs(1, data_source="bundled")[0]))["final_decision"]
    'HOLD'

Run on helium_lc: ``python -m examples.workloads.trading`` (from the repository root).
"""

from __future__ import annotations

import operator
import random
from typing import Annotated, Any, Callable, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from ._common import message_text, resolve_params
from .data import load_news
from .stocks import StockSnapshot, load_stocks

NAME = "trading"
IS_ASYNC = True
DEFAULTS: dict[str, Any] = {"num_traders": 8, "num_invest_rounds": 1, "num_risk_rounds": 3,
                            "risk_judge_per_trader": False, "num_days": 10, "num_news": 4,
                            "data_source": "auto", "fund_manager_instruction": "", "day": 0}

#: The ``iterate`` benchmark's edit: the fund manager's instructions change (the last call).
ITERATE_EDIT: tuple[dict[str, Any], dict[str, Any]] = (
    {}, {"fund_manager_instruction": "Also name the one risk that would reverse the decision."})

#: The ``day-2`` benchmark's inputs: the same stocks on the next trading day (``make_inputs``
#: parameters of the unmeasured day 1 and the measured day 2). Prices and news change; the company
#: profile and its last quarterly report do not, so the fundamentals analyst's call repeats exactly.
DAY2_INPUTS: tuple[dict[str, Any], dict[str, Any]] = ({"day": 0}, {"day": 1})

_FIRM = "You work at a trading firm that decides, once a day, whether to buy, hold or sell a stock."

ANALYSTS: dict[str, str] = {
    "market": f"{_FIRM} You are the market analyst. From the price table, describe the trend, "
              "momentum, volatility and volume, and name support and resistance levels. "
              "End with a one-line technical outlook.",
    "news": f"{_FIRM} You are the news analyst. From today's news items, explain which ones "
            "matter for this company or its sector and how. End with a one-line news outlook.",
    "fundamentals": f"{_FIRM} You are the fundamentals analyst. From the company profile and its "
                    "latest quarterly report, discuss the business, its sector's drivers, the quality "
                    "of its earnings and its balance sheet. End with a one-line fundamental outlook.",
    "sentiment": f"{_FIRM} You are the sentiment analyst. From the news tone and the recent price "
                 "moves, judge how investors feel about this stock and whether the mood is "
                 "shifting. End with a one-line sentiment outlook.",
}

BULL_SYSTEM = (f"{_FIRM} You are the bull researcher. Argue for investing in the stock, using the "
               "analysts' reports, and answer the bear's latest points directly. Be concise.")
BEAR_SYSTEM = (f"{_FIRM} You are the bear researcher. Argue against investing in the stock, using "
               "the analysts' reports, and answer the bull's latest points directly. Be concise.")
MANAGER_SYSTEM = (f"{_FIRM} You are the research manager. Weigh the bull and bear arguments, "
                  "pick a side, and write an investment plan: the recommendation (buy, hold or "
                  "sell), the reasons, and the main risks.")
TRADER_SYSTEM = (f"{_FIRM} You are a trader. Turn the research manager's investment plan into a "
                 "concrete trade proposal in your own trading style: action, position size as a "
                 "percentage of the book, entry, stop-loss and take-profit levels. End with "
                 "'FINAL PROPOSAL: BUY', 'FINAL PROPOSAL: HOLD' or 'FINAL PROPOSAL: SELL'.")

#: The traders' styles (the paper's Trading workflow runs eight traders).
TRADER_STYLES: tuple[str, ...] = (
    "momentum trader who follows strong trends",
    "value investor who buys only below fair value",
    "swing trader who holds positions for a few days",
    "contrarian who fades crowded moves",
    "macro trader who trades the sector against the economy",
    "options-minded trader who thinks in defined risk",
    "high-conviction trader who concentrates on the best ideas",
    "quantitative trader who sizes positions by volatility",
)

RISK_ANALYSTS: dict[str, str] = {
    "aggressive": f"{_FIRM} You are the aggressive risk analyst. Argue for taking more risk "
                  "when the upside justifies it, and challenge overly cautious points.",
    "neutral": f"{_FIRM} You are the neutral risk analyst. Weigh upside and downside evenly and "
               "argue for the balanced position size.",
    "conservative": f"{_FIRM} You are the conservative risk analyst. Argue for protecting "
                    "capital: smaller size, tighter stops, or no trade.",
}
RISK_JUDGE_SYSTEM = (f"{_FIRM} You are the risk judge. Read a trader's proposal and the risk "
                     "debate about it, and state the approved trade (possibly resized) in two sentences.")
FUND_MANAGER_SYSTEM = (f"{_FIRM} You are the fund manager. Read the investment plan and every "
                       "trader's risk-reviewed proposal, and take the firm's final decision: "
                       "BUY, HOLD or SELL and the total position size, with a short justification.")


class TradingState(TypedDict, total=False):
    ticker: str
    company: str
    sector: str
    industry: str
    date: str
    price_table: str
    price_summary: str
    fundamentals: str
    news: str
    reports: Annotated[dict[str, str], operator.or_]        # analyst -> report
    invest_debate: Annotated[list[dict[str, str]], operator.add]  # {"speaker", "text"}
    investment_plan: str
    trader_plans: Annotated[list[dict[str, Any]], operator.add]   # {"trader", "style", "plan"}
    risk_reviews: Annotated[list[dict[str, Any]], operator.add]
    final_decision: str


def num_llm_calls(**params: Any) -> int:
    """LLM calls per input for these parameters."""
    p = resolve_params(NAME, DEFAULTS, params)
    per_trader = 1 + 3 * p["num_risk_rounds"] + (1 if p["risk_judge_per_trader"] else 0)
    return len(ANALYSTS) + 2 * p["num_invest_rounds"] + 1 + p["num_traders"] * per_trader + 1


def agent_roles(**params: Any) -> list[str]:
    """The distinct agent roles (one system prompt each) for these parameters."""
    p = resolve_params(NAME, DEFAULTS, params)
    roles = [f"analyst_{a}" for a in ANALYSTS] + ["bull", "bear", "research_manager"]
    roles += [f"trader_{i}" for i in range(p["num_traders"])] + [f"risk_{r}" for r in RISK_ANALYSTS]
    roles += ["risk_judge"] if p["risk_judge_per_trader"] else []
    return roles + ["fund_manager"]


def _header(state: dict[str, Any]) -> str:
    return (f"Company: {state['company']} ({state['ticker']}), sector {state['sector']}, "
            f"industry {state['industry']}. Analysis date: {state['date']}.")


def _profile(state: dict[str, Any]) -> str:
    """The company without the date: what the fundamentals analyst reads every day."""
    return (f"Company: {state['company']} ({state['ticker']}), sector {state['sector']}, "
            f"industry {state['industry']}.")


def _reports(state: TradingState) -> str:
    return "\n\n".join(f"{name.capitalize()} report:\n{state['reports'][name]}" for name in ANALYSTS)


def build(llm: BaseChatModel, **params: Any) -> CompiledStateGraph:
    """The Trading graph over ``llm`` (see module docstring for the shape)."""
    p = resolve_params(NAME, DEFAULTS, params)
    if p["num_traders"] > len(TRADER_STYLES):
        raise ValueError(f"{NAME}: num_traders can be at most {len(TRADER_STYLES)}, "
                         f"got {p['num_traders']}.")
    num_invest_rounds, num_risk_rounds = p["num_invest_rounds"], p["num_risk_rounds"]

    async def ask(system: str, user: str) -> str:
        return message_text(await llm.ainvoke([SystemMessage(system), HumanMessage(user)]))

    def make_analyst(name: str) -> Callable[[TradingState], Any]:
        data = {"market": "Price table (last trading days):\n{price_table}",
                "news": "Today's news:\n{news}",
                "fundamentals": "Latest quarterly report:\n{fundamentals}",
                "sentiment": "Today's news:\n{news}\n\nPrice statistics: {price_summary}"}[name]
        # The fundamentals analyst reads only slow-moving data: no date, so its call repeats daily.
        head = _profile if name == "fundamentals" else _header

        async def analyst(state: TradingState) -> dict[str, Any]:
            user = f"{head(state)}\n\n{data.format(**state)}\n\nWrite your report."
            return {"reports": {name: await ask(ANALYSTS[name], user)}}
        return analyst

    def debate_user(state: TradingState, opponent: str) -> str:
        history = "\n\n".join(f"{t['speaker']}: {t['text']}" for t in state.get("invest_debate", []))
        return (f"{_header(state)}\n\n{_reports(state)}\n\nDebate so far:\n{history or '(none yet)'}"
                f"\n\nYour argument (answer the {opponent} if they have spoken):")

    async def bull(state: TradingState) -> dict[str, Any]:
        text = await ask(BULL_SYSTEM, debate_user(state, "bear"))
        return {"invest_debate": [{"speaker": "Bull", "text": text}]}

    async def bear(state: TradingState) -> dict[str, Any]:
        text = await ask(BEAR_SYSTEM, debate_user(state, "bull"))
        return {"invest_debate": [{"speaker": "Bear", "text": text}]}

    def continue_debate(state: TradingState) -> str:
        done_rounds = len(state["invest_debate"]) // 2
        return "bull" if done_rounds < num_invest_rounds else "research_manager"

    async def research_manager(state: TradingState) -> dict[str, Any]:
        history = "\n\n".join(f"{t['speaker']}: {t['text']}" for t in state["invest_debate"])
        user = f"{_header(state)}\n\n{_reports(state)}\n\nDebate:\n{history}\n\nWrite the investment plan."
        return {"investment_plan": await ask(MANAGER_SYSTEM, user)}

    def assign_traders(state: TradingState) -> list[Send]:
        base = {k: state[k] for k in ("ticker", "company", "sector", "industry", "date")}
        return [Send("trader", {**base, "investment_plan": state["investment_plan"], "trader": i})
                for i in range(p["num_traders"])]

    async def trader(task: dict[str, Any]) -> dict[str, Any]:
        style = TRADER_STYLES[task["trader"]]
        user = (f"{_header(task)}\n\nInvestment plan:\n{task['investment_plan']}\n\n"
                f"Your style: you are a {style}. Write your trade proposal.")
        plan = await ask(TRADER_SYSTEM, user)
        return {"trader_plans": [{"trader": task["trader"], "style": style, "plan": plan}]}

    def collect_plans(state: TradingState) -> dict[str, Any]:
        return {}  # a join: every trader has proposed before the risk debates start

    def assign_risk_debates(state: TradingState) -> list[Send]:
        base = {k: state[k] for k in ("ticker", "company", "sector", "industry", "date")}
        return [Send("risk_debate", {**base, **plan})
                for plan in sorted(state["trader_plans"], key=lambda t: t["trader"])]

    async def risk_debate(task: dict[str, Any]) -> dict[str, Any]:
        opening = (f"{_header(task)}\n\nTrade proposal from the {task['style']}:\n{task['plan']}"
                   "\n\nRisk debate so far:\n")
        turns: list[str] = []
        for _ in range(num_risk_rounds):
            for role, system in RISK_ANALYSTS.items():
                history = "\n\n".join(turns) or "(none yet)"
                text = await ask(system, f"{opening}{history}\n\nYour argument as the {role} analyst:")
                turns.append(f"{role.capitalize()}: {text}")
        verdict = turns[-1]
        if p["risk_judge_per_trader"]:
            verdict = await ask(RISK_JUDGE_SYSTEM, f"{opening}{chr(10).join(turns)}\n\nYour verdict:")
        return {"risk_reviews": [{"trader": task["trader"], "style": task["style"],
                                  "plan": task["plan"], "debate": turns, "verdict": verdict}]}

    async def fund_manager(state: TradingState) -> dict[str, Any]:
        reviews = sorted(state["risk_reviews"], key=lambda r: r["trader"])
        listing = "\n\n".join(f"Trader {r['trader'] + 1} ({r['style']}):\n{r['plan']}\n"
                              f"Risk review: {r['verdict']}" for r in reviews)
        user = (f"{_header(state)}\n\nInvestment plan:\n{state['investment_plan']}\n\n"
                f"Traders' proposals after risk review:\n{listing}\n\nYour final decision:")
        system = f"{FUND_MANAGER_SYSTEM} {p['fund_manager_instruction']}".strip()
        return {"final_decision": await ask(system, user)}

    graph = StateGraph(TradingState)
    for name in ANALYSTS:
        graph.add_node(f"analyst_{name}", make_analyst(name))
        graph.add_edge(START, f"analyst_{name}")
    for name, fn in (("bull", bull), ("bear", bear), ("research_manager", research_manager),
                     ("trader", trader), ("collect_plans", collect_plans),
                     ("risk_debate", risk_debate), ("fund_manager", fund_manager)):
        graph.add_node(name, fn)
    graph.add_edge([f"analyst_{name}" for name in ANALYSTS], "bull")
    graph.add_edge("bull", "bear")
    graph.add_conditional_edges("bear", continue_debate, ["bull", "research_manager"])
    graph.add_conditional_edges("research_manager", assign_traders, ["trader"])
    graph.add_edge("trader", "collect_plans")
    graph.add_conditional_edges("collect_plans", assign_risk_debates, ["risk_debate"])
    graph.add_edge("risk_debate", "fund_manager")
    graph.add_edge("fund_manager", END)
    return graph.compile()


def _price_summary(s: StockSnapshot) -> str:
    first, last = s.rows[0], s.rows[-1]
    change_pct = 100.0 * (last.close - first.open) / first.open
    avg_volume = sum(r.volume for r in s.rows) / len(s.rows)
    return (f"over the last {len(s.rows)} trading days the price moved from {first.open:.2f} to "
            f"{last.close:.2f} ({change_pct:+.1f}%), high {max(r.high for r in s.rows):.2f}, "
            f"low {min(r.low for r in s.rows):.2f}, average daily volume {avg_volume:,.0f}.")


def _fundamentals(s: StockSnapshot) -> str:
    """The company's last quarterly report (synthetic, fixed per ticker: it changes quarterly,
    not daily)."""
    rng = random.Random(f"fundamentals-{s.ticker}")
    revenue = rng.uniform(0.4, 40.0)
    growth, gross, operating = rng.uniform(-8, 25), rng.uniform(20, 70), rng.uniform(3, 30)
    net = revenue * operating / 100 * rng.uniform(0.55, 0.8)
    cash, debt = revenue * rng.uniform(0.1, 0.9), revenue * rng.uniform(0.0, 1.5)
    shares = rng.uniform(0.1, 3.0)
    return (f"{s.name} ({s.sector}, {s.industry}). Revenue ${revenue:.2f}B ({growth:+.1f}% year on year); "
            f"gross margin {gross:.1f}%, operating margin {operating:.1f}%; net income ${net:.2f}B, "
            f"earnings per share ${net / shares:.2f} on {shares:.2f}B shares. Cash and equivalents "
            f"${cash:.2f}B, total debt ${debt:.2f}B (debt to revenue {debt / revenue:.2f}); free cash flow "
            f"${net * rng.uniform(0.6, 1.3):.2f}B; capital expenditure {rng.uniform(2, 12):.1f}% of revenue; "
            f"guidance for next quarter: revenue growth of {growth + rng.uniform(-4, 4):+.1f}%.")


def make_inputs(num_inputs: int, seed: int = 0, **params: Any) -> list[dict[str, Any]]:
    """``num_inputs`` stocks on a date, each with a price table, its last quarterly report and
    ``num_news`` news items. ``day=1`` gives the same stocks on the next trading day (new prices
    and news, the same report)."""
    p = resolve_params(NAME, DEFAULTS, params)
    stocks = load_stocks(num_inputs, seed=seed, num_days=p["num_days"], prefer=p["data_source"], day=p["day"])
    news = load_news(num_inputs * p["num_news"], seed=seed + 1009 * p["day"], prefer=p["data_source"])
    inputs = []
    for row, s in enumerate(stocks):
        items = news[row * p["num_news"]:(row + 1) * p["num_news"]]
        inputs.append({"ticker": s.ticker, "company": s.name, "sector": s.sector,
                       "industry": s.industry, "date": s.date, "price_table": s.price_table(),
                       "price_summary": _price_summary(s), "fundamentals": _fundamentals(s),
                       "news": "\n".join(f"- {n.text}" for n in items)})
    return inputs


if __name__ == "__main__":
    import asyncio

    from helium_lc import HeliumChatModel

    app = build(HeliumChatModel(max_tokens=96))
    for row, out in enumerate(asyncio.run(app.abatch(make_inputs(2)))):
        print(f"--- input {row}: {out['ticker']} on {out['date']}\n{out['final_decision']}\n")
