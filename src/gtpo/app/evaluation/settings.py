"""Evaluation settings: `EvalSettings` (how every benchmark is evaluated: the keyword arguments of
`gtpo.app.evaluation.evaluate` and the flags of `gtpo eval`, one set of defaults for both),
`EvalConfig` (`gtpo eval`: the settings plus the model, benchmarks and output directory), the
published protocols, and the per-benchmark plan they resolve to."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gtpo.app.options import FieldError, option
from gtpo.tasks.datasets import TASKS
from gtpo.tasks.rewards import ANSWER_FORMATS

# Default completion budgets (new tokens) when neither a protocol nor max_new_tokens sets one.
BENCHMARK_MAX_NEW_TOKENS = {"gsm8k": 1024, "math": 2048, "math500": 2048, "aime24": 4096, "aime25": 4096,
                            "amc23": 4096, "arithmetic": 256}  # fmt: skip
DEFAULT_MAX_NEW_TOKENS = 2048
_BUDGETS = ", ".join(f"{name} {tokens}" for name, tokens in BENCHMARK_MAX_NEW_TOKENS.items())

PROTOCOL_NAMES = ("open-r1", "qwen-math")


def check_sampling(num_samples: int, temperature: float) -> None:
    """Several samples per problem need sampling: greedy decoding gives one answer."""
    if num_samples > 1 and temperature == 0:
        raise FieldError(
            "num_samples",
            f"{num_samples} samples per problem need temperature > 0 (greedy decoding gives one answer)",
        )


@dataclass
class EvalSettings:
    """How every benchmark is evaluated. Fields left at None take the protocol's value, else the
    default named in their help; `gtpo eval` and `evaluate()` share these defaults."""

    protocol: str | None = option(
        None,
        "Published settings: open-r1 (T 0.6, top_p 0.95, n 64 for AIME/AMC and 4 otherwise, boxed) or "
        "qwen-math (greedy plus maj@8, boxed). A setting given beside it wins and is recorded.",
        choices=PROTOCOL_NAMES,
    )
    answer_format: str | None = option(
        None, "Answer convention: tags (the paper's, default), boxed or any.", choices=ANSWER_FORMATS
    )
    num_samples: int | None = option(None, "Sampled completions per problem (default 1).", (">= 1",))
    k: list[int] | None = option(None, "pass@k for these k (default 1 when sampling).")
    maj_k: list[int] | None = option(None, "maj@k for these k (default none).")
    greedy: bool | None = option(None, "Also run one greedy completion per problem (default false).")
    temperature: float | None = option(None, "Sampling temperature; 0 is greedy (default 0).", (">= 0",))
    top_p: float | None = option(None, "Nucleus sampling top_p (default 1.0).", ("> 0", "<= 1"))
    max_new_tokens: int | None = option(
        None, f"Completion budget (default per benchmark: {_BUDGETS}; others {DEFAULT_MAX_NEW_TOKENS}).",
        (">= 1",),
    )  # fmt: skip
    batch_size: int = option(8, "Completions generated per forward batch.", (">= 1",))
    seeds: list[int] = option(help="Run the whole evaluation once per seed.", factory=lambda: [0])

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise FieldError("seeds", f"must be distinct and at least one, got {self.seeds}")


@dataclass
class EvalConfig(EvalSettings):
    """`gtpo eval`: which model and benchmarks, under which protocol or settings, and where the
    results go. Fields left at None take the protocol's value, else the default named in their help."""

    model_name_or_path: str | None = option(
        None,
        "Hub id, local path, LoRA adapter directory (merged into the base its adapter_config.json "
        "names), tiny-test, tiny-demo, tiny-100m or smollm2-135m.",
        required=True,
    )
    benchmarks: list[str] = option(
        help="Task names, e.g. gsm8k math500 aime24 aime25 amc23.", choices=tuple(TASKS), required=True,
        factory=list,
    )  # fmt: skip
    output_dir: str | None = option(
        None, "Directory for samples, results.json and results.md; a rerun resumes there.", required=True
    )
    dataset_path: list[str] = option(
        help="NAME=PATH: a local JSONL/parquet file for a benchmark (repeatable).", factory=list
    )
    split: str | None = option(None, "Dataset split (default: the task's test split).")
    limit: int | None = option(None, "First N problems of each benchmark.", (">= 1",))

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in self.paths():
            if name not in self.benchmarks:
                raise FieldError("dataset_path", f"{name!r} is not one of the benchmarks {self.benchmarks}")

    def paths(self) -> dict[str, str]:
        """The local file of each benchmark given one (--dataset_path NAME=PATH)."""
        paths = {}
        for item in self.dataset_path:
            name, sep, path = item.partition("=")
            if not sep or not path or not name:
                raise FieldError("dataset_path", f"expects NAME=PATH, got {item!r}")
            paths[name] = path
        return paths

    def settings(self) -> dict[str, Any]:
        """The EvalSettings fields, as evaluate()'s keyword arguments."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(EvalSettings)}


@dataclass(frozen=True)
class Protocol:
    """Published evaluation settings, applied to every benchmark unless a setting overrides one."""

    description: str
    temperature: float
    top_p: float
    num_samples: int
    max_new_tokens: int
    answer_format: str
    greedy: bool
    k: tuple[int, ...]
    maj_k: tuple[int, ...]
    num_samples_by_benchmark: dict[str, int] = field(default_factory=dict)


PROTOCOLS: dict[str, Protocol] = {
    "open-r1": Protocol(
        description="open-r1 / lighteval: avg@n at T 0.6, top_p 0.95, 32k tokens, boxed answers; "
        "n 64 for AIME and AMC, 4 for the others",
        temperature=0.6,
        top_p=0.95,
        num_samples=4,
        num_samples_by_benchmark={"aime24": 64, "aime25": 64, "amc23": 64},
        max_new_tokens=32768,
        answer_format="boxed",
        greedy=False,
        k=(1,),
        maj_k=(),
    ),
    "qwen-math": Protocol(
        description="Qwen2.5-Math: greedy accuracy plus maj@8 over 8 samples at T 0.7, top_p 0.8, "
        "2048 tokens, boxed answers",
        temperature=0.7,
        top_p=0.8,
        num_samples=8,
        max_new_tokens=2048,
        answer_format="boxed",
        greedy=True,
        k=(),
        maj_k=(8,),
    ),
}
PROTOCOL_FIELDS = ("answer_format", "num_samples", "k", "maj_k", "greedy", "temperature", "top_p",
                   "max_new_tokens")  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """The exact settings one benchmark is evaluated with. A plan at temperature 0 is one greedy pass;
    otherwise num_samples sampled completions, plus a greedy pass when `greedy`."""

    answer_format: str
    num_samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    k: tuple[int, ...]
    maj_k: tuple[int, ...]
    greedy: bool


def set_fields(settings: EvalSettings) -> dict[str, Any]:
    """The protocol-settable fields set explicitly (not None)."""
    return {name: getattr(settings, name) for name in PROTOCOL_FIELDS if getattr(settings, name) is not None}


def plan_for(settings: EvalSettings, benchmark: str) -> Plan:
    """The settings for one benchmark: explicit settings win over the protocol, which wins over the
    defaults. Raises a one-line FieldError for a combination that cannot run as asked."""
    protocol = PROTOCOLS.get(settings.protocol) if settings.protocol else None
    given = set_fields(settings)

    def pick(name: str, protocol_value: Any, default: Any) -> Any:
        return given.get(name, protocol_value if protocol else default)

    num_samples = pick(
        "num_samples", protocol and protocol.num_samples_by_benchmark.get(benchmark, protocol.num_samples), 1
    )
    temperature = pick("temperature", protocol and protocol.temperature, 0.0)
    budget = BENCHMARK_MAX_NEW_TOKENS.get(benchmark, DEFAULT_MAX_NEW_TOKENS)
    plan = Plan(
        answer_format=pick("answer_format", protocol and protocol.answer_format, "tags"),
        num_samples=num_samples,
        temperature=temperature,
        top_p=pick("top_p", protocol and protocol.top_p, 1.0),
        max_new_tokens=pick("max_new_tokens", protocol and protocol.max_new_tokens, budget),
        k=tuple(pick("k", protocol and protocol.k, (1,) if temperature > 0 else ())),
        maj_k=tuple(pick("maj_k", protocol and protocol.maj_k, ())),
        greedy=pick("greedy", protocol and protocol.greedy, False),
    )
    if plan.temperature == 0:
        check_sampling(plan.num_samples, plan.temperature)
        greedy_ignores = {
            "seeds": settings.seeds != [0],
            "top_p": "top_p" in given,
            "k": "k" in given and bool(plan.k),
        }
        for name, ignored in greedy_ignores.items():
            if ignored:
                raise FieldError(name, "set, but greedy decoding (temperature 0) does not use it")
    for flag, values in (("k", plan.k), ("maj_k", plan.maj_k)):
        for k in values:
            if not 1 <= k <= plan.num_samples:
                where = f" (num_samples for {benchmark})" if protocol else ""
                raise FieldError(flag, f"must be >= 1 and <= {plan.num_samples}{where}, got {k}")
    return plan
