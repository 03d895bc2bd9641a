"""Per-call overhead of HeliumChatModel over direct AsyncLLM use, and the warm-vs-cold prefix effect.

Both paths run the same tokenized prompts on the same engine (one ``VLLMWorker`` inside a
``WorkerPool``): (1) ``AsyncLLM.generate`` awaited directly on the engine loop; (2)
``HeliumChatModel.ainvoke`` from the caller's loop (message conversion, chat template,
engine-loop hop, pool dispatcher, AIMessage building). Paths alternate over repeats; the
medians and their ratio are printed. Then one long shared prefix is timed cold vs warm.

Run:
    .venv/bin/python benchmarks/engine_overhead.py [--calls 24] [--repeats 3] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from langchain_core.messages import HumanMessage, SystemMessage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=24, help="sequential calls per path per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=16)
    args = ap.parse_args()

    from helium_lc import HeliumChatModel, WorkerPool
    from helium_lc.engine.types import SamplingSpec
    from helium_lc.engine.vllm_worker import to_vllm_sampling

    pool = WorkerPool(num_workers=1, kv_cache_gib=0.5, max_model_len=4096)
    worker = pool.workers[0]
    llm = HeliumChatModel(pool=pool, max_tokens=args.max_tokens)
    questions = [f"In one sentence, what is {i} times {i + 3}?" for i in range(args.calls)]
    system = "You are a concise math tutor."
    messages = [[SystemMessage(system), HumanMessage(q)] for q in questions]
    token_prompts = [llm.build_request(m)[0].prompt_token_ids for m in messages]
    params = to_vllm_sampling(SamplingSpec(max_tokens=args.max_tokens), stream=False)

    async def direct() -> float:
        from vllm.inputs import TokensPrompt
        t = time.perf_counter()
        for i, ids in enumerate(token_prompts):
            async for _ in worker._engine.generate(TokensPrompt(prompt_token_ids=list(ids)), params,
                                                   f"direct-{time.perf_counter_ns()}-{i}"):
                pass
        return time.perf_counter() - t

    async def helium() -> float:
        t = time.perf_counter()
        for m in messages:
            await llm.ainvoke(m)
        return time.perf_counter() - t

    # warm-up both paths once (compilation of kernels, caches)
    pool.engine_loop.run(direct())
    asyncio.run(helium())
    times: dict[str, list[float]] = {"direct AsyncLLM": [], "HeliumChatModel": []}
    for r in range(args.repeats):
        order = ["direct AsyncLLM", "HeliumChatModel"] if r % 2 == 0 else ["HeliumChatModel", "direct AsyncLLM"]
        for name in order:
            pool.reset_prefix_cache()
            dt = pool.engine_loop.run(direct()) if name == "direct AsyncLLM" else asyncio.run(helium())
            times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n== per-call overhead ({args.calls} sequential calls, max_tokens={args.max_tokens}, "
          f"{args.repeats} repeats, medians)")
    for k, v in med.items():
        print(f"{k:<18} {v:7.3f} s  ({1000 * v / args.calls:6.1f} ms/call)  runs={['%.3f' % x for x in times[k]]}")
    overhead = med["HeliumChatModel"] / med["direct AsyncLLM"] - 1
    print(f"overhead: {100 * overhead:+.1f}%  ({1000 * (med['HeliumChatModel'] - med['direct AsyncLLM']) / args.calls:+.2f} ms/call; target <= 5%)")

    long_system = "You are an expert analyst. Read the following notes carefully. " + \
        " ".join(f"Note {i}: the value of item {i} is {i * 7 % 13}." for i in range(120))
    prefix = pool.apply_chat_template([{"role": "system", "content": long_system}, {"role": "user", "content": "x"}])
    cold, warm = [], []
    for r in range(args.repeats):
        pool.reset_prefix_cache()
        req = pool.apply_chat_template([{"role": "system", "content": long_system},
                                        {"role": "user", "content": f"What is item {r}?"}])
        t = time.perf_counter()
        res_cold = pool.generate(req, SamplingSpec(max_tokens=1))
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        res_warm = pool.generate(req, SamplingSpec(max_tokens=1))
        warm.append(time.perf_counter() - t)
    print(f"\n== warm vs cold prefix ({len(prefix)}-token prompt, 1 output token, {args.repeats} repeats, medians)")
    print(f"cold {statistics.median(cold):.3f} s (cached {res_cold.num_cached_prompt_tokens} tokens)  "
          f"warm {statistics.median(warm):.3f} s (cached {res_warm.num_cached_prompt_tokens} tokens)  "
          f"speedup {statistics.median(cold) / statistics.median(warm):.1f}x")
    pool.shutdown()


if __name__ == "__main__":
    main()
