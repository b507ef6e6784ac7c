"""The code's shape: layers, no import cycles, short modules and functions, Redis keys named
in one module, no module-level state, a producer that stays light.

The layer order is written once, here and in the README: a module may import from its
own package (without cycles) and from packages of lower layers, never from a higher
layer or from another package of its own layer. Imports inside functions count.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulator import stack

from . import structure_checks as check
from .conftest import SimAccount

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("worker", "tasks", "cli", "httpapi", "simulator", "voicemail_worker")

# Lowest first. Packages on one line are peers: neither may import the other.
LAYERS: list[tuple[str, ...]] = [
    ("simulator", "worker.core"),
    ("worker.api",),
    ("worker.store", "worker.coordination"),
    ("worker.engine",),
    ("worker.queue",),
    ("worker",),  # the package itself: `celery -A worker` installs the worker side
    ("tasks",),
    # The row readers are a leaf that both the CLI and the HTTP API read bulk bodies with.
    ("cli.row_files",),
    ("httpapi",),  # below cli: `voicemail serve` and `voicemail apikeys` import it
    ("cli", "voicemail_worker"),  # the command line; the API under a name hosts don't use
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = project_modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> Iterator[str]:
    if node.level:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    for alias in node.names:
        # `from . import lua` imports a module; `from .app import app` a name in one.
        candidate = f"{base}.{alias.name}"
        yield candidate if candidate in MODULES else base


def imports_of(module: str, path: Path) -> set[str]:
    """Project modules that `module` imports anywhere in its text (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.update(_resolve(module, path, node))
    return {name for name in found if name.split(".")[0] in PACKAGES and name != module}


GRAPH = {module: imports_of(module, path) for module, path in MODULES.items()}


def layer_of(module: str) -> str:
    """The longest layer name that is `module` or a package holding it."""
    matches = [name for name in RANK if module == name or module.startswith(name + ".")]
    assert matches, f"{module} is in no layer: add its package to LAYERS"
    return max(matches, key=len)


def test_every_import_points_down_the_layers() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        mine = layer_of(module)
        for target in targets:
            theirs = layer_of(target)
            if theirs != mine and RANK[theirs] >= RANK[mine]:
                wrong.append(f"{module} imports {target} ({mine} may not use {theirs})")
    assert not wrong, "\n".join(sorted(wrong))


def test_only_the_worker_command_installs_the_worker_side() -> None:
    """`worker` (its `app` attribute) and `worker.queue.worker_signals` wire a worker process:
    `celery -A worker worker` loads them, no module of ours does."""
    wiring = {"worker", "worker.queue.worker_signals"}
    users = sorted(m for m, targets in GRAPH.items() if wiring & targets and m not in wiring)
    assert users == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_checks_can_fail() -> None:
    """The cycle finder and the layer map catch what they are there to catch."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert RANK[layer_of("worker.api.client")] < RANK[layer_of("worker.queue.app")]
    assert layer_of("worker.coordination.ordering") == "worker.coordination"
    # Function-level imports are in the graph: the CLI imports the producer API that way.
    assert "tasks.producer" in GRAPH["cli.jobs"]


def test_modules_are_short() -> None:
    files = [*MODULES.values(), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py")]
    long = {
        str(p.relative_to(ROOT)): n
        for p in files
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_each_package_says_what_it_holds_and_may_import() -> None:
    missing = []
    for module, path in MODULES.items():
        if path.name != "__init__.py" or module == "simulator":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if "import" not in doc.lower():
            missing.append(module)
    assert not missing, f"package docstrings that do not say what they may import: {missing}"


def test_lua_scripts_live_in_files_beside_their_module() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in MODULES.values()
        if "redis.call(" in path.read_text(encoding="utf-8")
    ]
    assert not offenders, f"Lua inside Python modules: {offenders}"
    assert list((ROOT / "worker").rglob("*.lua"))


PRODUCER_PROBE = """
import json, sys
from celery import current_app, signals
from kombu.transport import redis as kombu_redis
before = (current_app._get_current_object(), kombu_redis.Channel._create_client,
          kombu_redis.QoS.restore_unacked, len(signals.before_task_publish.receivers or []))
from tasks import enqueue_update, poll, wait
from tasks.bulk import bulk_status, submit_bulk
job = enqueue_update(sys.argv[1], True, "structure@example.com")
status = wait(job, timeout=30)
after = (current_app._get_current_object(), kombu_redis.Channel._create_client,
         kombu_redis.QoS.restore_unacked, len(signals.before_task_publish.receivers or []))
heavy = ("aiohttp", "httpx_aiohttp", "uvloop", "flower", "prometheus_client", "worker.engine",
         "worker.queue.worker_signals", "worker.queue.lease", "worker.queue.context",
         "tasks.voicemail", "tasks.chunk")
print(json.dumps({
    "state": status.state,
    "loaded": sorted(m for m in sys.modules if m.startswith(heavy)),
    "unchanged": [a is b or a == b for a, b in zip(before, after)],
    "ready_handlers": len(signals.worker_ready.receivers or []),
}))
"""


@pytest.mark.integration
def test_a_producer_loads_only_what_publishing_needs(
    worker: stack.Service, make_account: Callable[..., SimAccount]
) -> None:
    account = make_account()
    probe = subprocess.run(
        [sys.executable, "-c", PRODUCER_PROBE, account.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=dict(os.environ),
    )
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["state"] == "SUCCESS"
    assert report["loaded"] == []
    # No current app set, no kombu method patched, no publish handler connected.
    assert report["unchanged"] == [True, True, True, True]
    assert report["ready_handlers"] == 0


def test_the_worker_app_installs_the_worker_side() -> None:
    """`celery -A worker` reaches the app through `worker.app`, which wires the worker."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, worker; from celery import Celery; from kombu.transport import redis;"
            "assert isinstance(worker.app, Celery);"
            "assert redis.QoS.restore_unacked.__voicemail_patched__;"
            "assert redis.Channel._create_client.__voicemail_patched__;"
            "assert 'worker.queue.worker_signals' in sys.modules",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert probe.returncode == 0, probe.stderr


def test_the_kombu_patches_match_the_installed_kombu() -> None:
    """kombu_patches.py patches two kombu methods: the shapes it was written for must
    still be there."""
    from worker.queue import kombu_patches

    assert kombu_patches.settle_patch_fits()
    assert kombu_patches.client_reuse_fits()


def ours(*packages: str) -> Iterator[tuple[str, ast.Module]]:
    """(path from the root, parsed module) for each module of `packages`."""
    for module, path in MODULES.items():
        if module.split(".")[0] in packages:
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text(encoding="utf-8"))


def test_functions_are_short() -> None:
    """No function or method in worker/ or tasks/ is over 60 lines, counted from its `def`
    line to the last line of its body (a nested function counts in its outer one too).
    The five longest are printed (`pytest -s`) whether the test passes or fails."""
    lengths = sorted(
        n for where, t in ours("worker", "tasks") for n in check.function_lengths(t, where)
    )
    top = "\n".join(f"{label} {n}" for n, label in reversed(lengths[-5:]))
    print(f"\nthe five longest functions:\n{top}")
    long = [f"{label} {n}" for n, label in reversed(lengths) if n > check.MAX_FUNCTION_LINES]
    assert not long, f"over {check.MAX_FUNCTION_LINES} lines: {long}\nthe five longest:\n{top}"


def test_redis_keys_are_built_in_the_keys_module() -> None:
    """worker/core/keys.py names every Redis key of ours; worker/, tasks/ and cli/ call it.
    Anywhere else a string (f-string parts included) holding `voicemail:` is a key written
    out, unless it is a message (starting `voicemail: `, a space after the colon) or a
    docstring (which describes keys); so is an f-string whose first formatted value is a
    name ending in PREFIX (`f"{keys.PREFIX}x"`), or a `+` with one on its left
    (`C.KEY_PREFIX + "x"`). The simulator is not ours to police; Lua files are not Python."""
    found = [
        hit
        for where, tree in ours("worker", "tasks", "cli")
        if where != "worker/core/keys.py"
        for hit in check.key_literals(tree, where)
    ]
    assert not found, "keys built outside worker/core/keys.py:\n" + "\n".join(found)


def test_no_module_level_state_outside_the_context() -> None:
    """worker/ keeps a process's state in worker/queue/context.py and nowhere else: no
    module-level name (at the top of a module or in an if/try/with block there) is bound to
    a dict, list or set (display, comprehension, or a dict/list/set/defaultdict/OrderedDict/
    deque call), and no function says `global`. The rule is "nothing at module level is
    changed later", so an UPPER_CASE container counts as a constant, and passes, unless a
    module of worker/, tasks/ or cli/ changes something of that name in place (`.append`,
    `.add`, `.update`, `.pop`, `.clear`..., `x[k] =`, `del x[k]`, `x +=`): flagging every
    UPPER_CASE dict would report tables nobody changes. Dunders (`__all__`) are the
    interpreter's. A functools.cache'd settings function, or signal handlers connected at
    import, bind no container and pass."""
    trees = dict(ours("worker", "tasks", "cli"))
    mutated = set().union(*map(check.mutated_names, trees.values()))
    found = [
        hit
        for where, tree in trees.items()
        if where.startswith("worker/") and where != "worker/queue/context.py"
        for hit in check.module_state(tree, where, mutated)
    ]
    assert not found, "module-level state outside the context:\n" + "\n".join(found)


def test_the_function_check_can_fail() -> None:
    long = ast.parse("async def f():\n" + "    x = 1\n" * 61)
    assert check.function_lengths(long, "f.py") == [(62, "f.py:1 f")]


def test_the_key_check_can_fail() -> None:
    """Lines 2 to 6 build keys; the docstring (1) and the message (7) do not."""
    keys = ast.parse(
        '"""voicemail:doc"""\nA = "voicemail:x"\nB = f"voicemail:{a}"\nC = f"{C.KEY_PREFIX}x"\n'
        'D = keys.PREFIX + "y"\nE = PREFIX + z\nF = "voicemail: error: no"\n'
    )
    lines = [hit.split()[0] for hit in check.key_literals(keys, "k.py")]
    assert sorted(lines) == [f"k.py:{n}" for n in (2, 3, 4, 5, 6)]


def test_the_state_check_can_fail() -> None:
    """B, C and E are constants nobody changes, __all__ a dunder, i and j not module-level."""
    state = ast.parse(
        "a = {}\nB = [1]\nC = {1}\nif x:\n    d = defaultdict(list)\nE = (1,)\n__all__ = ['a']\n"
        "F: dict = {}\ndef g():\n    global h\n    F['k'] = 1\n    i = []\nclass K:\n    j = []\n"
    )
    hits = [
        " ".join(h.split()[:2])
        for h in check.module_state(state, "s.py", check.mutated_names(state))
    ]
    assert hits == ["s.py:1 a", "s.py:5 d", "s.py:8 F", "s.py:10 global"]
