"""The training benchmark's derived figures and reports, computed from its measurements alone.

`derive` turns one dataset's runs into throughputs, paired ratios and the target's verdict; `summary` (the README's
section) and `markdown` (benchmarks/results/training.md) render a whole result. Nothing here measures, so the tests
check the committed reports against the committed JSON without torch.
"""

from __future__ import annotations

import statistics

TARGET = 0.9
# variant -> how the report names it
VARIANTS = {
    "plugin": "plug-in `train()`, deterministic (as `trained_model` runs it)",
    "bare": "bare loop, deterministic algorithms (torch's defaults with them)",
    "plugin_fast": "plug-in `train()`, `deterministic: 0`",
    "bare_fast": "bare loop, no deterministic algorithms",
    "bare_amp": "bare loop, no deterministic algorithms, bf16 autocast",
}
# (plug-in variant, bare variant): the like-for-like comparisons; the first is the target's
PAIRS = (("plugin", "bare"), ("plugin_fast", "bare_fast"))
# (deterministic variant, the same loop without deterministic algorithms)
DETERMINISM = (("plugin", "plugin_fast"), ("bare", "bare_fast"))
COMPARISONS = (*PAIRS, *DETERMINISM, ("bare_amp", "bare_fast"))
# The loop that runs beside both plug-in runs: what the two are compared through.
REFERENCE = "bare_fast"


def steady_epochs(run: dict, key: str = "epoch_wall_s") -> list[float]:
    """A run's epoch seconds (wall, or CPU with key="epoch_cpu_s") without its first epoch (network and data set-up,
    first-call costs) when it has more than one."""
    epochs = run[key]
    return epochs[1:] if len(epochs) > 1 else epochs


def _runs(dataset: dict, variant: str, repeat: int | None = None) -> list[dict]:
    return [r for r in dataset["runs"] if r["variant"] == variant and repeat in (None, r["repeat"])]


def paired_ratios(dataset: dict, top: str, bottom: str) -> list[list[float]]:
    """Per repeat, `top`'s throughput over `bottom`'s epoch by epoch, for runs that shared a plug-in call (their
    epochs alternated, so each pair met the same load). Empty when the two never shared a call."""
    per_repeat = []
    for repeat in sorted({run["repeat"] for run in dataset["runs"]}):
        pairs = [
            (t, b)
            for t in _runs(dataset, top, repeat)
            for b in _runs(dataset, bottom, repeat)
            if t["call"] == b["call"]
        ]
        ratios = [
            bottom_s / top_s
            for t, b in pairs
            for top_s, bottom_s in zip(steady_epochs(t), steady_epochs(b), strict=True)
        ]
        if ratios:
            per_repeat.append(ratios)
    return per_repeat


def compare(dataset: dict, top: str, bottom: str) -> dict | None:
    """`top`'s throughput over `bottom`'s: the median of the epoch pairs when they shared plug-in calls; otherwise
    (the two plug-in runs) per repeat the ratio of their medians against REFERENCE, which ran beside both, so load
    that changed between the two runs cancels. None when a variant was not measured."""
    direct = paired_ratios(dataset, top, bottom)
    if direct:
        return {
            "median": round(statistics.median(ratio for repeat in direct for ratio in repeat), 3),
            "repeats": [round(statistics.median(repeat), 3) for repeat in direct],
            "pairs": sum(len(repeat) for repeat in direct),
            "via": None,
        }
    tops, bottoms = paired_ratios(dataset, top, REFERENCE), paired_ratios(dataset, bottom, REFERENCE)
    if not tops or not bottoms:
        return None
    repeats = [statistics.median(t) / statistics.median(b) for t, b in zip(tops, bottoms, strict=True)]
    return {
        "median": round(statistics.median(repeats), 3),
        "repeats": [round(ratio, 3) for ratio in repeats],
        "pairs": sum(len(repeat) for repeat in (*tops, *bottoms)),
        "via": REFERENCE,
    }


def derive(dataset: dict) -> dict:
    """Per variant: images/s (median over all its steady epochs), CPU ms per image, final validation accuracy and
    whether its runs gave identical weights; per comparison: the median of the epoch-by-epoch ratios (epochs that
    ran next to each other met the same load), each repeat's median, and the target's verdict."""
    images = dataset["train_images"]
    variants = {}
    for variant in VARIANTS:
        runs = _runs(dataset, variant)
        if not runs:
            continue
        epochs = [seconds for run in runs for seconds in steady_epochs(run)]
        cpu = [seconds for run in runs for seconds in steady_epochs(run, "epoch_cpu_s")]
        hashes = {run["weights_sha256"] for run in runs if run.get("weights_sha256")}
        variants[variant] = {
            "images_per_s": round(images / statistics.median(epochs), 1),
            "cpu_ms_per_image": round(1000 * statistics.median(cpu) / images, 3),
            "epochs_measured": len(epochs),
            "final_val_accuracy": round(statistics.median(run["final"]["val_accuracy"] for run in runs), 4),
            "identical_weights": (len(hashes) == 1) if hashes and len(runs) > 1 else None,
        }
    ratios = {}
    for top, bottom in COMPARISONS:
        comparison = compare(dataset, top, bottom)
        if comparison is not None:
            ratios[f"{top}/{bottom}"] = comparison
    return {
        "variants": variants,
        "ratios": ratios,
        "target_met": ratios["plugin/bare"]["median"] >= TARGET,
    }


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def determinism_cost(derived: dict, deterministic: str, fast: str) -> str:
    """What deterministic algorithms cost a loop, in words: by wall clock (paired, per repeat) when every repeat agrees
    on the sign, else that the load's noise hides it; and the CPU time per image, which other load skews less."""
    ratios, variants = derived["ratios"], derived["variants"]
    key = f"{deterministic}/{fast}"
    if key not in ratios:
        return "-"
    costs = [(1 - ratio) * 100 for ratio in ratios[key]["repeats"]]
    median = (1 - ratios[key]["median"]) * 100
    spread = f"repeats {min(costs):.0f} % to {max(costs):.0f} %"
    cpu = variants[deterministic]["cpu_ms_per_image"] / variants[fast]["cpu_ms_per_image"] - 1
    if len(costs) < 2:
        # One repeat cannot agree or disagree with another: its sign says nothing about the load's noise.
        direction = f"{median:.0f} % slower" if median >= 0 else f"{-median:.0f} % faster"
        return (
            f"{direction} in a single repeat, too few to tell from the load's noise, CPU time per image"
            f" {cpu * 100:+.0f} %"
        )
    if all(cost > 0 for cost in costs):
        wall = f"costs {median:.0f} % of the throughput ({spread})"
    elif all(cost < 0 for cost in costs):
        wall = f"costs nothing: ran {-median:.0f} % faster ({spread})"
    else:
        wall = f"no wall-clock cost distinguishable from the load's noise ({spread})"
    return f"{wall}, CPU time per image {cpu * 100:+.0f} %"


def _label(dataset: dict) -> str:
    return f"{dataset['description']} ({dataset['train_images']:,} train / {dataset['val_images']:,} val images)"


def summary(result: dict) -> str:
    """The tables and conclusions, computed from `result`: the part README.md shows."""
    machine, settings, load = result["machine"], result["settings"], result["load_average_1min"]
    if machine["device"] == "cpu":
        device = (
            f"CPU ({machine['processor']}, {machine['cores']} cores; torch {machine['torch']},"
            f" {machine['torch_threads']} threads)"
        )
    else:
        device = (
            f"{machine['device_name']} ({machine['device']}; torch {machine['torch']}, {machine['cores']} CPU cores)"
        )
    # Half a core's worth of other work before the run: enough to move epochs that take a second by tens of percent.
    # The load after the run counts the benchmark's own threads, so it cannot tell.
    busy = load["before"] >= 0.5
    epochs = ", ".join(f"{dataset['epochs_per_run']} on the {dataset['name']}" for dataset in result["datasets"])
    lines = [
        f"Device: {device}. Load average (1, 5, 15 min): {result['uptime']['before']} before the run,"
        f" {result['uptime']['after']} after"
        + (
            ": other work competed for the machine, so its absolute images/s below are not what the machine does"
            " alone; the paired ratios, whose epochs met the same load, are the comparison."
            if busy
            else "."
        ),
        "",
        f"Batch {settings['batch_size']}, Adam at learning rate {settings['learning_rate']}, seed {settings['seed']},"
        f" cnn width {settings['width']}" + (", bf16 autocast measured" if settings["amp"] else "") + "."
        f" Per repeat ({settings['repeats']}), the plug-in trains a fresh network twice (epochs per run: {epochs}),"
        " with and without deterministic algorithms, and after each of its epochs the bare loops (their order"
        " rotated) run one epoch each, so the epochs compared ran side by side. An epoch is a training pass and a"
        " validation pass; images/s = training images / epoch wall seconds, median over the epochs (each run's"
        " first, with its set-up, left out when a run has more than one); CPU ms/image is the process's CPU time"
        f" per training image. Not in any epoch: the {result['one_off_imports_s']:.1f} s every training process"
        " pays once, whichever loop it runs, while torch imports its compiler stack on the first optimizer built.",
        "",
        "| dataset | loop | images/s | CPU ms/image | final val accuracy | epochs measured |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for dataset in result["datasets"]:
        for variant, figures in dataset["derived"]["variants"].items():
            lines.append(
                f"| {_label(dataset)} | {VARIANTS[variant]} | {_rate(figures['images_per_s'])} |"
                f" {figures['cpu_ms_per_image']:.3f} | {figures['final_val_accuracy']:.3f} |"
                f" {figures['epochs_measured']} |"
            )
    lines += [
        "",
        "The images/s above pool epochs that ran minutes apart; the ratios below compare epochs that ran side by side.",
        "",
        f"| dataset | plug-in / bare loop (target: at least {TARGET}x) | median per repeat | target |"
        " plug-in / bare, both without deterministic algorithms | deterministic algorithms: the plug-in |"
        " ... the bare loop |",
        "| --- | ---: | --- | --- | ---: | --- | --- |",
    ]
    for dataset in result["datasets"]:
        ratios = dataset["derived"]["ratios"]
        target = ratios["plugin/bare"]

        def cell(key: str, ratios: dict = ratios) -> str:
            return f"{ratios[key]['median']:.2f}x" if key in ratios else "-"

        lines.append(
            f"| {dataset['description']} | {target['median']:.2f}x |"
            f" {', '.join(f'{ratio:.2f}' for ratio in target['repeats'])} |"
            f" {_verdict(dataset['derived']['target_met'])} | {cell('plugin_fast/bare_fast')} |"
            f" {determinism_cost(dataset['derived'], 'plugin', 'plugin_fast')} |"
            f" {determinism_cost(dataset['derived'], 'bare', 'bare_fast')} |"
        )
    lines += [
        "",
        "Ratios are medians of epoch-by-epoch ratios; the plug-in's two runs did not run side by side, so what"
        f" determinism costs it is the ratio of their medians against the {VARIANTS[REFERENCE]}, which ran beside"
        " both. The plug-in differs from the bare loop in how it trains, not in what: channels-last memory format,"
        " fused Adam, batches normalized on the device by table lookup, and with deterministic algorithms it turns"
        " off torch's NaN fill of new tensors (a debugging aid torch switches on with them); the ratios measure these"
        " together, not one by one.",
        "",
        *conclusions(result),
        "",
    ]
    return "\n".join(lines)


def conclusions(result: dict) -> list[str]:
    """One line per dataset: the target's verdict, reproducibility and what determinism costs."""
    lines = []
    for dataset in result["datasets"]:
        derived = dataset["derived"]
        ratios, variants = derived["ratios"], derived["variants"]
        target = ratios["plugin/bare"]
        line = (
            f"- **{dataset['description']}**: the plug-in's loop ran at {target['median']:.2f}x the bare loop's"
            f" images/s (target {TARGET}x: {_verdict(derived['target_met'])}; medians of the repeats"
            f" {min(target['repeats']):.2f}-{max(target['repeats']):.2f}, {target['pairs']} epoch"
            f" {'pair' if target['pairs'] == 1 else 'pairs'})."
        )
        identical = variants["plugin"]["identical_weights"]
        if identical is not None:
            line += (
                " Its deterministic runs gave bit-identical weights."
                if identical
                else " Its deterministic runs gave **different** weights."
            )
        if "plugin/plugin_fast" in ratios and "bare/bare_fast" in ratios:
            line += (
                f" Deterministic algorithms, for the plug-in: {determinism_cost(derived, 'plugin', 'plugin_fast')};"
                f" for the bare loop: {determinism_cost(derived, 'bare', 'bare_fast')}."
            )
        if "bare_amp/bare_fast" in ratios:
            line += f" bf16 autocast: {ratios['bare_amp/bare_fast']['median']:.2f}x the bare loop in float32."
        lines.append(line)
    return lines


def markdown(result: dict) -> str:
    """benchmarks/results/training.md."""
    return "# Training throughput\n\n" + summary(result)
