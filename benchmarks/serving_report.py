"""The serving benchmark's report: ratios, targets and conclusions computed from the measurements, as Markdown.

`summary(report)` is the part README.md shows; `markdown(report)` is benchmarks/results/serving.md. Every sentence
with a number, and every "met" or "not met", is computed here from the report's measurements.
"""

import math
import statistics

CONCURRENCY = (1, 16, 64)
BATCH_IMAGES = 64
BATCH_CONCURRENCY = 4
# The servers, in the order they run, and the letter each goes by in the report.
LETTERS = {"bentoml": "a", "dependency": "a2", "naive_workers": "b", "naive_single": "b1"}
BASELINES = ("naive_workers", "naive_single")
# The targets, against the naive server as deployed (b) and the in-process limit (c):
# (name, key of `verdict_values`, comparison, threshold).
TARGETS = (
    ("c64 throughput at least (b)'s", "a_over_b_throughput_c64_paired", ">=", 1.0),
    ("c64 p99 at most 50% of (b)'s", "a_over_b_p99_c64_paired", "<=", 0.5),
    ("c64 zero errors", "a_errors_c64", "<=", 0),
    ("c1 throughput at least 90% of (b)'s", "a_over_b_throughput_c1_paired", ">=", 0.9),
    ("c1 p50 within 1 ms of (b)'s", "a_minus_b_p50_ms_c1_paired", "<=", 1.0),
    ("64-image batches at least 70% of (c)", "a_batch64_over_c", ">=", 0.7),
)
# On a GPU the issue asks for more at concurrency 64.
GPU_TARGETS = (("GPU: c64 throughput at least 3x (b)'s", "a_over_b_throughput_c64_paired", ">=", 3.0),)


class StaleReportError(ValueError):
    """The report was written by an older version of the benchmark and lacks measurements this one reports."""


def labels(report: dict) -> dict[str, str]:
    """Server key -> its label in the tables, e.g. '(b) naive Starlette, uvicorn --workers 2'."""
    workers = report.get("serving", {}).get("api_workers")
    return {
        "bentoml": "(a) our BentoML service" + (f", {workers} workers" if workers else ""),
        "dependency": "(a2) BentoML, batchable=True inference process",
        "naive_workers": f"(b) naive Starlette, uvicorn --workers {report['naive_workers']}, one torch thread each",
        "naive_single": "(b1) naive Starlette, one process, torch's default threads",
    }


def check_schema(report: dict) -> None:
    """StaleReportError unless every configuration has all four servers' runs."""
    for name, section in report["configurations"].items():
        missing = sorted(set(LETTERS) - set(section["servers"]))
        if missing or "naive_workers" not in report:
            raise StaleReportError(
                f"serving.json ({name}) lacks the runs of {', '.join(missing) or 'the worker count'}: it was written by"
                " an older version of benchmarks/bench_serving.py. Rerun the benchmark (`make bench`)."
            )


def ratios(section: dict) -> dict[str, float]:
    """(a) against each other server, and every server's 64-image rate against (c), from the measurements."""
    servers = section["servers"]
    a = servers["bentoml"]
    result: dict[str, float] = {}
    for key in BASELINES:
        b, letter = servers[key], LETTERS[key]
        for c in CONCURRENCY:
            result[f"a_over_{letter}_throughput_c{c}"] = a[f"c{c}"]["requests_per_s"] / b[f"c{c}"]["requests_per_s"]
        for c in (1, 64):
            for latency in ("p50", "p99"):
                result[f"a_over_{letter}_{latency}_c{c}"] = a[f"c{c}"][f"{latency}_ms"] / b[f"c{c}"][f"{latency}_ms"]
    for key, letter in LETTERS.items():
        result[f"{letter}_batch64_over_c"] = servers[key]["batch64"]["over_c"]
    a2 = servers["dependency"]["c64"]["requests_per_s"]
    result["a_over_a2_throughput_c64"] = a["c64"]["requests_per_s"] / a2
    result["a2_over_b_throughput_c64"] = a2 / servers["naive_workers"]["c64"]["requests_per_s"]
    return result


# Each goal judged on paired rounds -> the concurrency of the rounds it is judged on (`paired_c1`, `paired_c64`:
# both servers up, taking turns round by round), its per-round figure from (a)'s and (b)'s runs of a round, and
# the single runs' figure it falls back to in a report without those rounds.
PAIRED_FIGURES = {
    "a_over_b_throughput_c1_paired": (
        1,
        lambda a, b: a["requests_per_s"] / b["requests_per_s"],
        "a_over_b_throughput_c1",
    ),
    "a_minus_b_p50_ms_c1_paired": (1, lambda a, b: a["p50_ms"] - b["p50_ms"], "a_minus_b_p50_ms_c1"),
    "a_over_b_throughput_c64_paired": (
        64,
        lambda a, b: a["requests_per_s"] / b["requests_per_s"],
        "a_over_b_throughput_c64",
    ),
    "a_over_b_p99_c64_paired": (64, lambda a, b: a["p99_ms"] / b["p99_ms"], "a_over_b_p99_c64"),
}


def _paired_runs(section: dict, concurrency: int, server: str = "bentoml") -> list[dict]:
    """`server`'s runs in the paired rounds at `concurrency` (none in a report without them)."""
    return section.get(f"paired_c{concurrency}", {}).get("runs", {}).get(server, [])


def paired_values(section: dict, key: str) -> list[float]:
    """The per-round figures behind paired verdict `key`, one per round of its paired rounds; empty for a report
    written before the benchmark had them."""
    concurrency, figure, _ = PAIRED_FIGURES[key]
    pairs = zip(_paired_runs(section, concurrency), _paired_runs(section, concurrency, "naive_workers"), strict=True)
    return [figure(a, b) for a, b in pairs]


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free interval for the median of `values` (order statistics: with 10 rounds, the 2nd lowest to
    the 2nd highest, 97.9 %); None when too few values give `confidence`."""
    n = len(values)
    ordered = sorted(values)
    k = 0
    # The largest k (1-based), so the narrowest interval, with P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2 on
    # each side.
    while sum(math.comb(n, i) for i in range(k + 1)) / 2**n <= (1 - confidence) / 2:
        k += 1
    return (ordered[k - 1], ordered[n - k]) if k >= 1 else None


def unresolved(section: dict, key: str, threshold: float) -> bool:
    """Whether the paired rounds' interval for the median of verdict `key` holds `threshold`: the rounds then
    cannot tell whether the goal is met, whatever their median says."""
    interval = median_interval(paired_values(section, key)) if key in PAIRED_FIGURES else None
    return interval is not None and interval[0] <= threshold <= interval[1]


def verdict_values(section: dict) -> dict[str, float]:
    """What the targets are judged on: the ratios, (a)'s p50 minus (b)'s at concurrency 1 (ms), (a)'s errors at
    concurrency 64, and the concurrency-1 and -64 goals as the medians of the paired rounds (the single runs'
    figures for a report without them).

    One wrk run per server, minutes apart, is at the mercy of whatever else the machine does then: at concurrency
    1 rounds of the same two servers spread over ±30 % on a shared 2-core machine, and at concurrency 64 the naive
    server's p99 on the digits model was 559 ms in one run and 55 ms in the next. Paired rounds see the same
    conditions, and their median is the figure the goal is judged on."""
    servers = section["servers"]
    values = {
        **ratios(section),
        "a_minus_b_p50_ms_c1": servers["bentoml"]["c1"]["p50_ms"] - servers["naive_workers"]["c1"]["p50_ms"],
        # A round that shed load (503s) would look faster and shorter-tailed: its errors count against the goal.
        "a_errors_c64": servers["bentoml"]["c64"]["errors"] + sum(run["errors"] for run in _paired_runs(section, 64)),
    }
    for key, (_, _, single_run) in PAIRED_FIGURES.items():
        paired = paired_values(section, key)
        values[key] = statistics.median(paired) if paired else values[single_run]
    return values


def target_list(device: str = "cpu") -> tuple:
    """The targets that apply to a run on `device` ("cpu" or "cuda")."""
    return TARGETS + (GPU_TARGETS if device == "cuda" else ())


def targets(section: dict, device: str = "cpu") -> dict[str, bool]:
    """Target name -> whether the figure it is judged on meets it, computed from `verdict_values(section)` (see
    `verdicts` for whether the paired rounds establish that)."""
    values = verdict_values(section)
    return {
        name: values[key] >= threshold if comparison == ">=" else values[key] <= threshold
        for name, key, comparison, threshold in target_list(device)
    }


def verdict(section: dict, device: str, name: str, key: str, threshold: float) -> str:
    """A target's verdict in words: "met", "not met", or "not established" when the paired rounds' interval for the
    median holds the threshold (the rounds cannot tell, whichever side the median falls on)."""
    if unresolved(section, key, threshold):
        return "not established"
    return "met" if targets(section, device)[name] else "not met"


def _shown(said: str) -> str:
    """A verdict as the reports show it: a goal not met in bold."""
    return f"**{said}**" if said == "not met" else said


def verdicts(section: dict, device: str = "cpu") -> dict[str, str]:
    """Target name -> `verdict`, as stored beside `targets`."""
    return {name: verdict(section, device, name, key, threshold) for name, key, _, threshold in target_list(device)}


def refresh_derived(report: dict) -> dict:
    """The report with every configuration's stored ratios, targets and verdicts computed again from its measurements
    (after the targets changed); the measurements themselves are left as they are."""
    device = report["machine"]["device"]
    for section in report["configurations"].values():
        section["ratios"] = ratios(section)
        section["targets"] = targets(section, device)
        section["verdicts"] = verdicts(section, device)
    return report


def decode_bound(section: dict) -> float:
    """The most (a)/(c) could be if decoding were the service's only cost besides the forward pass.

    Per image, the service spends decode + forward CPU time where (c) spends forward alone, both in one thread.
    """
    costs = section["per_image_us"]
    return costs["forward_batch64"] / (costs["forward_batch64"] + costs["decode"])


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _ms(value: float) -> str:
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _by_model(configurations: dict, describe) -> str:
    return "; ".join(f"`{name}` {describe(section)}" for name, section in configurations.items())


def conclusions(report: dict) -> list[str]:
    """Markdown bullets: each target met or not per model, and what else the numbers show."""
    configurations = report["configurations"]
    cpus = report["naive_workers"]
    device = report["machine"]["device"]
    lines = ["Against the targets (computed from the numbers above):", ""]
    for name, key, _, threshold in target_list(device):
        by_model = {model: verdict(section, device, name, key, threshold) for model, section in configurations.items()}
        parts = []
        for said in ("met", "not established", "not met"):
            models = [model for model, given in by_model.items() if given == said]
            if models:
                details = ", ".join(f"`{m}` {_target_detail(key, configurations[m], threshold)}" for m in models)
                parts.append(f"{_shown(said)} for {details}")
        lines.append(f"- **{name}**: {'; '.join(parts)}.")
    lines += ["", "Also in this run:", ""]
    lines.append(
        "- **Concurrency 1**: (a)'s requests/s over (b)'s and over (b1)'s: "
        + _by_model(
            configurations,
            lambda s: (
                f"{_x(ratios(s)['a_over_b_throughput_c1'])} and {_x(ratios(s)['a_over_b1_throughput_c1'])}"
                f" (p50 {_ms(s['servers']['bentoml']['c1']['p50_ms'])}, against"
                f" {_ms(s['servers']['naive_workers']['c1']['p50_ms'])} and"
                f" {_ms(s['servers']['naive_single']['c1']['p50_ms'])})"
            ),
        )
        + "."
    )
    lines.append(
        "- **Concurrency 64 against the one-process server (b1)**: throughput and p99 ratios "
        + _by_model(
            configurations,
            lambda s: (
                f"{_x(ratios(s)['a_over_b1_throughput_c64'])} and {_x(ratios(s)['a_over_b1_p99_c64'])}"
                f" ({_ms(s['servers']['bentoml']['c64']['p99_ms'])} against"
                f" {_ms(s['servers']['naive_single']['c64']['p99_ms'])})"
            ),
        )
        + "."
    )
    lines.append(
        f"- **(b) against (b1)** at concurrency 64 ({cpus} workers against one): throughput "
        + _by_model(
            configurations,
            lambda s: _x(
                s["servers"]["naive_workers"]["c64"]["requests_per_s"]
                / s["servers"]["naive_single"]["c64"]["requests_per_s"]
            ),
        )
        + "."
    )
    lines.append(
        "- **Versus (a2)**, throughput at concurrency 64: "
        + _by_model(configurations, lambda s: _x(ratios(s)["a_over_a2_throughput_c64"]))
        + "."
    )
    lines.append(f"- **Errors**: {_errors(report)}.")
    lines.append(
        "- **Decoding against the model**, one thread, per image: "
        + _by_model(
            configurations,
            lambda s: (
                f"decode {s['per_image_us']['decode']:.0f} µs, forward pass at batch 64"
                f" {s['per_image_us']['forward_batch64']:.0f} µs, so (a)/(c) could reach at most about"
                f" {decode_bound(s):.2f} even with free HTTP"
            ),
        )
        + "."
    )
    lines.append(
        "- **Drift of the forward rate**: (c) at batch 64 over this run's measurements, images/s: "
        + _by_model(
            configurations,
            lambda s: (
                f"{min(s['in_process_limit']['batch_64_runs_images_per_s']):.0f}"
                f"-{max(s['in_process_limit']['batch_64_runs_images_per_s']):.0f}"
                f" ({len(s['in_process_limit']['batch_64_runs_images_per_s'])} measurements)"
            ),
        )
        + "."
    )
    lines.append(
        "- **Time to ready**: "
        + _by_model(
            configurations,
            lambda s: (
                ", ".join(f"({LETTERS[key]}) {s['time_to_ready_s'][key]:.1f} s" for key in LETTERS)
                + f" ((b): until all {cpus} workers answered)"
            ),
        )
        + "."
    )
    if report["machine"]["device"] == "cpu":
        lines.append("- **No GPU** was available: the CUDA path (float16 autocast) was not exercised by this run.")
    else:
        lines.append(
            f"- **GPU**: {report['machine'].get('device_name') or 'a CUDA device'}; every server's workers share it."
        )
    return lines


def _single_run_text(key: str, section: dict) -> str:
    """The single runs' figure behind paired verdict `key`, e.g. "0.93x" or "33 ms against 55 ms"."""
    servers = section["servers"]
    if key == "a_minus_b_p50_ms_c1_paired":
        return f"{_ms(servers['bentoml']['c1']['p50_ms'])} against {_ms(servers['naive_workers']['c1']['p50_ms'])}"
    if key == "a_over_b_p99_c64_paired":
        return f"{_ms(servers['bentoml']['c64']['p99_ms'])} against {_ms(servers['naive_workers']['c64']['p99_ms'])}"
    return _x(ratios(section)[PAIRED_FIGURES[key][2]])


def _target_detail(key: str, section: dict, threshold: float) -> str:
    value = verdict_values(section)[key]
    servers = section["servers"]
    paired = paired_values(section, key) if key in PAIRED_FIGURES else []
    if paired and key == "a_minus_b_p50_ms_c1_paired":
        return (
            f"({_apart(value, threshold, '{:+.2f} ms')}: median of {len(paired)} paired rounds, {min(paired):+.2f} to"
            f" {max(paired):+.2f} ms{_interval_text(paired, threshold, '{:+.2f} ms')}; the single run above:"
            f" {_single_run_text(key, section)})"
        )
    if paired:
        return (
            f"({_apart(value, threshold, '{:.2f}x')}: median of {len(paired)} paired rounds,"
            f" {min(paired):.2f}-{max(paired):.2f}{_interval_text(paired, threshold, '{:.2f}')}; the single run above:"
            f" {_single_run_text(key, section)})"
        )
    if key in PAIRED_FIGURES:
        # A report written before the benchmark had these paired rounds: judged on its single runs, and says so.
        single = _single_run_text(key, section)
        if key == "a_minus_b_p50_ms_c1_paired":
            return f"({single}: {value:+.2f} ms; single runs, no paired rounds)"
        if key == "a_over_b_p99_c64_paired":
            return f"({_x(value)}: {single}; single runs, no paired rounds)"
        return f"({single}; single runs, no paired rounds)"
    if key == "a_errors_c64":
        requests = servers["bentoml"]["c64"]["requests"] + sum(run["requests"] for run in _paired_runs(section, 64))
        rounds = " and its paired rounds" if _paired_runs(section, 64) else ""
        return f"({value} of {requests} requests in the concurrency-64 run{rounds})"
    if key == "a_batch64_over_c":
        runs = ", ".join(f"{run:.2f}" for run in servers["bentoml"]["batch64"]["over_c_runs"])
        return f"({value:.2f}; paired runs {runs})"
    return f"({_x(value)})"


def _idle_neighbour_text(paired: dict) -> str:
    """ " While (a) was loaded, idle (b) used X % of a core; ..." from the runs' `idle_neighbour_cpu_s`, or ""."""
    runs = paired["runs"]
    if not all("idle_neighbour_cpu_s" in run for server in runs.values() for run in server):
        return ""
    shares = {
        name: 100 * sum(run["idle_neighbour_cpu_s"] for run in runs[name]) / (paired["duration_s"] * len(runs[name]))
        for name in runs
    }
    return (
        f" While (a) was loaded, (b), idle, used {shares['bentoml']:.1f} % of a core; while (b) was loaded, (a), idle,"
        f" used {shares['naive_workers']:.1f} %."
    )


def _median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})" if values else ""


def _apart(value: float, threshold: float, style: str) -> str:
    """`value` in `style` (a format with ".2f"), with more decimals while it would print as `threshold` does:
    "0.90 to 0.98, which holds 0.9" reads as a contradiction when the bound is 0.898."""
    if value == threshold:
        return style.format(value)
    for decimals in range(2, 7):
        text = style.replace(".2f", f".{decimals}f").format(value)
        if text != style.replace(".2f", f".{decimals}f").format(threshold):
            return text
    return text


def _interval_text(values: list[float], threshold: float, style: str) -> str:
    """ ", 95 % interval of the median X to Y" (and whether it holds the goal's threshold), or "" with too few."""
    interval = median_interval(values)
    if interval is None:
        return ""
    spans = interval[0] <= threshold <= interval[1]
    low, high = (_apart(bound, threshold, style) for bound in interval)
    return f", 95 % interval of the median {low} to {high}" + (", which holds the goal's threshold" if spans else "")


def _errors(report: dict) -> str:
    names = labels(report)
    failed = [
        f"{names[key].split(' ')[0]} `{model}` {load}: {result['errors']} of {result['requests']}"
        for model, section in report["configurations"].items()
        for key in LETTERS
        for load, result in section["servers"][key].items()
        if result["errors"]
    ]
    failed += [
        f"{names[key].split(' ')[0]} `{model}` paired round {index} at concurrency {concurrency}:"
        f" {run['errors']} of {run['requests']}"
        for model, section in report["configurations"].items()
        for concurrency in (1, 64)
        for key in ("bentoml", "naive_workers")
        for index, run in enumerate(_paired_runs(section, concurrency, key), start=1)
        if run["errors"]
    ]
    return "; ".join(failed) if failed else "none in any run"


def summary(report: dict) -> str:
    """The note, the table of ratios and targets per model, and the conclusions: what README.md shows."""
    check_schema(report)
    configurations = report["configurations"]
    lines = [
        f"{report['note']} Each wrk run lasts {report['duration_s_per_run']} s; single-image multipart requests"
        f" unless noted. Load generator ceiling (wrk against a trivial endpoint, 64 connections):"
        f" {report['load_generator_ceiling']['requests_per_s']:.0f} req/s. The whole run took"
        f" {report['wall_s'] / 60:.0f} min.",
        "",
        "| | " + " | ".join(f"`{name}`" for name in configurations) + " |",
        "| --- |" + " ---: |" * len(configurations),
    ]
    rows = {
        "model": lambda c: c["description"],
        "(c) in-process, batch 64, images/s": lambda c: (
            f"{c['in_process_limit']['batch_64_images_per_s']:.0f}"
            f" (median of {len(c['in_process_limit']['batch_64_runs_images_per_s'])} runs;"
            f" fastest in most: {c['in_process_limit']['batch_64_layout']})"
        ),
        "(a) 64-image batches, images/s": lambda c: f"{c['servers']['bentoml']['batch64']['images_per_s']:.0f}",
        "(a) / (c), 64-image batches (median of paired runs)": lambda c: f"{ratios(c)['a_batch64_over_c']:.2f}",
    }
    for letter in ("b", "b1"):
        for measure in ("throughput", "p50", "p99"):
            for c in (1, 64):
                key = f"a_over_{letter}_{measure}_c{c}"
                rows[f"(a) / ({letter}) {measure}, concurrency {c}"] = lambda s, key=key: f"{ratios(s)[key]:.2f}"
    for c in (1, 64):
        rows[f"errors at concurrency {c}: (a), (b), (b1)"] = lambda s, c=c: ", ".join(
            str(s["servers"][key][f"c{c}"]["errors"]) for key in ("bentoml", *BASELINES)
        )
    rows["(a) / (a2) throughput, concurrency 64"] = lambda c: f"{ratios(c)['a_over_a2_throughput_c64']:.2f}"
    for row, key in (
        ("(a) / (b) throughput, concurrency 1", "a_over_b_throughput_c1_paired"),
        ("(a) / (b) throughput, concurrency 64", "a_over_b_throughput_c64_paired"),
        ("(a) / (b) p99, concurrency 64", "a_over_b_p99_c64_paired"),
    ):
        if any(paired_values(c, key) for c in configurations.values()):
            rows[f"{row}, paired rounds: median (range)"] = lambda c, key=key: _median_range(paired_values(c, key))
    device = report["machine"]["device"]
    for name, key, _, threshold in target_list(device):
        rows[f"target: {name}"] = lambda c, name=name, key=key, threshold=threshold: (
            _shown(verdict(c, device, name, key, threshold))
            + (
                f" (the median {'meets' if targets(c, device)[name] else 'misses'} it)"
                if unresolved(c, key, threshold)
                else ""
            )
        )
    lines += [f"| {row} | " + " | ".join(cell(c) for c in configurations.values()) + " |" for row, cell in rows.items()]
    names = labels(report)
    lines += ["", "Servers: " + "; ".join(names[key] for key in LETTERS) + ".", "", *conclusions(report)]
    return "\n".join([*lines, ""])


def markdown(report: dict) -> str:
    """benchmarks/results/serving.md: the summary, then every server's numbers at every load, per model."""
    names = labels(report)
    lines = ["# Serving benchmark", "", summary(report).rstrip("\n")]
    for name, section in report["configurations"].items():
        lines += [
            "",
            f"## `{name}`: {section['description']}",
            "",
            f"Input {'x'.join(map(str, section['input']['shape']))}, PNGs of {section['input']['png_bytes_mean']} bytes"
            f" on average; a 64-image request body is {section['batch64_body_bytes']:,} bytes.",
            "",
            "| server | load | req/s | images/s | p50 ms | p99 ms | errors |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for server in LETTERS:
            for load, result in section["servers"][server].items():
                per_request = BATCH_IMAGES if load == "batch64" else 1
                load_text = (
                    f"64-image batches, concurrency {BATCH_CONCURRENCY} ("
                    + ("median" if len(result["runs_requests_per_s"]) % 2 else "the slower middle run")
                    + f" of {', '.join(f'{rate:.0f}' for rate in result['runs_requests_per_s'])} req/s; over the (c)"
                    f" measured just before each: {', '.join(f'{ratio:.2f}' for ratio in result['over_c_runs'])})"
                    if load == "batch64"
                    else f"concurrency {load[1:]}"
                )
                lines.append(
                    f"| {names[server]} | {load_text} | {result['requests_per_s']:.0f}"
                    f" | {result['requests_per_s'] * per_request:.0f} | {result['p50_ms']:.1f}"
                    f" | {result['p99_ms']:.1f} | {result['errors']} |"
                )
        limit = section["in_process_limit"]
        lines += [
            f"| (c) in-process forward passes, {limit['batch_1_layout']} | batch 1 | |"
            f" {limit['batch_1_images_per_s']:.0f} | | | |",
            f"| (c) in-process forward passes, measured before each 64-image run above | batch 64, median of"
            f" {', '.join(f'{rate:.0f}' for rate in limit['batch_64_runs_images_per_s'])} images/s | |"
            f" {limit['batch_64_images_per_s']:.0f} | | | |",
        ]
        lines += [
            "",
            "| ratio | value |",
            "| --- | ---: |",
            *(f"| {key} | {value:.2f} |" for key, value in ratios(section).items()),
            "",
            "Time from process start to ready: "
            + ", ".join(f"{names[key]} {section['time_to_ready_s'][key]} s" for key in LETTERS)
            + " (`/readyz` for the BentoML servers; for the naive ones, until every worker answered `/ping`).",
        ]
        for concurrency, latency in ((1, "p50"), (64, "p99")):
            paired = section.get(f"paired_c{concurrency}")
            if paired:
                runs = paired["runs"]
                lines += [
                    "",
                    f"Paired concurrency-{concurrency} rounds: (a) and (b) up together, each loaded in turn for"
                    f" {paired['duration_s']} s per round, the order alternating; req/s per round, (a): "
                    + ", ".join(f"{run['requests_per_s']:.0f}" for run in runs["bentoml"])
                    + "; (b): "
                    + ", ".join(f"{run['requests_per_s']:.0f}" for run in runs["naive_workers"])
                    + "; (a)/(b) per round: "
                    + ", ".join(
                        f"{ratio:.2f}" for ratio in paired_values(section, f"a_over_b_throughput_c{concurrency}_paired")
                    )
                    + f"; {latency} ms per round, (a): "
                    + ", ".join(f"{run[f'{latency}_ms']:.2f}" for run in runs["bentoml"])
                    + "; (b): "
                    + ", ".join(f"{run[f'{latency}_ms']:.2f}" for run in runs["naive_workers"])
                    + "."
                    + _idle_neighbour_text(paired),
                ]
    return "\n".join([*lines, ""])
