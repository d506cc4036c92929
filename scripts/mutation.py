"""Mutation testing, per module, with only that module's tests.

Usage (from the project root, with the project's venv):

    python scripts/mutation.py metrics                 # mutate, test, report
    python scripts/mutation.py metrics protocol --json out.json
    python scripts/mutation.py run.runner --list       # the mutants, not run
    python scripts/mutation.py metrics --only score_turn --show-killed

``scripts/mutation.yaml`` maps each *target* to its source file, the functions (and module
constants) that are mutated, the test files that run against each mutant, and the mutants
marked equivalent (with a reason). A mutant is one small change at a meaningful spot: a
comparison or its boundary, ``and``/``or``, a dropped ``not``, an arithmetic operator, a number
or boolean constant, ``min``/``max`` and ``any``/``all``, an ``if`` forced true or false,
``str.replace`` of the first occurrence only, a call statement, ``continue`` or ``break`` removed. Error messages, f-strings, logging calls, docstrings,
annotations, decorators and default values are left alone: a test that pins the wording of a
message is not what the score should reward.

How one mutant is tested: the project is copied once into a temporary *shadow* folder (the files
git knows, plus a ``shared`` link beside it as in a checkout); the script imports the project and
pytest there once; for each mutant it writes the mutated file into the shadow (for the tests
that start subprocesses) and forks a child that swaps the mutated function's code object into the
live function (``__code__``: every importer sees it) and runs ``pytest -x`` on the target's tests.
A failing run *kills* the mutant; a passing one lets it *survive*; a run past the time limit
(``--timeout-factor`` times the clean run, plus 10 s) counts as killed (``timeout``). A mutant that
cannot be compiled or swapped in is *incompetent* and not counted. The score is
killed / (killed + survived), equivalent mutants excluded.

The report ends with a diff of every surviving mutant; each carries an id (``scope:hash``),
stable across edits elsewhere in the file, to mark it equivalent in ``scripts/mutation.yaml``
(``equivalent: {id: reason}``). ``--jobs N`` runs N workers, each with its own shadow.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import difflib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).resolve().with_name("mutation.yaml")
# -x: the first failure kills; plain asserts: no rewriting (a pass/fail is all that is read), 3x faster
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "--assert=plain"]
KILLING_EXIT_CODES = {1, 2}  # tests failed; errors during collection (the mutant broke an import)
PATCH_FAILED = 97


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    """One unit of mutation: a source file, what in it is mutated, and the tests run against it."""

    name: str
    file: str
    tests: list[str]
    scope: list[str] | None = None  # qualnames of functions/methods/classes; None: every function
    constants: list[str] = field(default_factory=list)  # module-level NAME = <number or bool>
    equivalent: dict[str, str] = field(default_factory=dict)  # mutant id -> why it cannot be killed
    warm: list[str] = field(default_factory=list)  # modules imported once before forking


def load_targets(path: Path) -> dict[str, Target]:
    """The targets of a mutation config file, each validated."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"{path}: cannot read the mutation config ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("targets"), dict):
        raise SystemExit(f"{path}: expected a mapping with a 'targets' mapping")
    targets = {}
    for name, spec in raw["targets"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("file"), str) or not spec.get("tests"):
            raise SystemExit(f"{path}: target {name!r} needs 'file' and 'tests'")
        unknown = set(spec) - {"file", "tests", "scope", "constants", "equivalent", "warm"}
        if unknown:
            raise SystemExit(f"{path}: target {name!r} has unknown keys {sorted(unknown)}")
        equivalent = spec.get("equivalent") or {}
        if not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in equivalent.items()):
            raise SystemExit(f"{path}: target {name!r}: every equivalent mutant needs a reason")
        targets[name] = Target(name=name, file=spec["file"], tests=list(spec["tests"]), scope=spec.get("scope"),
                               constants=list(spec.get("constants") or []), equivalent=dict(equivalent),
                               warm=list(spec.get("warm") or []))
    return targets


# --------------------------------------------------------------------------------------------
# Mutants
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    """One change: the source bytes ``[start, end)`` replaced by ``replacement``."""

    id: str
    target: str
    scope: str  # qualname of the top-level function/method, or "NAME" of a module constant
    operator: str
    line: int
    start: int
    end: int
    original: str
    replacement: str

    def apply(self, source: bytes) -> bytes:
        return source[: self.start] + self.replacement.encode() + source[self.end :]

    def describe(self) -> str:
        return f"{self.operator}: {_one_line(self.original)!r} -> {_one_line(self.replacement)!r}"


def _one_line(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_COMPARE_SWAPS: dict[type, list[type]] = {
    ast.Lt: [ast.LtE, ast.GtE], ast.LtE: [ast.Lt, ast.Gt], ast.Gt: [ast.GtE, ast.LtE], ast.GtE: [ast.Gt, ast.Lt],
    ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq], ast.Is: [ast.IsNot], ast.IsNot: [ast.Is],
    ast.In: [ast.NotIn], ast.NotIn: [ast.In],
}
_BINOP_SWAPS: dict[type, list[type]] = {
    ast.Add: [ast.Sub], ast.Sub: [ast.Add], ast.Mult: [ast.Div], ast.Div: [ast.Mult],
    ast.FloorDiv: [ast.Div], ast.Mod: [ast.FloorDiv],
}
_NAME_SWAPS = {"min": "max", "max": "min", "any": "all", "all": "any"}
_QUIET_CALLS = {"logger", "logging", "warnings", "print", "log"}  # calls whose arguments are not behaviour


def _is_quiet_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    while isinstance(func, ast.Attribute):
        func = func.value
    return isinstance(func, ast.Name) and func.id in _QUIET_CALLS


class _Finder(ast.NodeVisitor):
    """Collects (node span, operator, replacement text) inside one function body."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.AST, str, str]] = []

    def add(self, node: ast.AST, operator: str, replacement: ast.AST | str, parenthesize: bool = False) -> None:
        text = replacement if isinstance(replacement, str) else ast.unparse(replacement)
        self.found.append((node, operator, f"({text})" if parenthesize else text))

    # leave alone: text and diagnostics
    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return

    def visit_Raise(self, node: ast.Raise) -> None:
        return

    def visit_Assert(self, node: ast.Assert) -> None:
        return

    def visit_Call(self, node: ast.Call) -> None:
        if _is_quiet_call(node):
            return
        if isinstance(node.func, ast.Name) and node.func.id in _NAME_SWAPS:
            self.add(node.func, "name", _NAME_SWAPS[node.func.id])
        if (isinstance(node.func, ast.Attribute) and node.func.attr == "replace" and len(node.args) == 2
                and not node.keywords):  # str.replace(old, new) -> only the first occurrence
            mutated = copy.deepcopy(node)
            mutated.args.append(ast.Constant(1))
            self.add(node, "first only", mutated)
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            for swap in _COMPARE_SWAPS.get(type(op), []):
                mutated = copy.deepcopy(node)
                mutated.ops[i] = swap()
                self.add(node, "compare", mutated, parenthesize=True)
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        mutated = copy.deepcopy(node)
        mutated.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self.add(node, "boolean", mutated, parenthesize=True)
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self.add(node, "negation", node.operand, parenthesize=True)
        elif isinstance(node.op, ast.USub) and not isinstance(node.operand, ast.Constant):
            self.add(node, "sign", node.operand, parenthesize=True)
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        for swap in _BINOP_SWAPS.get(type(node.op), []):
            mutated = copy.deepcopy(node)
            mutated.op = swap()
            self.add(node, "arithmetic", mutated, parenthesize=True)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        for swap in _BINOP_SWAPS.get(type(node.op), []):
            mutated = copy.deepcopy(node)
            mutated.op = swap()
            self.add(node, "arithmetic", mutated)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self.add(node, "constant", repr(not value))
        elif isinstance(value, int):
            self.add(node, "constant", repr(value + 1))
            if value > 1:
                self.add(node, "constant", repr(value - 1))
        elif isinstance(value, float):
            self.add(node, "constant", repr(1.0 if value == 0 else value * 10 if abs(value) < 1 else value + 1))

    def visit_If(self, node: ast.If) -> None:
        self.add(node.test, "condition", "True")
        self.add(node.test, "condition", "False")
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.add(node.test, "condition", "True")
        self.add(node.test, "condition", "False")
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # a docstring
        if isinstance(node.value, ast.Call) and not _is_quiet_call(node.value):
            self.add(node, "statement", "pass")
        self.generic_visit(node)

    def visit_Continue(self, node: ast.Continue) -> None:
        self.add(node, "statement", "pass")

    def visit_Break(self, node: ast.Break) -> None:
        self.add(node, "statement", "pass")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for statement in node.body:  # not the decorators, the defaults or the annotations
            self.visit(statement)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.body)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """Every top-level function and method (through nested classes) with its qualname."""

    def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.AST]]:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield prefix + node.name, node
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, prefix + node.name + ".")

    yield from walk(tree.body, "")


def _in_scope(qualname: str, scope: list[str] | None) -> bool:
    if scope is None:
        return True
    return any(qualname == s or qualname.startswith(s + ".") for s in scope)


def generate_mutants(target: Target, source: bytes) -> list[Mutant]:
    """The mutants of ``target``'s file, in source order, each with a stable id."""
    tree = ast.parse(source)
    line_starts = [0]
    for line in source.split(b"\n"):
        line_starts.append(line_starts[-1] + len(line) + 1)

    def offset(line: int, col: int) -> int:  # ast columns are UTF-8 byte offsets
        return line_starts[line - 1] + col

    spans: list[tuple[str, ast.AST, str, str]] = []
    seen_scopes = set()
    for qualname, function in _functions(tree):
        if not _in_scope(qualname, target.scope):
            continue
        seen_scopes.update(s for s in target.scope or [] if _in_scope(qualname, [s]))
        finder = _Finder()
        finder.visit(function)
        spans.extend((qualname, node, operator, text) for node, operator, text in finder.found)
    missing = set(target.scope or []) - seen_scopes
    if missing:
        raise SystemExit(f"target {target.name!r}: no function or class {sorted(missing)} in {target.file}")
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            names = node.targets if isinstance(node, ast.Assign) else [node.target]
            for name in names:
                if isinstance(name, ast.Name) and name.id in target.constants and node.value is not None:
                    constants[name.id] = node.value
    for name in set(target.constants) - set(constants):
        raise SystemExit(f"target {target.name!r}: no module constant {name} in {target.file}")
    for name, value in constants.items():
        finder = _Finder()
        finder.visit(value)
        spans.extend((name, node, operator, text) for node, operator, text in finder.found)

    mutants: list[Mutant] = []
    occurrences: Counter = Counter()
    for scope, node, operator, text in spans:
        start, end = offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)
        original = source[start:end].decode()
        key = f"{scope}|{operator}|{_one_line(original, 10_000)}|{text}"
        occurrences[key] += 1
        digest = hashlib.sha1(f"{key}|{occurrences[key]}".encode()).hexdigest()[:8]
        mutants.append(Mutant(id=f"{scope}:{digest}", target=target.name, scope=scope, operator=operator,
                              line=node.lineno, start=start, end=end, original=original, replacement=text))
    mutants.sort(key=lambda m: (m.start, m.end, m.id))
    return mutants


def mutant_diff(mutant: Mutant, source: bytes, path: str) -> str:
    before = source.decode().splitlines(keepends=True)
    after = mutant.apply(source).decode().splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, f"a/{path}", f"b/{path}", n=1))


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    id: str
    target: str
    scope: str
    line: int
    change: str
    status: str  # killed | timeout | survived | equivalent | incompetent | error
    seconds: float
    reason: str = ""
    diff: str = ""


def make_shadow(root: Path) -> Path:
    """A copy of the project's files (those git knows) in a temporary folder, ``shared`` beside it."""
    base = Path(tempfile.mkdtemp(prefix="regiondial-mutation-"))
    shadow = base / "project"
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                                capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: everything but caches
        listed = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and not {"__pycache__", ".git", ".venv", ".hypothesis"} & set(p.relative_to(root).parts)]
    for name in filter(None, listed):
        src = root / name
        if src.is_file():
            dst = shadow / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    shared = (root.parent / "shared").resolve()
    if shared.is_dir():
        (base / "shared").symlink_to(shared, target_is_directory=True)
    return shadow


def _resolve(module: object, qualname: str) -> object:
    """The live function object of ``qualname`` in ``module`` (unwrapping descriptors)."""
    obj = module
    for part in qualname.split("."):
        namespace = vars(obj) if isinstance(obj, type) else obj.__dict__
        obj = namespace[part]
        if isinstance(obj, staticmethod | classmethod):
            obj = obj.__func__
        elif isinstance(obj, property):
            obj = obj.fget
        while hasattr(obj, "__wrapped__"):
            obj = obj.__wrapped__
    return obj


def _find_code(code, qualname: str):  # noqa: ANN001, ANN202 - code objects
    if code.co_qualname == qualname:
        return code
    for const in code.co_consts:
        if hasattr(const, "co_qualname"):
            found = _find_code(const, qualname)
            if found is not None:
                return found
    return None


def patch_in_memory(module: object, target: Target, mutant: Mutant, mutated: bytes) -> None:
    """Swap the mutated scope into the imported module (code object, or a constant's value)."""
    if mutant.scope in target.constants:
        tree = ast.parse(mutated)
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                names = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(n, ast.Name) and n.id == mutant.scope for n in names):
                    value = eval(compile(ast.Expression(node.value), module.__file__, "eval"), vars(module))  # noqa: S307
                    setattr(module, mutant.scope, value)
                    return
        raise RuntimeError(f"constant {mutant.scope} not found after mutation")
    code = compile(mutated, module.__file__, "exec", dont_inherit=True)
    new_code = _find_code(code, mutant.scope)
    if new_code is None:
        raise RuntimeError(f"no code object {mutant.scope} after mutation")
    _resolve(module, mutant.scope).__code__ = new_code


class Session:
    """A shadow copy with the project and pytest imported, forking one child per mutant."""

    def __init__(self, root: Path, keep: bool = False) -> None:
        self.root = root
        self.shadow = make_shadow(root)
        self.keep = keep
        sys.dont_write_bytecode = True
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutated file can keep its size and mtime second
        os.environ["PYTHONPATH"] = str(self.shadow)
        sys.path[:] = [str(self.shadow)] + [p for p in sys.path if Path(p or ".").resolve() != root.resolve()]
        os.chdir(self.shadow)
        import pytest  # noqa: F401 - imported once, before forking

    def close(self) -> None:
        os.chdir(self.root)
        if not self.keep:
            shutil.rmtree(self.shadow.parent, ignore_errors=True)

    def run_tests(self, target: Target, module: object, mutant: Mutant | None, mutated: bytes | None,
                  timeout: float | None, log: Path | None = None) -> tuple[int | None, float]:
        """Fork, swap the mutant in, run the tests; ``(pytest exit code or None on timeout, seconds)``."""
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 3
            try:
                os.setpgid(0, 0)  # its own group: a timeout kills the tests' subprocesses too
                out = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(out, 1)
                os.dup2(out, 2)
                if mutant is not None:
                    try:
                        patch_in_memory(module, target, mutant, mutated)
                    except Exception as exc:  # noqa: BLE001
                        print(f"cannot swap the mutant in: {exc!r}", flush=True)
                        os._exit(PATCH_FAILED)
                import pytest

                # a basetemp of its own: pytest prunes the default root's older numbered folders,
                # which would delete the temporary files of a test session running beside this tool
                basetemp = f"--basetemp={self.shadow.parent / 'pytest-tmp'}"
                code = int(pytest.main([*PYTEST_ARGS, basetemp, *target.tests]))
            except BaseException:  # noqa: BLE001
                code = 3
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status), time.monotonic() - started
            if timeout is not None and time.monotonic() - started > timeout:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None, time.monotonic() - started
            time.sleep(0.02)

    def run_target(self, target: Target, mutants: list[Mutant], *, timeout_factor: float,
                   report: callable, killed_before: frozenset[str] = frozenset()) -> list[Outcome]:
        import importlib

        for name in target.warm:
            importlib.import_module(name)
        module_name = target.file.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        module = importlib.import_module(module_name)
        if Path(module.__file__).resolve() != (self.shadow / target.file).resolve():
            raise SystemExit(f"{module_name} was imported from {module.__file__}, not from the shadow copy")
        path = self.shadow / target.file
        source = path.read_bytes()
        log = self.shadow.parent / "clean-run.log"
        code, seconds = self.run_tests(target, module, None, None, None, log)
        if code != 0:
            raise SystemExit(f"target {target.name!r}: the tests fail without any mutant (exit {code}); "
                             f"output:\n{log.read_text()[-3000:]}")
        timeout = timeout_factor * seconds + 10.0
        report(f"{target.name}: {len(mutants)} mutants; clean run {seconds:.1f} s, limit {timeout:.0f} s per mutant")
        outcomes = []
        try:
            for mutant in mutants:
                outcome = Outcome(id=mutant.id, target=target.name, scope=mutant.scope, line=mutant.line,
                                  change=mutant.describe(), status="", seconds=0.0)
                if mutant.id in target.equivalent:
                    outcome.status, outcome.reason = "equivalent", target.equivalent[mutant.id]
                elif mutant.id in killed_before:  # tests only added since: a killed mutant stays killed
                    outcome.status, outcome.reason = "killed", "(killed in the --since report)"
                else:
                    mutated = mutant.apply(source)
                    try:
                        compile(mutated, str(path), "exec", dont_inherit=True)
                    except SyntaxError as exc:
                        outcome.status, outcome.reason = "incompetent", f"does not compile: {exc.msg}"
                    else:
                        path.write_bytes(mutated)
                        try:
                            code, outcome.seconds = self.run_tests(target, module, mutant, mutated, timeout)
                        finally:
                            path.write_bytes(source)
                        outcome.status = {None: "timeout", 0: "survived", PATCH_FAILED: "incompetent"}.get(
                            code, "killed" if code in KILLING_EXIT_CODES else "error")
                        if outcome.status == "error":
                            outcome.reason = f"pytest exit code {code}"
                if outcome.status in ("survived", "error"):
                    outcome.diff = mutant_diff(mutant, source, target.file)
                outcomes.append(outcome)
                report(f"  {outcome.status:<11} {outcome.id:<40} L{outcome.line:<4} {outcome.change}")
        finally:
            path.write_bytes(source)
        return outcomes


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def summary(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    """Per target: counts by status and the score (killed + timeout over those plus survivors)."""
    rows: dict[str, dict[str, float]] = {}
    for o in outcomes:
        row = rows.setdefault(o.target, Counter())
        row[o.status] += 1
    out = {}
    for name, row in rows.items():
        killed = row["killed"] + row["timeout"]
        counted = killed + row["survived"]
        out[name] = {"mutants": sum(row.values()), "killed": killed, "survived": row["survived"],
                     "equivalent": row["equivalent"], "incompetent": row["incompetent"], "error": row["error"],
                     "score": round(100.0 * killed / counted, 1) if counted else float("nan")}
    return out


def print_report(outcomes: list[Outcome], *, show_killed: bool) -> None:
    for o in outcomes:
        if o.status in ("survived", "error") or (show_killed and o.status in ("killed", "timeout")):
            print(f"\n--- {o.status}: {o.id} (line {o.line}) {o.change} {o.reason}")
            print(o.diff, end="")
    table = summary(outcomes)
    print("\n| target | mutants | killed | survived | equivalent | incompetent | score |")
    print("|---|---|---|---|---|---|---|")
    for name, row in table.items():
        print(f"| {name} | {row['mutants']} | {row['killed']} | {row['survived']} | {row['equivalent']} | "
              f"{row['incompetent']} | {row['score']}% |")
    errors = [o for o in outcomes if o.status == "error"]
    if errors:
        print(f"\n{len(errors)} mutants ended with a pytest error (not counted): {[o.id for o in errors][:10]}")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _select(mutants: list[Mutant], only: list[str] | None) -> list[Mutant]:
    if not only:
        return mutants
    return [m for m in mutants if any(o == m.id or o == m.scope or m.scope.startswith(o + ".") for o in only)]


def _worker_command(args: argparse.Namespace, shard: int, out: Path) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), *args.targets, "--config", str(args.config),
               "--root", str(args.root), "--timeout-factor", str(args.timeout_factor),
               "--shard", f"{shard}/{args.jobs}", "--json", str(out), "--quiet"]
    for only in args.only or []:
        command += ["--only", only]
    if args.since:
        command += ["--since", str(args.since)]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", help="targets of the config ('all' for every one)")
    parser.add_argument("--config", type=Path, default=CONFIG, help="the mutation config (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project root (default: %(default)s)")
    parser.add_argument("--only", action="append", help="a mutant id or a function qualname (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--jobs", type=int, default=1, help="parallel workers, each with its own shadow copy")
    parser.add_argument("--timeout-factor", type=float, default=4.0,
                        help="a mutant's tests may take this many times the clean run, plus 10 s")
    parser.add_argument("--json", type=Path, help="write every outcome (and the summary) to this file")
    parser.add_argument("--show-killed", action="store_true", help="print the diffs of killed mutants too")
    parser.add_argument("--keep-shadow", action="store_true", help="leave the shadow copy behind (debugging)")
    parser.add_argument("--since", type=Path,
                        help="a previous --json report: its killed mutants (same id, so the same code) count as "
                             "killed without a run; valid only when tests were added, not changed, since")
    parser.add_argument("--shard", help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.root = args.root.resolve()
    args.config = args.config.resolve()

    targets = load_targets(args.config)
    names = list(targets) if args.targets == ["all"] else args.targets
    unknown = [n for n in names if n not in targets]
    if unknown:
        parser.error(f"unknown targets {unknown}; the config has {sorted(targets)}")
    plan = []
    for name in names:
        target = targets[name]
        source = (args.root / target.file).read_bytes()
        mutants = _select(generate_mutants(target, source), args.only)
        stale = set(target.equivalent) - {m.id for m in generate_mutants(target, source)}
        if stale and not args.quiet:
            print(f"warning: {name}: equivalent entries that match no mutant any more: {sorted(stale)}")
        if args.shard:
            k, n = map(int, args.shard.split("/"))
            mutants = mutants[k::n]
        plan.append((target, mutants))

    if args.list:
        for target, mutants in plan:
            for m in mutants:
                mark = " (equivalent)" if m.id in target.equivalent else ""
                print(f"{m.id:<44} L{m.line:<4} {m.describe()}{mark}")
            print(f"{target.name}: {len(mutants)} mutants")
        return 0

    killed_before: dict[str, frozenset[str]] = {}
    if args.since:
        previous = json.loads(args.since.read_text())["outcomes"]
        for name in names:
            killed_before[name] = frozenset(o["id"] for o in previous
                                            if o["target"] == name and o["status"] in ("killed", "timeout"))

    def report(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    # a terminated run still restores the shadow's file and removes the shadow (finally blocks)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    outcomes: list[Outcome] = []
    if args.jobs > 1:
        with tempfile.TemporaryDirectory(prefix="regiondial-mutation-jobs-") as tmp:
            outs = [Path(tmp) / f"shard{k}.json" for k in range(args.jobs)]
            workers = [subprocess.Popen(_worker_command(args, k, out)) for k, out in enumerate(outs)]
            codes = [w.wait() for w in workers]
            if any(codes):
                print(f"a worker failed (exit codes {codes})", file=sys.stderr)
                return 2
            for out in outs:
                outcomes += [Outcome(**o) for o in json.loads(out.read_text())["outcomes"]]
        order = {m.id: j for _, ms in plan for j, m in enumerate(ms)}
        outcomes.sort(key=lambda o: (names.index(o.target), order.get(o.id, 0)))
    else:
        session = Session(args.root, keep=args.keep_shadow)
        try:
            for target, mutants in plan:
                outcomes += session.run_target(target, mutants, timeout_factor=args.timeout_factor, report=report,
                                               killed_before=killed_before.get(target.name, frozenset()))
        finally:
            session.close()
    if args.json:
        args.json.write_text(json.dumps({"summary": summary(outcomes), "outcomes": [asdict(o) for o in outcomes]},
                                        indent=1))
    if not args.quiet:
        print_report(outcomes, show_killed=args.show_killed)
        print(f"\n{len(outcomes)} mutants in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
