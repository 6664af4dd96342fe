"""Dropping syndicated copies of the same story, so wire re-publications do not inflate counts.

Fingerprint: a hash of the story's canonical form. Syndicated copies differ in exactly the
places this canonicalisation removes (case, punctuation, whitespace, URLs, a " - Reuters"
title suffix, a "NEW YORK (Reuters) -" dateline, a "Source: Reuters" tail), so they hash the
same, while any change of wording makes a different story. A similarity hash (simhash + LSH
bands) would also catch copies with edited sentences, but costs several Redis keys per
document and produces false merges of different stories that share boilerplate; for counting
sentiment a false merge (a lost document) is worse than a missed copy, so we stay exact on the
canonical form.

Only stories long enough to be a story are fingerprinted: two comments that both say "to the
moon $TSLA" are two opinions, not a copy (see :func:`story_fingerprint`).

:class:`DedupStore` keeps "first writer wins" state in Redis; see its docstring for the
redelivery rules.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from services.core.backends import redis_errors
from services.core.schemas import DocKind

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_AGENCIES = (
    r"reuters|ap|associated press|afp|bloomberg|dow jones|xinhua|新华社|business wire|businesswire"
    r"|pr newswire|prnewswire|globe newswire|globenewswire|cnbc|marketwatch|yahoo finance|"
    r"the wall street journal|wsj|financial times|ft|caixin|财新|bnn bloomberg|rttnews|benzinga|"
    r"seeking alpha|the motley fool|motley fool|investing\.com|zacks|barron'?s|nikkei|scmp|"
    r"south china morning post|中新网|新浪财经|东方财富网?|证券时报|第一财经|路透社?|彭博社?"
)
# "Apple beats estimates - Reuters", "... | Bloomberg", "... — CNBC", "...（路透）"
_TITLE_SUFFIX_RE = re.compile(
    rf"\s*(?:[-|–—:]\s*|[(（\[]\s*)(?:{_AGENCIES})(?:\.com)?\s*[)）\]]?\s*$", re.IGNORECASE)
# "NEW YORK, Nov 3 (Reuters) - ", "(Bloomberg) -- ", "LONDON (AP) — ", "北京（路透）- "
_DATELINE_RE = re.compile(
    rf"^[^()（）\n]{{0,80}}?[(（]\s*(?:{_AGENCIES})\s*[)）]\s*(?:-{{1,2}}|–|—|:)?\s*",
    re.IGNORECASE)
# "... Reporting by Jane Doe; Editing by ..." and "Source: Reuters" tails.
_TAIL_RE = re.compile(
    rf"\s*(?:\(?\s*reporting by .*|source:\s*(?:{_AGENCIES}).*|copyright .*|©.*)$",
    re.IGNORECASE | re.DOTALL)

# Shorter canonical text is never fingerprinted (short comments are opinions, not copies).
MIN_STORY_CHARS = 40


def canonical(text: str) -> str:
    """Case-, punctuation-, width- and whitespace-free form of ``text`` with URLs removed."""
    s = unicodedata.normalize("NFKC", text).lower()
    s = _URL_RE.sub(" ", s)
    # Every non-word character becomes a space, then spaces collapse: punctuation and
    # whitespace differences vanish; CJK characters are word characters and stay.
    s = re.sub(r"[\W_]+", " ", s)
    return s.strip()


def strip_source_marks(title: str, body: str) -> tuple[str, str]:
    """Remove agency suffixes from the title, the dateline and credit tail from the body."""
    t = title
    for _ in range(2):  # "Title - Reuters | Yahoo Finance"
        t = _TITLE_SUFFIX_RE.sub("", t)
    b = _DATELINE_RE.sub("", body.lstrip(), count=1)
    b = _TAIL_RE.sub("", b)
    return t, b


def story_fingerprint(kind: DocKind, title: str | None, body: str | None,
                min_chars: int = MIN_STORY_CHARS) -> str | None:
    """The story's dedup key, or ``None`` when it is too short to call two copies "the same story".

    News: title and body (without source marks). Comments: the text; short ones get ``None``.
    """
    t, b = strip_source_marks(title or "", body or "")
    ct, cb = canonical(t), canonical(b)
    story = f"{ct}\n{cb}" if ct and cb else (ct or cb)
    if len(story.replace(" ", "")) < min_chars and not (kind == "news" and ct and cb):
        return None
    digest = hashlib.blake2b(f"{kind}\n{story}".encode(), digest_size=16).hexdigest()
    return f"{kind[0]}{digest}"


@dataclass(frozen=True, slots=True)
class DedupVerdict:
    original_doc_id: str
    is_duplicate: bool
    redelivered: bool = False  # this doc_id had already claimed the fingerprint


class DedupStore:
    """"First writer wins" story registry in Redis, safe under redelivery.

    Keys (``window_s`` TTL each)::

        <prefix>:dedup:fp:<fingerprint>      string: doc_id of the first document with it
        <prefix>:dedup:dups:<original_id>    set: doc_ids of copies dropped in its favour

    ``check`` claims the fingerprint with ``SET NX GET EX`` (one atomic command, Redis >= 7.0):
    it returns the previous owner, so "am I first?" and "who was first?" cannot race. A
    redelivery of the *same* doc_id is not a duplicate: if the process crashed after claiming
    but before forwarding, the redelivered original must still go through. A copy is added to
    the original's set with ``SADD``, which is idempotent per copy, so a redelivered copy is
    not counted twice; the two commands need no transaction because both are idempotent and a
    crash between them is repaired by the redelivery (the verdict is the same the second time).
    The two keys are in different slots on purpose: no multi-key command touches both, so this
    runs unchanged on Redis Cluster.
    """

    def __init__(self, redis: Redis, prefix: str, window_s: int) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.redis = redis
        self.prefix = prefix
        self.window_s = int(window_s)

    def _fp_key(self, fingerprint: str) -> str:
        return f"{self.prefix}:dedup:fp:{fingerprint}"

    def _dups_key(self, doc_id: str) -> str:
        return f"{self.prefix}:dedup:dups:{doc_id}"

    async def check(self, fingerprint: str, doc_id: str) -> DedupVerdict:
        return (await self.check_many([(fingerprint, doc_id)]))[0]

    async def check_many(self, items: Sequence[tuple[str, str]]) -> list[DedupVerdict]:
        """``check`` for a batch, in order, in at most two round trips (claims, then the copy
        sets). Redis runs a pipeline's commands in order, so two copies of one story in the
        same batch resolve exactly as if checked one after the other: the first one wins."""
        if not items:
            return []
        with redis_errors("dedup check"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for fingerprint, doc_id in items:
                    pipe.set(self._fp_key(fingerprint), doc_id, nx=True, get=True,
                             ex=self.window_s)
                prevs = await pipe.execute()
            verdicts: list[DedupVerdict] = []
            copies: list[tuple[str, str]] = []
            for (_fp, doc_id), prev in zip(items, prevs, strict=True):
                if prev is None:
                    verdicts.append(DedupVerdict(doc_id, False))
                    continue
                original = prev.decode() if isinstance(prev, bytes) else str(prev)
                if original == doc_id:
                    verdicts.append(DedupVerdict(doc_id, False, redelivered=True))
                else:
                    verdicts.append(DedupVerdict(original, True))
                    copies.append((original, doc_id))
            if copies:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for original, doc_id in copies:
                        pipe.sadd(self._dups_key(original), doc_id)
                        pipe.expire(self._dups_key(original), self.window_s * 2)
                    await pipe.execute()
            return verdicts

    async def duplicates(self, doc_id: str) -> int:
        """How many distinct copies of ``doc_id``'s story were dropped (within the window)."""
        with redis_errors("dedup count"):
            return int(await self.redis.scard(self._dups_key(doc_id)))

    async def duplicates_many(self, doc_ids: Sequence[str]) -> dict[str, int]:
        """Copy counts for several originals in one round trip."""
        if not doc_ids:
            return {}
        with redis_errors("dedup count"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for d in doc_ids:
                    pipe.scard(self._dups_key(d))
                counts = await pipe.execute()
        return {d: int(c) for d, c in zip(doc_ids, counts, strict=True)}
