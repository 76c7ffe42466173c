"""The eight FuseChat-3.0 prompt sources on the Hugging Face Hub, and how each row becomes a ``Prompt``.

Every source is a :class:`HubSource`: Hub id, default split, domain, the columns its
mapping reads, and a ``build`` function turning one row into a ``Prompt`` (or into a
short reason why the row is skipped). Rows are read with ``datasets.load_dataset``,
either from the Hub or, when ``data_files`` is given, from local JSON/JSONL/Parquet
files with the same columns; the mapping is identical in both cases.

Column layouts (see ``SOURCES`` below for each source's mapping):

* ``ultrafeedback``  HuggingFaceH4/ultrafeedback_binarized: ``prompt``, ``prompt_id``.
* ``magpie-pro-dpo`` Magpie-Align/Magpie-Pro-DPO-100K-v0.1: ``instruction``, ``uuid``.
* ``helpsteer2``     nvidia/HelpSteer2: ``prompt`` (two rows per prompt: deduplicated).
  Multi-turn prompts carry earlier turns inline, separated by ``<extra_id_1>User`` /
  ``<extra_id_1>Assistant`` markers; those are split back into chat messages.
* ``openmathinstruct2`` nvidia/OpenMathInstruct-2: ``problem``, gold ``expected_answer``,
  ``problem_source`` (many rows per problem: deduplicated).
* ``leetcode``       greengerong/leetcode: ``content`` (markdown), ``python`` (reference
  solution), ``id``/``slug``/``title``/``difficulty``. Tests come from the examples in
  ``content``; see :func:`parse_leetcode` for the exact rule and what is skipped.
* ``sc2-exec``       bigcode/self-oss-instruct-sc2-exec-filter-50k: ``instruction``,
  ``response`` (tests = the reference response's assert block; see :func:`sc2_tests`).
* ``alpaca-gpt4-zh`` llamafactory/alpaca_gpt4_zh: ``instruction`` + optional ``input``.
* ``magpie-qwen2-pro-zh`` Magpie-Align/Magpie-Qwen2-Pro-200K-Chinese: ``instruction``.

Rows whose prompt text is empty, and code rows without usable tests, are skipped; the
caller (``fusedata.sources.load_source``) counts and reports them.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Union

from fusedata.errors import FusekitError
from fusedata.records import Message, Prompt

#: Appended to every maths prompt.
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
#: Appended to every code prompt.
CODE_INSTRUCTION = "Give your complete solution as a single fenced ```python code block."

#: What a mapping returns for one row: the prompt, or the reason the row is skipped.
Item = Union[Prompt, str]


def user(text: str) -> Message:
    return {"role": "user", "content": text}


def math_prompt(question: str) -> list[Message]:
    return [user(f"{question}\n\n{MATH_INSTRUCTION}")]


def code_prompt(task: str, entry_point: str | None) -> list[Message]:
    """A code task asking for one fenced python block, naming the function the tests call."""
    parts = [task]
    if entry_point:
        parts.append(f"The tests call `{entry_point}`, so your code must define it with exactly that name.")
    parts.append(CODE_INSTRUCTION)
    return [user("\n\n".join(parts))]


def missing_field_message(source: str, where: str, field: str, found: list[str]) -> str:
    return (
        f"source {source!r} ({where}): missing field {field!r}; "
        f"found fields: {', '.join(found) if found else '(none)'}"
    )


class RowView:
    """One input row plus where it came from, for typed access with clear errors."""

    def __init__(self, source: str, where: str, index: int, row: dict[str, Any]):
        self.source = source
        self.where = where
        self.index = index
        self.row = row

    def _value(self, field: str) -> Any:
        if field not in self.row:
            raise FusekitError(missing_field_message(self.source, self.where, field, list(self.row)))
        return self.row[field]

    def text(self, field: str) -> str | None:
        """The field as stripped text; None when it is null or blank. Non-text is an error."""
        value = self._value(field)
        if value is None:
            return None
        if not isinstance(value, str):
            raise FusekitError(
                f"source {self.source!r} ({self.where}): row {self.index}: field {field!r} "
                f"should be a string, got {type(value).__name__}"
            )
        value = value.strip()
        return value or None

    def optional_text(self, field: str) -> str | None:
        return self.text(field) if field in self.row else None

    def text_list(self, field: str) -> list[str] | None:
        """A list of strings (or one string, split into lines); None when empty."""
        value = self._value(field)
        if value is None:
            return None
        if isinstance(value, str):
            value = value.splitlines()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FusekitError(
                f"source {self.source!r} ({self.where}): row {self.index}: field {field!r} "
                f"should be a list of strings, got {type(value).__name__}"
            )
        lines = [v.strip() for v in value if v.strip()]
        return lines or None

    def meta(self, **columns: str) -> dict[str, Any]:
        """``{"source_row": index}`` plus each ``key=column`` whose value is a present scalar."""
        out: dict[str, Any] = {"source_row": self.index}
        for key, column in columns.items():
            value = self.row.get(column)
            if isinstance(value, (str, int, float, bool)) and value != "":
                out[key] = value
        return out


@dataclass(frozen=True)
class HubSource:
    """A prompt set on the Hub: where it lives and how its rows map onto ``Prompt``."""

    name: str
    hub_id: str
    split: str
    domain: str
    #: Columns the mapping needs; a file lacking one is rejected before any row is read.
    fields: tuple[str, ...]
    build: Callable[[RowView], Item]
    description: str
    kind: str = "hub"

    def items(
        self, data_files: str | list[str] | None = None, split: str | None = None
    ) -> Iterator[tuple[int, Item]]:
        dataset, where = open_rows(self.name, self.hub_id, self.split, data_files, split)
        columns = list(dataset.column_names or [])
        for field in self.fields:
            if field not in columns:
                raise FusekitError(missing_field_message(self.name, where, field, columns))
        for index, row in enumerate(dataset):
            yield index, self.build(RowView(self.name, where, index, row))


# --------------------------------------------------------------------------- reading rows

_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".lz4")


def _builder_for(source: str, files: list[str]) -> str:
    kinds = set()
    for path in files:
        stem = path.lower()
        for suffix in _COMPRESSION:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
        kind = _BUILDERS.get(os.path.splitext(stem)[1])
        if kind is None:
            raise FusekitError(
                f"source {source!r}: cannot read {path!r}: expected a .json, .jsonl or .parquet file"
            )
        kinds.add(kind)
    if len(kinds) > 1:
        raise FusekitError(f"source {source!r}: data_files mix JSON and Parquet files; pass one kind")
    return kinds.pop()


def data_file_list(source: str, data_files: str | os.PathLike | list) -> list[str]:
    files = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    if not files:
        raise FusekitError(f"source {source!r}: data_files is empty")
    paths = [os.fspath(f) for f in files]
    for path in paths:
        if not any(ch in path for ch in "*?[") and not os.path.exists(path):
            raise FusekitError(f"source {source!r}: data file not found: {path}")
    return paths


def open_rows(
    source: str,
    hub_id: str,
    default_split: str,
    data_files: str | list[str] | None,
    split: str | None,
) -> tuple[Any, str]:
    """Load the rows with ``datasets`` (imported here, so importing fusedata stays light).

    Returns the dataset and a human-readable "where" used in every error message.
    """
    import datasets

    if data_files is None:
        split = split or default_split
        where = f"hub {hub_id}, split {split}"
        try:
            return datasets.load_dataset(hub_id, split=split), where
        except Exception as exc:  # network, auth, unknown split...: one clear line for the user
            raise FusekitError(f"source {source!r} ({where}): could not load: {type(exc).__name__}: {exc}") from exc
    paths = data_file_list(source, data_files)
    builder = _builder_for(source, paths)
    where = ("file " if len(paths) == 1 else "files ") + ", ".join(paths)
    try:
        return datasets.load_dataset(builder, data_files=paths, split=split or "train"), where
    except Exception as exc:
        raise FusekitError(f"source {source!r} ({where}): could not read: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- instruction sources


def _ultrafeedback(r: RowView) -> Item:
    prompt = r.text("prompt")
    if prompt is None:
        return "empty prompt"
    return Prompt.make("instruction", r.source, [user(prompt)], meta=r.meta(source_id="prompt_id"))


def _magpie_pro_dpo(r: RowView) -> Item:
    instruction = r.text("instruction")
    if instruction is None:
        return "empty instruction"
    meta = r.meta(source_id="uuid", task_category="task_category", difficulty="difficulty")
    return Prompt.make("instruction", r.source, [user(instruction)], meta=meta)


_HS2_TURN = re.compile(r"<extra_id_1>(User|Assistant)[ \t]*\n?")


def helpsteer2_messages(prompt: str) -> list[Message]:
    """Split a HelpSteer2 multi-turn prompt into messages.

    Earlier turns are inline: ``first user text<extra_id_1>Assistant\\n...<extra_id_1>User\\n...``.
    When the markers do not give a clean user/assistant alternation ending with the
    user, the whole text is kept as one user message.
    """
    if "<extra_id_1>" not in prompt:
        return [user(prompt)]
    parts = _HS2_TURN.split(prompt)
    messages: list[Message] = []
    if parts[0].strip():
        messages.append(user(parts[0].strip()))
    for role, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": role.lower(), "content": content.strip()})
    roles = [m["role"] for m in messages]
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(messages))]
    ok = (
        messages
        and roles == expected
        and roles[-1] == "user"
        and all(m["content"] and "<extra_id_1>" not in m["content"] for m in messages)
    )
    return messages if ok else [user(prompt)]


def _helpsteer2(r: RowView) -> Item:
    prompt = r.text("prompt")
    if prompt is None:
        return "empty prompt"
    return Prompt.make("instruction", r.source, helpsteer2_messages(prompt), meta=r.meta())


# --------------------------------------------------------------------------- maths


def _openmathinstruct2(r: RowView) -> Item:
    problem = r.text("problem")
    if problem is None:
        return "empty problem"
    gold = r.text("expected_answer")
    if gold is None:
        return "empty expected_answer"
    meta = r.meta(problem_source="problem_source")
    return Prompt.make("math", r.source, math_prompt(problem), gold=gold, meta=meta)


# --------------------------------------------------------------------------- LeetCode

_MD_ESCAPE = re.compile(r"\\([\[\]_*`#|<>~\\-])")
_EXAMPLE = re.compile(r"\*\*Input:\*\*[ \t]*([^\n]+?)[ \t]*\n\s*\*\*Output:\*\*[ \t]*([^\n]+?)[ \t]*(?:\n|$)")
_PY_BLOCK = re.compile(r"```(?:python3?|py)[ \t]*\n(.*?)```", re.S)
_STRING_OR_WORD = re.compile(r"(\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')|\b(true|false|null)\b")
_ARG = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*(.*?)\s*$", re.S)
_IN_PLACE = re.compile(r"do not return anything|modify \S+ in-place instead", re.I)
_NODE_TYPES = re.compile(r"\b(ListNode|TreeNode|Node)\b")


def unescape_markdown(text: str) -> str:
    """Undo markdown backslash escapes (``\\[2,7\\]`` -> ``[2,7]``, ``\\_`` -> ``_``)."""
    return _MD_ESCAPE.sub(r"\1", text)


def _strip_export_space(value: Any) -> Any:
    """The dataset's markdown export ends every string literal with one extra space
    (``s = "abcabcbb "``); drop it, recursively."""
    if isinstance(value, str):
        return value[:-1] if value.endswith(" ") else value
    if isinstance(value, list):
        return [_strip_export_space(v) for v in value]
    return value


def leetcode_literal(text: str) -> Any:
    """An example value as Python: JSON words mapped, then ``ast.literal_eval``. Raises ValueError."""
    words = {"true": "True", "false": "False", "null": "None"}
    python = _STRING_OR_WORD.sub(lambda m: m.group(1) or words[m.group(2)], text.strip())
    try:
        value = ast.literal_eval(python)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not a literal: {text.strip()!r}") from exc
    if isinstance(value, tuple):  # "1, 2" is not one value
        raise ValueError(f"not a single value: {text.strip()!r}")
    return _strip_export_space(value)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and string literals."""
    pieces, depth, quote, start, i = [], 0, None, 0, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
        i += 1
    pieces.append(text[start:])
    return pieces


def leetcode_arguments(text: str) -> list[tuple[str, Any]]:
    """``nums = [2,7], target = 9`` -> ``[("nums", [2, 7]), ("target", 9)]``. Raises ValueError."""
    raw: list[list[str]] = []
    for piece in _split_top_level(text):
        m = _ARG.match(piece)
        if m:
            raw.append([m.group(1), m.group(2)])
        elif raw:  # a comma we could not place: glue it back onto the previous value
            raw[-1][1] += "," + piece
        else:
            raise ValueError(f"input is not 'name = value, ...': {text!r}")
    return [(name, leetcode_literal(value)) for name, value in raw]


def _function_params(fn: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool) -> tuple[int, int]:
    args = [*fn.args.posonlyargs, *fn.args.args]
    if method and args:
        args = args[1:]
    return len(args) - len(fn.args.defaults), len(args)


def _called_names(node: ast.AST) -> set[str]:
    """Names called as ``f(...)`` or ``self.f(...)`` anywhere under ``node``."""
    names = set()
    for n in ast.walk(node):
        if not isinstance(n, ast.Call):
            continue
        if isinstance(n.func, ast.Name):
            names.add(n.func.id)
        elif isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name) and n.func.value.id == "self":
            names.add(n.func.attr)
    return names


def reference_code(python: str) -> str:
    """The code of the ``python`` column: its first fenced python block (it is followed by prose)."""
    m = _PY_BLOCK.search(python)
    return m.group(1) if m else python


def leetcode_entry_point(python: str, n_args: int) -> str | None:
    """The function the examples call, from the reference ``python`` column.

    The column holds a fenced block (the first one is used) with plain functions, or
    methods of ``class Solution``. Candidates take exactly ``n_args`` arguments; among
    them, one not called by another function (helpers are) is preferred, first in order.
    """
    try:
        tree = ast.parse(reference_code(python))
    except SyntaxError:
        return None
    solution = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Solution"), None)
    body = solution.body if solution is not None else tree.body
    functions = [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    candidates = []
    for fn in functions:
        if fn.name.startswith("_"):
            continue
        required, total = _function_params(fn, method=solution is not None)
        if required <= n_args <= total:
            candidates.append(fn)
    if not candidates:
        return None
    called_by_others: set[str] = set()
    for other in functions:
        called_by_others |= _called_names(other) - {other.name}
    preferred = [fn for fn in candidates if fn.name not in called_by_others]
    return (preferred or candidates)[0].name


@dataclass(frozen=True)
class LeetCodeTask:
    method: str
    params: list[str]
    tests: str
    n_examples: int


def parse_leetcode(content: str, python: str) -> LeetCodeTask | str:
    """Build ``Solution().<method>(...)`` asserts from the examples of one problem.

    Rule (a problem that fails any step gets no tests; the reason string is returned):

    1. Unescape the markdown (``\\[``, ``\\]``, ``\\_``...), then take every
       ``**Input:** ... **Output:** ...`` pair; there must be at least one.
    2. Problems whose reference solution uses ``ListNode``/``TreeNode``/``Node`` (the
       inputs need converting), and problems that modify their input in place
       ("Do not return anything"), are skipped.
    3. Each input must read ``name = value, name = value`` and each value, and the
       output, must be a Python literal once ``true``/``false``/``null`` are mapped and
       the export's trailing space inside string literals is dropped; every example
       must use the same argument names.
    4. The method is the reference solution's function taking that many arguments
       (see :func:`leetcode_entry_point`); design problems (a class other than
       ``Solution`` with ``["Op", ...]`` inputs) have no such examples and are skipped.
    5. Assertions: float outputs compare with relative tolerance 1e-5; list outputs of
       problems that say "any order" compare sorted; everything else with ``==``.
    """
    text = unescape_markdown(content)
    examples = _EXAMPLE.findall(text)
    if not examples:
        return "no **Input:**/**Output:** examples"
    if _NODE_TYPES.search(reference_code(python)):
        return "needs ListNode/TreeNode inputs"
    if _IN_PLACE.search(text):
        return "modifies its input in place"
    parsed = []
    for given, output in examples:
        try:
            args = leetcode_arguments(given)
            expected = leetcode_literal(output)
        except ValueError:
            return "examples are not Python literals"
        parsed.append((args, expected))
    names = [name for name, _ in parsed[0][0]]
    if any([name for name, _ in args] != names for args, _ in parsed):
        return "examples use different argument names"
    method = leetcode_entry_point(python, len(names))
    if method is None:
        return f"no function taking {len(names)} arguments in the python solution"
    any_order = "any order" in text.lower()
    lines = []
    for args, expected in parsed:
        call = f"Solution().{method}({', '.join(repr(value) for _, value in args)})"
        if isinstance(expected, float):
            lines.append(f"assert abs({call} - {expected!r}) <= 1e-05 * max(1.0, abs({expected!r}))")
        elif any_order and isinstance(expected, list):
            lines.append(f"assert sorted({call}) == sorted({expected!r})")
        else:
            lines.append(f"assert {call} == {expected!r}")
    return LeetCodeTask(method=method, params=names, tests="\n".join(lines), n_examples=len(parsed))


def leetcode_messages(content: str, task: LeetCodeTask) -> list[Message]:
    signature = f"def {task.method}(self{''.join(', ' + p for p in task.params)}):"
    text = (
        f"{unescape_markdown(content).strip()}\n\n"
        "Solve this in Python 3. Keep this class name and method signature exactly:\n\n"
        f"```python\nclass Solution:\n    {signature}\n```\n\n{CODE_INSTRUCTION}"
    )
    return [user(text)]


def _leetcode(r: RowView) -> Item:
    content = r.text("content")
    python = r.text("python")
    if content is None:
        return "empty content"
    if python is None:
        return "no python reference solution"
    task = parse_leetcode(content, python)
    if isinstance(task, str):
        return task
    meta = r.meta(source_id="id", slug="slug", title="title", difficulty="difficulty")
    meta["entry_point"] = task.method
    return Prompt.make("code", r.source, leetcode_messages(content, task), tests=task.tests, meta=meta)


# --------------------------------------------------------------------------- self-oss-instruct sc2

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)
_PY_LANGS = {"", "python", "python3", "py"}
_BUILTIN_NAMES = set(dir(builtins))


def _top_level_names(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {
        n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


def _compiles(line: str) -> bool:
    try:
        ast.parse(line)
        return True
    except SyntaxError:
        return False


def _has_assert(code: str) -> bool:
    try:
        return any(isinstance(n, ast.Assert) for n in ast.walk(ast.parse(code)))
    except SyntaxError:
        return any(line.startswith("assert ") for line in code.splitlines())


@dataclass(frozen=True)
class Sc2Tests:
    tests: str
    entry_point: str | None


def sc2_tests(response: str) -> Sc2Tests | None:
    """The assert block of a self-oss-instruct reference response, without the solution.

    The test block is the last python code block containing an ``assert`` (after the
    ``[Tests]`` marker when the response has one). Its top-level statements are kept,
    except function/class definitions that are the solution itself: names also
    defined in the other code blocks, or referenced inside an assert. The entry point
    is the first name called inside an assert that the other blocks define (else the
    first called name that is neither a builtin nor defined by the tests). Returns None
    when there is no such block or nothing with an ``assert`` remains. A block that does
    not parse contributes only its one-line ``assert`` statements that compile alone.
    """
    blocks = [(m.start(), m.group(2)) for m in _FENCE.finditer(response) if m.group(1).lower() in _PY_LANGS]
    marker = response.rfind("[Tests]")
    searchable = [b for b in blocks if b[0] > marker] if marker >= 0 else blocks
    test_block = next((b for b in reversed(searchable) if _has_assert(b[1])), None)
    if test_block is None:
        return None
    solution_names: set[str] = set()
    for block in blocks:
        if block is not test_block:
            solution_names |= _top_level_names(block[1])
    code = test_block[1]
    try:
        tree = ast.parse(code)
    except SyntaxError:  # keep the one-line asserts that compile on their own
        lines = [line.rstrip() for line in code.splitlines() if line.startswith("assert ") and _compiles(line)]
        return Sc2Tests("\n".join(lines), None) if lines else None
    asserts = [n for n in ast.walk(tree) if isinstance(n, ast.Assert)]
    in_asserts = {n.id for a in asserts for n in ast.walk(a) if isinstance(n, ast.Name)}
    source_lines = code.splitlines()
    kept: list[ast.stmt] = []
    chunks: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
            node.name in solution_names or node.name in in_asserts
        ):
            solution_names.add(node.name)
            continue
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        kept.append(node)
        chunks.append("\n".join(source_lines[first - 1 : node.end_lineno]))
    kept_asserts = [n for node in kept for n in ast.walk(node) if isinstance(n, ast.Assert)]
    if not kept_asserts:
        return None
    defined_by_tests = {
        n.name for n in kept if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    called: list[str] = []
    for a in kept_asserts:
        for n in ast.walk(a):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id not in called:
                called.append(n.func.id)
    entry = next((name for name in called if name in solution_names), None)
    if entry is None:
        entry = next((n for n in called if n not in _BUILTIN_NAMES and n not in defined_by_tests), None)
    return Sc2Tests("\n".join(chunks), entry)


def _sc2_exec(r: RowView) -> Item:
    instruction = r.text("instruction")
    response = r.text("response")
    if instruction is None:
        return "empty instruction"
    found = sc2_tests(response or "")
    if found is None:
        return "no assert block in the reference response"
    meta = r.meta(source_id="id")
    if found.entry_point:
        meta["entry_point"] = found.entry_point
    return Prompt.make("code", r.source, code_prompt(instruction, found.entry_point), tests=found.tests, meta=meta)


# --------------------------------------------------------------------------- Chinese


def _alpaca_gpt4_zh(r: RowView) -> Item:
    instruction = r.text("instruction")
    if instruction is None:
        return "empty instruction"
    extra = r.optional_text("input")
    text = f"{instruction}\n\n{extra}" if extra else instruction
    return Prompt.make("zh", r.source, [user(text)], meta=r.meta())


def _magpie_qwen2_zh(r: RowView) -> Item:
    instruction = r.text("instruction")
    if instruction is None:
        return "empty instruction"
    meta = r.meta(source_id="uuid", task_category="task_category", difficulty="difficulty")
    return Prompt.make("zh", r.source, [user(instruction)], meta=meta)


HUB_SOURCES: tuple[HubSource, ...] = (
    HubSource(
        "ultrafeedback", "HuggingFaceH4/ultrafeedback_binarized", "train_prefs", "instruction",
        ("prompt",), _ultrafeedback,
        "UltraFeedback prompts (binarized); field `prompt`, id `prompt_id`.",
    ),
    HubSource(
        "magpie-pro-dpo", "Magpie-Align/Magpie-Pro-DPO-100K-v0.1", "train", "instruction",
        ("instruction",), _magpie_pro_dpo,
        "Magpie-Pro DPO 100K; field `instruction`, id `uuid`.",
    ),
    HubSource(
        "helpsteer2", "nvidia/HelpSteer2", "train", "instruction",
        ("prompt",), _helpsteer2,
        "HelpSteer2; field `prompt` (two rows per prompt, deduplicated; multi-turn split on <extra_id_1>).",
    ),
    HubSource(
        "openmathinstruct2", "nvidia/OpenMathInstruct-2", "train_1M", "math",
        ("problem", "expected_answer"), _openmathinstruct2,
        "OpenMathInstruct-2 (1M fair-downsampled split by default); `problem`, gold `expected_answer`.",
    ),
    HubSource(
        "leetcode", "greengerong/leetcode", "train", "code",
        ("content", "python"), _leetcode,
        "LeetCode problems; tests built from the **Input:**/**Output:** examples, method from `python`.",
    ),
    HubSource(
        "sc2-exec", "bigcode/self-oss-instruct-sc2-exec-filter-50k", "train", "code",
        ("instruction", "response"), _sc2_exec,
        "StarCoder2 self-OSS-instruct (exec-filtered); `instruction`, tests = the response's asserts.",
    ),
    HubSource(
        "alpaca-gpt4-zh", "llamafactory/alpaca_gpt4_zh", "train", "zh",
        ("instruction",), _alpaca_gpt4_zh,
        "Alpaca GPT-4 Chinese; `instruction` + optional `input`.",
    ),
    HubSource(
        "magpie-qwen2-pro-zh", "Magpie-Align/Magpie-Qwen2-Pro-200K-Chinese", "train", "zh",
        ("instruction",), _magpie_qwen2_zh,
        "Magpie Qwen2-Pro 200K Chinese; field `instruction`, id `uuid`.",
    ),
)
