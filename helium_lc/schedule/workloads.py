"""Synthetic batches shaped like the paper's workflows, for the simulator and benchmarks.

Token ids are made unique per piece of content (system prompts, questions, outputs), so
the only prefix sharing is the sharing the workflow really has.

- ``mapred``: ``num_experts`` experts, each with its own system prompt, answer every
  row's question; a summariser per row reads all the experts' answers.
- ``debate``: ``num_agents`` agents share one system prompt; round 1 each answers the
  row's question; in every later round each agent reads the whole conversation so far.

Example:
    >>> calls = mapred(num_rows=2, num_experts=3, system_tokens=8, question_tokens=4, output_tokens=2)
    >>> len(calls), calls[-1].deps
    (8, ('r1/e0', 'r1/e1', 'r1/e2'))
"""

from __future__ import annotations

from helium_lc.schedule.snapshot import PendingCall


class _Tokens:
    """Hands out fresh runs of token ids, so unrelated content never shares a prefix."""

    def __init__(self, start: int = 1000) -> None:
        self._next = start

    def run(self, n: int) -> tuple[int, ...]:
        out = tuple(range(self._next, self._next + n))
        self._next += n
        return out


def mapred(num_rows: int, num_experts: int = 14, system_tokens: int = 256, question_tokens: int = 64,
           output_tokens: int = 32) -> list[PendingCall]:
    """MapReduce: experts in parallel, then a summariser per row (see module doc)."""
    tok = _Tokens()
    systems = [tok.run(system_tokens) for _ in range(num_experts)]
    summary_sys = tok.run(system_tokens)
    calls: list[PendingCall] = []
    seq = 0
    for r in range(num_rows):
        q = tok.run(question_tokens)
        ids = []
        outs: list[int] = []
        for e, s in enumerate(systems):
            cid = f"r{r}/e{e}"
            calls.append(PendingCall(cid, s + q, template_key=(s, "question"), row=r,
                                     est_output_tokens=output_tokens, arrival_seq=seq, call_site=f"expert{e}"))
            seq += 1
            ids.append(cid)
            outs.extend(tok.run(output_tokens))
        calls.append(PendingCall(f"r{r}/sum", summary_sys + q + tuple(outs),
                                 template_key=(summary_sys, "question", "answers"), row=r, deps=tuple(ids),
                                 est_output_tokens=output_tokens, ready=False, arrival_seq=seq,
                                 call_site="summary"))
        seq += 1
    return calls


def debate(num_rows: int, num_agents: int = 3, num_rounds: int = 2, system_tokens: int = 256,
           question_tokens: int = 64, output_tokens: int = 32, role_tokens: int = 8) -> list[PendingCall]:
    """Debate: every round extends the same conversation (see module doc)."""
    tok = _Tokens()
    system = tok.run(system_tokens)
    roles = [tok.run(role_tokens) for _ in range(num_agents)]
    calls: list[PendingCall] = []
    seq = 0
    for r in range(num_rows):
        convo = system + tok.run(question_tokens)
        prev: tuple[str, ...] = ()
        for rnd in range(num_rounds):
            ids = []
            key_mid = ("question",) + tuple(f"round{k}" for k in range(rnd))
            for a, role in enumerate(roles):
                cid = f"r{r}/round{rnd}/a{a}"
                calls.append(PendingCall(cid, convo + role, template_key=(system,) + key_mid + (role,), row=r,
                                         deps=prev, est_output_tokens=output_tokens, ready=not prev,
                                         arrival_seq=seq, call_site=f"round{rnd}/agent{a}"))
                seq += 1
                ids.append(cid)
            convo = convo + tok.run(num_agents * output_tokens)
            prev = tuple(ids)
    return calls
