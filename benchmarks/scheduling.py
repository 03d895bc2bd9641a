"""Scheduling policies on the real engine pool: wall time and prefill work per regime.

Workload: ``examples/workloads/prefix_sweep.py`` (a long shared system prompt, per-row context
and question; ``--pattern debate`` (default): 3 agents x 2 rounds per row, each round extending
the agent's conversation; ``--pattern mapred``: 3 agents + an aggregator per row) through
``accelerate(app, config=HeliumConfig(policy=...))`` with the prompt cache off, so every call
reaches an engine. For each regime, every policy runs the same batch; before each system the
engines' prefix caches, the scheduler's KV model and the counters are reset, and the order of
policies alternates across repeats. Reported per policy: median wall time, prompt tokens,
cached tokens, computed tokens and computed / lower bound (``lower_bound_tokens`` of the batch's
prompts: every distinct full block once), and ratios vs fifo.

Regimes:
  a  1 worker, KV cache holds the whole batch (helium must be within noise of fifo);
  b  1 worker, KV cache ~30% of the batch's unique prompt tokens (max_model_len lowered to fit);
  c  like b, a second batch of new rows after a first one (static prefixes, warming carry over);
  d  2 workers (one core each), KV holds the batch.

Timings on this 2-core CPU machine are noisy (other work shares the cores): read the token
columns as the exact part, wall times as indicative.

Run (from the repository root):
    .venv/bin/python benchmarks/scheduling.py --quick        # ~2 min: regimes a and b, 1 repeat
    .venv/bin/python benchmarks/scheduling.py                # ~10 min: all regimes, 2 repeats
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

POLICIES = ("fifo", "helium", "helium-no-gate", "lspf", "prefix_affinity", "opwise", "random")
BYTES_PER_TOKEN = 23040  # SmolLM2-135M KV in bf16: 30 layers x 2 (K,V) x 3 heads x 64 dims x 2 bytes


def _workload(quick: bool, pattern: str) -> dict[str, Any]:
    return dict(pattern=pattern, num_agents=3, num_rounds=2, system_tokens=256 if quick else 512,
                context_tokens=512 if quick else 768, question_tokens=32, output_tokens=16)


def _run_system(pool: Any, policy: str, params: dict[str, Any], inputs: list[Any], *,
                first_batch: list[Any] | None = None) -> dict[str, Any]:
    """One system on one batch, from cold caches (or after ``first_batch`` when given)."""
    from examples.workloads import prefix_sweep
    from helium_lc import HeliumChatModel, HeliumConfig, accelerate
    from helium_lc.runtime.scheduler import scheduler_for
    from helium_lc.schedule import lower_bound_tokens

    pool.reset_prefix_cache()
    sched = scheduler_for(pool)
    sched.forget_cache_model()
    llm = HeliumChatModel(pool=pool, max_tokens=params["output_tokens"])
    # "helium-no-gate": helium's order and row-major priorities without the KV row gate
    config = (HeliumConfig(policy="helium", row_gate=False, prompt_cache=False) if policy == "helium-no-gate"
              else HeliumConfig(policy=policy, prompt_cache=False))
    fast = accelerate(prefix_sweep.build(llm, **params), config=config)
    if first_batch is not None:
        asyncio.run(fast.abatch(first_batch))
    prompts: list[tuple[int, ...]] = []
    real_agenerate = pool.agenerate

    async def recording(request: Any, *a: Any, **kw: Any) -> Any:
        prompts.append(request.prompt_token_ids)
        return await real_agenerate(request, *a, **kw)

    pool.reset_stats()
    pool.agenerate = recording  # instance attribute: records what the scheduler sends
    try:
        t0 = time.perf_counter()
        asyncio.run(fast.abatch(inputs))
        wall_s = time.perf_counter() - t0
    finally:
        del pool.agenerate
    st = pool.stats()
    run = fast.last_run_stats()
    return {"wall_s": wall_s, "prompt": st["num_prompt_tokens"], "cached": st["num_cached_prompt_tokens"],
            "computed": st["num_computed_prompt_tokens"], "bound": lower_bound_tokens(prompts, pool.block_size),
            "planning_ms": 1000 * run.planning_s, "warm": run.num_warm_requests}


def _regime(name: str, pool: Any, params: dict[str, Any], inputs: list[Any], repeats: int,
            policies: tuple[str, ...], first_batch: list[Any] | None = None) -> dict[str, dict[str, float]]:
    rows: dict[str, list[dict[str, Any]]] = {p: [] for p in policies}
    _run_system(pool, policies[0], params, inputs[:2])  # untimed: the engine's first batches are slow
    for r in range(repeats):
        order = policies if r % 2 == 0 else tuple(reversed(policies))
        for policy in order:
            rows[policy].append(_run_system(pool, policy, params, inputs, first_batch=first_batch))
    med = {p: {k: statistics.median(x[k] for x in v) for k in v[0]} for p, v in rows.items()}
    base = med.get("fifo")
    print(f"\n== regime {name}: {len(inputs)} rows, {pool.num_workers} worker(s), KV "
          f"{pool.workers[0].kv_capacity_tokens} tokens/worker, {repeats} repeat(s), medians")
    print(f"{'policy':<16}{'wall s':>8}{'x fifo':>8}{'prompt':>8}{'cached':>8}{'computed':>9}{'bound':>7}"
          f"{'comp/bnd':>9}{'comp x fifo':>12}{'plan ms':>8}{'warm':>5}")
    for p, m in med.items():
        wx = m["wall_s"] / base["wall_s"] if base else float("nan")
        cx = m["computed"] / base["computed"] if base else float("nan")
        print(f"{p:<16}{m['wall_s']:8.2f}{wx:8.2f}{m['prompt']:8.0f}{m['cached']:8.0f}{m['computed']:9.0f}"
              f"{m['bound']:7.0f}{m['computed'] / max(1, m['bound']):9.2f}{cx:12.2f}{m['planning_ms']:8.1f}"
              f"{m['warm']:5.0f}")
    sys.stdout.flush()
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="regimes a and b, fewer rows, 1 repeat (~2 min)")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--regimes", default=None, help="subset of 'abcd'")
    ap.add_argument("--pattern", default="debate", choices=("debate", "mapred"))
    ap.add_argument("--kv-fraction", type=float, default=0.3,
                    help="regimes b and c: KV cache as a fraction of the batch's unique prompt tokens")
    ap.add_argument("--policies", default=None, help="comma-separated subset of " + ",".join(POLICIES))
    ap.add_argument("--set", action="append", default=[], metavar="NAME=TOKENS",
                    help="override a workload length, e.g. --set context_tokens=768 (repeatable)")
    args = ap.parse_args()

    from examples.workloads import prefix_sweep
    from helium_lc import WorkerPool

    quick = args.quick
    rows = args.rows or (8 if quick else 12)
    repeats = args.repeats or (1 if quick else 2)
    regimes = args.regimes or ("ab" if quick else "abcd")
    policies = tuple(args.policies.split(",")) if args.policies else (
        ("fifo", "helium", "lspf") if quick else POLICIES)
    params = _workload(quick, args.pattern)
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in params or name == "pattern":
            ap.error(f"--set {item}: the name must be one of {sorted(k for k in params if k != 'pattern')}")
        params[name] = int(value)
    gen = {k: v for k, v in params.items() if k not in ("num_agents", "num_rounds")}
    inputs = prefix_sweep.make_inputs(rows, seed=1, **gen)
    second = prefix_sweep.make_inputs(rows, seed=2, **gen)
    print(f"workload: prefix_sweep {params}, {rows} rows; policies {policies}")

    # The longest prompt (a last-round debate turn: system + context + question + the agent's
    # earlier answers and the others' answers), with room for the output, rounded up to 256.
    turns = params["num_rounds"] if params["pattern"] == "debate" else 1
    longest = (params["system_tokens"] + params["context_tokens"] + params["question_tokens"] + 64
               + turns * params["num_agents"] * (params["output_tokens"] + 24))
    max_model_len = -(-(longest + params["output_tokens"]) // 256) * 256
    unique = None  # the batch's unique prompt tokens: fifo's lower bound in regime a
    if "a" in regimes:
        with WorkerPool(num_workers=1, kv_cache_gib=0.5, max_model_len=4096) as pool:
            med = _regime("a (KV holds the batch)", pool, params, inputs, repeats, policies)
            unique = int(med[policies[0]]["bound"])
    if "b" in regimes or "c" in regimes:
        if unique is None:  # estimate: the system prompt once, each row's context and turns
            unique = params["system_tokens"] + rows * (longest - params["system_tokens"])
        # a fraction of the batch's unique prompt tokens, but at least one longest prompt (vLLM needs it)
        kv_tokens = max(max_model_len + 256, int(args.kv_fraction * unique))
        print(f"regimes b/c: KV {kv_tokens} tokens = {kv_tokens / unique:.0%} of the batch's {unique} unique "
              f"prompt tokens; max_model_len {max_model_len}")
        with WorkerPool(num_workers=1, kv_cache_gib=kv_tokens * BYTES_PER_TOKEN / 2**30,
                        max_model_len=max_model_len) as pool:
            if "b" in regimes:
                _regime(f"b (KV ~{args.kv_fraction:.0%} of the batch)", pool, params, inputs, repeats, policies)
            if "c" in regimes:
                _regime("c (second batch, small KV)", pool, params, second, repeats, policies, first_batch=inputs)
    if "d" in regimes:
        with WorkerPool(num_workers=2, kv_cache_gib=0.5, max_model_len=4096) as pool:
            _regime("d (2 workers)", pool, params, inputs, repeats, policies)


if __name__ == "__main__":
    main()
