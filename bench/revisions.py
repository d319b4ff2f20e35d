"""GetProduct and PlaceOrder of two revisions side by side in one run, with the ratios.

`python -m bench.revisions [--before REV] [--after REV] [--backend sqlite postgres] [--rounds 3]`.
`--before` (default: the commit before the database API went async) is checked out into a
temporary `git worktree`; `--after` is another revision, or by default this working tree. Each
round loads both in turn with the same load generators as bench.services_bench: the catalog
alone for GetProduct (h2load), then orders with users, catalog and payments for PlaceOrder (ghz;
every order must confirm). Services run with WORKERS=1; medians are reported. PostgreSQL is
tools/postgres.py's throwaway server (fsync off), a fresh database per service and run. The
worktrees are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.services_bench import (
    EXTRA_STOCK,
    ORDER_SERVICES,
    PRODUCT,
    load_get_product,
    load_place_order,
)
from mesh.local.stack import LocalStack
from services.catalog.demo import seed_deep
from tools.postgres import TempPostgres

METRICS = ("rps", "p50_ms", "p99_ms")


def git(*args: str) -> str:
    run = subprocess.run(["git", *args], cwd=loadgen.ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed:\n{run.stderr}")
    return run.stdout.strip()


def default_before() -> str:
    """The commit before the database API went async (the one that dropped psycopg's sync
    pool): the baseline this bench was written for."""
    change = git(
        "log",
        "-1",
        "--format=%H",
        "-S",
        "import ConnectionPool",
        "--",
        "services/runtime/database.py",
    )
    return git("rev-parse", f"{change}^")


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """`revision` checked out (detached) into a temporary worktree, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-rev-") as tmp:
        path = Path(tmp) / "tree"
        git("worktree", "add", "--detach", "--quiet", str(path), revision)
        try:
            yield path
        finally:
            git("worktree", "remove", "--force", str(path))


def commands(services: Sequence[str]) -> dict[str, list[str]]:
    """Run each service with `-P`, which keeps the working directory off sys.path, so that
    `tree_env`'s PYTHONPATH decides whose code runs."""
    return {name: [sys.executable, "-P", "-m", f"services.{name}"] for name in services}


def tree_env(tree: Path) -> dict[str, str]:
    """Puts `tree`'s code ahead of the checkout installed (editable) in the venv; checked."""
    env = {"PYTHONPATH": os.pathsep.join([str(tree), str(tree / "gen" / "python")])}
    probe = "import services.runtime.database as m; print(m.__file__)"
    found = subprocess.run(
        [sys.executable, "-P", "-c", probe],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).is_relative_to(tree):
        raise SystemExit(f"{tree}: its services would not run, {found} would")
    return env


@contextmanager
def stack(
    tree: Path, services: list[str], databases: dict[str, str], log_level: str
) -> Iterator[LocalStack]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        catalog = databases.get("catalog") or str(workdir / "data" / "catalog.db")
        # Seeded before the catalog starts, so its own seeding finds products and stops there.
        seed_deep(catalog, {PRODUCT: EXTRA_STOCK})
        env = {
            **tree_env(tree),
            "WORKERS": "1",
            "LOG_LEVEL": log_level,
            "METRICS_PORT": "0",
        }
        service_env = {name: {"DATABASE_URL": url} for name, url in databases.items()}
        with LocalStack(
            workdir,
            services=services,
            env=env,
            service_env=service_env,
            commands=commands(services),
        ) as running:
            yield running


def bench_get_product(
    tree: Path, databases: dict[str, str], args: argparse.Namespace
) -> loadgen.Result:
    with stack(tree, ["catalog"], databases, args.log_level) as running:
        return load_get_product(running, args)


def bench_place_order(
    tree: Path, databases: dict[str, str], args: argparse.Namespace
) -> loadgen.Result:
    with stack(tree, ORDER_SERVICES, databases, args.log_level) as running:
        return load_place_order(running, args)


BENCHES = {"GetProduct": bench_get_product, "PlaceOrder": bench_place_order}


def summarise(runs: list[dict[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Medians per backend, RPC and revision, with after/before ratios on the `after` rows."""
    rows = []
    for backend in dict.fromkeys(r["backend"] for r in runs):
        for rpc in BENCHES:
            medians = {
                label: {
                    key: statistics.median(
                        r[key]
                        for r in runs
                        if (r["backend"], r["rpc"], r["revision"]) == (backend, rpc, label)
                    )
                    for key in METRICS
                }
                for label in labels
            }
            before, after = (medians[label] for label in labels)
            for label in labels:
                row = {"backend": backend, "rpc": rpc, "revision": label, **medians[label]}
                if label == labels[1]:
                    row["ratios"] = {key: after[key] / before[key] for key in METRICS}
                rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], names: dict[str, str], rounds: int) -> None:
    print(f"\nmedians of {rounds} round(s); ratio = after / before")
    for label, name in names.items():
        print(f"  {label}: {name}")
    header = f"{'backend':<9}{'rpc':<12}{'revision':<9}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}"
    print(f"\n{header}{'rps x':>8}{'p50 x':>8}{'p99 x':>8}")
    for row in rows:
        ratios = row.get("ratios")
        tail = "".join(f"{ratios[key]:>8.2f}" for key in METRICS) if ratios else ""
        print(
            f"{row['backend']:<9}{row['rpc']:<12}{row['revision']:<9}{row['rps']:>9.0f}"
            f"{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{tail}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", help="git revision (default: before the async database)")
    parser.add_argument("--after", help="git revision (default: this working tree)")
    parser.add_argument("--backend", nargs="+", choices=("sqlite", "postgres"), default=["sqlite"])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians reported")
    parser.add_argument("--requests", type=int, default=20_000, help="GetProduct calls per run")
    parser.add_argument("--warmup", type=int, default=2_000, help="GetProduct warm-up calls")
    parser.add_argument("--orders", type=int, default=1_000, help="PlaceOrder calls per run")
    parser.add_argument("--warmup-orders", type=int, default=100, help="PlaceOrder warm-up calls")
    parser.add_argument("--concurrency", type=int, default=50, help="calls in flight (1 conn)")
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the services")
    parser.add_argument("--protoset", type=Path, default=loadgen.ROOT / "build" / "shop.binpb")
    parser.add_argument("--out", type=Path, default=loadgen.ROOT / "build" / "bench")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not args.protoset.exists():
        raise SystemExit(f"{args.protoset} is missing: run `make descriptors`")
    loadgen.ensure_h2load()
    loadgen.ensure_ghz()
    before = git("rev-parse", args.before or default_before())
    after = git("rev-parse", args.after) if args.after else None
    names = {
        "before": before[:12],
        "after": after[:12] if after else f"working tree (HEAD {git('rev-parse', 'HEAD')[:12]})",
    }
    runs: list[dict[str, Any]] = []
    with ExitStack() as stacks:
        trees = {
            "before": stacks.enter_context(worktree(before)),
            "after": stacks.enter_context(worktree(after)) if after else loadgen.ROOT,
        }
        postgres = stacks.enter_context(TempPostgres()) if "postgres" in args.backend else None
        for round_no in range(1, args.rounds + 1):
            for backend in args.backend:
                for rpc, bench in BENCHES.items():
                    for label, tree in trees.items():
                        services = ["catalog"] if rpc == "GetProduct" else ORDER_SERVICES
                        databases = (
                            {name: postgres.create_database(name) for name in services}
                            if postgres is not None and backend == "postgres"
                            else {}
                        )
                        load = os.getloadavg()[0]
                        result = bench(tree, databases, args)
                        run = {
                            "round": round_no,
                            "backend": backend,
                            "rpc": rpc,
                            "revision": label,
                            **result.as_dict(),
                            "loadavg_1m_before": round(load, 2),
                        }
                        runs.append(run)
                        print(json.dumps(run), flush=True)
    rows = summarise(runs, list(trees))
    print_table(rows, names, args.rounds)
    loads = [run["loadavg_1m_before"] for run in runs]
    print(f"\n1-minute load average before each run: {min(loads):.2f} to {max(loads):.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"revisions-{time.strftime('%Y%m%d-%H%M%S')}.json"
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report = {"cpus": os.cpu_count(), "revisions": names, "config": config, "runs": runs}
    path.write_text(json.dumps({**report, "summary": rows}, indent=2) + "\n")
    print(f"written to {path.relative_to(loadgen.ROOT)}")


if __name__ == "__main__":
    main()
