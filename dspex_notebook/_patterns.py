"""User-supplied patterns, matched in linear time with bounded memory and bounded work.

Two kinds of pattern reach the server from callers:

* **globs** over variable names: the ``ListVariables`` pattern (and an export's
  ``filter_pattern``). :func:`glob_matcher` keeps :func:`fnmatch.fnmatchcase` semantics
  (``*``, ``?``, ``[seq]``, ``[!seq]``, whole name, case-sensitive) but translates the glob to
  RE2 itself: ``fnmatch`` compiles through Python's backtracking ``re`` and keeps up to 32,768
  compiled patterns of any length in an unbounded-size cache;
* **regular expressions**: the string constraint ``pattern`` (and an ``invalidate_pattern``).
  :func:`regex_matcher` has ``re.search`` semantics (unanchored) but runs on RE2, which never
  backtracks: ``^(a+)+$`` against ``"a" * 40 + "!"`` takes microseconds instead of freezing the
  event loop. RE2 has no backreferences, lookaround, atomic groups or possessive quantifiers;
  such patterns are refused with an error naming the construct (there is no fallback to ``re``).
  One semantic difference to know: ``$`` matches only at the very end (``re``'s ``$`` also
  matches before a final newline); write ``\\n?$`` for that.

Linear time is not enough on its own: RE2's cost is up to one step per program instruction per
input byte, about 20 ns each here, so a 1,000-instruction pattern against a 1 MiB string is
20 s. Every match is therefore charged ``program size × (bytes + 1)`` units: against the
request's budget (:mod:`dspex_notebook._budget`) and, per match, against
:data:`MAX_MATCH_WORK` (which also bounds client-side checks). Simple globs (``name``,
``prefix*``, ``*suffix``, ``*part*``, ``a*b``) are plain string operations and cost nothing.

Memory: compiled patterns live in one LRU of :data:`CACHE_ENTRIES` entries; each key is at
most :data:`MAX_PATTERN_LENGTH` characters and each RE2 object (program plus its DFA cache) is
capped at :data:`RE2_MAX_MEM` bytes, so the cache can never hold more than ~32 MiB. RE2's own
module-level cache (128 entries of up to 8 MiB) is bypassed on purpose.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import re2

from . import _budget
from ._errors import InvalidArgument, ResourceLimitExceeded, shorten

__all__ = [
    "MAX_PATTERN_LENGTH", "MAX_MATCH_WORK", "glob_matcher", "regex_matcher", "translate_glob",
]

#: longest glob or regex accepted, in characters
MAX_PATTERN_LENGTH = 1024
#: most work one regex match may take (program size × subject bytes): ≈ 40 ms at worst
MAX_MATCH_WORK = 2_000_000
#: compiled patterns kept (LRU)
CACHE_ENTRIES = 64
#: memory cap of one compiled pattern, program and DFA cache together (RE2's ``max_mem``)
RE2_MAX_MEM = 512 * 1024
#: units charged per program instruction for compiling a pattern (≈ 0.3 µs per instruction)
COMPILE_UNITS = 16

_re2: Any = re2._re2  # the RE2 class itself: one C call per match, no module cache in between
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH
_NO_MATCH = (-1, -1)


def _options(latin1: bool) -> Any:
    opts = re2.Options()
    opts.max_mem = RE2_MAX_MEM
    opts.log_errors = False  # RE2 would print every refused pattern to stderr
    opts.never_capture = True  # only "does it match" is asked: no submatch bookkeeping
    opts.dot_nl = latin1  # globs: '?' and '*' match any character, newline included
    if latin1:
        opts.encoding = re2.Options.Encoding.LATIN1
    return opts


_OPTS = {False: _options(False), True: _options(True)}
_GLOB_UTF8 = _options(False)
_GLOB_UTF8.dot_nl = True


class _Compiled:
    """One compiled RE2 program and what a match of it costs per byte."""

    __slots__ = ("regexp", "size")

    def __init__(self, regexp: Any) -> None:
        self.regexp = regexp
        self.size = max(1, int(regexp.ProgramSize()))


_cache: OrderedDict[tuple[str, str], _Compiled | str] = OrderedDict()
_cache_lock = threading.Lock()  # the notebook validates on two threads (kernel and IO)


def _compile(kind: str, source: str, opts: Any, key: str) -> _Compiled | str:
    """The compiled program for ``source`` (cached), or RE2's error message."""
    with _cache_lock:
        hit = _cache.get((kind, key))
        if hit is not None:
            _cache.move_to_end((kind, key))
            return hit
    try:
        data = source.encode("latin-1" if opts.encoding == re2.Options.Encoding.LATIN1 else "utf-8")
    except UnicodeEncodeError:
        return "the pattern is not valid Unicode (lone surrogate)"
    regexp = _re2.RE2(data, opts)
    if not regexp.ok():
        error = regexp.error()
        return error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    compiled = _Compiled(regexp)
    _budget.charge(compiled.size * COMPILE_UNITS, "compiling a pattern")
    with _cache_lock:
        _cache[(kind, key)] = compiled
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return compiled


def _check_length(pattern: Any, what: str) -> str:
    if not isinstance(pattern, str):
        raise InvalidArgument(f"{what} must be a string, got {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidArgument(
            f"{what} is {len(pattern):,} characters long (limit {MAX_PATTERN_LENGTH})"
        )
    return pattern


def _encode_subject(text: str) -> bytes:
    # surrogatepass: a lone surrogate (JSON allows "\ud800") becomes bytes that match nothing
    # instead of an exception deep inside validation
    return text.encode("utf-8", "surrogatepass")


def _spend(compiled: _Compiled, nbytes: int, what: str, per_match_cap: int | None) -> None:
    units = compiled.size * (nbytes + 1)
    if per_match_cap is not None and units > per_match_cap:
        raise ResourceLimitExceeded(
            f"{what}: a {nbytes:,}-byte value is too long to check against this pattern "
            f"(RE2 program of {compiled.size} instructions: at most "
            f"{per_match_cap // compiled.size - 1:,} bytes); shorten the value or simplify the pattern"
        )
    _budget.charge(units, what)


# ----------------------------------------------------------------------------------------------
# regular expressions

#: RE2's wording -> what the caller wrote, for the constructs Python's ``re`` has and RE2 lacks
_CONSTRUCTS = (
    ("invalid perl operator: (?=", "lookahead (?=...)"),
    ("invalid perl operator: (?!", "negative lookahead (?!...)"),
    ("invalid perl operator: (?<=", "lookbehind (?<=...)"),
    ("invalid perl operator: (?<!", "negative lookbehind (?<!...)"),
    ("invalid perl operator: (?>", "atomic group (?>...)"),
    ("invalid perl operator: (?P=", "named backreference (?P=name)"),
    ("invalid perl operator: (?P", "named backreference (?P=name)"),  # RE2 cuts the text here
    ("invalid perl operator: (?(", "conditional group (?(...)...)"),
    ("invalid perl operator: (?#", "comment group (?#...)"),
    ("invalid escape sequence: \\Z", "\\Z (RE2 writes end of text as \\z)"),
    ("bad repetition operator: *+", "possessive quantifier *+"),
    ("bad repetition operator: ++", "possessive quantifier ++"),
    ("bad repetition operator: ?+", "possessive quantifier ?+"),
    ("invalid repetition size", "a repetition count over 1000"),
    ("pattern too large", "a pattern too large to compile within RE2's memory limit"),
)


def _describe(error: str) -> str:
    """Why RE2 refused a pattern, in terms of what the caller wrote."""
    for prefix, construct in _CONSTRUCTS:
        if error.startswith(prefix):
            return (f"it uses {construct}, which RE2 does not support (RE2 has no backreferences,"
                    " lookaround, atomic groups or possessive quantifiers)")
    if error.startswith("invalid escape sequence: \\") and error[-1:].isdigit():
        return (f"it uses the backreference {error.rsplit(' ', 1)[-1]}, which RE2 does not "
                "support (RE2 has no backreferences, lookaround, atomic groups or possessive "
                "quantifiers)")
    return f"it is not a valid RE2 regular expression ({shorten(error)})"


def regex_matcher(pattern: str, what: str) -> Callable[[str], bool]:
    """A ``re.search``-like test for ``pattern``, run by RE2 in linear time.

    Parameters:
        pattern: the regular expression (RE2 syntax, at most :data:`MAX_PATTERN_LENGTH` chars).
        what: names the pattern in errors, e.g. ``"'email': constraint 'pattern'"``.

    Returns:
        ``match(text) -> bool``: whether the pattern matches anywhere in ``text``.

    Raises:
        InvalidArgument: the pattern is too long or uses a construct RE2 does not have
            (backreferences, lookaround, ...): the message names it.
        ResourceLimitExceeded: (from ``match``) the text is too long for this pattern's
            per-match work cap, or the request's work budget is spent.
    """
    _check_length(pattern, f"{what}: the pattern")
    compiled = _compile("regex", pattern, _OPTS[False], pattern)
    if isinstance(compiled, str):
        raise InvalidArgument(f"{what}: pattern {shorten(pattern)} is refused: {_describe(compiled)}")
    regexp = compiled.regexp

    def match(text: str) -> bool:
        data = _encode_subject(text)
        _spend(compiled, len(data), what, MAX_MATCH_WORK)
        return regexp.Match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH

    return match


# ----------------------------------------------------------------------------------------------
# globs

# tokens of a translated glob
_STAR, _ANY = "*", "?"
_Class = tuple[bool, tuple[tuple[int, int], ...]]  # (negated, ranges)


def _glob_tokens(pat: str) -> list[Any]:
    """The glob as tokens: ``"*"``, ``"?"``, a 1-char literal str, or a ``_Class``.

    Mirrors :func:`fnmatch.translate` (CPython 3.11-3.13) branch by branch, bracket quirks
    included (an unclosed ``[`` is literal, ``[z-a]`` is an empty range, ``-`` at either end
    is literal), so that this and ``fnmatch.fnmatchcase`` agree on every pattern.
    """
    out: list[Any] = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        i += 1
        if c == "*":
            if not out or out[-1] != _STAR:
                out.append(_STAR)
        elif c == "?":
            out.append(_ANY)
        elif c == "[":
            j = i
            if j < n and pat[j] == "!":
                j += 1
            if j < n and pat[j] == "]":
                j += 1
            while j < n and pat[j] != "]":
                j += 1
            if j >= n:
                out.append("[")
                continue
            out.append(_bracket(pat, i, j))
            i = j + 1
        else:
            out.append(c)
    return out


def _bracket(pat: str, i: int, j: int) -> Any:
    """``pat[i:j]`` (between ``[`` and ``]``) as a ``_Class``, ``"?"`` or None (never)."""
    if "-" not in pat[i:j]:
        chunks = [pat[i:j]]
    else:  # fnmatch's chunking: a '-' between two chunks makes a range
        chunks = []
        k = i + 2 if pat[i] == "!" else i + 1
        while True:
            k = pat.find("-", k, j)
            if k < 0:
                break
            chunks.append(pat[i:k])
            i = k + 1
            k = k + 3
        chunk = pat[i:j]
        if chunk:
            chunks.append(chunk)
        else:
            chunks[-1] += "-"
        for k in range(len(chunks) - 1, 0, -1):  # remove empty ranges (z-a)
            if chunks[k - 1][-1] > chunks[k][0]:
                chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
                del chunks[k]
    items: list[tuple[int, int]] = []
    last = len(chunks) - 1
    for idx, chunk in enumerate(chunks):
        if idx > 0:
            items.append((ord(chunks[idx - 1][-1]), ord(chunk[0])))
        lo = 1 if idx > 0 else 0
        hi = len(chunk) - 1 if idx < last else len(chunk)
        items.extend((ord(ch), ord(ch)) for ch in chunk[lo:hi])
    if not items:
        return (False, ())  # empty range: matches nothing
    negated = items[0] == (ord("!"), ord("!")) and (len(chunks) == 1 or len(chunks[0]) > 1)
    if negated:
        items = items[1:]
        if not items:
            return _ANY  # "[!]"-like: fnmatch turns a negated empty range into "any character"
    return (negated, tuple(items))


def _re2_escape(code: int) -> str:
    return f"\\x{{{code:x}}}"


def translate_glob(pattern: str, latin1: bool = False) -> str:
    """The RE2 source (to be matched whole, with ``dot_nl``) for a glob; ``latin1`` for the
    one-byte-per-character program used on ASCII names."""
    parts = []
    for tok in _glob_tokens(pattern):
        if tok == _STAR:
            parts.append(".*")
        elif tok == _ANY:
            parts.append(".")
        elif isinstance(tok, str):
            parts.append(_re2_escape(ord(tok)))
        else:
            negated, ranges = tok
            if not ranges:
                parts.append("[^\\x00-\\x{ff}]" if latin1 else "[^\\x00-\\x{10ffff}]")  # empty
                continue
            body = "".join(_re2_escape(lo) if lo == hi else f"{_re2_escape(lo)}-{_re2_escape(hi)}"
                           for lo, hi in ranges)
            parts.append(f"[{'^' if negated else ''}{body}]")
    return "".join(parts)


def _simple(tokens: list[Any]) -> Callable[[str], bool] | None:
    """A plain string test for globs made of literals and at most one inner ``*``."""
    if any(t == _ANY or not isinstance(t, str) for t in tokens):
        return None
    segments = "".join(tokens).split(_STAR)
    if len(segments) == 1:
        literal = segments[0]
        return lambda name: name == literal
    if len(segments) == 2:
        head, tail = segments
        if not tail:
            return lambda name: name.startswith(head)
        if not head:
            return lambda name: name.endswith(tail)
        least = len(head) + len(tail)
        return lambda name: len(name) >= least and name.startswith(head) and name.endswith(tail)
    if len(segments) == 3 and not segments[0] and not segments[2]:
        part = segments[1]
        return lambda name: part in name
    return None


def glob_matcher(pattern: str, key: Callable[[Any], str] | None = None) -> Callable[[Any], bool]:
    """A ``fnmatch.fnmatchcase``-compatible test for ``pattern``, in linear time.

    Parameters:
        pattern: the glob (at most :data:`MAX_PATTERN_LENGTH` characters); ``""`` and ``"*"``
            match everything.
        key: applied to each item before matching (e.g. ``lambda r: r.name``), so that
            ``filter(glob_matcher(p, key), items)`` selects items.

    Returns:
        ``match(item) -> bool``. One matcher spends from the current request's work budget
        (see the module docstring): use a fresh matcher per request.

    Raises:
        InvalidArgument: the pattern is not a string or is too long.
        ResourceLimitExceeded: (from ``match``) the request's work budget is spent.
    """
    _check_length(pattern, "pattern")
    tokens = _glob_tokens(pattern)
    if not tokens or tokens == [_STAR]:
        test: Callable[[str], bool] = _always
    else:
        test = _simple(tokens) or _automaton(pattern)
    if key is None:
        return test
    return lambda item: test(key(item))


def _always(name: str) -> bool:
    return True


def _automaton(pattern: str) -> Callable[[str], bool]:
    source = translate_glob(pattern)
    latin1 = None
    if pattern.isascii():  # ASCII names (all variable names are) match one byte per character
        latin1 = _compile("glob-latin1", translate_glob(pattern, True), _OPTS[True], pattern)
    utf8: list[Any] = []

    def compiled_for(name: str) -> tuple[_Compiled, bytes]:
        if latin1 is not None and name.isascii():
            assert isinstance(latin1, _Compiled)
            return latin1, name.encode("ascii")
        if not utf8:
            got = _compile("glob-utf8", source, _GLOB_UTF8, pattern)
            if isinstance(got, str):  # pragma: no cover - every translated glob compiles
                raise InvalidArgument(f"pattern {shorten(pattern)} cannot be matched: {got}")
            utf8.append(got)
        return utf8[0], _encode_subject(name)

    if isinstance(latin1, str):  # pragma: no cover - every translated glob compiles
        raise InvalidArgument(f"pattern {shorten(pattern)} cannot be matched: {latin1}")

    def match(name: str) -> bool:
        compiled, data = compiled_for(name)
        _spend(compiled, len(data), f"matching the pattern {shorten(pattern)}", None)
        return compiled.regexp.Match(_BOTH, data, 0, len(data))[0] != _NO_MATCH

    return match
