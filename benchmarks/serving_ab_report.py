"""The serving A/B report: medians and paired ratios computed from the runs `bench_serving_ab.py` recorded.

Every experiment in serving_ab.json holds the raw wrk runs of every server, round by round. A ratio between two
servers is computed per round (the two runs of a round are seconds apart, so the load other work puts on the machine
is nearly the same for both) and the median over the rounds is reported, with the range of the per-round ratios.
"""

import statistics

NAIVE = "naive_workers"
NAIVE_LABEL = "(b) naive, uvicorn --workers N"
LOAD_NAMES = {"c1": "concurrency 1", "c64": "concurrency 64", "batch64": "64-image batches, concurrency 4"}


class ABReportError(ValueError):
    """An experiment lacks the runs a ratio needs."""


def servers(experiment: dict) -> list[str]:
    """The variants in the order given, then the naive server."""
    return [*experiment["variants"], NAIVE]


def label(experiment: dict, server: str) -> str:
    return NAIVE_LABEL if server == NAIVE else f"`{server}`"


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def paired_ratios(runs: dict[str, list[dict]], server: str, against: str, key: str) -> list[float]:
    """`key` of `server` over `against`, one ratio per round in which both ran."""
    others = {run["round"]: run[key] for run in runs[against]}
    ratios = [run[key] / others[run["round"]] for run in runs[server] if run["round"] in others]
    if not ratios:
        raise ABReportError(f"no round has runs of both {server} and {against}; rerun the experiment")
    return ratios


def comparison(runs: dict[str, list[dict]], server: str, against: str) -> dict[str, float]:
    """Median per-round ratios of `server` over `against`: requests/s, p50 and p99, and the requests/s range; plus
    the median difference in p50 (ms)."""
    throughput = paired_ratios(runs, server, against, "requests_per_s")
    others = {run["round"]: run["p50_ms"] for run in runs[against]}
    p50_differences = [run["p50_ms"] - others[run["round"]] for run in runs[server] if run["round"] in others]
    return {
        "throughput": statistics.median(throughput),
        "throughput_min": min(throughput),
        "throughput_max": max(throughput),
        "p50": statistics.median(paired_ratios(runs, server, against, "p50_ms")),
        "p99": statistics.median(paired_ratios(runs, server, against, "p99_ms")),
        "p50_difference_ms": statistics.median(p50_differences),
    }


def _ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"


def experiment_markdown(name: str, experiment: dict) -> list[str]:
    """One experiment: what was compared, then per model and load every server's medians, and each variant's ratios
    to the variant listed before it, to the first variant and to the naive server."""
    variants = list(experiment["variants"])
    first = variants[0]
    lines = [
        f"## {name}",
        "",
        experiment["description"],
        "",
        f"{experiment['note']} {experiment['rounds']} rounds; in each round every server got one wrk run of"
        f" {experiment['duration_s_per_run']} s per load, in an order rotated from round to round; the run took"
        f" {experiment['wall_s'] / 60:.0f} min.",
        "",
        "Variants, in order:",
        "",
    ]
    lines += [
        f"- `{variant}`: {details['description']} (source: {details['source']}; files {details['fingerprint']})"
        for variant, details in experiment["variants"].items()
    ]
    for model, section in experiment["models"].items():
        lines += [
            "",
            f"### `{model}`",
            "",
            "| load | server | req/s (median) | p50 | p99 | errors | req/s over the previous variant (range of rounds)"
            f" | p50 over the previous | req/s over `{first}` | req/s over (b) | p50 minus (b)'s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for load, runs in section["loads"].items():
            for index, server in enumerate(servers(experiment)):
                own = runs[server]
                cells = [
                    LOAD_NAMES.get(load, load),
                    label(experiment, server),
                    f"{median_of(own, 'requests_per_s'):.0f}",
                    _ms(median_of(own, "p50_ms")),
                    _ms(median_of(own, "p99_ms")),
                    str(sum(run["errors"] for run in own)),
                ]
                if server == NAIVE or index == 0:
                    cells += ["", "", "", *([""] * 2 if server == NAIVE else [])]
                else:
                    previous = comparison(runs, server, variants[index - 1])
                    cells += [
                        f"{previous['throughput']:.2f}x"
                        f" ({previous['throughput_min']:.2f}-{previous['throughput_max']:.2f})",
                        f"{previous['p50']:.2f}x",
                        f"{comparison(runs, server, first)['throughput']:.2f}x",
                    ]
                if server != NAIVE:
                    naive = comparison(runs, server, NAIVE)
                    cells += [f"{naive['throughput']:.2f}x", f"{naive['p50_difference_ms']:+.2f} ms"]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(document: dict) -> str:
    """benchmarks/results/serving_ab.md: every experiment recorded in serving_ab.json, in the order run."""
    lines = [
        "# Serving A/B experiments",
        "",
        "Written by `benchmarks/bench_serving_ab.py` from `serving_ab.json`. Ratios are medians of per-round ratios"
        " (each round runs every server once per load, seconds apart); p50 differences likewise.",
    ]
    for name, experiment in document["experiments"].items():
        lines += ["", *experiment_markdown(name, experiment)]
    return "\n".join([*lines, ""])
