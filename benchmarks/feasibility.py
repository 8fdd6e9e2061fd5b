"""Feasibility benchmark: one query fanned out to 30 DICs, and one evaluation on a 100,000-patient store.

    python benchmarks/feasibility.py [--quick] [--only fanout store] [--rebuild]

1. **Fan-out**: an HRP and ``--dics`` (30) DICs as real nodes (mailbox + engine + the
   feasibility plugin, production engine settings, INFO logs), each DIC with its own data store
   of ``--patients`` (10,000) generated patients.  The wall time from POSTing the request
   Bundle (``bundles.request_bundle``) to the HRP until its mailbox pushes the request Task
   ``completed`` with every ``dic-result`` output ``answered``; each DIC's count must equal the
   count taken straight from the generated objects (obfuscation is off), the aggregated
   MeasureReport their sum.  Beside it: each DIC's evaluation time (from its log line) and the
   *searches-only floor* — the same FHIR searches of all stores at once, by a bare script.
2. **One big store**: ``--big-patients`` (100,000) patients in one data store (a child
   process); ``evaluate()`` of the same query from this process, median of ``--big-runs`` (5),
   beside the *floor*: the same searches (``QueryPlan.steps()``, same ``_elements``/``_count``,
   next links followed) by a bare aiohttp script over the same connection pool, parsing only
   the patient references.

Generated data is loaded once into a template store per (patients, seed, generator version)
and cached under ``benchmarks/.cache/feasibility/`` (``--rebuild`` builds it again); every DIC's
store is a copy of the template's SQLite file.  Process layout, floors and caveats:
``benchmarks/README.md``.  Prints a Markdown table and writes
``benchmarks/results/feasibility[-quick].json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import importlib.util
import logging
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp
import orjson
from dsf_plugin_feasibility import PLUGIN  # type: ignore[import-untyped]
from dsf_plugin_feasibility.bundles import request_bundle  # type: ignore[import-untyped]
from dsf_plugin_feasibility.common import (  # type: ignore[import-untyped]
    DSF_PY_FEASIBILITY,
    FEASIBILITY,
    initial_population_count,
)
from dsf_plugin_feasibility.evaluation import (  # type: ignore[import-untyped]
    EvaluationStore,
    QueryPlan,
    evaluate,
    load_mapping,
    parse_structured_query,
    plan_query,
)
from dsf_plugin_feasibility.evaluation.plan import Search  # type: ignore[import-untyped]

from dsf_core import heap
from dsf_core.client import ClientFactory, FhirClient
from dsf_core.data import (
    REFERENCE_DATE,
    DatasetSpec,
    PatientGroup,
    patient_groups,
    vocabulary,
)
from dsf_core.network import OrgSpec, init_network, load_network, set_data_stores
from dsf_core.settings import DataStoreSettings
from dsf_core.testing.data_store import DataStoreServer
from dsf_core.testing.network import Network

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
CACHE = HERE / ".cache" / "feasibility"
#: Bump when the template layout or its meta.json changes (the generator's output is hashed in).
CACHE_FORMAT = 1
LOAD_BATCH = 250  # patients per load transaction


def _load_sibling(name: str, module_name: str) -> Any:
    # benchmarks/ is no package (and `mailbox` is also a stdlib module): load siblings by path.
    spec = importlib.util.spec_from_file_location(module_name, HERE / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


eng = _load_sibling("engine.py", "dsf_benchmark_engine")  # PeerProcess, CpuMeter, Identities, observer, Pushes
mb = eng.mb  # machine_info, percentile
ENGINE_SETTINGS: dict[str, str] = _load_sibling("peers.py", "dsf_benchmark_peers").ENGINE_SETTINGS

HRP = "hrp.test"
ICD = vocabulary.ICD10GM
GENDER = "http://hl7.org/fhir/administrative-gender"
GOAL_FANOUT_S = 10.0
GOAL_STORE_S = 5.0
#: Obfuscation off so every DIC's count can be checked against the data; rate limit far above the runs.
DIC_SETTINGS = "[networks.'medizininformatik-initiative.de']\nobfuscate = false\nrate_limit = { count = 100000, interval = \"PT1H\" }\n"
#: The HRP waits this long per DIC (default PT5M): a DIC that fails shows sooner, far above the goal.
RESULT_TIMEOUT_S = 120
HRP_SETTINGS = f'result_timeout = "PT{RESULT_TIMEOUT_S}S"\n'


def _code(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": code}


#: Three criteria: women with hypertension (I10), without type 2 diabetes (E11.9), as in
#: plugins/feasibility/tests/test_feasibility_network.py.
QUERY: dict[str, Any] = {
    "version": "http://to_be_decided.com/draft-1/schema#",
    "inclusionCriteria": [
        [{"termCodes": [_code("http://snomed.info/sct", "263495000")], "context": _code("fdpg.mii.cds", "Patient"),
          "valueFilter": {"type": "concept", "selectedConcepts": [_code(GENDER, "female")]}}],
        [{"termCodes": [_code(ICD, "I10")]}],
    ],
    "exclusionCriteria": [[{"termCodes": [_code(ICD, "E11.9")]}]],
}


class BenchmarkError(RuntimeError):
    """The benchmark cannot go on (or measured a failure); the message says why."""


@dataclass(frozen=True)
class Plan:
    mode: str
    dics: int
    patients: int
    fanout_runs: int
    big_patients: int
    big_runs: int
    seed: int
    store_processes: int
    dic_processes: int
    link: bool
    only: tuple[str, ...]


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    return Plan(
        mode="quick" if quick else "full",
        dics=args.dics or (5 if quick else 30),
        patients=args.patients or (1_000 if quick else 10_000),
        fanout_runs=args.runs or (3 if quick else 5),
        big_patients=args.big_patients or (10_000 if quick else 100_000),
        big_runs=args.big_runs or (3 if quick else 5),
        seed=args.seed,
        store_processes=args.store_processes,
        dic_processes=args.dic_processes,
        link=args.link,
        only=tuple(args.only or ("fanout", "store")),
    )


# --------------------------------------------------------------------------- template stores (cached)


def cache_key(patients: int, seed: int) -> str:
    """``p<patients>-s<seed>-<digest>``: the digest is of the generator's output for the first
    patients, so a template is rebuilt when the generated data changes, not when its code does.
    Storage schema changes need no rebuild: a store upgrades its database when it starts
    (:func:`migrated`); should that fail, the start fails and ``--rebuild`` is the way out."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}".encode())
    for group in patient_groups(DatasetSpec(patients=min(patients, 50), seed=seed)):
        digest.update(orjson.dumps(group.resources, option=orjson.OPT_SORT_KEYS))
    return f"p{patients}-s{seed}-{digest.hexdigest()[:10]}"


class Tally:
    """The query's count taken straight from the generated objects, as the data is loaded."""

    def __init__(self) -> None:
        self.patients = self.resources = self.female = self.i10 = self.e11_9 = self.count = 0

    def add(self, group: PatientGroup) -> None:
        codes = {coding.get("code") for r in group.resources if r["resourceType"] == "Condition"
                 for coding in r["code"]["coding"] if coding.get("system") == ICD}
        female = group.patient.get("gender") == "female"
        self.patients += 1
        self.resources += len(group.resources)
        self.female += female
        self.i10 += "I10" in codes
        self.e11_9 += "E11.9" in codes
        self.count += female and "I10" in codes and "E11.9" not in codes

    def counted(self, groups: Iterable[PatientGroup], every: int) -> Iterator[PatientGroup]:
        t0 = time.perf_counter()
        for group in groups:
            self.add(group)
            yield group
            if self.patients % every == 0:
                rate = self.patients / (time.perf_counter() - t0)
                print(f"    {self.patients:,} patients ({self.resources:,} resources), {rate:.0f} patients/s", flush=True)


@dataclass(frozen=True)
class Template:
    """A loaded data store (a DataStoreServer directory) and what its data says the query counts."""

    directory: Path
    meta: dict[str, Any]

    @property
    def database(self) -> Path:
        return self.directory / "data" / "fhir.sqlite"

    @property
    def expected(self) -> int:
        return int(self.meta["expected"]["count"])


async def template(patients: int, seed: int, rebuild: bool) -> Template:
    """The cached store of *patients* generated with *seed*, built (minutes) when missing or asked to."""
    directory = CACHE / f"store-{cache_key(patients, seed)}"
    meta_file = directory / "meta.json"
    if meta_file.exists() and not rebuild:
        return Template(directory, orjson.loads(meta_file.read_bytes()))
    CACHE.mkdir(parents=True, exist_ok=True)
    ignore = CACHE.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# generated by benchmarks/feasibility.py: template stores, never committed\n*\n")
    part = directory.with_name(directory.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    print(f"  building template store {directory.name}: {patients:,} patients, seed {seed} (cached afterwards)", flush=True)
    tally = Tally()
    t0 = time.perf_counter()
    async with DataStoreServer(part) as store:
        groups = tally.counted(patient_groups(DatasetSpec(patients=patients, seed=seed)), max(patients // 10, 1))
        written = await store.load(groups, batch_size=LOAD_BATCH)
    seconds = time.perf_counter() - t0
    database = part / "data" / "fhir.sqlite"
    meta = {
        "patients": patients, "seed": seed, "key": cache_key(patients, seed), "resources": written,
        "expected": {"count": tally.count, "female": tally.female, "I10": tally.i10, "E11.9": tally.e11_9},
        "build_seconds": round(seconds, 1), "database_bytes": database.stat().st_size,
        "built": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": mb._git("rev-parse", "--short", "HEAD"),
    }
    (part / "meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    shutil.rmtree(directory, ignore_errors=True)
    part.rename(directory)
    print(f"  built in {seconds:.0f} s: {written:,} resources, {meta['database_bytes'] / 2**20:,.0f} MiB; "
          f"the query counts {tally.count:,}", flush=True)
    return Template(directory, meta)


async def migrated(store: Template) -> None:
    """Start and stop the template once: a store re-indexes at start-up when search parameters
    changed since it was built, and that must happen once here rather than in every copy."""
    async with DataStoreServer(store.directory):
        pass
    for suffix in ("-wal", "-shm"):
        leftover = store.database.with_name(store.database.name + suffix)
        if leftover.exists() and leftover.stat().st_size:
            raise BenchmarkError(f"{leftover} is not empty after the store stopped: the copies would miss data")


# --------------------------------------------------------------------------- child processes


class Child(eng.PeerProcess):  # type: ignore[misc,name-defined]
    """``feasibility_peers.py`` in a child process (the peers.py protocol: ready line, stats, SIGTERM)."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        super().__init__(name, Path("."), [], "node", log_path)
        self.argv = [sys.executable, str(HERE / "feasibility_peers.py"), *argv, "--log", str(log_path)]


def chunks(items: Sequence[Any], groups: int) -> list[list[Any]]:
    groups = max(1, min(groups, len(items)))
    return [list(items[i::groups]) for i in range(groups)]


async def start_stores(directories: Sequence[Path], processes: int, logs: Path, tag: str) -> tuple[list[Child], dict[str, dict[str, str]]]:
    children: list[Child] = []
    started: dict[str, dict[str, str]] = {}
    try:
        for i, chunk in enumerate(chunks(directories, processes)):
            out = logs / f"{tag}-{i}.json"
            child = Child(f"{tag} [{len(chunk)} store(s)]",
                          ["--mode", "stores", "--stores", ",".join(map(str, chunk)), "--out", str(out)],
                          logs / f"{tag}-{i}.log")
            children.append(child)
        await asyncio.gather(*(c.start(timeout=600) for c in children))
        for i in range(len(children)):
            started.update(orjson.loads((logs / f"{tag}-{i}.json").read_bytes()))
    except BaseException:
        await asyncio.gather(*(c.stop() for c in children))
        raise
    return children, started


async def stats(children: Sequence[Child]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in children:
        out.update(await child.stats())
    return out


def search_census(stats: Mapping[str, Mapping[str, list[Any]]]) -> dict[str, Any]:
    """Search requests the stores answered: count, handler seconds, response MiB, by kind."""
    kinds: dict[str, list[float]] = {}
    for per_kind in stats.values():
        for kind, (count, ms, size, _sample) in per_kind.items():
            entry = kinds.setdefault(kind, [0, 0.0, 0])
            entry[0] += count
            entry[1] += ms / 1000
            entry[2] += size / 2**20
    return {k: {"requests": int(v[0]), "handler_s": round(v[1], 3), "response_mib": round(v[2], 2)} for k, v in sorted(kinds.items())}


# --------------------------------------------------------------------------- the floor: bare searches


def query_plan() -> QueryPlan:
    return plan_query(parse_structured_query(orjson.dumps(QUERY)), load_mapping(), REFERENCE_DATE)


async def bare_count(session: aiohttp.ClientSession, base_url: str, plan: QueryPlan, *, page_size: int = 1000,
                     concurrency: int = 4) -> tuple[int, int]:
    """The plan's searches as ``evaluate()`` issues them, by plain aiohttp: (count, pages).

    Each distinct step once, at most *concurrency* at a time, ``_elements`` = the patient
    element (``id`` for Patient) and ``_count`` = *page_size*, next links followed; of each
    page only the patient ids are taken.  Then the same set algebra.
    """
    semaphore = asyncio.Semaphore(concurrency)
    pages = 0

    async def step(search: Search) -> set[str]:
        nonlocal pages
        if not isinstance(search, Search):
            raise BenchmarkError(f"the floor script knows plain searches only, not {search}")
        element = search.patient_element
        params = [*search.params, ("_elements", element or "id"), ("_count", str(page_size))]
        url: str | None = f"{base_url}/{search.resource_type}"
        found: set[str] = set()
        async with semaphore:
            while url is not None:
                async with session.get(url, params=params, headers={"Accept": "application/fhir+json"}) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise BenchmarkError(f"floor: GET {response.url} -> {response.status}: {body[:300]!r}")
                bundle = orjson.loads(body)
                pages += 1
                for entry in bundle.get("entry") or ():
                    resource = entry["resource"]
                    if element is None:
                        found.add(resource["id"])
                    else:
                        found.add(resource[element]["reference"].rpartition("Patient/")[2])
                url, params = next((link["url"] for link in bundle.get("link", ()) if link["relation"] == "next"), None), []
        return found

    steps = plan.steps()
    return cohort(plan, dict(zip(steps, await asyncio.gather(*(step(s) for s in steps)), strict=True))), pages


def cohort(plan: QueryPlan, found: Mapping[Any, set[str]]) -> int:
    """The plan's set algebra over the patient ids each step found (no negated criteria here)."""

    def matches(criterion: Any) -> set[str]:
        return set().union(*(found[s] for s in criterion.steps))

    included: set[str] | None = None
    for group in plan.inclusion:
        union = set().union(*(matches(c) for c in group))
        included = union if included is None else included & union
    excluded: set[str] = set()
    for group in plan.exclusion:
        excluded |= set.intersection(*(matches(c) for c in group))
    assert included is not None, "the benchmark query has inclusion criteria"
    return len(included - excluded)


def database_count(database: Path, plan: QueryPlan) -> tuple[int, float]:
    """The plan's patient ids read straight out of the store's SQLite file (read-only, sqlite3):
    ``(count, seconds)``.  A second, lower floor: what the answer costs the database, without
    FHIR, HTTP or resources.  Token criteria only (the benchmark query's), on dsf-py's
    search-index rows: ``(type, param, system, value)``, references as ``(param, type, id)``."""
    t0 = time.perf_counter()
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    results: dict[Any, set[str]] = {}
    try:
        for step in plan.steps():
            if not isinstance(step, Search):
                raise BenchmarkError(f"the database floor knows plain searches only, not {step}")
            (name, value), = step.params
            system, bar, code = value.rpartition("|")
            where = "c.type = ? AND c.param = ? AND c.value = ?" + (" AND c.system = ?" if bar else "")
            args = [step.resource_type, name, code, *([system] if bar else [])]
            if step.patient_element is None:
                sql = f"SELECT r.id FROM search_index c JOIN resources r ON r.rid = c.rid WHERE {where}"
            else:
                sql = (f"SELECT s.value FROM search_index c JOIN search_index s ON s.rid = c.rid AND s.param = ? "
                       f"AND s.system = 'Patient' WHERE {where}")
                args.insert(0, step.patient_element)
            results[step] = {row[0] for row in db.execute(sql, args)}
    finally:
        db.close()
    return cohort(plan, results), time.perf_counter() - t0


# --------------------------------------------------------------------------- 1. fan-out


def dic_results(task: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """DIC identifier → {status, count, error} from the request Task's dic-result outputs."""
    out = {}
    for output in task.get("output", []):
        if output["type"]["coding"][0] != {"system": DSF_PY_FEASIBILITY, "code": "dic-result"}:
            continue
        parts = {e["url"]: e for e in output["extension"][0]["extension"]}
        out[parts["organization-identifier"]["valueIdentifier"]["value"]] = {
            "status": output["valueCoding"]["code"],
            "count": parts.get("count", {}).get("valueInteger"),
            "error": parts.get("error-message", {}).get("valueString"),
        }
    return out


_EVALUATED = re.compile(r"^(?P<at>\d+\.\d+) \S+ dsf\.plugin\.feasibility: feasibility (?P<key>\S+): "
                        r"(?P<count>\d+) patient\(s\) on \S+ in (?P<s>\d+\.\d+) s$")


def answers(log: Path, business_key: str) -> dict[str, float]:
    """DIC → when (epoch) the HRP handled its answer, from the HRP's log lines."""
    pattern = re.compile(rf"^(\d+\.\d+) \S+ dsf\.plugin\.feasibility: feasibility {re.escape(business_key)}: (\S+) answered \d+$")
    return {m[2]: float(m[1]) for line in log.read_text(errors="replace").splitlines() if (m := pattern.match(line))}


def evaluations(logs: Iterable[Path], business_key: str) -> list[tuple[float, float]]:
    """(end on the epoch clock, seconds) of every DIC evaluation of one request, from the DICs' log lines."""
    found = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            match = _EVALUATED.match(line)
            if match and match["key"] == business_key:
                found.append((float(match["at"]), float(match["s"])))
    return found


class FanOut:
    """The HRP in this process, the DICs and their stores in children; one query per call."""

    def __init__(self, ids: Any, pushes: Any, dics: Sequence[str], expected: int, dic_logs: Sequence[Path],
                 hrp_log: Path) -> None:
        self.hrp_log = hrp_log
        self.ids = ids
        self.pushes = pushes
        self.dics = list(dics)
        self.expected = expected
        self.dic_logs = list(dic_logs)

    async def query(self) -> dict[str, Any]:
        business_key = str(uuid.uuid4())
        bundle = request_bundle(QUERY, hrp=HRP, business_key=business_key)
        hrp = self.ids.client(HRP, HRP)
        started = time.time()
        t0 = time.perf_counter()
        reply = await hrp.transaction(bundle)
        task_id = reply["entry"][0]["response"]["location"].split("Task/", 1)[1].split("/")[0]
        try:
            message = await self.pushes.wait(task_id, timeout=RESULT_TIMEOUT_S + 120)
        except eng.BenchmarkError:
            raise BenchmarkError(f"request Task/{task_id} at {HRP} not completed within {RESULT_TIMEOUT_S + 120} s "
                                 f"(the HRP's result timeout is {RESULT_TIMEOUT_S} s): it hangs") from None
        seconds = time.perf_counter() - t0
        task = orjson.loads(message)
        results = dic_results(task)
        wrong = {d: r for d, r in results.items() if r["status"] != "answered" or r["count"] != self.expected}
        if set(results) != set(self.dics) or wrong:
            missing = sorted(set(self.dics) - set(results))
            statuses: dict[str, int] = {}
            for r in wrong.values():
                statuses[r["status"]] = statuses.get(r["status"], 0) + 1
            errors = sorted({str(r["error"])[:300] for r in wrong.values() if r["error"]})
            raise BenchmarkError(f"request Task/{task_id} completed after {seconds:.1f} s, but {len(wrong)} of "
                                 f"{len(self.dics)} DICs did not answer {self.expected}: {statuses}"
                                 f"{f', missing {missing}' if missing else ''}; errors: {errors[:3]}")
        references = [o["valueReference"]["reference"] for o in task["output"]
                      if o["type"]["coding"][0] == {"system": FEASIBILITY, "code": "measure-report-reference"}]
        report = await hrp.read("MeasureReport", references[0].split("/")[-1])
        aggregated = initial_population_count(report)
        if aggregated != self.expected * len(self.dics):
            raise BenchmarkError(f"aggregated count {aggregated}, expected {self.expected} × {len(self.dics)}")
        evals = evaluations(self.dic_logs, business_key)
        if len(evals) != len(self.dics):
            raise BenchmarkError(f"found {len(evals)} evaluation log lines for {business_key}, expected {len(self.dics)}")
        times = sorted(s for _, s in evals)
        answered = sorted(answers(self.hrp_log, business_key).values())
        return {
            "seconds": round(seconds, 3), "task": task_id, "business_key": business_key, "aggregated": aggregated,
            "evaluation_s": {"min": times[0], "median": round(statistics.median(times), 3), "max": times[-1]},
            # on the request's clock: the first evaluation began / the last one ended
            "first_evaluation_start_s": round(min(end - s for end, s in evals) - started, 3),
            "last_evaluation_end_s": round(max(end for end, _ in evals) - started, 3),
            # on the request's clock: the HRP handled the first / the last DIC's answer
            "first_answer_s": round(answered[0] - started, 3) if answered else None,
            "last_answer_s": round(answered[-1] - started, 3) if answered else None,
        }


async def fanout_part(plan: Plan, store: Template, work: Path, logs: Path) -> dict[str, Any]:
    dics = [f"dic{i:02d}.test" for i in range(1, plan.dics + 1)]
    print(f"fan-out: {HRP} → {len(dics)} DICs × {plan.patients:,} patients", flush=True)
    layout = await asyncio.to_thread(
        init_network, work / "net", organizations=[OrgSpec(HRP, ("HRP",)), *(OrgSpec(d, ("DIC",)) for d in dics)])
    await migrated(store)
    before = store.database.stat()
    needed = before.st_size * len(dics)
    free = shutil.disk_usage(work).free
    # Copies when the disk has room; else hard links: the stores only read (the template was
    # upgraded above, so no store writes at start-up), and the file is checked unchanged after.
    link = plan.link or free < needed * 1.1
    t0 = time.perf_counter()
    directories = []
    for dic in dics:
        directory = work / "stores" / dic
        (directory / "data").mkdir(parents=True)
        target = directory / "data" / "fhir.sqlite"
        if link:
            try:
                os.link(store.database, target)
            except OSError as exc:
                raise BenchmarkError(f"cannot hard-link {store.database} into {work} ({exc}); free "
                                     f"{needed / 2**30:.1f} GiB there for copies") from None
        else:
            await asyncio.to_thread(shutil.copyfile, store.database, target)
        directories.append(directory)
    copy_s = time.perf_counter() - t0
    how = "hard links to" if link else "copies of"
    why = " (the disk has too little room for copies)" if link and not plan.link else ""
    print(f"  {len(dics)} {how} the {before.st_size / 2**20:,.0f} MiB template in {copy_s:.0f} s{why}", flush=True)

    result: dict[str, Any] = {"dics": len(dics), "patients_per_dic": plan.patients, "expected_per_dic": store.expected,
                              "template": store.meta, "store_files": f"{how} the template{why}", "copy_s": round(copy_s, 1)}
    children: list[Child] = []
    hrp_net: Network | None = None
    ids = eng.Identities(layout)
    pushes = None
    factories: list[ClientFactory] = []
    try:
        t0 = time.perf_counter()
        store_children, started = await start_stores(directories, plan.store_processes, logs, "stores")
        children += store_children
        # One bare evaluation per store, one store at a time: the copies were just written and
        # most of their pages are not in memory; reading them 30 at a time inside the first query
        # measures the disk (and ran into the DICs' 30 s request timeout), not dsf-py.
        query = query_plan()
        factories = [ClientFactory.from_files(cafile=Path(started[str(d)]["ca"])) for d in directories]
        t1 = time.perf_counter()
        for factory, directory in zip(factories, directories, strict=True):
            count, _ = await bare_count(factory.session, started[str(directory)]["base_url"], query)
            if count != store.expected:
                raise BenchmarkError(f"store {directory.name} counts {count}, the data says {store.expected}")
        result["store_warmup_s"] = round(time.perf_counter() - t1, 1)
        print(f"  stores warmed (one bare evaluation each, one after the other) in {result['store_warmup_s']} s", flush=True)
        for dic, directory in zip(dics, directories, strict=True):
            where = started[str(directory)]
            set_data_stores(layout.organization(dic).config,
                            {"default": DataStoreSettings(base_url=where["base_url"], trust_server_cas=Path(where["ca"]))})
        config = work / "dic-feasibility.toml"
        config.write_text(DIC_SETTINGS)
        dic_children = [
            Child(f"DIC nodes [{len(chunk)}]",
                  ["--mode", "nodes", "--network", str(layout.directory), "--orgs", ",".join(chunk), "--config", str(config)],
                  logs / f"dics-{i}.log")
            for i, chunk in enumerate(chunks(dics, plan.dic_processes))
        ]
        children += dic_children
        await asyncio.gather(*(c.start(timeout=600) for c in dic_children))
        hrp_config = work / "hrp-feasibility.toml"
        hrp_config.write_text(HRP_SETTINGS)
        hrp_net = Network(layout.directory, plugins=[PLUGIN],
                          settings={**ENGINE_SETTINGS, "DSF_PLUGINS_FEASIBILITY_CONFIG": str(hrp_config)})
        hrp_net.layout = load_network(layout.directory)
        await hrp_net.start_node(HRP, timeout=300)
        heap.settle()  # as `dsf node start` does (the floor script in this process profits alike)
        result["startup_s"] = round(time.perf_counter() - t0, 1)
        result["layout"] = (f"{len(store_children)} process(es) with the {len(dics)} data stores, "
                            f"{len(dic_children)} with the {len(dics)} DIC nodes, the HRP node and the measuring script in this one")
        print(f"  ready in {result['startup_s']} s: {result['layout']}", flush=True)

        pushes = await eng.observer(ids, HRP)
        fan = FanOut(ids, pushes, dics, store.expected, [c.log_path for c in dic_children], logs / "main.log")
        pids = {"stores": [c.pid for c in store_children], "dics": [c.pid for c in dic_children]}
        meter = Meter(pids)

        # floor: the same searches of every store at once, by the bare script (no DSF messaging);
        # one connection pool per store, as each DIC has (every store has its own development CA)
        async def floor() -> tuple[float, dict[str, float]]:
            t1 = time.perf_counter()
            with meter:
                counted = await asyncio.gather(*(bare_count(f.session, started[str(d)]["base_url"], query)
                                                 for f, d in zip(factories, directories, strict=True)))
            seconds = round(time.perf_counter() - t1, 3)
            if {c for c, _ in counted} != {store.expected}:
                raise BenchmarkError(f"floor: counts {sorted({c for c, _ in counted})}, expected {store.expected}")
            return seconds, meter.result

        runs: list[dict[str, Any]] = []
        floors: list[float] = []
        floor_cpu: list[dict[str, float]] = []
        result |= {"runs": runs, "floor_s": floors, "floor_cpu": floor_cpu}
        try:
            print("  warm-up: the floor and the query once each", flush=True)
            warm_floor, _ = await floor()
            with meter:
                warm = await fan.query()
            result["warmup"] = warm | {"cpu": meter.result, "floor_s": warm_floor}
            print(f"    {warm['seconds']:.2f} s, floor {warm_floor:.2f} s", flush=True)
            await stats(store_children)
            for i in range(plan.fanout_runs):  # interleaved, so drift in the machine's speed hits both alike
                with meter:
                    run = await fan.query()
                runs.append(run | {"cpu": meter.result})
                seconds, cpu = await floor()
                floors.append(seconds)
                floor_cpu.append(cpu)
                ev = run["evaluation_s"]
                print(f"  run {i + 1}: {run['seconds']:.2f} s (floor {floors[-1]:.2f} s); DIC evaluations "
                      f"{ev['min']:.2f}–{ev['max']:.2f} s (median {ev['median']:.2f}), first began at "
                      f"+{run['first_evaluation_start_s']:.2f} s, last ended at +{run['last_evaluation_end_s']:.2f} s; "
                      f"CPU s {runs[-1]['cpu']}", flush=True)
        except BenchmarkError as exc:  # reported in the table; the HRP may hang, so no further runs
            result["error"] = str(exc)
            print(f"  FAILED: {exc}", flush=True)
        result["census"] = search_census(await stats(store_children))
        return result
    finally:
        for f in factories:
            await f.close()
        if pushes is not None:
            await pushes.stop()
        await ids.close()
        if hrp_net is not None:
            await hrp_net.stop()
        await asyncio.gather(*(c.stop() for c in children))
        if link:
            after = store.database.stat()
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                (store.directory / "meta.json").unlink(missing_ok=True)  # rebuilt next time
                raise BenchmarkError(f"a store wrote to the template {store.database} through its hard link; "
                                     "the template is discarded")


class Meter:
    """CPU seconds per process role between ``with`` entry and exit (``engine.CpuMeter`` summed by role)."""

    def __init__(self, pids: Mapping[str, Sequence[int]]) -> None:
        self.names = {f"{role} {i}": pid for role, group in pids.items() for i, pid in enumerate(group)}
        self.meter = eng.CpuMeter({**self.names, "main": os.getpid()})
        self.result: dict[str, float] = {}

    def __enter__(self) -> Self:
        self.meter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        used = self.meter.stop()
        roles: dict[str, float] = {}
        for name, seconds in used.items():
            role = name.split(" ")[0] if name in self.names else name
            roles[role] = round(roles.get(role, 0.0) + seconds, 3)
        self.result = roles


# --------------------------------------------------------------------------- 2. one big store


async def store_part(plan: Plan, store: Template, logs: Path) -> dict[str, Any]:
    print(f"one store: {plan.big_patients:,} patients ({store.directory.name})", flush=True)
    children, started = await start_stores([store.directory], 1, logs, "big-store")
    where = started[str(store.directory)]
    # As the node builds a data-store client (dsf_core.node: ClientFactory defaults, 30 s per request).
    factory = ClientFactory.from_files(cafile=Path(where["ca"]))
    client: FhirClient = factory.client(where["base_url"])
    query = parse_structured_query(orjson.dumps(QUERY))
    steps = [str(s) for s in query_plan().steps()]
    ours: list[dict[str, Any]] = []
    floor: list[dict[str, Any]] = []
    meter = Meter({"store": [children[0].pid]})
    try:
        async def evaluated() -> dict[str, Any]:
            with meter:
                result = await evaluate(query, [EvaluationStore("big", client)], today=REFERENCE_DATE)
            one = result.stores[0]
            if result.count != store.expected:
                raise BenchmarkError(f"evaluate() counted {result.count}, the data says {store.expected}")
            return {"seconds": round(result.seconds, 3), "searches": one.searches, "pages": one.pages,
                    "resources": one.resources, "cpu": meter.result}

        async def bare() -> dict[str, Any]:
            with meter:
                t0 = time.perf_counter()
                count, pages = await bare_count(client.session, where["base_url"], query_plan())
                seconds = time.perf_counter() - t0
            if count != store.expected:
                raise BenchmarkError(f"floor counted {count}, the data says {store.expected}")
            return {"seconds": round(seconds, 3), "pages": pages, "cpu": meter.result}

        print("  warm-up: evaluate() and the floor once each", flush=True)
        warm = [await evaluated(), await bare()]
        print(f"    {warm[0]['seconds']:.2f} s, floor {warm[1]['seconds']:.2f} s", flush=True)
        await stats(children)
        for i in range(plan.big_runs):  # interleaved, so drift in the machine's speed hits both alike
            ours.append(await evaluated())
            floor.append(await bare())
            print(f"  run {i + 1}: evaluate() {ours[-1]['seconds']:.2f} s ({ours[-1]['pages']} pages, "
                  f"{ours[-1]['resources']:,} resources), floor {floor[-1]['seconds']:.2f} s; "
                  f"CPU s {ours[-1]['cpu']} / {floor[-1]['cpu']}", flush=True)
        census = search_census(await stats(children))
        database = []
        for _ in range(plan.big_runs):
            count, seconds = await asyncio.to_thread(database_count, store.database, query_plan())
            if count != store.expected:
                raise BenchmarkError(f"database floor counted {count}, the data says {store.expected}")
            database.append(round(seconds, 3))
        print(f"  database floor (sqlite3, index rows only): {', '.join(f'{s:.2f}' for s in database)} s", flush=True)
    finally:
        await factory.close()
        await asyncio.gather(*(c.stop() for c in children))
    return {"patients": plan.big_patients, "expected": store.expected, "template": store.meta, "steps": steps,
            "warmup": warm, "runs": ours, "floor_runs": floor, "database_floor_s": database, "census": census}


# --------------------------------------------------------------------------- report


def _s(v: float | None) -> str:
    return "" if v is None else f"{v:.2f} s"


def _met(value: float, goal: float) -> str:
    return "✅" if value <= goal else "❌"


def _changes(machine: Mapping[str, Any]) -> str:
    changed = machine.get("uncommitted") or []
    return f" with uncommitted changes to {', '.join(changed)} (diff {machine['uncommitted_diff']})" if changed else ""


def working_tree() -> dict[str, Any]:
    """What of the measured code is not in the commit: the files and a digest of their diff."""
    paths = ("dsf_core", "plugins/feasibility")
    changed = mb._git("status", "--porcelain", "--", *paths).splitlines()
    diff = mb._git("diff", "HEAD", "--", *paths)
    return {"uncommitted": [line[2:].strip() for line in changed],
            "uncommitted_diff": hashlib.sha256(diff.encode()).hexdigest()[:12] if changed else None}


def _ours(cpu: Mapping[str, float]) -> float:
    return sum(v for k, v in cpu.items() if k not in ("wall_s", "other"))


def summarise(report: dict[str, Any]) -> None:
    fan = report.get("fanout")
    if fan and fan.get("runs"):
        seconds = [r["seconds"] for r in fan["runs"]]
        evals = [r["evaluation_s"]["median"] for r in fan["runs"]]
        fan["summary"] = {"min_s": min(seconds), "median_s": round(statistics.median(seconds), 3), "max_s": max(seconds),
                          "floor_min_s": min(fan["floor_s"]), "floor_median_s": round(statistics.median(fan["floor_s"]), 3),
                          "evaluation_median_s": round(statistics.median(evals), 3),
                          "evaluation_min_s": min(r["evaluation_s"]["min"] for r in fan["runs"]),
                          "evaluation_max_s": max(r["evaluation_s"]["max"] for r in fan["runs"]),
                          # CPU seconds of every benchmark process per query: hardly moved by other work
                          "cpu_s": round(statistics.median(_ours(r["cpu"]) for r in fan["runs"]), 2),
                          "floor_cpu_s": round(statistics.median(_ours(c) for c in fan["floor_cpu"]), 2)}
    big = report.get("store")
    if big:
        ours = [r["seconds"] for r in big["runs"]]
        floor = [r["seconds"] for r in big["floor_runs"]]
        big["summary"] = {"median_s": round(statistics.median(ours), 3), "min_s": min(ours), "max_s": max(ours),
                          "floor_median_s": round(statistics.median(floor), 3), "floor_min_s": min(floor),
                          "ratio": round(statistics.median(ours) / statistics.median(floor), 2),
                          "database_floor_median_s": round(statistics.median(big["database_floor_s"]), 3)}


def markdown(report: dict[str, Any]) -> str:
    m, plan = report["machine"], report["plan"]
    lines = [
        f"#### Feasibility, {plan['mode']} run — {report['date']}",
        "",
        (f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, aiohttp {m['aiohttp']}, "
        f"SQLite {m['sqlite']}, Linux {m['kernel']}; dsf-py {m['commit']}{_changes(m)}; "
        f"load average at start {m['loadavg_1min_at_start']}. Shared machine: other work may run beside the benchmark "
        f"(see the CPU of other processes below)."),
        "",
        "| measure | value | floor | × floor | goal | met |",
        "|---|---:|---:|---:|---|:-:|",
    ]
    fan = report.get("fanout")
    what = f"{fan['dics']} DICs × {fan['patients_per_dic']:,} patients" if fan else ""
    if fan and fan.get("error"):
        floor = statistics.median(fan["floor_s"]) if fan.get("floor_s") else None
        error = fan["error"].replace("|", "\\|")
        lines.append(f"| fan-out, {what}: POST → request Task completed | **failed** after "
                     f"{len(fan['runs'])} good run(s): {error} | {_s(floor)} | | ≤ {GOAL_FANOUT_S:g} s | ❌ |")
    elif fan:
        s, n = fan["summary"], len(fan["runs"])
        lines += [
            (f"| fan-out, {what}: POST → request Task completed, min of {n} | {_s(s['min_s'])} | {_s(s['floor_min_s'])} | "
            f"{s['min_s'] / s['floor_min_s']:.1f} | ≤ {GOAL_FANOUT_S:g} s | {_met(s['min_s'], GOAL_FANOUT_S)} |"),
            (f"| fan-out, {what}, median of {n} | {_s(s['median_s'])} | {_s(s['floor_median_s'])} | "
            f"{s['median_s'] / s['floor_median_s']:.1f} | ≤ {GOAL_FANOUT_S:g} s | {_met(s['median_s'], GOAL_FANOUT_S)} |"),
            (f"| DIC evaluation inside the fan-out, median (range {s['evaluation_min_s']:.2f}–{s['evaluation_max_s']:.2f} s) "
            f"| {_s(s['evaluation_median_s'])} | | | | |"),
            (f"| fan-out, CPU of all its processes per query, median (÷ 2 cores: the least wall time) | {s['cpu_s']:.1f} s "
             f"({s['cpu_s'] / 2:.1f} s) | {s['floor_cpu_s']:.1f} s ({s['floor_cpu_s'] / 2:.1f} s) | "
             f"{s['cpu_s'] / s['floor_cpu_s']:.2f} | | |"),
        ]
    big = report.get("store")
    if big:
        s = big["summary"]
        lines.append(
            f"| one store, {big['patients']:,} patients: `evaluate()`, median of {len(big['runs'])} | {_s(s['median_s'])} | "
            f"{_s(s['floor_median_s'])} | {s['ratio']:.2f} | ≤ {GOAL_STORE_S:g} s | {_met(s['median_s'], GOAL_STORE_S)} |")
    lines.append("")
    lines.append("Query: female (Patient gender) AND I10, NOT E11.9 (ICD-10-GM); obfuscation off, every count checked "
                 "against the count taken from the generated data.")
    if fan:
        lines += ["", (f"Fan-out layout: {fan['layout']}; the DICs' stores are {fan['store_files']}. Floor: the same FHIR searches of all {fan['dics']} stores at once "
                  "by a bare aiohttp script in this process (no DSF messaging, no engine). Each DIC's count: "
                  f"{fan['expected_per_dic']:,}."), "",
                  ("| fan-out run | wall | floor | DIC evaluations min / median / max | first evaluation began | "
                  "last ended | last answer at the HRP | CPU s: stores / DICs / HRP+script / other |"),
                  "|---|---:|---:|---|---:|---:|---:|---|"]
        labelled = [("warm-up", fan["warmup"], fan["warmup"]["floor_s"])] if "warmup" in fan else []
        measured = [(str(i), r, f) for i, (r, f) in enumerate(zip(fan["runs"], fan["floor_s"], strict=False), start=1)]
        for label, r, floor_s in [*labelled, *measured]:
            ev, cpu = r["evaluation_s"], r["cpu"]
            last = f"+{r['last_answer_s']:.2f} s" if r.get("last_answer_s") is not None else ""
            lines.append(f"| {label} | {r['seconds']:.2f} s | {floor_s:.2f} s | {ev['min']:.2f} / {ev['median']:.2f} / "
                         f"{ev['max']:.2f} s | +{r['first_evaluation_start_s']:.2f} s | +{r['last_evaluation_end_s']:.2f} s | "
                         f"{last} | {cpu.get('stores', 0):.1f} / {cpu.get('dics', 0):.1f} / {cpu.get('main', 0):.1f} / "
                         f"{cpu.get('other', 0):.1f} |")
        if fan.get("floor_cpu"):
            stores = statistics.median(c.get("stores", 0.0) for c in fan["floor_cpu"])
            script = statistics.median(c.get("main", 0.0) for c in fan["floor_cpu"])
            lines.append(f"\nCPU of the floor per run (median): stores {stores:.1f} s, script {script:.1f} s.")
    if big:
        r0 = big["runs"][0]
        lines += ["", (f"One store: searches {', '.join(f'`{s}`' for s in big['steps'])} (`_elements`, `_count=1000`), "
                  f"{r0['pages']} pages, {r0['resources']:,} resources per evaluation; each DIC in the fan-out issues the same. "
                  f"Floor: those searches by a bare aiohttp script over the same connection pool, parsing only the patient ids. "
                  f"Count: {big['expected']:,}."), ""]
        store_cpu = statistics.median(r["cpu"].get("store", 0.0) for r in big["runs"])
        main_cpu = statistics.median(r["cpu"].get("main", 0.0) for r in big["runs"])
        floor_main = statistics.median(r["cpu"].get("main", 0.0) for r in big["floor_runs"])
        lines.append(f"CPU per evaluation (median): store {store_cpu:.2f} s, client {main_cpu:.2f} s; floor client {floor_main:.2f} s. "
                     f"Database floor (the same patient ids straight from the store's SQLite file by sqlite3, index rows "
                     f"only, no FHIR): {big['summary']['database_floor_median_s']:.2f} s.")
        census = "; ".join(f"{k} ×{v['requests']} {v['handler_s']:.2f} s in the handler, {v['response_mib']:.1f} MiB"
                           for k, v in big["census"].items())
        lines.append(f"Store census over the measured runs (evaluate() + floor): {census}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


async def run(plan: Plan, rebuild: bool, keep: bool, build_only: bool) -> dict[str, Any]:
    machine = mb.machine_info("sqlite") | working_tree()
    report: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine,
                              "plan": asdict(plan)}
    print("templates", flush=True)
    templates: dict[str, Template] = {}
    sizes = {"fanout": plan.patients, "store": plan.big_patients}
    for part in plan.only:
        again = rebuild and sizes[part] not in [sizes[p] for p in templates]  # a shared size is built once
        templates[part] = await template(sizes[part], plan.seed, again)
    if build_only:
        return report
    work = Path(tempfile.mkdtemp(prefix="dsf-bench-feasibility-"))
    logs = work / "logs"
    logs.mkdir()
    logging.basicConfig(filename=logs / "main.log", level=logging.INFO,
                        format="%(created).3f %(levelname)s %(name)s: %(message)s")
    print(f"working directory {work}", flush=True)
    try:
        if "store" in plan.only:
            report["store"] = await store_part(plan, templates["store"], logs)
        if "fanout" in plan.only:
            report["fanout"] = await fanout_part(plan, templates["fanout"], work, logs)
        return report
    finally:
        if keep:
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the feasibility plugin (see benchmarks/README.md).")
    parser.add_argument("--quick", action="store_true", help="5 DICs × 1,000 patients, a 10,000-patient store")
    parser.add_argument("--only", nargs="*", choices=("fanout", "store"), help="run only these parts")
    parser.add_argument("--dics", type=int, help="DICs in the fan-out (default 30)")
    parser.add_argument("--patients", type=int, help="patients per DIC store (default 10,000)")
    parser.add_argument("--runs", type=int, help="measured fan-out queries (default 5; 3 with --quick)")
    parser.add_argument("--big-patients", type=int, help="patients in the one big store (default 100,000)")
    parser.add_argument("--big-runs", type=int, help="measured evaluations of the big store (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--store-processes", type=int, default=2, help="processes the DICs' stores run in (default 2)")
    parser.add_argument("--dic-processes", type=int, default=1, help="processes the DIC nodes run in (default 1)")
    parser.add_argument("--link", action="store_true",
                        help="hard-link the DICs' stores to the template instead of copying (automatic when the disk is short)")
    parser.add_argument("--rebuild", action="store_true", help="build the cached template stores again")
    parser.add_argument("--build-only", action="store_true", help="only build (or find) the template stores")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, network, store copies)")
    parser.add_argument("--output", type=Path, help="JSON result file (default benchmarks/results/feasibility[-quick].json)")
    args = parser.parse_args(argv)
    plan = make_plan(args)
    t0 = time.perf_counter()
    try:
        report = asyncio.run(run(plan, args.rebuild, args.keep, args.build_only))
    except BenchmarkError as exc:
        print(f"benchmark aborted: {exc}", file=sys.stderr)
        return 1
    if args.build_only:
        return 0
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    summarise(report)
    text = markdown(report)
    print()
    print(text)
    print(f"\ntotal {report['total_seconds']:.0f} s")
    output = args.output or RESULTS / f"feasibility{'-quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(report | {"markdown": text}, option=orjson.OPT_INDENT_2))
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
