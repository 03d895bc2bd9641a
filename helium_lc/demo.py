"""The main demo: a map-reduce LangGraph app over bundled passages, on a real vLLM pool.

Each input is a question and a few passages; a ``Send`` fan-out asks the model to answer
from each passage (all map calls share a long system prompt), a reduce node combines them.
The app is plain LangGraph code; the demo runs it plain and then through
``helium_lc.accelerate`` on the same pool, and prints what each run cost.

Run it:
    $ bash scripts/dev.sh demo          # or: python -m helium_lc.cli demo
"""

from __future__ import annotations

import asyncio
import operator
import time
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

SYSTEM_PROMPT = (
    "You are a careful research assistant. You read one passage at a time and answer the "
    "user's question using only that passage. If the passage does not contain the answer, "
    "say 'not in this passage'. Answer in one short sentence, without preamble. Prefer exact "
    "names, numbers and dates from the passage. Never invent facts."
)

PASSAGES = {
    "rivers": [
        "The Nile flows north through eleven countries and empties into the Mediterranean Sea. "
        "At about 6,650 km it is usually listed as the longest river in Africa.",
        "The Amazon carries more water than any other river, about one fifth of all river water "
        "that reaches the oceans. Its basin covers about 7 million square kilometres.",
        "The Danube rises in the Black Forest of Germany and flows east for 2,850 km to the "
        "Black Sea, passing through four capital cities, including Vienna and Budapest.",
    ],
    "inventions": [
        "Johannes Gutenberg built a movable-type printing press in Mainz around 1440; the "
        "Gutenberg Bible was printed in the 1450s.",
        "The first practical telephone was patented by Alexander Graham Bell in 1876, after a "
        "race with Elisha Gray, who filed a caveat the same day.",
        "In 1879 Thomas Edison's laboratory demonstrated a carbon-filament incandescent lamp "
        "that burned for more than thirteen hours.",
    ],
    "space": [
        "Apollo 11 landed on the Moon on 20 July 1969; Neil Armstrong and Buzz Aldrin walked "
        "on the surface while Michael Collins orbited above.",
        "Sputnik 1, launched by the Soviet Union on 4 October 1957, was the first artificial "
        "satellite. It transmitted radio pulses for three weeks.",
        "The Hubble Space Telescope was launched in 1990; a servicing mission in 1993 corrected "
        "the flaw in its primary mirror.",
    ],
}

QUESTIONS = [
    ("rivers", "Which river is the longest in Africa?"),
    ("inventions", "Who patented the telephone, and when?"),
    ("space", "When did humans first land on the Moon?"),
    ("rivers", "Which river carries the most water?"),
    ("inventions", "Who patented the telephone, and when?"),  # asked twice in the batch
]


class State(TypedDict):
    question: str
    passages: list[str]
    notes: Annotated[list[str], operator.add]
    answer: str


class PassageTask(TypedDict):
    question: str
    passage: str


def build_app(llm: BaseChatModel) -> Any:
    """The demo's LangGraph app (plain LangGraph; knows nothing of helium_lc)."""

    async def read_passage(task: PassageTask) -> dict[str, Any]:
        msg = await llm.ainvoke([
            SystemMessage(SYSTEM_PROMPT),
            HumanMessage(f"Passage: {task['passage']}\n\nQuestion: {task['question']}"),
        ])
        return {"notes": [str(msg.content).strip()]}

    async def combine(state: State) -> dict[str, Any]:
        notes = "\n".join(f"- {n}" for n in state["notes"])
        msg = await llm.ainvoke([
            SystemMessage("You combine notes from several readers into one correct, short answer."),
            HumanMessage(f"Question: {state['question']}\nNotes:\n{notes}\n\nFinal answer:"),
        ])
        return {"answer": str(msg.content).strip()}

    def fan_out(state: State) -> list[Send]:
        return [Send("read_passage", {"question": state["question"], "passage": p}) for p in state["passages"]]

    g = StateGraph(State)
    g.add_node("read_passage", read_passage)
    g.add_node("combine", combine)
    g.add_conditional_edges(START, fan_out, ["read_passage"])
    g.add_edge("read_passage", "combine")
    g.add_edge("combine", END)
    return g.compile()


def demo_inputs() -> list[dict[str, Any]]:
    return [{"question": q, "passages": PASSAGES[topic], "notes": []} for topic, q in QUESTIONS]


async def _run_all(app: Any, inputs: list[dict[str, Any]], progress: bool, label: str) -> list[Any]:
    from tqdm.auto import tqdm

    results: list[Any] = [None] * len(inputs)

    async def one(i: int) -> None:
        results[i] = await app.ainvoke(inputs[i])

    tasks = [asyncio.ensure_future(one(i)) for i in range(len(inputs))]
    with tqdm(total=len(tasks), desc=label, disable=not progress, unit="input") as bar:
        for fut in asyncio.as_completed(tasks):
            await fut
            bar.update(1)
    return results


def run_demo(num_workers: int = 1, progress: bool = True, servers: list[str] | None = None) -> int:
    """Run the demo plain and accelerated on one real pool; print answers and costs.

    ``servers``: URLs of running vLLM OpenAI servers to use instead of in-process engines
    (e.g. those ``helium-lc serve`` starts).
    """
    from helium_lc.chat_model import HeliumChatModel
    from helium_lc.engine.pool import WorkerPool

    if servers:
        print(f"Connecting to {len(servers)} vLLM server(s): {', '.join(servers)}", flush=True)
    else:
        print(f"Starting a pool of {num_workers} vLLM worker(s) with the default model...", flush=True)
    t0 = time.perf_counter()
    with (WorkerPool(servers=servers) if servers else WorkerPool(num_workers=num_workers)) as pool:
        print(f"  ready in {time.perf_counter() - t0:.1f} s: {pool.model_path}")
        llm = HeliumChatModel(pool=pool, max_tokens=48)
        app = build_app(llm)
        inputs = demo_inputs()
        rows = []

        pool.reset_stats()
        t = time.perf_counter()
        plain = asyncio.run(_run_all(app, inputs, progress, "plain LangGraph"))
        rows.append(("plain LangGraph", time.perf_counter() - t, pool.stats()))

        accelerated = None
        try:
            from helium_lc.accelerate import accelerate
        except ImportError:
            accelerate = None  # type: ignore[assignment]
        if accelerate is not None:
            try:
                pool.reset_prefix_cache()
            except Exception as exc:  # noqa: BLE001 - a production server may not allow it
                print(f"  (prefix caches not reset: {exc})")
            pool.reset_stats()
            fast = accelerate(app)
            t = time.perf_counter()
            accelerated = fast.batch(inputs)
            rows.append(("helium_lc.accelerate", time.perf_counter() - t, pool.stats()))
            print("accelerated run:", fast.last_run_stats().summary())
            pool.reset_stats()
            t = time.perf_counter()
            fast.batch(inputs)  # the same batch again: served from helium_lc's prompt cache
            rows.append(("accelerate, 2nd batch", time.perf_counter() - t, pool.stats()))

        for inp, out in list(zip(inputs, plain))[:4]:
            print(f"\nQ: {inp['question']}\nA: {out['answer']}")
        print("\nrun                   wall_s  engine_calls  prompt_tokens  cached_tokens")
        for name, wall, st in rows:
            print(f"{name:<21} {wall:6.1f}  {st['num_requests']:12d}  {st['num_prompt_tokens']:13d}  "
                  f"{st['num_cached_prompt_tokens']:13d}")
        if accelerated is not None:
            same = sum(a.get("answer") == p["answer"] for a, p in zip(accelerated, plain))
            print(f"\nAccelerated answers identical to the plain run's: {same}/{len(plain)}. vLLM-CPU's greedy "
                  "text depends on which requests share a batch, and dedup changes the batches; "
                  "tests/fidelity proves exact equality with a deterministic model.")
    return 0
